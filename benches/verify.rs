//! Throughput of segment verification against a raw CRC-32C pass over the same bytes.
//!
//!   cargo bench --bench make_segment     # once: writes the ≥ 600 MiB segment with a real broker
//!   cargo bench --bench verify
//!
//! The segment is `target/bench-data/kafka-3.9.2-none/bench-0/00000000000000000000.log`, or
//! `$SEGVAULT_BENCH_SEGMENT`. It is mmapped ([`MappedFile`]) and read once before measuring,
//! so every pass runs from the page cache. Single-threaded. Measured:
//!
//! - `raw_crc32c`: `crc32c::crc32c` over the whole mapping: the ceiling.
//! - `log_entries_crc`: [`log_entries`] walk, each batch's CRC-32C verified: what
//!   `segvault verify` does per segment. Target: ≥ 70 % of `raw_crc32c`.
//! - `log_entries_crc_records`: the same plus decoding every record of every batch
//!   (`Records::verify`), the deep check.
//!
//! After criterion's report a best-of-N summary prints MB/s and the ratio to the raw pass.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use segvault_format::mapped::MappedFile;
use segvault_format::{log_entries, Batch, SegmentEnd};

fn segment_path() -> PathBuf {
    if let Some(p) = std::env::var_os("SEGVAULT_BENCH_SEGMENT") {
        return PathBuf::from(p);
    }
    let data = std::env::var_os("SEGVAULT_BENCH_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-data"));
    data.join("kafka-3.9.2-none/bench-0/00000000000000000000.log")
}

fn raw_crc(data: &[u8]) -> u32 {
    crc32c::crc32c(data)
}

/// The library path `verify` uses: frame every entry, verify its CRC, classify the end.
fn walk_crc(data: &[u8]) -> (u64, SegmentEnd) {
    let mut it = log_entries(data);
    let n = it.by_ref().count() as u64;
    (n, it.finish())
}

/// Walk + CRC + decode every record.
fn walk_crc_records(data: &[u8]) -> (u64, SegmentEnd) {
    let mut it = log_entries(data);
    let mut records = 0u64;
    for b in it.by_ref() {
        match b {
            Batch::V2(b) => {
                records += u64::from(
                    b.records()
                        .and_then(|r| r.verify())
                        .expect("records decode"),
                );
            }
            Batch::Legacy(_) => records += 1,
        }
    }
    (records, it.finish())
}

fn best_of(n: usize, data: &[u8], f: impl Fn(&[u8]) -> u64) -> Duration {
    (0..n)
        .map(|_| {
            let t = Instant::now();
            black_box(f(black_box(data)));
            t.elapsed()
        })
        .min()
        .unwrap()
}

fn main() {
    let path = segment_path();
    // SAFETY: the benchmark's own segment; nothing modifies it while mapped.
    let map = match unsafe { MappedFile::open(&path) } {
        Ok(m) => m,
        Err(e) => {
            eprintln!(
                "no bench segment at {} ({e}); run `cargo bench --bench make_segment` first",
                path.display()
            );
            return;
        }
    };
    let data: &[u8] = &map;
    let len = data.len() as u64;
    assert!(
        len >= 256 << 20,
        "bench segment must be at least 256 MiB, is {len} bytes"
    );
    // Warm the page cache and check the segment once.
    let (batches, end) = walk_crc(data);
    assert_eq!(end, SegmentEnd::Clean, "bench segment does not verify");
    eprintln!(
        "segment {}: {} MiB, {batches} batches",
        path.display(),
        len >> 20
    );

    let mut c = Criterion::default()
        .configure_from_args()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(15));
    {
        let mut g = c.benchmark_group("verify_segment");
        g.throughput(Throughput::Bytes(len));
        g.bench_function("raw_crc32c", |b| b.iter(|| raw_crc(black_box(data))));
        g.bench_function("log_entries_crc", |b| b.iter(|| walk_crc(black_box(data))));
        g.bench_function("log_entries_crc_records", |b| {
            b.iter(|| walk_crc_records(black_box(data)))
        });
        g.finish();
    }
    c.final_summary();

    // Same-run ratio, best of 7 each (criterion's numbers above are the detailed ones).
    let mbs = |d: Duration| len as f64 / 1e6 / d.as_secs_f64();
    let raw = best_of(7, data, |d| u64::from(raw_crc(d)));
    let walk = best_of(7, data, |d| walk_crc(d).0);
    let deep = best_of(3, data, |d| walk_crc_records(d).0);
    println!("summary: segment {} MiB, {batches} batches", len >> 20);
    println!("summary: raw_crc32c              {:>8.0} MB/s", mbs(raw));
    println!(
        "summary: log_entries_crc         {:>8.0} MB/s  = {:.1}% of raw (target >= 70%)",
        mbs(walk),
        100.0 * raw.as_secs_f64() / walk.as_secs_f64()
    );
    println!(
        "summary: log_entries_crc_records {:>8.0} MB/s  = {:.1}% of raw",
        mbs(deep),
        100.0 * raw.as_secs_f64() / deep.as_secs_f64()
    );

    if let Some(bin) = std::env::var_os("SEGVAULT_VERIFY_BIN") {
        time_processes(&bin, &path, len, raw);
    }
}

/// The real binary, when given (benches/verify_binary.sh sets it): `segvault verify` over
/// the log directory holding the segment (whole process: also the .index/.timeindex
/// cross-checks and the small files), against the raw pass of this same run and, when
/// SEGVAULT_RAW_BIN is set (examples/raw_crc), against a fresh process that maps the
/// segment and CRCs it: the fair process-to-process ratio. Runs are interleaved (raw,
/// variant 1, variant 2, ...) SEGVAULT_BIN_RUNS times (default 7); best of each.
/// SEGVAULT_VERIFY_ARGS: variants separated by ';' (default "verify --shallow;verify").
fn time_processes(bin: &std::ffi::OsStr, path: &std::path::Path, len: u64, raw: Duration) {
    let mbs = |d: Duration| len as f64 / 1e6 / d.as_secs_f64();
    let log_dir = path
        .parent()
        .and_then(|p| p.parent())
        .expect("segment in <log dir>/<topic>-<partition>/");
    let variants =
        std::env::var("SEGVAULT_VERIFY_ARGS").unwrap_or_else(|_| "verify --shallow;verify".into());
    let runs: usize = std::env::var("SEGVAULT_BIN_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(7);
    let run = |program: &std::ffi::OsStr, args: &[&str], target: &std::path::Path| {
        let t = Instant::now();
        let out = std::process::Command::new(program)
            .args(args)
            .arg(target)
            .env("RAYON_NUM_THREADS", "1") // single-threaded, like the other figures
            .output()
            .expect("running a benchmark process");
        let d = t.elapsed();
        assert!(
            out.status.success(),
            "{} {args:?} {} failed: {}{}",
            program.to_string_lossy(),
            target.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        d
    };
    let raw_bin = std::env::var_os("SEGVAULT_RAW_BIN");
    let variants: Vec<Vec<&str>> = variants
        .split(';')
        .filter(|v| !v.trim().is_empty())
        .map(|v| v.split_whitespace().collect())
        .collect();
    let mut raw_best = Duration::MAX;
    let mut best = vec![Duration::MAX; variants.len()];
    for _ in 0..runs {
        if let Some(raw_bin) = &raw_bin {
            raw_best = raw_best.min(run(raw_bin, &[], path));
        }
        for (v, b) in variants.iter().zip(best.iter_mut()) {
            *b = (*b).min(run(bin, v, log_dir));
        }
    }
    if raw_bin.is_some() {
        println!(
            "summary: raw_crc process (examples/raw_crc) {:>8.0} MB/s  = {:.1}% of raw in-process",
            mbs(raw_best),
            100.0 * raw.as_secs_f64() / raw_best.as_secs_f64()
        );
    }
    for (v, b) in variants.iter().zip(&best) {
        let process_ratio = if raw_bin.is_some() {
            format!(
                ", {:.1}% of the raw_crc process (target >= 70%)",
                100.0 * raw_best.as_secs_f64() / b.as_secs_f64()
            )
        } else {
            String::new()
        };
        println!(
            "summary: segvault {:<24} {:>8.0} MB/s  = {:.1}% of raw in-process{process_ratio} (binary, whole process)",
            v.join(" "),
            mbs(*b),
            100.0 * raw.as_secs_f64() / b.as_secs_f64()
        );
    }
}
