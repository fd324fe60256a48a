//! Writes the big benchmark segments with a real broker, once, and caches them.
//!
//!   cargo bench --bench make_segment                  # none codec (the default)
//!   BENCH_CODEC=lz4 cargo bench --bench make_segment  # the lz4 variant
//!
//! Starts one combined KRaft node of Kafka 3.9.2 (`log.segment.bytes=1073741824`, so all data
//! lands in one segment), creates topic `bench` (1 partition, RF 1), writes
//! `BENCH_MIB` (default 640) MiB of 1 KiB records with Kafka's own
//! `org.apache.kafka.tools.ProducerPerformance` (acks=1, linger.ms=10, batch.size=262144),
//! stops the broker cleanly (SIGTERM, so it trims the indexes and writes
//! `.kafka_cleanshutdown`) and copies the partition directory to
//! `target/bench-data/kafka-3.9.2-<codec>/bench-0/` (or `$SEGVAULT_BENCH_DATA/...`).
//!
//! If `bench-0/00000000000000000000.log` is already there and at least 600 MiB, nothing is
//! done. Prints the segment's path on stdout.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use segvault_harness::{Cluster, ClusterSpec, KafkaDist};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const VERSION: &str = "3.9.2";
const RECORD_SIZE: u64 = 1024;
const MIN_BYTES: u64 = 600 << 20;

/// Where the bench data lives: `$SEGVAULT_BENCH_DATA` or `<workspace>/target/bench-data`.
pub fn bench_data_root() -> PathBuf {
    std::env::var_os("SEGVAULT_BENCH_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-data"))
}

fn main() -> Result<()> {
    let codec = std::env::var("BENCH_CODEC").unwrap_or_else(|_| "none".into());
    let mib: u64 = std::env::var("BENCH_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(640);
    let out = bench_data_root()
        .join(format!("kafka-{VERSION}-{codec}"))
        .join("bench-0");
    let seg = out.join("00000000000000000000.log");
    if let Ok(m) = std::fs::metadata(&seg) {
        if m.len() >= MIN_BYTES.min(mib << 20) {
            eprintln!("cached: {} ({} MiB)", seg.display(), m.len() >> 20);
            println!("{}", seg.display());
            return Ok(());
        }
    }

    let spec = ClusterSpec::combined(VERSION)
        .config("log.segment.bytes", 1_073_741_824u64)
        .config("message.max.bytes", 4_194_304u64);
    let mut cluster = Cluster::start(spec)?;
    let client = cluster.client();
    client.create_topic("bench", 1, 1, &[("segment.bytes", "1073741824")])?;

    let records = (mib << 20) / RECORD_SIZE;
    let dist = KafkaDist::get(VERSION)?;
    let t = std::time::Instant::now();
    let status = dist
        .java("org.apache.kafka.tools.ProducerPerformance", 1024)
        .args(["--topic", "bench", "--num-records"])
        .arg(records.to_string())
        .args(["--record-size"])
        .arg(RECORD_SIZE.to_string())
        .args(["--throughput", "-1", "--producer-props"])
        .arg(format!("bootstrap.servers={}", cluster.bootstrap()))
        .args(["acks=1", "linger.ms=10", "batch.size=262144"])
        .arg(format!("compression.type={codec}"))
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .status()?;
    if !status.success() {
        return Err(format!("ProducerPerformance exited with {status}").into());
    }
    eprintln!(
        "produced {records} records of {RECORD_SIZE} B in {:.1?}",
        t.elapsed()
    );

    cluster.stop(1)?;
    let log_dir = cluster
        .log_dirs(1)?
        .into_iter()
        .next()
        .ok_or("no log dir")?;
    let part = log_dir.join("bench-0");
    if out.exists() {
        std::fs::remove_dir_all(&out)?;
    }
    std::fs::create_dir_all(&out)?;
    for e in std::fs::read_dir(&part)? {
        let e = e?;
        std::fs::copy(e.path(), out.join(e.file_name()))?;
    }
    let len = std::fs::metadata(&seg)?.len();
    eprintln!("segment {} is {} MiB", seg.display(), len >> 20);
    if len < MIN_BYTES.min(mib << 20) {
        return Err(format!("segment only {len} bytes; did the broker roll it?").into());
    }
    println!("{}", seg.display());
    Ok(())
}
