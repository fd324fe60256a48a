//! A real Kafka client for the tests: Kafka's own Java client (the `Driver` program compiled
//! against the broker's version), driven over lines of text. Never a hand-written protocol.
//!
//! Record digests live here too: one call consumes a topic end to end and returns, per
//! partition, a SHA-256 over the ordered (offset, timestamp, key, value, headers).

use crate::dist::KafkaDist;
use anyhow::{anyhow, bail, Context, Result};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::Command;

/// A record as a consumer sees it (or as the producer was told it was written).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Record {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// `read_committed` hides aborted transactions; `read_uncommitted` shows every data record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isolation {
    ReadUncommitted,
    ReadCommitted,
}

impl Isolation {
    pub fn as_str(self) -> &'static str {
        match self {
            Isolation::ReadUncommitted => "read_uncommitted",
            Isolation::ReadCommitted => "read_committed",
        }
    }
    pub const BOTH: [Isolation; 2] = [Isolation::ReadUncommitted, Isolation::ReadCommitted];
}

/// What a consumer read from one partition, up to the end offset it saw at the start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionRecords {
    pub records: Vec<Record>,
    /// High watermark (read_uncommitted) or last stable offset (read_committed).
    pub end_offset: i64,
}

/// The ordered digest of one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionDigest {
    pub records: usize,
    pub first_offset: Option<i64>,
    pub last_offset: Option<i64>,
    /// SHA-256, hex, over the canonical encoding of every record in offset order.
    pub sha256: String,
}

impl PartitionDigest {
    pub fn of(records: &[Record]) -> PartitionDigest {
        let mut h = Sha256::new();
        for r in records {
            h.update(canonical(r));
        }
        PartitionDigest {
            records: records.len(),
            first_offset: records.first().map(|r| r.offset),
            last_offset: records.last().map(|r| r.offset),
            sha256: hex::encode(h.finalize()),
        }
    }
}

/// Per partition digests of a topic.
pub type TopicDigest = BTreeMap<i32, PartitionDigest>;

/// Committed offsets: (group, topic, partition) -> offset.
pub type GroupOffsets = BTreeMap<(String, String, i32), i64>;

fn canonical(r: &Record) -> Vec<u8> {
    fn bytes(out: &mut Vec<u8>, b: &Option<Vec<u8>>) {
        match b {
            None => out.extend_from_slice(&(-1i32).to_be_bytes()),
            Some(b) => {
                out.extend_from_slice(&(b.len() as i32).to_be_bytes());
                out.extend_from_slice(b);
            }
        }
    }
    let mut out = Vec::new();
    out.extend_from_slice(&r.offset.to_be_bytes());
    out.extend_from_slice(&r.timestamp.to_be_bytes());
    bytes(&mut out, &r.key);
    bytes(&mut out, &r.value);
    out.extend_from_slice(&(r.headers.len() as i32).to_be_bytes());
    for (k, v) in &r.headers {
        bytes(&mut out, &Some(k.as_bytes().to_vec()));
        bytes(&mut out, v);
    }
    out
}

/// One partition of a topic as the admin client describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    pub topic: String,
    pub topic_id: String,
    pub partition: i32,
    pub leader: i32,
    pub replicas: Vec<i32>,
}

/// A producer's acknowledgement of one `send` of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// Index of the send in the plan.
    pub seq: usize,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub timestamp: i64,
}

/// A produce plan: producers, sends and transaction steps, executed in order by one JVM.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    lines: Vec<String>,
    /// Every send in order: (producer, topic, record as sent; offset/timestamp filled by acks).
    pub sends: Vec<Send>,
}

#[derive(Debug, Clone)]
pub struct Send {
    pub producer: String,
    pub topic: String,
    pub partition: Option<i32>,
    pub timestamp: Option<i64>,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// Whether the transaction it belongs to was aborted (set by `abort`).
    pub aborted: bool,
}

fn enc(b: &Option<Vec<u8>>) -> String {
    match b {
        None => "~".into(),
        Some(b) => format!("x{}", hex::encode(b)),
    }
}

fn dec(s: &str) -> Result<Option<Vec<u8>>> {
    if s == "~" {
        return Ok(None);
    }
    let h = s
        .strip_prefix('x')
        .ok_or_else(|| anyhow!("bad encoded field {s:?}"))?;
    Ok(Some(hex::decode(h)?))
}

fn dec_headers(f: &[&str]) -> Result<Vec<(String, Option<Vec<u8>>)>> {
    let n: usize = f
        .first()
        .ok_or_else(|| anyhow!("missing header count"))?
        .parse()?;
    if f.len() != 1 + 2 * n {
        bail!("header count {n} but {} fields", f.len() - 1);
    }
    (0..n)
        .map(|i| {
            let k = dec(f[1 + 2 * i])?.ok_or_else(|| anyhow!("null header key"))?;
            Ok((String::from_utf8(k)?, dec(f[2 + 2 * i])?))
        })
        .collect()
}

impl Plan {
    pub fn new() -> Plan {
        Plan::default()
    }

    /// Declares producer `name` with client configs such as `compression.type=zstd`,
    /// `enable.idempotence=true` or `transactional.id=t1`.
    pub fn producer(&mut self, name: &str, configs: &[(&str, &str)]) -> &mut Plan {
        let mut l = format!("producer\t{name}");
        for (k, v) in configs {
            write!(l, "\t{k}={v}").unwrap();
        }
        self.lines.push(l);
        self
    }

    pub fn send(&mut self, s: Send) -> &mut Plan {
        let mut l = format!(
            "send\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            s.producer,
            s.topic,
            s.partition.map_or("-".into(), |p| p.to_string()),
            s.timestamp.map_or("-".into(), |t| t.to_string()),
            enc(&s.key),
            enc(&s.value),
            s.headers.len()
        );
        for (k, v) in &s.headers {
            write!(l, "\t{}\t{}", enc(&Some(k.as_bytes().to_vec())), enc(v)).unwrap();
        }
        self.lines.push(l);
        self.sends.push(s);
        self
    }

    fn step(&mut self, op: &str, name: &str) -> &mut Plan {
        self.lines.push(format!("{op}\t{name}"));
        self
    }
    pub fn begin(&mut self, name: &str) -> &mut Plan {
        self.step("begin", name)
    }
    pub fn commit(&mut self, name: &str) -> &mut Plan {
        self.step("commit", name)
    }
    /// Aborts the open transaction of `name`; its records are flushed to the log first, so
    /// they exist on disk (read_uncommitted sees them, read_committed does not).
    pub fn abort(&mut self, name: &str) -> &mut Plan {
        // Everything sent by this producer since its last begin belongs to the aborted txn.
        let begin_at = self
            .lines
            .iter()
            .rposition(|l| l == &format!("begin\t{name}"));
        let sends_before_begin = begin_at.map_or(0, |at| {
            self.lines[..at]
                .iter()
                .filter(|l| l.starts_with("send\t"))
                .count()
        });
        for s in self.sends[sends_before_begin..]
            .iter_mut()
            .filter(|s| s.producer == name)
        {
            s.aborted = true;
        }
        self.step("abort", name)
    }
    pub fn flush(&mut self, name: &str) -> &mut Plan {
        self.step("flush", name)
    }
    pub fn close(&mut self, name: &str) -> &mut Plan {
        self.step("close", name)
    }

    /// Creates the file `path` when the plan reaches this step (the test polls for it).
    pub fn signal(&mut self, path: &std::path::Path) -> &mut Plan {
        self.lines.push(format!("signal\t{}", path.display()));
        self
    }
    /// Waits (five minutes at most) until the test creates the file `path`: the producers
    /// stay as they are meanwhile, an open transaction stays open.
    pub fn await_file(&mut self, path: &std::path::Path) -> &mut Plan {
        self.lines.push(format!("await\t{}", path.display()));
        self
    }

    fn text(&self) -> String {
        let mut t = self.lines.join("\n");
        t.push('\n');
        t
    }
}

/// What a plan produced: every acknowledged send, with the record as the log holds it.
#[derive(Debug, Clone, Default)]
pub struct Produced {
    /// topic -> partition -> records in offset order, for each isolation level.
    pub expected: BTreeMap<Isolation, BTreeMap<String, BTreeMap<i32, Vec<Record>>>>,
    pub acks: Vec<Ack>,
}

impl Produced {
    /// Builds the expected view from a plan and its acks: every acked record, in offset
    /// order; read_committed leaves out records of aborted transactions.
    pub fn from_acks(plan: &Plan, acks: Vec<Ack>) -> Result<Produced> {
        let mut p = Produced::default();
        if acks.len() != plan.sends.len() {
            bail!(
                "plan has {} sends but {} acks came back",
                plan.sends.len(),
                acks.len()
            );
        }
        for a in &acks {
            let s = plan
                .sends
                .get(a.seq)
                .ok_or_else(|| anyhow!("ack for unknown send {}", a.seq))?;
            let r = Record {
                offset: a.offset,
                timestamp: a.timestamp,
                key: s.key.clone(),
                value: s.value.clone(),
                headers: s.headers.clone(),
            };
            for iso in Isolation::BOTH {
                if iso == Isolation::ReadCommitted && s.aborted {
                    continue;
                }
                p.expected
                    .entry(iso)
                    .or_default()
                    .entry(a.topic.clone())
                    .or_default()
                    .entry(a.partition)
                    .or_default()
                    .push(r.clone());
            }
        }
        for topics in p.expected.values_mut() {
            for parts in topics.values_mut() {
                for recs in parts.values_mut() {
                    recs.sort();
                }
            }
        }
        p.acks = acks;
        Ok(p)
    }

    /// Expected digest of `topic`, including empty partitions listed in `partitions`.
    pub fn digest(&self, topic: &str, iso: Isolation, partitions: i32) -> TopicDigest {
        let parts = self.expected.get(&iso).and_then(|t| t.get(topic));
        (0..partitions)
            .map(|p| {
                (
                    p,
                    PartitionDigest::of(
                        parts
                            .and_then(|m| m.get(&p))
                            .map_or(&[][..], |v| v.as_slice()),
                    ),
                )
            })
            .collect()
    }
}

/// A client bound to one cluster's bootstrap servers.
#[derive(Debug, Clone)]
pub struct Client {
    dist: KafkaDist,
    bootstrap: String,
}

impl Client {
    pub fn new(dist: KafkaDist, bootstrap: String) -> Client {
        Client { dist, bootstrap }
    }

    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// Runs the driver and returns its stdout lines; a non-zero exit is an error that carries
    /// what the driver printed.
    fn driver(&self, args: &[&str]) -> Result<Vec<String>> {
        let mut cmd: Command = self.dist.java("Driver", 512);
        cmd.args(&args[..1]).arg(&self.bootstrap).args(&args[1..]);
        let out = cmd
            .output()
            .with_context(|| format!("running the Kafka client driver {args:?}"))?;
        if !out.status.success() {
            bail!(
                "driver {:?} against {} (Kafka {}) failed with {}:\n{}",
                args,
                self.bootstrap,
                self.dist.version,
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8(out.stdout)?
            .lines()
            .map(str::to_string)
            .collect())
    }

    /// Creates a topic (or finds it if it exists), waits for its leaders, and returns its id.
    pub fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        rf: i16,
        configs: &[(&str, &str)],
    ) -> Result<String> {
        let p = partitions.to_string();
        let r = rf.to_string();
        let kv: Vec<String> = configs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut args = vec!["create-topic", name, &p, &r];
        args.extend(kv.iter().map(String::as_str));
        let lines = self.driver(&args)?;
        let line = lines
            .iter()
            .find(|l| l.starts_with("topic\t"))
            .ok_or_else(|| anyhow!("no topic id for {name}"))?;
        Ok(line.split('\t').nth(2).unwrap_or_default().to_string())
    }

    /// Every partition of every topic, internal ones included.
    pub fn describe(&self) -> Result<Vec<PartitionInfo>> {
        self.driver(&["describe"])?
            .iter()
            .filter(|l| l.starts_with("partition\t"))
            .map(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                Ok(PartitionInfo {
                    topic: f[1].into(),
                    topic_id: f[2].into(),
                    partition: f[3].parse()?,
                    leader: f[4].parse()?,
                    replicas: f[5]
                        .split(',')
                        .map(|x| x.parse())
                        .collect::<Result<_, _>>()?,
                })
            })
            .collect()
    }

    /// Executes a produce plan and returns what it produced.
    pub fn run(&self, plan: &Plan) -> Result<Produced> {
        let file = tempfile::NamedTempFile::new()?;
        std::fs::write(file.path(), plan.text())?;
        let path = file.path().to_string_lossy().into_owned();
        let lines = self.driver(&["plan", &path])?;
        let acks = lines
            .iter()
            .filter(|l| l.starts_with("ack\t"))
            .map(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                Ok(Ack {
                    seq: f[1].parse()?,
                    topic: f[2].into(),
                    partition: f[3].parse()?,
                    offset: f[4].parse()?,
                    timestamp: f[5].parse()?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Produced::from_acks(plan, acks)
    }

    /// Consumes `topic` end to end (every partition, from the start to the end offset seen at
    /// the start) with the given isolation.
    pub fn consume(&self, topic: &str, iso: Isolation) -> Result<BTreeMap<i32, PartitionRecords>> {
        let mut all = self.consume_many(&[topic], iso)?;
        all.remove(topic)
            .ok_or_else(|| anyhow!("consuming {topic}: the driver reported no partitions"))
    }

    /// Consumes every topic of `topics` end to end in one driver run (one JVM), as
    /// [`Client::consume`] does for one.
    pub fn consume_many(
        &self,
        topics: &[&str],
        iso: Isolation,
    ) -> Result<BTreeMap<String, BTreeMap<i32, PartitionRecords>>> {
        let mut args = vec!["consume", iso.as_str()];
        args.extend_from_slice(topics);
        let lines = self.driver(&args)?;
        let mut out: BTreeMap<String, BTreeMap<i32, PartitionRecords>> = BTreeMap::new();
        fn entry<'a>(
            out: &'a mut BTreeMap<String, BTreeMap<i32, PartitionRecords>>,
            topic: &str,
            p: i32,
        ) -> &'a mut PartitionRecords {
            out.entry(topic.to_string())
                .or_default()
                .entry(p)
                .or_insert(PartitionRecords {
                    records: vec![],
                    end_offset: -1,
                })
        }
        for l in &lines {
            let f: Vec<&str> = l.split('\t').collect();
            match f[0] {
                "rec" => entry(&mut out, f[1], f[2].parse()?).records.push(Record {
                    offset: f[3].parse()?,
                    timestamp: f[4].parse()?,
                    key: dec(f[6])?,
                    value: dec(f[7])?,
                    headers: dec_headers(&f[8..])?,
                }),
                "end" => entry(&mut out, f[1], f[2].parse()?).end_offset = f[3].parse()?,
                _ => {}
            }
        }
        for topic in topics {
            let parts = out
                .get(*topic)
                .ok_or_else(|| anyhow!("consuming {topic}: the driver reported no partitions"))?;
            for (p, pr) in parts {
                if pr.end_offset < 0 {
                    bail!("consuming {topic}: partition {p} has records but no end offset");
                }
                if pr.records.windows(2).any(|w| w[0].offset >= w[1].offset) {
                    bail!("consuming {topic}: partition {p} came back out of order");
                }
            }
        }
        Ok(out)
    }

    /// The per-partition digest of `topic` under `iso`.
    pub fn digest(&self, topic: &str, iso: Isolation) -> Result<TopicDigest> {
        Ok(self
            .consume(topic, iso)?
            .into_iter()
            .map(|(p, r)| (p, PartitionDigest::of(&r.records)))
            .collect())
    }

    /// Joins `group`, reads up to `max` records of `topic` and commits after them. Returns the
    /// committed offset per partition.
    pub fn group_consume(
        &self,
        group: &str,
        topic: &str,
        max: usize,
        iso: Isolation,
    ) -> Result<BTreeMap<i32, i64>> {
        let m = max.to_string();
        self.driver(&["group-consume", group, topic, &m, iso.as_str()])?
            .iter()
            .filter(|l| l.starts_with("committed\t"))
            .map(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                Ok((f[1].parse()?, f[2].parse()?))
            })
            .collect()
    }

    /// The committed offsets of every consumer group.
    pub fn group_offsets(&self) -> Result<GroupOffsets> {
        self.driver(&["group-offsets"])?
            .iter()
            .filter(|l| l.starts_with("group\t"))
            .map(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                Ok((
                    (f[1].to_string(), f[2].to_string(), f[3].parse()?),
                    f[4].parse()?,
                ))
            })
            .collect()
    }
}
