//! The standard workloads every later test archives and restores: all five codecs, headers,
//! null keys and tombstones, the idempotent producer, committed and aborted transactions,
//! CreateTime and LogAppendTime topics, and consumer groups with committed offsets.
//!
//! Content is deterministic (no randomness), so a failure reproduces. Explicit CreateTime
//! timestamps step forward faster than `segment.ms`, which makes the broker roll segments by
//! time: Kafka 4 no longer accepts a `segment.bytes` below 1 MiB, and time rolls work the
//! same on every version without sleeping.

use crate::client::{
    Client, GroupOffsets, Isolation, PartitionDigest, Plan, Produced, Send, TopicDigest,
};
use anyhow::{bail, Result};
use std::collections::BTreeMap;

pub const CODECS: [&str; 5] = ["none", "gzip", "snappy", "lz4", "zstd"];

/// A topic a workload creates.
#[derive(Debug, Clone)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    pub configs: Vec<(String, String)>,
}

/// A consumer group step, run after the produce plan.
#[derive(Debug, Clone)]
pub struct GroupStep {
    pub group: String,
    pub topic: String,
    pub max_records: usize,
    pub isolation: Isolation,
}

/// Topics, a produce plan and group steps.
#[derive(Debug, Clone)]
pub struct Workload {
    pub topics: Vec<TopicSpec>,
    pub plan: Plan,
    pub groups: Vec<GroupStep>,
}

/// What running a workload left behind: what was produced and what the groups committed.
#[derive(Debug, Clone)]
pub struct WorkloadRun {
    pub produced: Produced,
    pub topic_ids: BTreeMap<String, String>,
    pub committed: GroupOffsets,
    pub partitions: BTreeMap<String, i32>,
}

/// Milliseconds between consecutive explicit timestamps, and the `segment.ms` that makes the
/// broker roll about every `ROLL_EVERY` records of a partition.
const TS_STEP_MS: i64 = 1_000;
const ROLL_EVERY: i64 = 25;

fn time_rolled(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut c = no_time_retention(&[
        ("segment.ms", &(TS_STEP_MS * ROLL_EVERY).to_string()),
        ("segment.jitter.ms", "0"),
    ]);
    c.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    c
}

/// `extra` plus `retention.ms=-1`: every workload topic keeps its records whatever their age.
/// Timestamps are explicit and old (or, with LogAppendTime, the day the data was written),
/// and a broker started later on the same data (a fixture, a restore) must not delete them
/// by age: what a test asserts must not depend on the date it runs on.
pub fn no_time_retention(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut c = vec![("retention.ms".to_string(), "-1".to_string())];
    c.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    c
}

fn value(topic: &str, i: usize) -> Vec<u8> {
    // Compressible but not trivial: a sentence with the index, repeated a varying number of times.
    let unit = format!("{topic} record {i} lorem ipsum dolor sit amet; ");
    unit.repeat(1 + i % 7).into_bytes()
}

/// The standard workload at `scale` records per data topic (100 is quick, 400 rolls more).
/// `base_ts` is the first explicit CreateTime timestamp (ms since the epoch).
// Over 120 lines on purpose: a table, one entry per topic of the standard workload.
pub fn standard(scale: usize, base_ts: i64) -> Workload {
    let mut topics = Vec::new();
    let mut plan = Plan::new();
    let mut groups = Vec::new();
    let ts = |i: usize| Some(base_ts + i as i64 * TS_STEP_MS);

    // One topic per codec: headers, null keys, empty values and tombstones, explicit timestamps.
    for codec in CODECS {
        let topic = format!("codec-{codec}");
        topics.push(TopicSpec {
            name: topic.clone(),
            partitions: 2,
            configs: time_rolled(&[]),
        });
        let prod = format!("p-{codec}");
        plan.producer(
            &prod,
            &[
                ("compression.type", codec),
                ("enable.idempotence", "false"),
                ("acks", "all"),
                ("linger.ms", "5"),
            ],
        );
        for i in 0..scale {
            let partition = (i % 2) as i32;
            let key = if i % 5 == 4 {
                None
            } else {
                Some(format!("key-{}", i % 37).into_bytes())
            };
            let val = match i % 11 {
                10 => None,            // tombstone
                9 => Some(Vec::new()), // empty, not null
                _ => Some(value(&topic, i)),
            };
            let headers = match i % 4 {
                0 => vec![],
                1 => vec![("trace".to_string(), Some(format!("t{i}").into_bytes()))],
                2 => vec![
                    ("n".to_string(), None),
                    ("bin".to_string(), Some(vec![0, 255, i as u8])),
                ],
                _ => vec![
                    ("dup".to_string(), Some(b"a".to_vec())),
                    ("dup".to_string(), Some(b"b".to_vec())),
                ],
            };
            plan.send(Send {
                producer: prod.clone(),
                topic: topic.clone(),
                partition: Some(partition),
                timestamp: ts(i),
                key,
                value: val,
                headers,
                aborted: false,
            });
            if i % 20 == 19 {
                plan.flush(&prod);
            }
        }
        plan.close(&prod);
    }

    // The idempotent producer, the partitioner choosing the partition.
    topics.push(TopicSpec {
        name: "idempotent".into(),
        partitions: 2,
        configs: no_time_retention(&[]),
    });
    plan.producer(
        "p-idem",
        &[
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("compression.type", "lz4"),
            ("linger.ms", "5"),
        ],
    );
    for i in 0..scale {
        plan.send(Send {
            producer: "p-idem".into(),
            topic: "idempotent".into(),
            partition: None,
            timestamp: ts(i),
            key: Some(format!("k{i}").into_bytes()),
            value: Some(value("idempotent", i)),
            headers: vec![],
            aborted: false,
        });
    }
    plan.close("p-idem");

    // Transactions: committed and aborted ones interleaved, so the log holds COMMIT and ABORT
    // markers and a non-empty .txnindex.
    topics.push(TopicSpec {
        name: "txn".into(),
        partitions: 2,
        configs: time_rolled(&[]),
    });
    plan.producer(
        "p-txn",
        &[
            ("transactional.id", "segvault-txn"),
            ("compression.type", "zstd"),
            ("linger.ms", "5"),
        ],
    );
    let txns = (scale / 10).max(4);
    let mut i = 0;
    for t in 0..txns {
        plan.begin("p-txn");
        for _ in 0..10 {
            plan.send(Send {
                producer: "p-txn".into(),
                topic: "txn".into(),
                partition: Some((i % 2) as i32),
                timestamp: ts(i),
                key: Some(format!("txn{t}").into_bytes()),
                value: Some(value("txn", i)),
                headers: vec![("txn".into(), Some(t.to_string().into_bytes()))],
                aborted: false,
            });
            i += 1;
        }
        if t % 3 == 1 {
            plan.abort("p-txn");
        } else {
            plan.commit("p-txn");
        }
    }
    plan.close("p-txn");

    // LogAppendTime: the broker stamps every batch; the acks carry its time.
    topics.push(TopicSpec {
        name: "log-append-time".into(),
        partitions: 1,
        configs: no_time_retention(&[("message.timestamp.type", "LogAppendTime")]),
    });
    plan.producer(
        "p-lat",
        &[
            ("compression.type", "gzip"),
            ("acks", "all"),
            ("linger.ms", "5"),
        ],
    );
    for i in 0..scale / 2 {
        plan.send(Send {
            producer: "p-lat".into(),
            topic: "log-append-time".into(),
            partition: None,
            timestamp: ts(i), // ignored by the broker: LogAppendTime replaces it
            key: None,
            value: Some(value("lat", i)),
            headers: vec![],
            aborted: false,
        });
    }
    plan.close("p-lat");

    groups.push(GroupStep {
        group: "g-partial".into(),
        topic: "codec-none".into(),
        max_records: scale / 3,
        isolation: Isolation::ReadUncommitted,
    });
    groups.push(GroupStep {
        group: "g-txn".into(),
        topic: "txn".into(),
        max_records: 1_000_000,
        isolation: Isolation::ReadCommitted,
    });
    Workload {
        topics,
        plan,
        groups,
    }
}

impl Workload {
    /// Creates the topics with replication factor `rf`, runs the plan, then the group steps.
    pub fn run(&self, client: &Client, rf: i16) -> Result<WorkloadRun> {
        let mut topic_ids = BTreeMap::new();
        let mut partitions = BTreeMap::new();
        for t in &self.topics {
            let cfg: Vec<(&str, &str)> = t
                .configs
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            topic_ids.insert(
                t.name.clone(),
                client.create_topic(&t.name, t.partitions, rf, &cfg)?,
            );
            partitions.insert(t.name.clone(), t.partitions);
        }
        let produced = client.run(&self.plan)?;
        let mut committed = GroupOffsets::new();
        for g in &self.groups {
            for (p, off) in client.group_consume(&g.group, &g.topic, g.max_records, g.isolation)? {
                committed.insert((g.group.clone(), g.topic.clone(), p), off);
            }
        }
        Ok(WorkloadRun {
            produced,
            topic_ids,
            committed,
            partitions,
        })
    }
}

impl WorkloadRun {
    /// Expected digests of every workload topic under both isolation levels.
    pub fn expected(&self) -> BTreeMap<(String, Isolation), TopicDigest> {
        let mut m = BTreeMap::new();
        for (t, &n) in &self.partitions {
            for iso in Isolation::BOTH {
                m.insert((t.clone(), iso), self.produced.digest(t, iso, n));
            }
        }
        m
    }

    /// Consumes every workload topic under both isolation levels and returns the digests, in
    /// the same shape as [`WorkloadRun::expected`].
    pub fn observe(&self, client: &Client) -> Result<BTreeMap<(String, Isolation), TopicDigest>> {
        let topics: Vec<&str> = self.partitions.keys().map(String::as_str).collect();
        let mut m = BTreeMap::new();
        for iso in Isolation::BOTH {
            for (t, parts) in client.consume_many(&topics, iso)? {
                let d = parts
                    .into_iter()
                    .map(|(p, r)| (p, PartitionDigest::of(&r.records)))
                    .collect();
                m.insert((t, iso), d);
            }
        }
        Ok(m)
    }

    /// Checks that what `client` serves now is exactly what was produced, and that the
    /// committed group offsets are the ones the workload committed. Errors name the topic,
    /// isolation and partition that differ.
    pub fn check(&self, client: &Client) -> Result<()> {
        let want = self.expected();
        let got = self.observe(client)?;
        let mut diffs = Vec::new();
        for (k, w) in &want {
            let g = got.get(k);
            if g != Some(w) {
                diffs.push(format!(
                    "{} {:?}: expected {:?}\n   got {:?}",
                    k.0, k.1, w, g
                ));
            }
        }
        let groups = client.group_offsets()?;
        for (k, off) in &self.committed {
            if groups.get(k) != Some(off) {
                diffs.push(format!(
                    "group {k:?}: committed {off}, broker says {:?}",
                    groups.get(k)
                ));
            }
        }
        if !diffs.is_empty() {
            bail!("{} differences:\n{}", diffs.len(), diffs.join("\n"));
        }
        Ok(())
    }
}
