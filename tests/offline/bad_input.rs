//! Corrupted copies of a real log dir (Kafka 3.9.2 fixture, clean shutdown): bit flips in
//! every v2 header field, truncations, seeded garbage, empty and zero-filled files, wrong
//! names, directories where files belong, missing files. Each case asserts the exit code
//! (1 = integrity problem, 2 = usage/I/O error, 0 only where the state is legitimate and
//! documented), that nothing panics (exit code 101), and that the JSON or stderr names the
//! file and, for byte-level damage, the byte position.

use crate::common::paths::fixture;
use crate::common::run::{code, failures, json_lines, output, stderr};
use segvault_harness::fixtures::copy_dir;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// A fresh copy of the fixture log dir.
fn logdir() -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("data");
    copy_dir(&fixture(VERSION), &d, &[]).unwrap();
    (t, d)
}

struct Run {
    code: i32,
    lines: Vec<Value>,
    stderr: String,
}

impl Run {
    fn failures(&self) -> Vec<&Value> {
        failures(&self.lines)
    }
    /// A corrupt/partial problem about `file` (path suffix) with a byte position.
    fn names(&self, file: &str) -> Option<&Value> {
        self.failures().into_iter().find(|p| {
            p["file"].as_str().is_some_and(|f| f.ends_with(file)) && p["position"].is_u64()
        })
    }
}

fn segvault(args: &[&str], paths: &[&Path]) -> Run {
    let out = output(
        crate::common::run::segvault()
            .args(args)
            .args(["--format", "json"])
            .args(paths),
    );
    let stderr = stderr(&out);
    assert!(!stderr.contains("panicked"), "{stderr}");
    Run {
        code: code(&out),
        lines: json_lines(&out.stdout),
        stderr,
    }
}

fn verify(dir: &Path) -> Run {
    segvault(&["verify"], &[dir])
}

fn inspect(file: &Path) -> Run {
    segvault(&["inspect", "--records"], &[file])
}

/// (position, size) of every batch.
fn batches(file: &Path) -> Vec<(usize, usize)> {
    let data = std::fs::read(file).unwrap();
    segvault_format::log_entries(&data)
        .map(|b| (b.position() as usize, b.size()))
        .collect()
}

/// The fixture the tests damage copies of.
const VERSION: &str = "3.9.2";
const CLOSED: &str = "codec-none-0/00000000000000000000.log";
const ACTIVE: &str = "txn-0/00000000000000000005.log";

fn flip(file: &Path, at: usize, mask: u8) {
    let mut d = std::fs::read(file).unwrap();
    d[at] ^= mask;
    std::fs::write(file, d).unwrap();
}

#[test]
fn bit_flips_in_every_header_field() {
    // (field, byte offset within the batch, bit mask, detectable)
    let cases: &[(&str, usize, u8, bool)] = &[
        ("base offset (low bit)", 7, 0x01, true),
        ("base offset (high bit)", 0, 0x40, true),
        ("length (low bit)", 11, 0x01, true),
        ("length (+8 MiB: runs past the end)", 9, 0x80, true),
        ("length (sign bit)", 8, 0x80, true),
        // PartitionLeaderEpoch is outside the CRC: the broker rewrites it without
        // recomputing the CRC, so a flipped epoch is undetectable by design.
        ("partition leader epoch", 15, 0x04, false),
        ("magic 2 -> 3", 16, 0x01, true),
        ("magic 2 -> 0", 16, 0x02, true),
        ("crc", 20, 0x10, true),
        ("attributes (codec)", 22, 0x01, true),
        ("attributes (transactional)", 22, 0x10, true),
        ("last offset delta", 26, 0x01, true),
        ("base timestamp", 34, 0x01, true),
        ("max timestamp", 42, 0x01, true),
        ("producer id", 50, 0x01, true),
        ("producer epoch", 52, 0x01, true),
        ("base sequence", 56, 0x01, true),
        ("record count", 60, 0x01, true),
    ];
    for &(field, off, mask, detectable) in cases {
        let (_t, dir) = logdir();
        let file = dir.join(CLOSED);
        let b = batches(&file);
        assert!(b.len() >= 2);
        let (pos, size) = b[0];
        flip(&file, pos + off, mask);
        let v = verify(&dir);
        let i = inspect(&file);
        if !detectable {
            assert_eq!(v.code, 0, "{field}: {:#?}", v.failures());
            assert_eq!(i.code, 0, "{field}");
            let batch = i.lines.iter().find(|l| l["type"] == "batch").unwrap();
            assert_eq!(batch["crc_valid"], true, "{field}");
            continue;
        }
        assert_eq!(v.code, 1, "{field}: verify exit code; {:#?}", v.lines);
        assert_eq!(i.code, 1, "{field}: inspect exit code; {:#?}", i.lines);
        let p = i
            .names(CLOSED.rsplit('/').next().unwrap())
            .unwrap_or_else(|| panic!("{field}: {:#?}", i.lines));
        // The position points into the damaged batch or the one after it (an offset
        // overlap is seen at the next batch).
        let at = p["position"].as_u64().unwrap() as usize;
        assert!(
            at >= pos && at <= pos + size + b[1].1,
            "{field}: position {at}, batch at {pos}: {p}"
        );
        assert!(v.names(CLOSED).is_some(), "{field}: {:#?}", v.failures());
    }
}

#[test]
fn length_flip_in_the_active_segment_is_not_mistaken_for_a_partial_tail() {
    let (_t, dir) = logdir();
    let file = dir.join(ACTIVE);
    let b = batches(&file);
    let (pos, _) = b[b.len() / 2];
    flip(&file, pos + 9, 0x40); // +4 MiB: the batch now "runs past the end of the file"
    for r in [verify(&dir), inspect(&file)] {
        assert_eq!(r.code, 1, "{:#?}", r.lines);
        let p = r.names("00000000000000000005.log").unwrap();
        assert_eq!(p["kind"], "bad_length");
        assert_eq!(p["position"].as_u64().unwrap() as usize, pos + 8);
    }
}

#[test]
fn truncation_at_every_batch_boundary_and_inside_batches() {
    for (name, active) in [(CLOSED, false), (ACTIVE, true)] {
        let b = batches(&fixture(VERSION).join(name));
        let mut cuts: Vec<usize> = Vec::new();
        for &(pos, size) in &b {
            cuts.extend([pos, pos + 5, pos + 30, pos + size / 2, pos + size - 1]);
        }
        cuts.sort();
        cuts.dedup();
        for cut in cuts {
            let (_t, dir) = logdir();
            let file = dir.join(name);
            let data = std::fs::read(&file).unwrap();
            std::fs::write(&file, &data[..cut]).unwrap();
            let boundary = b.iter().any(|&(p, _)| p == cut);
            // A closed segment that lost data: its time index's roll-time entry (or an
            // offset-index entry) points past the end, or it ends in a partial batch.
            // The active segment: after a clean shutdown the recovery-point checkpoint
            // equals the log end, so a shorter log is missing data.
            let v = verify(&dir);
            assert_eq!(v.code, 1, "{name} cut at {cut}: {:#?}", v.lines);
            let i = inspect(&file);
            if !boundary {
                let p = i
                    .lines
                    .iter()
                    .find(|l| l["type"] == "problem" && l["kind"] == "partial_tail")
                    .unwrap_or_else(|| panic!("{name} cut at {cut}: {:#?}", i.lines));
                let start = b.iter().rev().find(|&&(p, _)| p <= cut).unwrap().0;
                assert_eq!(p["position"].as_u64().unwrap() as usize, start);
                // Alone, the active segment looks like a live copy (note, exit 0); a
                // closed one is partial (exit 1).
                assert_eq!(p["severity"], if active { "note" } else { "partial" });
                assert_eq!(i.code, if active { 0 } else { 1 }, "{name} cut at {cut}");
            } else {
                assert_eq!(
                    i.code, 0,
                    "{name} cut at a boundary {cut}: the file alone is valid"
                );
            }
        }
    }
}

/// xorshift64*: deterministic garbage.
fn garbage(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.max(1);
    (0..n)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

#[test]
fn seeded_garbage() {
    let targets = [
        CLOSED,
        ACTIVE,
        "codec-none-0/00000000000000000020.index",
        "codec-none-0/00000000000000000020.timeindex",
        "txn-0/00000000000000000005.txnindex",
        "codec-none-0/00000000000000000020.snapshot",
        "codec-none-0/partition.metadata",
        "codec-none-0/leader-epoch-checkpoint",
        "meta.properties",
        "recovery-point-offset-checkpoint",
    ];
    for (seed, name) in targets.iter().enumerate() {
        let (_t, dir) = logdir();
        let file = dir.join(name);
        std::fs::write(&file, garbage(seed as u64 + 7, 4099)).unwrap();
        let i = inspect(&file);
        assert_eq!(i.code, 1, "{name}: {:#?}", i.lines);
        assert!(
            i.failures()
                .iter()
                .any(|p| p["file"].as_str().unwrap().ends_with(name)),
            "{name}"
        );
        let v = verify(&dir);
        assert_eq!(v.code, 1, "{name}: {:#?}", v.lines);
    }
    // Garbage inside a batch (not the whole file).
    let (_t, dir) = logdir();
    let file = dir.join(CLOSED);
    let b = batches(&file);
    let mut d = std::fs::read(&file).unwrap();
    let at = b[1].0 + 70;
    d[at..at + 64].copy_from_slice(&garbage(99, 64));
    std::fs::write(&file, d).unwrap();
    let i = inspect(&file);
    assert_eq!(i.code, 1);
    assert_eq!(
        i.names("00000000000000000000.log").unwrap()["position"]
            .as_u64()
            .unwrap() as usize,
        b[1].0 + 17
    );
}

#[test]
fn empty_and_zero_filled_files() {
    // (file, exit code when empty, exit code when zero-filled)
    // Empty: a new segment's .log and indexes are empty, as are empty checkpoints and a
    // missing-timestamps .timeindex: all valid. A snapshot needs its header; a
    // partition.metadata its two lines.
    // Zero-filled: a .log of zeros has no batch (partial, 1); an index of zeros is a
    // preallocated index with no entries (a note: the broker would rebuild lookups from
    // position 0, slower but correct); a snapshot of zeros has version 0 (1).
    let cases: &[(&str, i32, i32)] = &[
        (CLOSED, 0, 1),
        ("codec-none-0/00000000000000000020.index", 0, 0),
        ("codec-none-0/00000000000000000020.timeindex", 0, 0),
        ("txn-0/00000000000000000005.txnindex", 0, 1),
        ("codec-none-0/00000000000000000020.snapshot", 1, 1),
        ("codec-none-0/partition.metadata", 1, 1),
        ("recovery-point-offset-checkpoint", 0, 1),
    ];
    for &(name, empty, zeros) in cases {
        for (content, want) in [(0usize, empty), (4096 + 34 * 8, zeros)] {
            let (_t, dir) = logdir();
            let file = dir.join(name);
            std::fs::write(&file, vec![0u8; content]).unwrap();
            let i = inspect(&file);
            assert_eq!(
                i.code, want,
                "{name} with {content} zero bytes: {:#?}",
                i.lines
            );
            if want == 1 {
                assert!(i
                    .failures()
                    .iter()
                    .any(|p| p["file"].as_str().unwrap().ends_with(name)));
            }
        }
    }
    // An emptied or zeroed closed segment makes the log dir fail verification (its
    // indexes point into data that is gone).
    for content in [0usize, 5000] {
        let (_t, dir) = logdir();
        std::fs::write(dir.join(CLOSED), vec![0u8; content]).unwrap();
        assert_eq!(verify(&dir).code, 1, "{content}");
    }
    // A lone zero-filled .log with no batch at all.
    let t = tempfile::tempdir().unwrap();
    let lone = t.path().join("00000000000000000000.log");
    std::fs::write(&lone, vec![0u8; 1000]).unwrap();
    let i = inspect(&lone);
    assert_eq!(i.code, 1);
    assert_eq!(i.names("00000000000000000000.log").unwrap()["position"], 0);
}

#[test]
fn wrong_names_directories_and_missing_files() {
    let (_t, dir) = logdir();
    // Unknown file name: usage error, named on stderr.
    let odd = dir.join("codec-none-0/segment.bin");
    std::fs::copy(dir.join(CLOSED), &odd).unwrap();
    let r = inspect(&odd);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("segment.bin"));
    // ... which verify reports as a note (the broker ignores unknown files).
    let v = verify(&dir);
    assert_eq!(v.code, 0, "{:#?}", v.failures());
    assert!(v.lines.iter().any(
        |l| l["kind"] == "unknown_file" && l["file"].as_str().unwrap().ends_with("segment.bin")
    ));
    // A directory given to inspect; a missing file.
    for (p, want) in [
        (dir.join("codec-none-0"), "directory"),
        (
            dir.join("codec-none-0/00000000000000000099.log"),
            "cannot read",
        ),
    ] {
        let r = inspect(&p);
        assert_eq!(r.code, 2, "{}", p.display());
        assert!(
            r.stderr.contains(&*p.to_string_lossy()) && r.stderr.contains(want),
            "{}",
            r.stderr
        );
    }
    // Several files: a missing one makes the exit code 2 but the others are still read.
    let r = segvault(&["inspect"], &[&dir.join(CLOSED), &dir.join("nope.log")]);
    assert_eq!(r.code, 2);
    assert!(r.lines.iter().any(|l| l["type"] == "summary"));
    // A directory where an index belongs: the broker cannot load that log.
    let (_t2, dir2) = logdir();
    std::fs::remove_file(dir2.join("codec-none-0/00000000000000000020.index")).unwrap();
    std::fs::create_dir(dir2.join("codec-none-0/00000000000000000020.index")).unwrap();
    let v = verify(&dir2);
    assert_eq!(v.code, 1);
    assert!(v
        .failures()
        .iter()
        .any(|p| p["kind"] == "unexpected_directory"));
    // A directory name that is not <topic>-<partition>: skipped, and corrupt (a broker
    // aborts loading the whole log dir).
    let (_t3, dir3) = logdir();
    std::fs::rename(dir3.join("codec-none-0"), dir3.join("not_a_partition")).unwrap();
    let v = verify(&dir3);
    assert_eq!(v.code, 1);
    assert!(v.lines.iter().any(
        |l| l["type"] == "skipped" && l["path"].as_str().unwrap().ends_with("not_a_partition")
    ));
    // Missing optional files are legitimate: a missing .index or .timeindex is rebuilt by
    // the broker, a missing partition.metadata is a note (ZooKeeper-era dirs lack it).
    let (_t4, dir4) = logdir();
    for f in [
        "codec-none-0/00000000000000000000.index",
        "codec-none-0/00000000000000000000.timeindex",
        "codec-none-0/partition.metadata",
    ] {
        std::fs::remove_file(dir4.join(f)).unwrap();
    }
    let v = verify(&dir4);
    assert_eq!(v.code, 0, "{:#?}", v.failures());
    assert!(v.lines.iter().any(|l| l["kind"] == "index_missing"));
    assert!(v
        .lines
        .iter()
        .any(|l| l["kind"] == "partition_metadata_missing"));
}
