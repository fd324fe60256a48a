//! Three brokers hold every partition (replication factor 3) and three `segvault agent`s, one
//! beside each broker, archive them into one store at the same time, under load. Each offset
//! range must be stored once: the agents settle it with the store's conditional creates, with
//! no coordinator and no Kafka client.
//!
//! Replicas need not agree on segment boundaries (a follower rolls where its own appends cross
//! its own `log.segment.bytes`, or at its own time jitter). Here each broker has a different
//! `log.segment.bytes`, so they never agree: the chain then continues from a batch-aligned
//! slice of another replica's segment. The check below trusts no one broker's view: every
//! range's bytes must equal the batches every replica holds for those offsets.

use crate::common::agent::{poll, sigterm, spawn_agent, wait_exit};
use crate::common::broker::{producer, TOPIC};
use crate::common::logdir::{closed_committed_in, high_watermark, segments};
use crate::common::machine;
use crate::common::store::{is_staging, TestStore};
use segvault_harness::{Cluster, ClusterSpec, KAFKA_VERSIONS};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const PARTITIONS: i32 = 3;

#[test]
fn three_agents_on_an_rf3_cluster_store_each_range_once() {
    // Four JVMs, a producer and three agents: alone on 2 cores.
    let _machine = machine::alone();
    let tmp = tempfile::tempdir().unwrap();
    three_agents(&TestStore::file(tmp.path()), tmp.path());
}

#[test]
fn three_agents_on_an_rf3_cluster_store_each_range_once_on_s3() {
    // Four JVMs, a producer and three agents: alone on 2 cores.
    let _machine = machine::alone();
    let tmp = tempfile::tempdir().unwrap();
    three_agents(&TestStore::s3(), tmp.path());
}

fn three_agents(ts: &TestStore, tmp: &Path) {
    let t0 = Instant::now();
    let c = Cluster::start(
        ClusterSpec::cluster(KAFKA_VERSIONS[1], 3, 1)
            .config("replica.high.watermark.checkpoint.interval.ms", 500)
            .node_config(1, "log.segment.bytes", 1 << 20)
            .node_config(2, "log.segment.bytes", 1_400_000)
            .node_config(3, "log.segment.bytes", 1_800_000),
    )
    .unwrap();
    // No topic-level segment.bytes: each broker rolls at its own size.
    c.client().create_topic(TOPIC, PARTITIONS, 3, &[]).unwrap();
    let brokers: Vec<(u32, PathBuf)> = c
        .broker_ids()
        .into_iter()
        .map(|id| (id, c.log_dirs(id).unwrap()[0].clone()))
        .collect();
    assert_eq!(brokers.len(), 3);
    let mut agents: Vec<_> = brokers
        .iter()
        .map(|(id, dir)| {
            let log = tmp.join(format!("agent-{id}.log"));
            let child = spawn_agent(
                dir,
                &ts.url,
                &ts.env,
                &["--metrics-addr", "off", "--debounce-ms", "300"],
                &log,
            );
            (child, log)
        })
        .collect();
    // ~2 MB/s over three partitions for ~30 s: each partition rolls every second or two.
    let mut load = producer(&c, 60_000);
    let status = poll("the producer to finish", Duration::from_secs(240), || {
        for (a, log) in agents.iter_mut() {
            assert!(
                a.try_wait().unwrap().is_none(),
                "an agent exited:\n{}",
                fs::read_to_string(log).unwrap()
            );
        }
        load.try_wait().unwrap()
    });
    assert!(status.success(), "producer failed");
    // Every replica's last roll is committed once its checkpointed high watermark reaches its
    // log end; then the chain of each partition must reach the furthest committed roll.
    poll(
        "every replica's high watermark checkpoint to catch up",
        Duration::from_secs(60),
        || {
            brokers
                .iter()
                .all(|(_, dir)| {
                    (0..PARTITIONS).all(|p| {
                        let last = segments(&dir.join(format!("{TOPIC}-{p}"))).last().copied();
                        high_watermark(dir, TOPIC, p) >= last
                    })
                })
                .then_some(())
        },
    );
    let want: Vec<i64> = (0..PARTITIONS)
        .map(|p| {
            brokers
                .iter()
                .filter_map(|(_, dir)| closed_committed_in(dir, TOPIC, p).last().map(|r| r.1))
                .max()
                .unwrap_or(0)
        })
        .collect();
    poll(
        "every partition's chain to reach the furthest committed roll of any replica",
        Duration::from_secs(90),
        || (chain_ends(ts) == want).then_some(()),
    );
    for (a, log) in agents.iter_mut() {
        sigterm(a);
        let status = wait_exit(a, Duration::from_secs(40));
        assert_eq!(
            status.code(),
            Some(0),
            "agent log:\n{}",
            fs::read_to_string(log).unwrap()
        );
    }
    let s = check_replicated_store(ts, &brokers);
    eprintln!(
        "{} ranges stored once in {} (wins by node {:?}; {} slices of a replica's longer \
         segment; {} ranges checked against a losing replica's own copy); test took {:?}",
        s.ranges,
        ts.url,
        s.wins_by_node,
        s.slices,
        s.verified_markers,
        t0.elapsed()
    );
    assert!(s.ranges >= 3 * 10, "only {} ranges archived", s.ranges);
    // With three different segment sizes the chain cannot avoid continuing mid-segment.
    assert!(s.slices > 0, "no range was a slice: {s:?}");
}

/// Where each partition's chain ends in the store (0 if it has no range yet).
fn chain_ends(ts: &TestStore) -> Vec<i64> {
    let m = manifests_by_partition(ts);
    (0..PARTITIONS)
        .map(|p| {
            m.get(&p)
                .and_then(|r| r.values().last())
                .map_or(0, |m| m["next_offset"].as_i64().unwrap())
        })
        .collect()
}

/// Every manifest of `TOPIC`, by partition and start offset.
fn manifests_by_partition(ts: &TestStore) -> BTreeMap<i32, BTreeMap<i64, Value>> {
    let mut out: BTreeMap<i32, BTreeMap<i64, Value>> = BTreeMap::new();
    for k in ts.list("segvault/v1") {
        if k.contains(&format!("/topics/{TOPIC}/")) && k.contains("/chain/") && !is_staging(&k) {
            let m: Value = serde_json::from_slice(&ts.get(&k)).unwrap();
            let p = m["partition"].as_i64().unwrap() as i32;
            let start = m["start_offset"].as_i64().unwrap();
            assert!(out.entry(p).or_default().insert(start, m).is_none());
        }
    }
    out
}

/// (base offset, bytes) of each batch, in offset order.
type Batches = Vec<(i64, Vec<u8>)>;

/// The batches of a partition directory, in offset order: (base offset, bytes). Batch framing
/// is read here directly (base offset, then a length), independent of segvault's parser.
fn batches(pdir: &Path) -> Batches {
    let mut out = vec![];
    for base in segments(pdir) {
        let log = fs::read(pdir.join(format!("{base:020}.log"))).unwrap();
        let mut pos = 0;
        while pos + 12 <= log.len() {
            let offset = i64::from_be_bytes(log[pos..pos + 8].try_into().unwrap());
            let len = i32::from_be_bytes(log[pos + 8..pos + 12].try_into().unwrap()) as usize;
            let end = pos + 12 + len;
            if end > log.len() {
                break; // the active segment's tail as it is being written
            }
            out.push((offset, log[pos..end].to_vec()));
            pos = end;
        }
    }
    out
}

#[derive(Debug, Default)]
struct Summary {
    ranges: usize,
    wins_by_node: BTreeMap<i64, usize>,
    slices: usize,
    verified_markers: usize,
}

/// Checks the store against all three replicas: each partition's ranges tile `[0, end)` with
/// no hole and no overlap; each range's `.log` object equals, byte for byte, the batches of
/// those offsets on every replica; a range taken whole from a segment carries that segment's
/// own index files; no replica's active segment was archived; no data object is stored that
/// no manifest names; and no divergence or corruption was recorded.
fn check_replicated_store(ts: &TestStore, brokers: &[(u32, PathBuf)]) -> Summary {
    let keys = ts.list("segvault/v1");
    let all = manifests_by_partition(ts);
    let mut s = Summary::default();
    let mut referenced = BTreeSet::new();
    for p in 0..PARTITIONS {
        let ranges = all
            .get(&p)
            .unwrap_or_else(|| panic!("partition {p}: nothing archived"));
        let replicas: Vec<(u32, Batches)> = brokers
            .iter()
            .map(|(id, dir)| (*id, batches(&dir.join(format!("{TOPIC}-{p}")))))
            .collect();
        let mut expect_start = 0;
        for (start, m) in ranges {
            let next = m["next_offset"].as_i64().unwrap();
            assert_eq!(
                *start, expect_start,
                "partition {p}: hole or overlap at {start}"
            );
            assert_eq!(m["kind"], "segment", "partition {p} range {start}: {m}");
            expect_start = next;
            let node = m["source"]["node_id"].as_i64().unwrap();
            *s.wins_by_node.entry(node).or_default() += 1;
            let log_key = m["objects"]["log"]["key"].as_str().unwrap();
            let stored = ts.get(log_key);
            for (id, batches) in &replicas {
                let theirs: Vec<u8> = batches
                    .iter()
                    .filter(|(o, _)| (*start..next).contains(o))
                    .flat_map(|(_, b)| b.iter().copied())
                    .collect();
                assert!(
                    stored == theirs,
                    "partition {p} [{start}, {next}) from node {node}: {} stored bytes differ \
                     from the {} bytes of those offsets on node {id}",
                    stored.len(),
                    theirs.len()
                );
            }
            let (_, dir) = brokers.iter().find(|(id, _)| *id as i64 == node).unwrap();
            let pdir = dir.join(format!("{TOPIC}-{p}"));
            let seg = m["segment_base_offset"].as_i64().unwrap();
            assert_ne!(
                Some(seg),
                segments(&pdir).last().copied(),
                "node {node}'s active segment of partition {p} was archived"
            );
            if m["slice_position"].as_u64().unwrap() == 0 {
                for ext in ["index", "timeindex"] {
                    let key = m["objects"][ext]["key"].as_str().unwrap();
                    let file = fs::read(pdir.join(format!("{seg:020}.{ext}"))).unwrap();
                    assert!(
                        ts.get(key) == file,
                        "{key} differs from node {node}'s .{ext}"
                    );
                }
            } else {
                s.slices += 1;
                // A slice's offsets do not start the broker's segment: its indexes do not fit
                // it and are rebuilt on restore.
                assert!(m["objects"]["index"].is_null(), "{m}");
            }
            for obj in ["log", "index", "timeindex", "txnindex", "producer_snapshot"] {
                if let Some(key) = m["objects"][obj]["key"].as_str() {
                    let size = ts.get(key).len() as u64;
                    assert_eq!(
                        Some(size),
                        m["objects"][obj]["stored_size"].as_u64(),
                        "{key}"
                    );
                    referenced.insert(key.to_string());
                }
            }
            s.ranges += 1;
        }
    }
    for k in &keys {
        if k.contains(&format!("/topics/{TOPIC}/")) && !is_staging(k) {
            assert!(
                !k.contains("/data/") || referenced.contains(k),
                "unreferenced object {k}: a range stored twice or a loser's leftovers"
            );
            assert!(
                !k.contains("/divergence/") && !k.contains("/corrupt/"),
                "replicas of one cluster diverged or were corrupt: {k}"
            );
            s.verified_markers += k.contains("/verified/") as usize;
        }
    }
    s
}
