//! The broker deletes and rewrites segments on its own schedule; the archive must keep up
//! without losing or duplicating anything, with a real broker doing the cleaning:
//!
//! - compaction: segments archived before the log cleaner rewrites them keep every record;
//!   the rewritten segments are not uploaded again; a replica whose copy was compacted is not
//!   taken for a divergent one;
//! - retention: offsets deleted before they were archived become a visible gap, never a
//!   silent hole, and archiving continues after it.
//!
//! Each step runs `segvault archive --once`, so what the broker has done before each pass is
//! known (no race decides the outcome).

use crate::common::agent::poll;
use crate::common::logdir::{high_watermark, segments};
use crate::common::now_ms;
use crate::common::run::{assert_exit, json_lines, output, segvault, total};
use crate::common::store::{is_staging, list_files};
use segvault_harness::{Cluster, ClusterSpec, Send, KAFKA_VERSIONS};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::Duration;

/// Runs one `archive --once` pass; returns its JSON lines.
fn archive_pass(log_dir: &Path, store: &Path, extra: &[&str]) -> Vec<Value> {
    let out = output(
        segvault()
            .args(["archive", "--once", "--format", "json", "--store"])
            .arg(store)
            .arg("--log-dir")
            .arg(log_dir)
            .args(extra),
    );
    assert_exit(&out, 0);
    json_lines(&out.stdout)
}

/// `start -> (manifest, its bytes as stored)` for `topic`'s partition 0.
fn chain(store: &Path, topic: &str) -> BTreeMap<i64, (Value, Vec<u8>)> {
    list_files(store, "segvault/v1")
        .into_iter()
        .filter(|k| k.contains(&format!("/topics/{topic}/")) && k.contains("/chain/"))
        .filter(|k| !is_staging(k))
        .map(|k| {
            let bytes = fs::read(store.join(&k)).unwrap();
            let m: Value = serde_json::from_slice(&bytes).unwrap();
            (m["start_offset"].as_i64().unwrap(), (m, bytes))
        })
        .collect()
}

/// Asserts the ranges tile `[first, end)` with no hole or overlap; returns `end`.
fn assert_tiles(chain: &BTreeMap<i64, (Value, Vec<u8>)>) -> i64 {
    let mut at = *chain.keys().next().expect("an archived range");
    for (start, (m, _)) in chain {
        assert_eq!(*start, at, "hole or overlap at {start}");
        at = m["next_offset"].as_i64().unwrap();
    }
    at
}

/// Every data object of `topic` is named by a manifest, and no divergence or corruption was
/// recorded. Returns the `verified/` markers' contents.
fn assert_no_strays(store: &Path, topic: &str) -> Vec<String> {
    let c = chain(store, topic);
    let named: Vec<String> = c
        .values()
        .flat_map(|(m, _)| {
            ["log", "index", "timeindex", "txnindex", "producer_snapshot"]
                .iter()
                .filter_map(|o| m["objects"][o]["key"].as_str().map(String::from))
                .collect::<Vec<_>>()
        })
        .collect();
    let mut markers = vec![];
    for k in list_files(store, "segvault/v1") {
        if !k.contains(&format!("/topics/{topic}/")) || is_staging(&k) {
            continue;
        }
        assert!(
            !k.contains("/data/") || named.contains(&k),
            "unreferenced {k}"
        );
        assert!(
            !k.contains("/divergence/") && !k.contains("/corrupt/"),
            "{k}: {}",
            String::from_utf8_lossy(&fs::read(store.join(&k)).unwrap())
        );
        if k.contains("/verified/") {
            markers.push(String::from_utf8(fs::read(store.join(&k)).unwrap()).unwrap());
        }
    }
    markers
}

/// Waits until the checkpointed high watermark of `topic-0` reaches its log end, so that
/// every closed segment is committed.
fn wait_committed(log_dir: &Path, topic: &str) {
    let pdir = log_dir.join(format!("{topic}-0"));
    poll(
        "the high watermark checkpoint to reach the last roll",
        Duration::from_secs(60),
        || (high_watermark(log_dir, topic, 0) >= segments(&pdir).last().copied()).then_some(()),
    );
}

/// `n` keyed records of ~30 KB (a roll every ~34 records with 1 MiB segments) where every
/// tenth record replaces the one before it: the cleaner removes about a tenth of each
/// segment. Cleaned segments stay above half of `segment.bytes`, so the cleaner cannot merge
/// them and each keeps its offsets: the same ranges, with fewer records.
fn keyed_records(topic: &str, from: usize, n: usize, base_ts: i64) -> segvault_harness::Plan {
    let mut plan = segvault_harness::Plan::new();
    plan.producer("p", &[("acks", "all"), ("compression.type", "none")]);
    for i in from..from + n {
        plan.send(Send {
            producer: "p".into(),
            topic: topic.into(),
            partition: Some(0),
            timestamp: Some(base_ts + i as i64 * 1000),
            key: Some(format!("k{}", if i % 10 == 9 { i - 1 } else { i }).into_bytes()),
            value: Some(format!("v{i}-{}", "x".repeat(30_000)).into_bytes()),
            headers: vec![],
            aborted: false,
        });
        if i % 5 == 4 {
            plan.flush("p");
        }
    }
    plan.close("p");
    plan
}

#[test]
// Over 120 lines on purpose: one scenario against real brokers, each step working on the
// state the previous step left (split, its parts could only be called in this order).
fn compacted_segments_are_archived_whole_and_never_again_after_the_cleaner() {
    let _machine = crate::common::machine::shared();
    const T: &str = "compacted";
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    // The cleaner is held back (records must be a day old) until the first pass is done.
    let mut c = Cluster::start(
        ClusterSpec::combined(KAFKA_VERSIONS[1])
            .config("replica.high.watermark.checkpoint.interval.ms", 500)
            .config("log.cleaner.backoff.ms", 200)
            .config("log.cleaner.min.cleanable.ratio", "0.01")
            .config("log.cleaner.min.compaction.lag.ms", 86_400_000),
    )
    .unwrap();
    c.client()
        .create_topic(
            T,
            1,
            1,
            &[
                ("cleanup.policy", "compact"),
                ("segment.bytes", "1048576"),
                ("min.cleanable.dirty.ratio", "0.01"),
                ("delete.retention.ms", "86400000"),
            ],
        )
        .unwrap();
    let log_dir = c.log_dirs(1).unwrap()[0].clone();
    let pdir = log_dir.join(format!("{T}-0"));
    let base_ts = now_ms() - 3_600_000;
    c.client().run(&keyed_records(T, 0, 250, base_ts)).unwrap();
    wait_committed(&log_dir, T);

    // Pass 1, before any cleaning: every range holds a record at every offset.
    assert!(total(&archive_pass(&log_dir, &store, &[]))["uploaded_segments"].as_u64() >= Some(4));
    let first = chain(&store, T);
    let end1 = assert_tiles(&first);
    for (start, (m, _)) in &first {
        let span = m["next_offset"].as_i64().unwrap() - start;
        assert_eq!(m["records"].as_i64(), Some(span), "range {start}: {m}");
        assert_eq!(m["empty_offsets"], 0, "range {start}");
    }
    let archived_logs: BTreeMap<i64, Vec<u8>> = first
        .iter()
        .map(|(s, (m, _))| {
            let key = m["objects"]["log"]["key"].as_str().unwrap();
            (*s, fs::read(store.join(key)).unwrap())
        })
        .collect();

    // Let the cleaner loose: restart the broker without the lag, wait for it to compact.
    c.stop(1).unwrap();
    let cfg = c.node(1).unwrap().config_file.clone();
    let mut text = fs::read_to_string(&cfg).unwrap();
    text.push_str("log.cleaner.min.compaction.lag.ms=0\n");
    fs::write(&cfg, text).unwrap();
    c.restart(1).unwrap();
    let archived_bytes: usize = archived_logs.values().map(Vec::len).sum();
    poll(
        "the cleaner to rewrite archived segments",
        Duration::from_secs(90),
        || {
            let on_disk: u64 = segments(&pdir)
                .iter()
                .filter(|&&b| b < end1)
                .map(|b| fs::metadata(pdir.join(format!("{b:020}.log"))).map_or(0, |m| m.len()))
                .sum();
            (on_disk > 0 && (on_disk as usize) < archived_bytes / 100 * 95).then_some(())
        },
    );
    // More records; the cleaner may or may not reach them before the next pass.
    c.client()
        .run(&keyed_records(T, 200, 100, base_ts))
        .unwrap();
    wait_committed(&log_dir, T);

    // Pass 2: the rewritten segments' offsets are archived already; only new ranges go up.
    let lines = archive_pass(&log_dir, &store, &[]);
    let second = chain(&store, T);
    let end2 = assert_tiles(&second);
    assert!(end2 > end1, "nothing new archived ({end1} -> {end2})");
    let uploaded: Vec<i64> = lines
        .iter()
        .filter(|l| l["type"] == "partition" && l["report"]["topic"] == T)
        .flat_map(|l| l["report"]["outcomes"].as_array().unwrap().clone())
        .filter(|o| o["outcome"] == "uploaded")
        .map(|o| o["start"].as_i64().unwrap())
        .collect();
    assert!(!uploaded.is_empty());
    assert!(
        uploaded.iter().all(|&s| s >= end1),
        "a range below {end1} was uploaded again: {uploaded:?}"
    );
    for (start, (_, bytes)) in &first {
        assert!(
            second[start].1 == *bytes,
            "the manifest of range {start} changed"
        );
        let m = &second[start].0;
        let key = m["objects"]["log"]["key"].as_str().unwrap();
        assert!(
            fs::read(store.join(key)).unwrap() == archived_logs[start],
            "the archived log of range {start} changed"
        );
    }
    // Every range says how many of its offsets hold no record; for this topic (no
    // transactions) records + empty offsets are exactly the range's offsets.
    for (start, (m, _)) in &second {
        let span = m["next_offset"].as_i64().unwrap() - start;
        assert_eq!(
            m["records"].as_i64().unwrap() + m["empty_offsets"].as_i64().unwrap(),
            span,
            "range {start}: {m}"
        );
    }
    assert_no_strays(&store, T);

    // A replica whose copy the cleaner rewrote: the same log dir under another node id. Its
    // ranges are compared with the archived (uncompacted) ones and must not be recorded as
    // divergent.
    c.stop(1).unwrap();
    let replica = tmp.path().join("replica");
    segvault_harness::fixtures::copy_dir(&log_dir, &replica, &[]).unwrap();
    let meta = fs::read_to_string(replica.join("meta.properties")).unwrap();
    fs::write(
        replica.join("meta.properties"),
        meta.replace("node.id=1", "node.id=2"),
    )
    .unwrap();
    let lines = archive_pass(&replica, &store, &[]);
    assert_eq!(total(&lines)["divergences"], 0);
    let markers = assert_no_strays(&store, T);
    let by_kind = markers.iter().fold(BTreeMap::new(), |mut m, k| {
        *m.entry(k.as_str()).or_insert(0) += 1;
        m
    });
    // Its cleaned segments kept the archived ranges' offsets but not their batches.
    assert!(
        by_kind.get("compacted; not compared") > Some(&0),
        "no compacted range was compared: {by_kind:?}"
    );
    eprintln!(
        "compaction: {} ranges before the cleaner, {} after; replica markers {by_kind:?}",
        first.len(),
        second.len()
    );
}

#[test]
fn segments_deleted_by_retention_before_archiving_become_a_gap() {
    let _machine = crate::common::machine::shared();
    const T: &str = "retained";
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let c = Cluster::start(
        ClusterSpec::combined(KAFKA_VERSIONS[1])
            .config("replica.high.watermark.checkpoint.interval.ms", 500)
            .config("log.retention.check.interval.ms", 500),
    )
    .unwrap();
    // 1 MiB segments, at most ~3 MiB kept: the broker deletes the oldest segments while
    // segvault is not looking.
    c.client()
        .create_topic(
            T,
            1,
            1,
            &[
                ("segment.bytes", "1048576"),
                ("retention.bytes", "3145728"),
                ("file.delete.delay.ms", "500"),
            ],
        )
        .unwrap();
    let log_dir = c.log_dirs(1).unwrap()[0].clone();
    let pdir = log_dir.join(format!("{T}-0"));
    let produce = |n: u32| {
        let status = c
            .dist
            .java("org.apache.kafka.tools.ProducerPerformance", 256)
            .args(["--topic", T, "--num-records", &n.to_string()])
            .args(["--record-size", "1000", "--throughput", "-1"])
            .args([
                "--producer-props",
                &format!("bootstrap.servers={}", c.bootstrap()),
                "acks=all",
            ])
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
    };
    produce(3_000);
    wait_committed(&log_dir, T);
    archive_pass(&log_dir, &store, &[]);
    let end1 = assert_tiles(&chain(&store, T));

    // segvault is away while ~20 MB more arrive: retention deletes segments it never saw.
    produce(20_000);
    wait_committed(&log_dir, T);
    let log_start = poll(
        "retention to delete segments past the archive's end",
        Duration::from_secs(60),
        || {
            let first = *segments(&pdir).first()?;
            (first > end1).then_some(first)
        },
    );

    // Within the grace period another replica may still archive those offsets: nothing is
    // recorded and nothing after them is archived, but the pass says what is waiting.
    let lines = archive_pass(&log_dir, &store, &[]);
    assert_eq!(total(&lines)["gaps"], 0);
    assert_eq!(total(&lines)["uploaded_segments"], 0);
    assert!(total(&lines)["unarchived_committed_segments"].as_u64() > Some(0));
    assert_eq!(assert_tiles(&chain(&store, T)), end1);

    // After it, the offsets no replica has are recorded as a gap, and archiving goes on.
    let lines = archive_pass(&log_dir, &store, &["--gap-after", "0"]);
    assert_eq!(total(&lines)["gaps"], 1, "{lines:?}");
    let after = chain(&store, T);
    let end2 = assert_tiles(&after);
    let (gap, _) = &after[&end1];
    assert_eq!(gap["kind"], "gap", "{gap}");
    assert!(gap["objects"].as_object().unwrap().is_empty(), "{gap}");
    // The gap ends where the broker's log now starts (or later, had retention moved on).
    let gap_end = gap["next_offset"].as_i64().unwrap();
    assert!(
        gap_end >= log_start,
        "gap [{end1}, {gap_end}) vs log start {log_start}"
    );
    assert_eq!(
        after.values().filter(|(m, _)| m["kind"] == "gap").count(),
        1
    );
    assert!(end2 > gap_end, "nothing archived after the gap");
    let gap_line = lines
        .iter()
        .filter(|l| l["type"] == "partition" && l["report"]["topic"] == T)
        .flat_map(|l| l["report"]["outcomes"].as_array().unwrap().clone())
        .find(|o| o["outcome"] == "gap")
        .expect("the pass reports the gap");
    assert_eq!(gap_line["start"], end1);
    assert_no_strays(&store, T);
}
