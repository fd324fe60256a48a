//! A restore of data older than its topic's retention: `restore` (and `--dry-run`) reads
//! each topic's `retention.ms`/`retention.bytes` from the archived KRaft snapshot and names
//! the segments the broker will delete at its first retention check, with the command that
//! keeps them; the real broker, started on the restored dir, then deletes exactly those.
//!
//! The source broker never checks retention during the test (`log.initial.task.delay.ms`
//! and `log.retention.check.interval.ms` of an hour), so it archives everything; records
//! carry timestamps hours old, so the test does not depend on the date it runs on.

use crate::common::now_ms;
use crate::restore_kafka::{archive_settled, segments, segvault_ok};
use crate::restore_txn::{wait_archivable, wait_for};
use segvault_harness::*;
use serde_json::Value;
use std::collections::BTreeMap;

const HOUR: i64 = 3_600_000;

fn send(topic: &str, ts: i64, value_len: usize) -> Send {
    Send {
        producer: "p".into(),
        topic: topic.into(),
        partition: Some(0),
        timestamp: Some(ts),
        key: Some(format!("{topic}-{ts}").into_bytes()),
        value: Some(vec![b'v'; value_len]),
        headers: vec![],
        aborted: false,
    }
}

/// The kept segments of a log of `sizes` whose total must come down to `limit` bytes, as the
/// broker's `deleteRetentionSizeBreachedSegments` keeps them: the count deleted.
fn deleted_by_size(sizes: &[u64], limit: u64) -> usize {
    let mut diff = sizes.iter().sum::<u64>() as i128 - limit as i128;
    let mut n = 0;
    while n < sizes.len() && diff - sizes[n] as i128 >= 0 {
        diff -= sizes[n] as i128;
        n += 1;
    }
    n
}

fn by_type(out: &str, ty: &str) -> Vec<Value> {
    out.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["type"] == ty)
        .collect()
}

fn first_offset(client: &Client, topic: &str) -> Option<i64> {
    client.consume(topic, Isolation::ReadUncommitted).unwrap()[&0]
        .records
        .first()
        .map(|r| r.offset)
}

#[test]
fn restored_data_older_than_its_retention_is_reported_and_is_what_the_broker_deletes() {
    let version = KAFKA_VERSIONS[1];
    let tmp = tempfile::tempdir().unwrap();
    let store = format!("file://{}", tmp.path().join("store").display());
    let spec = ClusterSpec::combined(version)
        .config("metadata.log.max.snapshot.interval.ms", 2000)
        .config("replica.high.watermark.checkpoint.interval.ms", 500)
        .config("log.initial.task.delay.ms", HOUR)
        .config("log.retention.check.interval.ms", HOUR);
    let mut a = Cluster::start(spec).unwrap();
    let client = a.client();
    // Each batch is its own segment: its timestamp is more than segment.ms after the first
    // of the segment before.
    let roll = [("segment.ms", "30000")];
    for (topic, cfg) in [
        ("short-time", ("retention.ms", "3600000")),
        ("by-size", ("retention.bytes", "2500")),
        ("keep-all", ("retention.ms", "-1")),
    ] {
        client.create_topic(topic, 1, 1, &[roll[0], cfg]).unwrap();
    }
    let now = now_ms();
    let old = now - 3 * HOUR;
    let mut plan = Plan::new();
    plan.producer("p", &[("acks", "all"), ("linger.ms", "0")]);
    let batches: [(&str, Vec<i64>, usize); 3] = [
        (
            "short-time",
            vec![old, old + 60_000, old + 120_000, now - 600_000, now],
            10,
        ),
        ("by-size", (0..6).map(|i| old + i * 60_000).collect(), 1000),
        ("keep-all", vec![old, old + 60_000, old + 120_000, now], 10),
    ];
    for (topic, stamps, len) in &batches {
        for &ts in stamps {
            plan.send(send(topic, ts, *len));
            plan.flush("p");
        }
    }
    client.run(&plan).unwrap();
    let log_dir = a.log_dirs(1).unwrap()[0].clone();
    let names: Vec<String> = batches.iter().map(|(t, _, _)| format!("{t}-0")).collect();
    for (n, (_, stamps, _)) in names.iter().zip(&batches) {
        assert_eq!(
            segments(&log_dir.join(n)).len(),
            stamps.len(),
            "{version} {n}"
        );
    }
    wait_archivable(&log_dir, &names);
    // The closed segments' sizes, as restored.
    let sizes: Vec<u64> = segments(&log_dir.join("by-size-0"))
        .iter()
        .rev()
        .skip(1)
        .rev()
        .map(|(_, p)| std::fs::metadata(p).unwrap().len())
        .collect();
    let size_deleted = deleted_by_size(&sizes, 2500);
    assert!(size_deleted >= 1 && size_deleted < sizes.len(), "{sizes:?}");
    archive_settled(&store, &log_dir, &[]);

    // ---- the dry run and the restore say what the broker will delete -----------------------
    a.kill(1).unwrap();
    std::fs::remove_dir_all(&log_dir).unwrap();
    let dry = tmp.path().join("dry");
    let mut outputs = vec![];
    for to in [&dry, &log_dir] {
        let mut args = vec![
            "restore",
            &store,
            "--to",
            to.to_str().unwrap(),
            "--format",
            "json",
        ];
        if to == &dry {
            args.push("--dry-run");
        }
        outputs.push(segvault_ok(&args, &[]));
    }
    assert!(!dry.exists(), "--dry-run wrote {}", dry.display());
    for out in &outputs {
        let warned: BTreeMap<String, Value> = by_type(out, "retention_warning")
            .into_iter()
            .map(|w| {
                let d = w["deletion"].clone();
                (d["topic"].as_str().unwrap().to_string(), d)
            })
            .collect();
        assert_eq!(
            warned.keys().collect::<Vec<_>>(),
            ["by-size", "short-time"],
            "{out}"
        );
        let t = &warned["short-time"];
        assert_eq!(
            (&t["segments"], &t["of_segments"], &t["new_start_offset"]),
            (&Value::from(3), &Value::from(4), &Value::from(3)),
            "{t}"
        );
        assert_eq!(t["by"], serde_json::json!(["retention.ms"]), "{t}");
        assert_eq!(
            t["retention_ms"],
            serde_json::json!({"value": 3_600_000, "from": "topic"})
        );
        assert_eq!(t["newest_deleted_ms"], old + 120_000, "{t}");
        let s = &warned["by-size"];
        assert_eq!(s["segments"], size_deleted, "{s}");
        assert_eq!(s["new_start_offset"], size_deleted, "{s}");
        assert_eq!(s["bytes"], sizes[..size_deleted].iter().sum::<u64>(), "{s}");
        assert_eq!(s["by"], serde_json::json!(["retention.bytes"]), "{s}");
        let commands: BTreeMap<String, String> = by_type(out, "retention_command")
            .into_iter()
            .map(|c| {
                (
                    c["topic"].as_str().unwrap().to_string(),
                    c["command"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let cmd = &commands["short-time"];
        let prefix = "kafka-configs.sh --bootstrap-server <broker:port> --alter --entity-type topics --entity-name short-time --add-config retention.ms=";
        let ms: i64 = cmd
            .strip_prefix(prefix)
            .unwrap_or_else(|| panic!("{cmd}"))
            .parse()
            .unwrap();
        // Keeps the oldest restored record, a day to spare.
        assert!(ms >= now - old + 24 * HOUR, "{cmd}");
        assert!(
            commands["by-size"].ends_with("--add-config retention.bytes=1073741824"),
            "{commands:?}"
        );
    }

    // ---- the broker, checking retention at once, deletes exactly that ------------------------
    a.set_node_config(1, "log.initial.task.delay.ms", 100)
        .unwrap();
    a.set_node_config(1, "log.retention.check.interval.ms", 500)
        .unwrap();
    a.restart(1).unwrap();
    let client = a.client();
    let expect = [
        ("short-time", Some(3)),
        ("by-size", Some(size_deleted as i64)),
        ("keep-all", Some(0)),
    ];
    wait_for("the broker's retention check", || {
        expect
            .iter()
            .take(2)
            .all(|(t, o)| first_offset(&client, t) == *o)
    });
    for (t, o) in expect {
        assert_eq!(first_offset(&client, t), o, "{version} {t}");
    }
    // keep-all keeps every record.
    assert_eq!(
        client
            .consume("keep-all", Isolation::ReadUncommitted)
            .unwrap()[&0]
            .records
            .len(),
        3
    );
}
