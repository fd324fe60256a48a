//! Writes the archive/restore benchmark's broker log dir with a real broker, once, and
//! caches it.
//!
//!   cargo bench --bench make_logdir
//!
//! Starts one combined KRaft node of Kafka 4.3.1 with `log.segment.bytes=1073741824`,
//! creates topic `bench` with 2 partitions, writes `BENCH_LOGDIR_MIB` (default 2600) MiB of
//! 1 KiB records with Kafka's own `ProducerPerformance` (acks=1, uncompressed), stops the
//! broker cleanly (so the high watermark checkpoint covers every roll) and copies the whole
//! log dir to `target/bench-data/logdir-4.3.1/` (or `$SEGVAULT_BENCH_DATA/...`): each
//! partition then holds one closed 1 GiB segment and an active one, over 2 GiB closed in all.
//!
//! If the copy is already there (it has `.done`), nothing is done. Prints its path on stdout.

use segvault_harness::fixtures::copy_dir;
use segvault_harness::{Cluster, ClusterSpec, KafkaDist};
use std::path::{Path, PathBuf};
use std::process::Stdio;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const VERSION: &str = "4.3.1";
const RECORD_SIZE: u64 = 1024;

fn main() -> Result<()> {
    let root = std::env::var_os("SEGVAULT_BENCH_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-data"));
    let out = root.join(format!("logdir-{VERSION}"));
    if out.join(".done").exists() {
        eprintln!("cached: {}", out.display());
        println!("{}", out.display());
        return Ok(());
    }
    let mib: u64 = std::env::var("BENCH_LOGDIR_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2600);
    let spec = ClusterSpec::combined(VERSION)
        .config("log.segment.bytes", 1_073_741_824u64)
        .config("message.max.bytes", 4_194_304u64);
    let mut cluster = Cluster::start(spec)?;
    cluster.client().create_topic("bench", 2, 1, &[])?;
    let records = (mib << 20) / RECORD_SIZE;
    let t = std::time::Instant::now();
    let status = KafkaDist::get(VERSION)?
        .java("org.apache.kafka.tools.ProducerPerformance", 1024)
        .args(["--topic", "bench", "--num-records"])
        .arg(records.to_string())
        .args(["--record-size"])
        .arg(RECORD_SIZE.to_string())
        .args(["--throughput", "-1", "--producer-props"])
        .arg(format!("bootstrap.servers={}", cluster.bootstrap()))
        .args(["acks=1", "linger.ms=10", "batch.size=262144"])
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .status()?;
    if !status.success() {
        return Err(format!("ProducerPerformance exited with {status}").into());
    }
    eprintln!("produced {records} records in {:.1?}", t.elapsed());
    cluster.stop(1)?;
    let log_dir = cluster
        .log_dirs(1)?
        .into_iter()
        .next()
        .ok_or("no log dir")?;
    if out.exists() {
        std::fs::remove_dir_all(&out)?;
    }
    copy_dir(&log_dir, &out, &[])?;
    for p in ["bench-0", "bench-1"] {
        let n = std::fs::read_dir(out.join(p))?
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".log"))
            })
            .count();
        if n < 2 {
            return Err(format!("{p} has {n} segments; expected a closed 1 GiB one").into());
        }
    }
    std::fs::write(out.join(".done"), b"")?;
    println!("{}", out.display());
    Ok(())
}
