//! Archiving a real broker's log dir while it rolls segments under load, to the local
//! filesystem store and to a real S3 server: afterwards every closed, committed segment is in
//! the store exactly once and byte-identical, and the active segment never was.

mod common;

use common::{broker, check_store, high_watermark, list_files, producer, segments, TOPIC};
use segvault_harness::*;
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn archive_pass(log_dir: &Path, store: &str, env: &[(&'static str, String)]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_segvault"))
        .args([
            "archive",
            "--once",
            "--format",
            "json",
            "--store",
            store,
            "--log-dir",
        ])
        .arg(log_dir)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "archive pass failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|l| l["type"] == "total")
        .unwrap()
}

/// Produces ~2 MB/s for ~25 s into a topic with 1 MiB segments (about two rolls a second)
/// while archive passes run back to back; then one last pass once the high watermark
/// checkpoint has caught up.
fn archive_under_load(store: &str, env: &[(&'static str, String)]) -> (Cluster, PathBuf) {
    let (c, log_dir) = broker();
    let mut producer = producer(&c, 50_000);
    let mut passes = 0;
    let start = Instant::now();
    while producer.try_wait().unwrap().is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "producer did not finish"
        );
        archive_pass(&log_dir, store, env);
        passes += 1;
    }
    assert!(producer.wait().unwrap().success());
    assert!(passes >= 3, "only {passes} passes ran during the load");
    // The last roll is committed once the checkpointed high watermark reaches the log end.
    let pdir = log_dir.join(format!("{TOPIC}-0"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while high_watermark(&log_dir, TOPIC, 0) < segments(&pdir).last().copied() {
        assert!(
            Instant::now() < deadline,
            "high watermark checkpoint never caught up"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    archive_pass(&log_dir, store, env);
    // A pass with nothing new uploads nothing.
    assert_eq!(archive_pass(&log_dir, store, env)["uploaded_segments"], 0);
    (c, log_dir)
}

#[test]
fn archives_a_rolling_broker_exactly_once_to_the_filesystem() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let (_c, log_dir) = archive_under_load(&format!("file://{}", store.display()), &[]);
    check_store(
        &log_dir,
        TOPIC,
        &|prefix| list_files(&store, prefix),
        &|k| fs::read(store.join(k)).unwrap(),
    );
}

#[test]
fn archives_a_rolling_broker_exactly_once_to_s3() {
    let s3 = S3Server::start(&["archive"]).unwrap();
    let env = s3.env();
    let (_c, log_dir) = archive_under_load("s3://archive/kafka", &env);
    // Read back through the server's own directory: versitygw's posix backend stores each
    // object as a file named by its key.
    let root = s3.root.join("archive/kafka");
    check_store(&log_dir, TOPIC, &|prefix| list_files(&root, prefix), &|k| {
        fs::read(root.join(k)).unwrap()
    });
}
