//! Archiving a real broker's log dir while it rolls segments under load, to the local
//! filesystem store and to a real S3 server: afterwards every closed, committed segment is in
//! the store exactly once and byte-identical, and the active segment never was.

use segvault_harness::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TOPIC: &str = "load";

fn archive_pass(log_dir: &Path, store: &str, env: &[(&'static str, String)]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_segvault"))
        .args(["archive", "--once", "--format", "json", "--store", store, "--log-dir"])
        .arg(log_dir)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "archive pass failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()).find(|l| l["type"] == "total").unwrap()
}

fn segments(dir: &Path) -> Vec<i64> {
    let mut v: Vec<i64> = fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(".log")?.parse().ok())
        .collect();
    v.sort();
    v
}

fn high_watermark(log_dir: &Path, topic: &str, partition: i32) -> Option<i64> {
    let text = fs::read_to_string(log_dir.join("replication-offset-checkpoint")).ok()?;
    text.lines().skip(2).find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        (f.len() == 3 && f[0] == topic && f[1] == partition.to_string()).then(|| f[2].parse().ok())?
    })
}

/// Reads the manifests of `topic-0` through `get(key) -> bytes`.
fn check_store(log_dir: &Path, list: &dyn Fn(&str) -> Vec<String>, get: &dyn Fn(&str) -> Vec<u8>) {
    let pdir = log_dir.join(format!("{TOPIC}-0"));
    let bases = segments(&pdir);
    let hw = high_watermark(log_dir, TOPIC, 0).unwrap();
    let want: Vec<(i64, i64)> = bases.windows(2).map(|w| (w[0], w[1])).filter(|&(_, n)| n <= hw).collect();
    assert!(want.len() >= 10, "only {} closed committed segments", want.len());
    let keys = list("segvault/v1");
    let manifests: BTreeMap<i64, Value> = keys
        .iter()
        .filter(|k| k.contains(&format!("/topics/{TOPIC}/")) && k.contains("/chain/"))
        .map(|k| {
            let m: Value = serde_json::from_slice(&get(k)).unwrap();
            (m["start_offset"].as_i64().unwrap(), m)
        })
        .collect();
    let got: Vec<(i64, i64)> = manifests.iter().map(|(s, m)| (*s, m["next_offset"].as_i64().unwrap())).collect();
    assert_eq!(got, want, "archived ranges vs closed committed segments (hw {hw})");
    let active = *bases.last().unwrap();
    assert!(!manifests.contains_key(&active), "the active segment {active} was archived");
    let mut referenced = Vec::new();
    for (start, m) in &manifests {
        for (obj, suffix) in [("log", "log"), ("index", "index"), ("timeindex", "timeindex")] {
            let key = m["objects"][obj]["key"].as_str().unwrap();
            referenced.push(key.to_string());
            let src = fs::read(pdir.join(format!("{start:020}.{suffix}"))).unwrap();
            assert!(get(key) == src, "{key} is not byte-identical with segment {start}'s .{suffix}");
        }
        if let Some(k) = m["objects"]["producer_snapshot"]["key"].as_str() {
            referenced.push(k.to_string());
        }
    }
    // Exactly once: no data object is stored that no manifest names.
    for k in keys.iter().filter(|k| k.contains(&format!("/topics/{TOPIC}/")) && k.contains("/data/")) {
        assert!(referenced.contains(k), "unreferenced object {k}");
    }
}

/// Produces ~2 MB/s for ~25 s into a topic with 1 MiB segments (about two rolls a second)
/// while archive passes run back to back; then one last pass once the high watermark
/// checkpoint has caught up.
fn archive_under_load(store: &str, env: &[(&'static str, String)]) -> (Cluster, PathBuf) {
    let version = KAFKA_VERSIONS[1];
    let c = Cluster::start(ClusterSpec::combined(version).config("replica.high.watermark.checkpoint.interval.ms", 500)).unwrap();
    c.client().create_topic(TOPIC, 1, 1, &[("segment.bytes", "1048576")]).unwrap();
    let log_dir = c.log_dirs(1).unwrap()[0].clone();
    let mut producer = c
        .dist
        .java("org.apache.kafka.tools.ProducerPerformance", 512)
        .args(["--topic", TOPIC, "--num-records", "50000", "--record-size", "1000", "--throughput", "2000"])
        .args(["--producer-props", &format!("bootstrap.servers={}", c.bootstrap()), "acks=all", "linger.ms=5"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut passes = 0;
    let start = Instant::now();
    while producer.try_wait().unwrap().is_none() {
        assert!(start.elapsed() < Duration::from_secs(300), "producer did not finish");
        archive_pass(&log_dir, store, env);
        passes += 1;
    }
    assert!(producer.wait().unwrap().success());
    assert!(passes >= 3, "only {passes} passes ran during the load");
    // The last roll is committed once the checkpointed high watermark reaches the log end.
    let pdir = log_dir.join(format!("{TOPIC}-0"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while high_watermark(&log_dir, TOPIC, 0) < segments(&pdir).last().copied() {
        assert!(Instant::now() < deadline, "high watermark checkpoint never caught up");
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
    let list = |prefix: &str| -> Vec<String> {
        let mut out = vec![];
        let mut stack = vec![store.join(prefix)];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() { stack.push(p) } else { out.push(p.strip_prefix(&store).unwrap().to_string_lossy().into_owned()) }
            }
        }
        out
    };
    check_store(&log_dir, &list, &|k| fs::read(store.join(k)).unwrap());
}

#[test]
fn archives_a_rolling_broker_exactly_once_to_s3() {
    let s3 = S3Server::start(&["archive"]).unwrap();
    let env = s3.env();
    let (_c, log_dir) = archive_under_load("s3://archive/kafka", &env);
    // Read back through the server's own directory: versitygw's posix backend stores each
    // object as a file named by its key.
    let root = s3.root.join("archive/kafka");
    let list = |prefix: &str| -> Vec<String> {
        let mut out = vec![];
        let mut stack = vec![root.join(prefix)];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() { stack.push(p) } else { out.push(p.strip_prefix(&root).unwrap().to_string_lossy().into_owned()) }
            }
        }
        out
    };
    check_store(&log_dir, &list, &|k| fs::read(root.join(k)).unwrap());
}
