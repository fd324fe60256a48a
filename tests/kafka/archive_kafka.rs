//! Archiving a real broker's log dir while it rolls segments under load, to the local
//! filesystem store and to a real S3 server: afterwards every closed, committed segment is in
//! the store exactly once and byte-identical, and the active segment never was.

use crate::common::broker::{broker, producer, TOPIC};
use crate::common::logdir::{high_watermark, segments};
use crate::common::run::{assert_exit, json_lines, output, segvault, total};
use crate::common::store::{check_store, list_files};
use segvault_harness::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn archive_pass(log_dir: &Path, store: &str, env: &[(&'static str, String)]) -> Value {
    archive_pass_with(log_dir, store, env, &[])
}

fn archive_pass_with(
    log_dir: &Path,
    store: &str,
    env: &[(&'static str, String)],
    extra: &[&str],
) -> Value {
    let out = output(
        segvault()
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
            .args(extra)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str()))),
    );
    assert_exit(&out, 0);
    total(&json_lines(&out.stdout)).clone()
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
    let _machine = crate::common::machine::shared();
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
    let _machine = crate::common::machine::shared();
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

/// Archive passes run back to back while a real broker's log cleaner rewrites the segments
/// of a compacted topic (tiny time-rolled segments, a cleaner that wakes every 100 ms,
/// `.deleted` files removed after 1 s): no pass fails, none finds corruption or divergence,
/// and once the writes stop and the passes settle, the archive restores to a log whose
/// latest value of every key is the one last written, at its offset: whichever generation
/// of each segment a pass read, nothing was lost or misplaced.
#[test]
// Over 120 lines on purpose: one scenario against real brokers, each step working on the
// state the previous step left (split, its parts could only be called in this order).
fn archives_while_the_log_cleaner_rewrites_segments() {
    let _machine = crate::common::machine::shared();
    const TOPIC: &str = "churn";
    const KEYS: usize = 20;
    let tmp = tempfile::tempdir().unwrap();
    let store = format!("file://{}", tmp.path().join("store").display());
    let c = Cluster::start(
        ClusterSpec::combined(KAFKA_VERSIONS[1])
            .config("replica.high.watermark.checkpoint.interval.ms", 200)
            .config("log.cleaner.backoff.ms", 100)
            .config("file.delete.delay.ms", 1000),
    )
    .unwrap();
    let client = c.client();
    client
        .create_topic(
            TOPIC,
            1,
            1,
            &[
                ("cleanup.policy", "compact"),
                ("segment.ms", "300"),
                ("min.cleanable.dirty.ratio", "0.01"),
                ("min.compaction.lag.ms", "0"),
            ],
        )
        .unwrap();
    let log_dir = c.log_dirs(1).unwrap()[0].clone();
    let pdir = log_dir.join(format!("{TOPIC}-0"));

    // One plan per round, one JVM each: every round's first append rolls the segment (it is
    // older than segment.ms by then), so each round leaves closed segments for the cleaner.
    let writer = {
        let client = client.clone();
        std::thread::spawn(move || {
            let mut last: BTreeMap<String, (i64, String)> = BTreeMap::new();
            for round in 0..12 {
                let mut plan = Plan::new();
                plan.producer("w", &[("acks", "all"), ("linger.ms", "0")]);
                for i in 0..(KEYS * 5) {
                    plan.send(Send {
                        producer: "w".into(),
                        topic: TOPIC.into(),
                        partition: Some(0),
                        timestamp: None,
                        key: Some(format!("k{}", i % KEYS).into_bytes()),
                        value: Some(format!("r{round}-{i}").into_bytes()),
                        headers: vec![],
                        aborted: false,
                    });
                    plan.flush("w");
                }
                plan.close("w");
                for a in client.run(&plan).unwrap().acks {
                    let i = a.seq;
                    last.insert(
                        format!("k{}", i % KEYS),
                        (a.offset, format!("r{round}-{i}")),
                    );
                }
            }
            last
        })
    };
    // Passes, partitions whose segment the cleaner replaced under a pass, segments read after
    // the broker renamed them.
    #[derive(Default)]
    struct Seen {
        passes: u64,
        changed: u64,
        renamed: u64,
    }
    let mut seen = Seen::default();
    // Rate-limited passes last long enough for the cleaner to act between a pass's listing
    // and its reading of the segments it listed.
    let pass = |seen: &mut Seen| {
        let total = archive_pass_with(&log_dir, &store, &[], &["--rate-limit", "30000"]);
        for k in ["corrupt", "divergences", "gaps"] {
            assert_eq!(total[k], 0, "{k}: {total}");
        }
        seen.passes += 1;
        seen.changed += total["changed"].as_u64().unwrap();
        seen.renamed += total["renamed_segments"].as_u64().unwrap();
        total
    };
    while !writer.is_finished() {
        pass(&mut seen);
    }
    let last = writer.join().unwrap();
    let cleaned_while_archiving = cleaner_offset(&log_dir, TOPIC);
    assert!(
        cleaned_while_archiving.is_some_and(|o| o > 0),
        "the cleaner did not run while the passes ran"
    );
    let end = last.values().map(|(o, _)| *o).max().unwrap() + 1;

    // Close the last data segment: appends until one lands in a segment of its own.
    let deadline = Instant::now() + Duration::from_secs(60);
    while segments(&pdir).last().copied() < Some(end) {
        assert!(Instant::now() < deadline, "the last segment never rolled");
        let mut plan = Plan::new();
        plan.producer("s", &[("acks", "all")]);
        plan.send(Send {
            producer: "s".into(),
            topic: TOPIC.into(),
            partition: Some(0),
            timestamp: None,
            key: Some(b"sentinel".to_vec()),
            value: Some(b"end".to_vec()),
            headers: vec![],
            aborted: false,
        });
        plan.close("s");
        client.run(&plan).unwrap();
    }
    let active = *segments(&pdir).last().unwrap();
    // Passes until everything closed is archived and a pass finds nothing changed under it.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let caught_up = high_watermark(&log_dir, TOPIC, 0) >= Some(active);
        let total = pass(&mut seen);
        if caught_up && total["changed"] == 0 && total["unarchived_committed_segments"] == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the passes never settled: {total}"
        );
    }
    eprintln!(
        "{} passes; {} partition passes saw the cleaner replace a segment under them; {} \
         segments were read after the broker had renamed them",
        seen.passes, seen.changed, seen.renamed
    );

    // Restore the archive and read it back: every key's latest value, at its offset.
    let to = tmp.path().join("restored");
    let out = segvault()
        .args(["restore", &store, "--to"])
        .arg(&to)
        .args(["--topic", &format!("^{TOPIC}$")])
        .output()
        .unwrap();
    assert_exit(&out, 0);
    let mut logs: Vec<PathBuf> = fs::read_dir(to.join(format!("{TOPIC}-0")))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    let out = segvault()
        .args([
            "inspect",
            "--records",
            "--payload",
            "utf8",
            "--format",
            "json",
        ])
        .args(&logs)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let mut restored: BTreeMap<String, (i64, String)> = BTreeMap::new();
    let mut previous = -1;
    for l in String::from_utf8(out.stdout).unwrap().lines() {
        let v: Value = serde_json::from_str(l).unwrap();
        if v["type"] != "record" {
            continue;
        }
        let offset = v["offset"].as_i64().unwrap();
        assert!(offset > previous, "offsets go back at {offset}");
        previous = offset;
        restored.insert(
            v["key"].as_str().unwrap().to_string(),
            (offset, v["value"].as_str().unwrap().to_string()),
        );
    }
    assert!(
        previous < active,
        "restored past the archived end: {previous}"
    );
    restored.remove("sentinel");
    assert_eq!(restored, last);
}

fn cleaner_offset(log_dir: &Path, topic: &str) -> Option<i64> {
    let text = fs::read_to_string(log_dir.join("cleaner-offset-checkpoint")).ok()?;
    text.lines()
        .skip(2)
        .map(|l| l.split(' ').collect::<Vec<_>>())
        .find(|f| f.len() == 3 && f[0] == topic && f[1] == "0")
        .and_then(|f| f[2].parse().ok())
}
