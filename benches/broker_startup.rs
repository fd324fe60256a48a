//! Broker start-up on a restored log dir against start-up on the original after a clean
//! shutdown (issue 5: at most 1.5x, no recovery scan).
//!
//!   cargo bench --bench make_logdir      # once: the 2.6 GiB Kafka 4.3.1 log dir
//!   cargo build --release --bin segvault
//!   cargo bench --bench broker_startup
//!
//! The bench log dir is copied to `original/`, archived with `segvault archive --once` to a
//! filesystem store and restored with `segvault restore --mode bare-metal` to
//! `restored-pristine/`. Then, ROUNDS times (default 3), interleaved:
//! - `clean`: the node starts on `original/` after a clean shutdown;
//! - `restored`: the node starts on a fresh copy of `restored-pristine/` (copied outside the
//!   timing: a restored dir is only "first started" once);
//! - `restored, no marker`: the same with segvault's `.kafka_cleanshutdown` removed, which is
//!   what a broker does with a restored dir that has none (recovers the last segment of each
//!   partition: here 1 GiB each).
//!
//! Start-up time is from spawning the JVM to "Kafka Server started" in its log (polled every
//! 100 ms by the harness). Prints each time, the medians and the ratios, and whether the
//! broker logged "Recovering unflushed segment".
//!
//! Env: SEGVAULT_BENCH_DATA (where make_logdir put the log dir), SEGVAULT_BIN (default
//! target/release/segvault), BENCH_WORK (scratch dir, default target/bench-work/startup),
//! ROUNDS.

use segvault_harness::fixtures::copy_dir;
use segvault_harness::{Cluster, ClusterSpec};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const VERSION: &str = "4.3.1";

fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd.output()?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed with {}:\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(())
}

/// Starts node 1 on `dir`, returns how long it took and whether it recovered segments.
fn start_on(c: &mut Cluster, dir: &Path) -> Result<(Duration, usize)> {
    let log = c.node(1)?.log_file.clone();
    let mark = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0) as usize;
    let t = Instant::now();
    c.restart_on(1, &[dir.to_path_buf()])?;
    let took = t.elapsed();
    let text = std::fs::read(&log)?;
    let recovered = String::from_utf8_lossy(&text[mark.min(text.len())..])
        .matches("Recovering unflushed segment")
        .count();
    c.stop(1)?;
    Ok((took, recovered))
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() -> Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let data = std::env::var_os("SEGVAULT_BENCH_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/bench-data"))
        .join(format!("logdir-{VERSION}"));
    if !data.join(".done").exists() {
        return Err(format!(
            "{} is missing: run `cargo bench --bench make_logdir` first",
            data.display()
        )
        .into());
    }
    let bin = std::env::var_os("SEGVAULT_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/release/segvault"));
    if !bin.exists() {
        return Err(format!(
            "{}: build it first (cargo build --release --bin segvault)",
            bin.display()
        )
        .into());
    }
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let work = std::env::var_os("BENCH_WORK")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/bench-work/startup"));
    if work.exists() {
        std::fs::remove_dir_all(&work)?;
    }
    std::fs::create_dir_all(&work)?;
    let original = work.join("original");
    let store = work.join("store");
    let pristine = work.join("restored-pristine");
    copy_dir(&data, &original, &[".done"])?;
    // The node snapshots its metadata every second, so that the archive holds a KRaft
    // snapshot that knows the topic (make_logdir's broker never took one).
    let spec = ClusterSpec::combined(VERSION).config("metadata.log.max.snapshot.interval.ms", 1000);
    let mut c = Cluster::start(spec)?;
    c.stop(1)?;
    c.restart_on(1, std::slice::from_ref(&original))?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while !std::fs::read_dir(original.join("__cluster_metadata-0"))?
        .flatten()
        .any(|e| e.file_name().to_string_lossy().ends_with(".checkpoint"))
    {
        if Instant::now() > deadline {
            return Err("the node took no KRaft snapshot within 120 s".into());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    c.stop(1)?;
    run(Command::new(&bin)
        .args(["archive", "--once", "--store"])
        .arg(format!("file://{}", store.display()))
        .arg("--log-dir")
        .arg(&original))?;
    run(Command::new(&bin)
        .arg("restore")
        .arg(format!("file://{}", store.display()))
        .arg("--to")
        .arg(&pristine)
        .args(["--mode", "bare-metal"]))?;
    // The archive holds the closed segments only; so does the restored dir.
    eprintln!("archived and restored {}", data.display());

    // A first start on the original warms the page cache and the JVM's class data.
    start_on(&mut c, &original)?;
    let (mut clean, mut restored, mut unmarked) = (vec![], vec![], vec![]);
    for round in 0..rounds {
        let (t, rec) = start_on(&mut c, &original)?;
        eprintln!("round {round}: clean start on the original: {t:.2?} ({rec} segments recovered)");
        clean.push(t);

        let dir = work.join(format!("restored-{round}"));
        copy_dir(&pristine, &dir, &[])?;
        let (t, rec) = start_on(&mut c, &dir)?;
        eprintln!(
            "round {round}: first start on the restored dir: {t:.2?} ({rec} segments recovered)"
        );
        restored.push(t);
        std::fs::remove_dir_all(&dir)?;

        copy_dir(&pristine, &dir, &[])?;
        std::fs::remove_file(dir.join(".kafka_cleanshutdown"))?;
        let (t, rec) = start_on(&mut c, &dir)?;
        eprintln!(
            "round {round}: first start on the restored dir without the marker: {t:.2?} ({rec} segments recovered)"
        );
        unmarked.push(t);
        std::fs::remove_dir_all(&dir)?;
    }
    let (c_m, r_m, u_m) = (
        median(&mut clean),
        median(&mut restored),
        median(&mut unmarked),
    );
    println!(
        "broker start-up, Kafka {VERSION}, {} (median of {rounds})",
        data.display()
    );
    println!("clean start on the original          {c_m:>10.2?}");
    println!(
        "first start on the restored dir      {r_m:>10.2?}  = {:.2}x clean (target <= 1.5x)",
        r_m.as_secs_f64() / c_m.as_secs_f64()
    );
    println!(
        "same without .kafka_cleanshutdown    {u_m:>10.2?}  = {:.2}x clean",
        u_m.as_secs_f64() / c_m.as_secs_f64()
    );
    std::fs::remove_dir_all(&work)?;
    Ok(())
}
