//! Bare-metal restore, checked by a real broker: the fixture log dir of each pinned version is
//! archived, served once to learn what it holds, then the node is killed, its log dir is
//! given up, and a broker started on the dir segvault rebuilt from the archive alone (the
//! node's meta.properties, its newest KRaft snapshot as the metadata log, every archived
//! partition) serves the same records at the same offsets, in both isolation levels.
//!
//! What the archive holds is every closed, committed segment: records of a partition's
//! active segment at the time of archiving were never archived and do not come back. The
//! check is exact about that: below each partition's restored log end, every record is
//! served as before; at or above it, none.
//!
//! The same flows check the point-in-time cut (`--until-time`) and the new-cluster mode.

use segvault_harness::client::PartitionRecords;
use segvault_harness::fixtures::copy_dir;
use segvault_harness::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture(version: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(format!("kafka-{version}"))
        .join("clean")
}

/// Where the archive lives: a filesystem store, or a real S3 server (versitygw) on loopback.
struct Archive {
    url: String,
    env: Vec<(&'static str, String)>,
    _s3: Option<S3Server>,
}

impl Archive {
    fn file(dir: &Path) -> Archive {
        Archive {
            url: format!("file://{}", dir.join("store").display()),
            env: vec![],
            _s3: None,
        }
    }
    fn s3() -> Archive {
        let s3 = S3Server::start(&["archive"]).unwrap();
        Archive {
            url: "s3://archive/kafka".into(),
            env: s3.env(),
            _s3: Some(s3),
        }
    }
    /// Runs segvault with the store's environment.
    fn segvault(&self, args: &[&str]) -> (i32, String, String) {
        segvault_env(args, &self.env)
    }
}

fn segvault_env(args: &[&str], env: &[(&'static str, String)]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_segvault"))
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const TOPICS: [&str; 9] = [
    "codec-none",
    "codec-gzip",
    "codec-snappy",
    "codec-lz4",
    "codec-zstd",
    "compacted",
    "idempotent",
    "log-append-time",
    "txn",
];

type Served = BTreeMap<(String, Isolation), BTreeMap<i32, PartitionRecords>>;

fn serve(client: &Client) -> Served {
    let mut out = BTreeMap::new();
    for t in TOPICS {
        for iso in Isolation::BOTH {
            out.insert((t.to_string(), iso), client.consume(t, iso).unwrap());
        }
    }
    out
}

fn bare_metal(version: &str, archive: &Archive) {
    let url = archive.url.clone();
    let mut c = Cluster::start(ClusterSpec::combined(version)).unwrap();
    c.stop(1).unwrap();
    let original = c.root().join("original");
    copy_dir(&fixture(version), &original, &[]).unwrap();
    let (code, out, err) = archive.segvault(&[
        "archive",
        "--once",
        "--store",
        &url,
        "--log-dir",
        original.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{err}");

    c.restart_on(1, std::slice::from_ref(&original)).unwrap();
    let before = serve(&c.client());
    // The node is lost.
    c.kill(1).unwrap();

    let restored = c.root().join("restored");
    let (code, out, err) = archive.segvault(&[
        "restore",
        &url,
        "--to",
        restored.to_str().unwrap(),
        "--mode",
        "bare-metal",
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let ends = restored_ends(&out);
    assert!(ends.len() >= 10, "{version}: {ends:?}");
    c.restart_on(1, std::slice::from_ref(&restored)).unwrap();
    let after = serve(&c.client());
    let compared = assert_served_below_ends(version, &before, &after, &ends, "bare-metal");
    assert!(
        compared > 500,
        "{version}: only {compared} records compared"
    );
    // The restored log dir was not recovered from scratch: the broker found every CRC
    // verified (recovery point at the log end) and did not rebuild any index.
    let log = std::fs::read_to_string(&c.node(1).unwrap().log_file).unwrap();
    let restart_log = &log[log.rfind("restored").unwrap_or(0)..];
    assert!(
        !restart_log.contains("Recovering unflushed segment"),
        "{version}: the broker recovered segments of the restored dir"
    );
    eprintln!("{version}: {compared} records served identically after a bare-metal restore");

    // Point in time: the same node restored as it was at T. In every partition the log ends at
    // the first batch whose max timestamp is T or later (read here from the original segments'
    // v2 batch headers), and everything before it is served as before.
    let t = fixtures::FIXTURE_BASE_TS + 61_000;
    c.kill(1).unwrap();
    let at_t = c.root().join("at-t");
    let (code, out, err) = archive.segvault(&[
        "restore",
        &url,
        "--to",
        at_t.to_str().unwrap(),
        "--until-time",
        &t.to_string(),
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let cut_ends = restored_ends(&out);
    let mut cut_inside = 0;
    for ((topic, p), (end, _)) in &cut_ends {
        let want = first_batch_at_or_after(&original.join(format!("{topic}-{p}")), t)
            .unwrap_or(ends[&(topic.clone(), *p)].0);
        assert_eq!(*end, want, "{version} {topic}-{p}: cut at {t}");
        cut_inside += (want < ends[&(topic.clone(), *p)].0) as usize;
    }
    assert!(
        cut_inside >= 5,
        "{version}: T cut only {cut_inside} partitions"
    );
    c.restart_on(1, std::slice::from_ref(&at_t)).unwrap();
    let at = serve(&c.client());
    let n = assert_served_below_ends(version, &before, &at, &cut_ends, "bare-metal");
    for ((topic, iso), parts) in &at {
        for (p, r) in parts {
            if let Some(late) = r.records.iter().find(|r| r.timestamp >= t) {
                panic!(
                    "{version} {topic}-{p} {iso:?}: record at {} has timestamp {} >= {t}",
                    late.offset, late.timestamp
                );
            }
        }
    }
    eprintln!("{version}: {n} records before {t} served after a point-in-time restore");
}

/// Base offset of the first v2 batch, over a partition dir's segments in order, whose max
/// timestamp is at or after `t` (header fields read by hand: base offset @0, length @8,
/// max timestamp @35).
fn first_batch_at_or_after(pdir: &Path, t: i64) -> Option<i64> {
    let mut bases: Vec<i64> = std::fs::read_dir(pdir)
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".log")?.parse().ok())
        .collect();
    bases.sort();
    for b in bases {
        let log = std::fs::read(pdir.join(format!("{b:020}.log"))).unwrap();
        let mut pos = 0;
        while pos + 43 <= log.len() {
            let base = i64::from_be_bytes(log[pos..pos + 8].try_into().unwrap());
            let len = i32::from_be_bytes(log[pos + 8..pos + 12].try_into().unwrap()) as usize;
            let max_ts = i64::from_be_bytes(log[pos + 35..pos + 43].try_into().unwrap());
            if max_ts >= t {
                return Some(base);
            }
            pos += 12 + len;
        }
    }
    None
}

/// Compares what a restored broker serves with what the original served, below each
/// restored partition's end (read_committed below the first transaction left open there).
/// Returns the number of records compared.
fn assert_served_below_ends(
    version: &str,
    before: &Served,
    after: &Served,
    ends: &BTreeMap<(String, i32), (i64, Option<i64>)>,
    mode: &str,
) -> usize {
    let mut compared = 0;
    for ((topic, iso), parts) in before {
        for (p, served) in parts {
            let (mut end, open) = ends.get(&(topic.clone(), *p)).copied().unwrap_or((0, None));
            let now = &after[&(topic.clone(), *iso)][p];
            // Bare-metal keeps producer state: a transaction whose marker was in the
            // unarchived tail stays open and read_committed stops at its first offset. A new
            // cluster starts with no producer state: nothing is open, nothing pinned.
            if *iso == Isolation::ReadCommitted && mode == "bare-metal" {
                if let Some(first) = open {
                    assert_eq!(
                        now.end_offset, first,
                        "{version} {topic}-{p}: last stable offset"
                    );
                    end = first;
                }
            }
            let want: Vec<&Record> = served.records.iter().filter(|r| r.offset < end).collect();
            let got: Vec<&Record> = now.records.iter().collect();
            assert_eq!(
                got.len(),
                want.len(),
                "{version} {topic}-{p} {iso:?}: records below {end}"
            );
            assert!(
                got == want,
                "{version} {topic}-{p} {iso:?}: other records served"
            );
            compared += got.len();
        }
    }
    compared
}

fn restored_ends(stdout: &str) -> BTreeMap<(String, i32), (i64, Option<i64>)> {
    stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|l| l["type"] == "partition")
        .map(|l| {
            let r = &l["report"];
            let open = r["open_transactions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t[1].as_i64().unwrap())
                .min();
            let tp = (
                r["topic"].as_str().unwrap().to_string(),
                r["partition"].as_i64().unwrap() as i32,
            );
            (tp, (r["log_end_offset"].as_i64().unwrap(), open))
        })
        .collect()
}

/// New cluster: a brand-new cluster (another cluster id) creates the topics, its broker is
/// stopped, the archive is restored into its log dir with `--mode new-cluster`, and the
/// broker serves the archived records at the same offsets; then new records are produced
/// to and consumed from every restored partition, continuing at the restored end.
fn new_cluster(version: &str, archive: &Archive) {
    let url = archive.url.clone();
    let mut a = Cluster::start(ClusterSpec::combined(version)).unwrap();
    a.stop(1).unwrap();
    let original = a.root().join("original");
    copy_dir(&fixture(version), &original, &[]).unwrap();
    let (code, out, err) = archive.segvault(&[
        "archive",
        "--once",
        "--store",
        &url,
        "--log-dir",
        original.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    a.restart_on(1, std::slice::from_ref(&original)).unwrap();
    let before = serve(&a.client());
    drop(a);

    let mut b = Cluster::start(ClusterSpec::combined(version)).unwrap();
    let client = b.client();
    let mut specs = workload::standard(fixtures::FIXTURE_SCALE, fixtures::FIXTURE_BASE_TS).topics;
    specs.push(workload::TopicSpec {
        name: fixtures::COMPACTED_TOPIC.into(),
        partitions: 1,
        configs: vec![
            ("cleanup.policy".into(), "compact".into()),
            ("retention.ms".into(), "-1".into()),
        ],
    });
    for t in &specs {
        let cfg: Vec<(&str, &str)> = t
            .configs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        client.create_topic(&t.name, t.partitions, 1, &cfg).unwrap();
    }
    let log_dir = b.log_dirs(1).unwrap()[0].clone();
    // The broker creates the partition dirs as the metadata reaches it.
    let want: usize = specs.iter().map(|t| t.partitions as usize).sum();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while topic_ids(&log_dir)
        .keys()
        .filter(|k| !k.starts_with("__"))
        .count()
        < want
    {
        assert!(
            std::time::Instant::now() < deadline,
            "partition dirs never appeared"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let ids_before = topic_ids(&log_dir);
    b.stop(1).unwrap();
    let (code, out, err) = archive.segvault(&[
        "restore",
        &url,
        "--to",
        log_dir.to_str().unwrap(),
        "--mode",
        "new-cluster",
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let ends = restored_ends(&out);
    assert!(ends.len() >= 10, "{version}: {ends:?}");
    // The new cluster's topic ids are kept.
    assert_eq!(topic_ids(&log_dir), ids_before);
    b.restart(1).unwrap();
    let client = b.client();
    let after = serve(&client);
    let compared = assert_served_below_ends(version, &before, &after, &ends, "new-cluster");
    assert!(
        compared > 500,
        "{version}: only {compared} records compared"
    );

    // New records continue every restored partition at its end.
    let mut plan = Plan::new();
    plan.producer("after", &[("acks", "all")]);
    for (topic, p) in ends.keys() {
        plan.send(Send {
            producer: "after".into(),
            topic: topic.clone(),
            partition: Some(*p),
            timestamp: None,
            key: Some(b"after-restore".to_vec()),
            value: Some(format!("{topic}-{p}").into_bytes()),
            headers: vec![],
            aborted: false,
        });
    }
    plan.close("after");
    let produced = client.run(&plan).unwrap();
    for ack in &produced.acks {
        let (end, _) = ends[&(ack.topic.clone(), ack.partition)];
        assert!(
            ack.offset >= end,
            "{version} {}-{}: new record at {} below the restored end {end}",
            ack.topic,
            ack.partition,
            ack.offset
        );
    }
    let again = serve(&client);
    for ((topic, p), (end, _)) in &ends {
        let recs = &again[&(topic.clone(), Isolation::ReadUncommitted)][p].records;
        let new: Vec<&Record> = recs
            .iter()
            .filter(|r| r.key.as_deref() == Some(b"after-restore"))
            .collect();
        assert_eq!(
            new.len(),
            1,
            "{version} {topic}-{p}: the new record is not served once"
        );
        assert!(new[0].offset >= *end);
        // The restored records are still there, unchanged.
        let old: Vec<&Record> = recs.iter().filter(|r| r.offset < *end).collect();
        let want: Vec<&Record> = before[&(topic.clone(), Isolation::ReadUncommitted)][p]
            .records
            .iter()
            .filter(|r| r.offset < *end)
            .collect();
        assert!(
            old == want,
            "{version} {topic}-{p}: restored records changed after new writes"
        );
    }
    let log = std::fs::read_to_string(&b.node(1).unwrap().log_file).unwrap();
    for bad in [
        "Truncation detected",
        "OFFSET_OUT_OF_RANGE",
        "marked stray",
        "InconsistentTopicId",
    ] {
        assert!(!log.contains(bad), "{version}: the broker logged {bad:?}");
    }
    eprintln!(
        "{version}: new cluster serves {compared} restored records and continues every partition"
    );
}

/// `topic-partition -> topic id` of every partition dir in a log dir.
fn topic_ids(log_dir: &Path) -> BTreeMap<String, String> {
    std::fs::read_dir(log_dir)
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pm = std::fs::read_to_string(e.path().join("partition.metadata")).ok()?;
            Some((e.file_name().to_string_lossy().into_owned(), pm))
        })
        .collect()
}

#[test]
fn new_cluster_restore_is_served_and_continues_3_9_2() {
    let tmp = tempfile::tempdir().unwrap();
    new_cluster("3.9.2", &Archive::file(tmp.path()));
}

#[test]
fn new_cluster_restore_is_served_and_continues_4_3_1() {
    let tmp = tempfile::tempdir().unwrap();
    new_cluster("4.3.1", &Archive::file(tmp.path()));
}

/// Both flows again with the archive on a real S3 server (the second archive pass over the
/// same fixture uploads nothing: the archive is idempotent).
fn through_s3(version: &str) {
    let archive = Archive::s3();
    bare_metal(version, &archive);
    new_cluster(version, &archive);
}

#[test]
fn bare_metal_point_in_time_and_new_cluster_through_s3_3_9_2() {
    through_s3("3.9.2");
}

#[test]
fn bare_metal_point_in_time_and_new_cluster_through_s3_4_3_1() {
    through_s3("4.3.1");
}

#[test]
fn bare_metal_and_point_in_time_restores_are_served_3_9_2() {
    let tmp = tempfile::tempdir().unwrap();
    bare_metal("3.9.2", &Archive::file(tmp.path()));
}

#[test]
fn bare_metal_and_point_in_time_restores_are_served_4_3_1() {
    let tmp = tempfile::tempdir().unwrap();
    bare_metal("4.3.1", &Archive::file(tmp.path()));
}
