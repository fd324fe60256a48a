//! Restore, checked by a real broker of each pinned version, end to end:
//!
//! 1. **Bare metal.** A broker runs every standard workload (five codecs, headers, tombstones,
//!    the idempotent producer, committed and aborted transactions, CreateTime and
//!    LogAppendTime topics, consumer groups with committed offsets). Sentinel appends then
//!    roll every partition, `__consumer_offsets` and `__transaction_state` included, so that
//!    everything the workload wrote is in closed, committed segments. `segvault archive
//!    --once` copies the live log dir to a filesystem store and to a real S3 server. The
//!    broker is killed, its log dir wiped, and `segvault restore --mode bare-metal` rebuilds
//!    it from the S3 archive alone. The restarted broker serves the same records at the same
//!    offsets in both isolation levels (aborted records stay invisible), the groups' committed
//!    offsets are the same, and no segment is recovered at start-up. The same restore from the
//!    filesystem store gives a byte-identical tree.
//! 2. **Point in time.** `--until-time T` ends every partition, `__consumer_offsets`
//!    included, at its first batch at or after T: exactly the records before T are served,
//!    and the groups' commits (made after T) are gone.
//! 3. **New cluster.** A brand-new cluster (another cluster id) creates the topics, its
//!    broker is stopped, `--mode new-cluster` restores into its log dir (keeping its topic
//!    ids): it serves the same records at the same offsets, then takes new records on every
//!    partition with no truncation, no OFFSET_OUT_OF_RANGE, no "Truncation detected". The
//!    restore from S3 into a copy of the same dir is byte-identical.
//!
//! One archive and two clusters per version serve all three checks, to keep the suite short.
//!
//! Over 800 lines on purpose: the tests of one concern and the helpers that build their state
//! are kept in one file, read together.

use crate::common::logdir::{self, partition_dirs};
use crate::common::now_ms;
use segvault_harness::client::{PartitionRecords, TopicDigest};
use segvault_harness::fixtures::copy_dir;
use segvault_harness::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Key of the records the test appends to roll segments; they are left out of comparisons.
const SENTINEL: &[u8] = b"segvault-sentinel";
const SENTINEL_TOPIC: &str = "segvault-sentinel";
/// Records per workload topic.
const SCALE: usize = 120;

pub(crate) fn segvault(args: &[&str], env: &[(&'static str, String)]) -> (i32, String, String) {
    let out = crate::common::run::output(
        crate::common::run::segvault()
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str()))),
    );
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs segvault and asserts exit 0.
pub(crate) fn segvault_ok(args: &[&str], env: &[(&'static str, String)]) -> String {
    let (code, out, err) = segvault(args, env);
    assert_eq!(code, 0, "segvault {args:?}:\n{out}{err}");
    out
}

/// `archive --once` until a pass finds nothing that the broker changed under it: the log
/// cleaner compacts `__consumer_offsets` and `__transaction_state` while passes run, and a
/// pass leaves such a partition to the next one (as the agent's next pass takes it up).
/// Returns the last pass's total line.
pub(crate) fn archive_settled(url: &str, log_dir: &Path, env: &[(&'static str, String)]) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let out = segvault_ok(
            &[
                "archive",
                "--once",
                "--store",
                url,
                "--log-dir",
                log_dir.to_str().unwrap(),
                "--format",
                "json",
            ],
            env,
        );
        let total: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
        if total["changed"] == 0 {
            return total;
        }
        assert!(
            Instant::now() < deadline,
            "the broker changed segments under every pass for 120 s: {total}"
        );
    }
}

/// The two stores every check goes through: a filesystem store and a real S3 server
/// (versitygw) on loopback.
struct Stores {
    file: String,
    s3: String,
    s3_env: Vec<(&'static str, String)>,
    _s3: S3Server,
}

pub(crate) type Served = BTreeMap<(String, Isolation), BTreeMap<i32, PartitionRecords>>;

/// What `client` serves of `topics` in both isolation levels, sentinels left out.
pub(crate) fn serve(client: &Client, topics: &[&str]) -> Served {
    let mut out = BTreeMap::new();
    for iso in Isolation::BOTH {
        for (t, mut parts) in client.consume_many(topics, iso).unwrap() {
            for r in parts.values_mut() {
                r.records.retain(|r| r.key.as_deref() != Some(SENTINEL));
            }
            out.insert((t, iso), parts);
        }
    }
    out
}

/// The segments of a partition dir: base offset and `.log` path, in offset order.
pub(crate) fn segments(pdir: &Path) -> Vec<(i64, PathBuf)> {
    logdir::segments(pdir)
        .into_iter()
        .map(|b| (b, pdir.join(format!("{b:020}.log"))))
        .collect()
}

/// The log end offset of a partition dir: one past the last batch of its newest segment
/// (read with `segvault inspect`), or that segment's base offset when it holds none.
pub(crate) fn log_end(pdir: &Path) -> i64 {
    let (base, last) = segments(pdir)
        .pop()
        .expect("a partition dir without a segment");
    let (_, out, _) = segvault(
        &["inspect", "--format", "json", last.to_str().unwrap()],
        &[],
    );
    out.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["type"] == "batch")
        .map(|l| l["last_offset"].as_i64().unwrap() + 1)
        .max()
        .unwrap_or(base)
}

/// High watermarks from `replication-offset-checkpoint`, by partition dir name.
pub(crate) fn high_watermarks(log_dir: &Path) -> BTreeMap<String, i64> {
    logdir::checkpoint_so_far(&log_dir.join("replication-offset-checkpoint"))
        .into_iter()
        .map(|((topic, partition), hw)| (format!("{topic}-{partition}"), hw))
        .collect()
}

/// Appends sentinels until everything the workload wrote sits in closed, committed segments
/// of every partition (data topics, `__consumer_offsets`, `__transaction_state`), and (in
/// KRaft mode: a ZooKeeper-mode broker has no `__cluster_metadata-0`) the broker has taken a
/// KRaft snapshot that covers the topics. Topics roll by time
/// (`log.roll.ms`, or the workload's `segment.ms` against record timestamps): each round
/// appends one sentinel record to every partition still open, commits a sentinel group's
/// offset and runs a sentinel transaction, then the checkpoints are polled, with a deadline.
pub(crate) fn close_every_segment(
    client: &Client,
    log_dir: &Path,
    partitions: &BTreeMap<String, i32>,
) {
    client.create_topic(SENTINEL_TOPIC, 1, 1, &[]).unwrap();
    let ends: BTreeMap<String, i64> = partition_dirs(log_dir)
        .into_iter()
        .map(|d| {
            let e = log_end(&log_dir.join(&d));
            (d, e)
        })
        .collect();
    assert!(ends.contains_key("__consumer_offsets-0"), "{ends:?}");
    assert!(ends.contains_key("__transaction_state-0"), "{ends:?}");
    let kraft = log_dir.join("__cluster_metadata-0").is_dir();
    let meta_end = if kraft {
        log_end(&log_dir.join("__cluster_metadata-0"))
    } else {
        -1
    };
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let active = |d: &str| segments(&log_dir.join(d)).last().unwrap().0;
        let open: Vec<&String> = ends.keys().filter(|d| active(d) < ends[*d]).collect();
        let hw = high_watermarks(log_dir);
        let uncommitted: Vec<&String> = ends
            .keys()
            .filter(|d| hw.get(*d).copied().unwrap_or(-1) < active(d))
            .collect();
        let snapshot = logdir::newest_kraft_snapshot(log_dir);
        if open.is_empty() && uncommitted.is_empty() && snapshot >= meta_end {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "segments never closed: open {open:?}, above the checkpointed high watermark \
             {uncommitted:?}, newest KRaft snapshot {snapshot} < {meta_end}"
        );
        if open.is_empty() {
            std::thread::sleep(Duration::from_millis(250));
            continue;
        }
        let mut plan = Plan::new();
        plan.producer("sentinel", &[("acks", "all")]);
        plan.producer(
            "sentinel-txn",
            &[("transactional.id", "segvault-sentinel"), ("acks", "all")],
        );
        let send = |producer: &str, topic: &str, partition: i32| Send {
            producer: producer.into(),
            topic: topic.into(),
            partition: Some(partition),
            timestamp: None,
            key: Some(SENTINEL.to_vec()),
            value: Some(b"roll".to_vec()),
            headers: vec![],
            aborted: false,
        };
        for (topic, &n) in partitions {
            for p in 0..n {
                if open.iter().any(|d| **d == format!("{topic}-{p}")) {
                    plan.send(send("sentinel", topic, p));
                }
            }
        }
        plan.send(send("sentinel", SENTINEL_TOPIC, 0));
        plan.close("sentinel");
        plan.begin("sentinel-txn");
        plan.send(send("sentinel-txn", SENTINEL_TOPIC, 0));
        plan.commit("sentinel-txn");
        plan.close("sentinel-txn");
        client.run(&plan).unwrap();
        client
            .group_consume(
                SENTINEL_TOPIC,
                SENTINEL_TOPIC,
                1,
                Isolation::ReadUncommitted,
            )
            .unwrap();
    }
}

/// Asserts that `after` serves exactly the records of `before`, partition by partition and in
/// both isolation levels; returns how many records were compared.
pub(crate) fn assert_same_records(
    version: &str,
    before: &Served,
    after: &Served,
    what: &str,
) -> usize {
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "{version} {what}: other topics"
    );
    let mut compared = 0;
    for (k, parts) in before {
        assert_eq!(
            parts.keys().collect::<Vec<_>>(),
            after[k].keys().collect::<Vec<_>>(),
            "{version} {what} {k:?}: other partitions"
        );
        for (p, r) in parts {
            let now = &after[k][p].records;
            assert_eq!(
                now.len(),
                r.records.len(),
                "{version} {what} {k:?} {p}: record count"
            );
            assert!(
                *now == r.records,
                "{version} {what} {k:?} {p}: other records"
            );
            compared += now.len();
        }
    }
    compared
}

/// Every file under `dir` with its bytes, by relative path.
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    logdir::walk(dir)
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p.strip_prefix(dir).unwrap().to_path_buf(), bytes)
        })
        .collect()
}

/// Asserts that two trees hold the same files with the same bytes, `skip` (top-level names)
/// left out.
fn assert_same_tree(a: &Path, b: &Path, skip: &[&str], what: &str) {
    let keep = |t: BTreeMap<PathBuf, Vec<u8>>| -> BTreeMap<PathBuf, Vec<u8>> {
        t.into_iter()
            .filter(|(k, _)| !skip.iter().any(|s| k.starts_with(s)))
            .collect()
    };
    let (ta, tb) = (keep(tree(a)), keep(tree(b)));
    let only_a: Vec<_> = ta.keys().filter(|k| !tb.contains_key(*k)).collect();
    let only_b: Vec<_> = tb.keys().filter(|k| !ta.contains_key(*k)).collect();
    assert!(
        only_a.is_empty() && only_b.is_empty(),
        "{what}: only in {}: {only_a:?}; only in {}: {only_b:?}",
        a.display(),
        b.display()
    );
    for (k, v) in &ta {
        assert!(v == &tb[k], "{what}: {} differs", k.display());
    }
    assert!(ta.len() > 20, "{what}: only {} files", ta.len());
}

/// `(topic, partition) -> (log end, first offset of a transaction left open)` from a
/// restore's JSON report.
pub(crate) fn restored_ends(stdout: &str) -> BTreeMap<(String, i32), (i64, Option<i64>)> {
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

/// Base offset of the first v2 batch, over a partition dir's segments in order, whose max
/// timestamp is at or after `t` (header fields read by hand: base offset @0, length @8,
/// max timestamp @35).
fn first_batch_at_or_after(pdir: &Path, t: i64) -> Option<i64> {
    for (_, path) in segments(pdir) {
        let log = std::fs::read(path).unwrap();
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

/// Length of a node's log file now: what it logs after a restart starts there.
pub(crate) fn log_len(c: &Cluster) -> usize {
    std::fs::metadata(&c.node(1).unwrap().log_file)
        .unwrap()
        .len() as usize
}

pub(crate) fn log_since(c: &Cluster, from: usize) -> String {
    let log = std::fs::read(&c.node(1).unwrap().log_file).unwrap();
    String::from_utf8_lossy(&log[from.min(log.len())..]).into_owned()
}

// Over 120 lines on purpose: one scenario against real brokers, each step working on the
// state the previous step left (split, its parts could only be called in this order).
fn round_trip(version: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(&["archive"]).unwrap();
    let stores = Stores {
        file: format!("file://{}", tmp.path().join("store").display()),
        s3: "s3://archive/kafka".into(),
        s3_env: s3.env(),
        _s3: s3,
    };

    // ---- a broker runs every workload; everything it wrote is rolled and archived -------------
    let spec = ClusterSpec::combined(version)
        .config("offsets.topic.num.partitions", 1)
        .config("transaction.state.log.num.partitions", 1)
        .config("metadata.log.max.snapshot.interval.ms", 2000)
        .config("log.index.size.max.bytes", 8192)
        .config("log.roll.ms", 2000)
        // The two stores are archived seconds apart and their restores are compared byte
        // for byte: a cleaner round between the passes would give them different (both
        // valid) generations of the compacted internal topics. Archiving while the cleaner
        // rewrites segments is tested on its own (archive_races.rs, archive_kafka.rs).
        .config("log.cleaner.enable", false);
    let mut a = Cluster::start(spec).unwrap();
    let client = a.client();
    let base_ts = now_ms() - 600_000;
    let workload = workload::standard(SCALE, base_ts);
    let run = workload.run(&client, 1).unwrap();
    run.check(&client).unwrap();
    let log_dir = a.log_dirs(1).unwrap()[0].clone();
    close_every_segment(&client, &log_dir, &run.partitions);
    let topics: Vec<&str> = run.partitions.keys().map(String::as_str).collect();
    let before = serve(&client, &topics);
    for ((t, iso), parts) in run.expected() {
        let got: TopicDigest = before[&(t.clone(), iso)]
            .iter()
            .map(|(p, r)| (*p, PartitionDigest::of(&r.records)))
            .collect();
        assert_eq!(got, parts, "{version} {t} {iso:?}: served before archiving");
    }
    for (url, env) in [(&stores.file, &[][..]), (&stores.s3, &stores.s3_env[..])] {
        let total = archive_settled(url, &log_dir, env);
        for k in [
            "unarchived_committed_segments",
            "gaps",
            "corrupt",
            "divergences",
        ] {
            assert_eq!(total[k], 0, "{version} {url}: {k} in {total}");
        }
    }

    // ---- 1. bare metal: the node is lost and rebuilt from the S3 archive alone ----------------
    a.kill(1).unwrap();
    std::fs::remove_dir_all(&log_dir).unwrap();
    let out = segvault_ok(
        &[
            "restore",
            &stores.s3,
            "--to",
            log_dir.to_str().unwrap(),
            "--mode",
            "bare-metal",
            "--format",
            "json",
        ],
        &stores.s3_env,
    );
    let ends = restored_ends(&out);
    let total: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(total["clean_shutdown"], "written", "{total}");
    // Every partition of the workload comes back, and the internal topics' (the sentinel
    // topic's only if one of its segments rolled before archiving).
    for (t, &n) in run.partitions.iter().chain([
        (&"__consumer_offsets".to_string(), &1),
        (&"__transaction_state".to_string(), &1),
    ]) {
        for p in 0..n {
            assert!(
                ends.contains_key(&(t.clone(), p)),
                "{version}: {t}-{p} not restored: {ends:?}"
            );
        }
    }
    let from_file = tmp.path().join("bare-metal-from-file");
    segvault_ok(
        &[
            "restore",
            &stores.file,
            "--to",
            from_file.to_str().unwrap(),
            "--mode",
            "bare-metal",
        ],
        &[],
    );
    // The broker takes a KRaft snapshot every 2 s, so the two archive passes (seconds apart)
    // may hold different newest snapshots: the metadata log is left out of this comparison.
    assert_same_tree(
        &log_dir,
        &from_file,
        &["__cluster_metadata-0"],
        "bare-metal restore, S3 store vs filesystem store",
    );

    let mark = log_len(&a);
    a.restart(1).unwrap();
    let client = a.client();
    let after = serve(&client, &topics);
    let compared = assert_same_records(version, &before, &after, "bare metal");
    assert!(
        compared > 1000,
        "{version}: only {compared} records compared"
    );
    let groups = client.group_offsets().unwrap();
    for (g, off) in &run.committed {
        assert_eq!(
            groups.get(g),
            Some(off),
            "{version}: committed offset of {g:?} after a bare-metal restore"
        );
    }
    assert!(run.committed.len() >= 3, "{:?}", run.committed);
    // The broker found every CRC verified (recovery point at the log end): nothing recovered.
    let restart_log = log_since(&a, mark);
    assert!(
        restart_log.contains("Kafka Server started"),
        "{version}: no start in the log after the restore"
    );
    // Checked at the end, so that one run shows every finding.
    let recovered: Vec<String> = restart_log
        .lines()
        .filter(|l| {
            l.contains("Recovering")
                || l.contains("unflushed")
                || BAD_LOG_LINES.iter().any(|b| l.contains(b))
        })
        .map(str::to_string)
        .collect();
    eprintln!(
        "{version}: bare metal: {compared} records and {} group offsets served as before",
        run.committed.len()
    );

    // ---- 2. point in time: the node as it was at T --------------------------------------------
    let t = base_ts + 61_000;
    a.kill(1).unwrap();
    let at_t = tmp.path().join("at-t");
    let out = segvault_ok(
        &[
            "restore",
            &stores.file,
            "--to",
            at_t.to_str().unwrap(),
            "--until-time",
            &t.to_string(),
            "--format",
            "json",
        ],
        &[],
    );
    let cut_ends = restored_ends(&out);
    let mut cut_inside = 0;
    for ((topic, p), (end, _)) in &cut_ends {
        let full = ends[&(topic.clone(), *p)].0;
        let want =
            first_batch_at_or_after(&from_file.join(format!("{topic}-{p}")), t).unwrap_or(full);
        assert_eq!(*end, want, "{version} {topic}-{p}: cut at {t}");
        cut_inside += (want < full) as usize;
    }
    assert!(
        cut_inside >= 8,
        "{version}: T cut only {cut_inside} partitions"
    );
    let mark = log_len(&a);
    a.restart_on(1, std::slice::from_ref(&at_t)).unwrap();
    let client = a.client();
    let at = serve(&client, &topics);
    assert_log_clean(&a, 1, mark, &[], &format!("{version} point in time"));
    let (mut kept, mut open_at_cut) = (0, 0);
    for ((topic, iso), parts) in &at {
        for (p, r) in parts {
            let (mut end, open) = cut_ends[&(topic.clone(), *p)];
            // A transaction the cut leaves open (its marker came after T) keeps the producer
            // state of a bare-metal restore: read_committed stops at its first offset.
            if let (Isolation::ReadCommitted, Some(first)) = (iso, open) {
                assert_eq!(
                    r.end_offset, first,
                    "{version} {topic}-{p}: last stable offset"
                );
                end = first;
                open_at_cut += 1;
            }
            let want = below(&before[&(topic.clone(), *iso)][p], end);
            assert!(
                r.records.iter().collect::<Vec<_>>() == want,
                "{version} {topic}-{p} {iso:?}: records before {t}"
            );
            if let Some(late) = r.records.iter().find(|r| r.timestamp >= t) {
                panic!(
                    "{version} {topic}-{p} {iso:?}: record at {} has timestamp {} >= {t}",
                    late.offset, late.timestamp
                );
            }
            kept += r.records.len();
        }
    }
    assert!(kept > 200, "{version}: only {kept} records before T");
    let groups = client.group_offsets().unwrap();
    for g in run.committed.keys() {
        assert_eq!(
            groups.get(g),
            None,
            "{version}: {g:?} was committed after T"
        );
    }
    eprintln!(
        "{version}: point in time: {kept} records before {t} served, nothing after; \
         {open_at_cut} partitions with a transaction open at the cut"
    );
    drop(a);

    // ---- 3. new cluster: another cluster creates the topics, then takes the archive -----------
    let mut b = Cluster::start(ClusterSpec::combined(version)).unwrap();
    let target = create_topics(&b, &workload, 1)[0].1.clone();
    let want: usize = run.partitions.values().sum::<i32>() as usize;
    let ids_before = topic_ids(&target);
    b.stop(1).unwrap();
    let copy = tmp.path().join("new-cluster-copy");
    copy_dir(&target, &copy, &[]).unwrap();
    let selection = "^(codec-.*|idempotent|txn|log-append-time)$";
    let out = segvault_ok(
        &[
            "restore",
            &stores.file,
            "--to",
            target.to_str().unwrap(),
            "--mode",
            "new-cluster",
            "--topic",
            selection,
            "--format",
            "json",
        ],
        &[],
    );
    let new_ends = restored_ends(&out);
    // The new cluster's broker stopped cleanly; its marker stays.
    let total: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(total["clean_shutdown"], "kept", "{total}");
    assert_eq!(new_ends.len(), want, "{new_ends:?}");
    segvault_ok(
        &[
            "restore",
            &stores.s3,
            "--to",
            copy.to_str().unwrap(),
            "--mode",
            "new-cluster",
            "--topic",
            selection,
        ],
        &stores.s3_env,
    );
    // `.lock` is the broker's; the copy has none.
    let _ = std::fs::remove_file(target.join(".lock"));
    assert_same_tree(
        &target,
        &copy,
        &[],
        "new-cluster restore, filesystem store vs S3 store",
    );
    assert_eq!(
        topic_ids(&target),
        ids_before,
        "the new cluster's topic ids are kept"
    );

    let mark = log_len(&b);
    b.restart(1).unwrap();
    let client = b.client();
    let served = serve(&client, &topics);
    assert_same_records(version, &before, &served, "new cluster");

    // New records continue every restored partition at its end.
    let parts = new_ends.keys().map(|(t, p)| (t.as_str(), *p));
    for ack in &append_one_each(&client, b"after-restore", parts) {
        let (end, _) = new_ends[&(ack.topic.clone(), ack.partition)];
        assert_eq!(
            ack.offset, end,
            "{version} {}-{}: the new record's offset",
            ack.topic, ack.partition
        );
    }
    let again = serve(&client, &topics);
    for ((topic, iso), parts) in &again {
        for (p, r) in parts {
            let new: Vec<&Record> = r
                .records
                .iter()
                .filter(|r| r.key.as_deref() == Some(b"after-restore"))
                .collect();
            assert_eq!(
                new.len(),
                1,
                "{version} {topic}-{p} {iso:?}: the new record is not served once"
            );
            let old: Vec<&Record> = r
                .records
                .iter()
                .filter(|r| r.key.as_deref() != Some(b"after-restore"))
                .collect();
            assert!(
                old == before[&(topic.clone(), *iso)][p]
                    .records
                    .iter()
                    .collect::<Vec<_>>(),
                "{version} {topic}-{p} {iso:?}: restored records changed after new writes"
            );
        }
    }
    assert_log_clean(&b, 1, mark, &[], &format!("{version} new cluster"));
    eprintln!("{version}: new cluster serves the archive and continues every partition");
    assert!(
        recovered.is_empty(),
        "{version}: the broker recovered segments of the bare-metal restored dir, or logged errors:\n{}",
        recovered.join("\n")
    );
}

/// The records of `r` below offset `end`.
fn below(r: &PartitionRecords, end: i64) -> Vec<&Record> {
    r.records.iter().filter(|r| r.offset < end).collect()
}

/// What a broker must never log after starting on a restored dir.
const BAD_LOG_LINES: [&str; 7] = [
    "Truncation detected",
    "OFFSET_OUT_OF_RANGE",
    "marked stray",
    "InconsistentTopicId",
    // Any ERROR, and any segment recovered at start (a missing index, an unclean shutdown).
    " ERROR ",
    "recovering segment",
    "Recovering unflushed segment",
];

/// Asserts that node `id` logged none of [`BAD_LOG_LINES`] (nor `extra`) since byte `mark`;
/// the failure quotes every line that did.
pub(crate) fn assert_log_clean(c: &Cluster, id: u32, mark: usize, extra: &[&str], what: &str) {
    let log = std::fs::read(&c.node(id).unwrap().log_file).unwrap();
    let log = String::from_utf8_lossy(&log[mark.min(log.len())..]);
    // The Raft layer opens the metadata log with recovery point 0 and no clean shutdown
    // (`KafkaMetadataLog.apply`), so it recovers `__cluster_metadata-0` at every start,
    // restored or not.
    let bad: Vec<&str> = log
        .lines()
        .filter(|l| BAD_LOG_LINES.iter().chain(extra).any(|b| l.contains(b)))
        .filter(|l| {
            !(l.contains("Recovering unflushed segment")
                && l.contains("partition=__cluster_metadata-0"))
        })
        .collect();
    assert!(
        bad.is_empty(),
        "{what}: broker {id} logged:\n{}",
        bad.join("\n")
    );
}

/// Polls until partition dir `d` holds the same batch bytes in every log dir of `dirs`, for
/// every `d` of `names`.
fn wait_same_bytes(dirs: &[PathBuf], names: &[String], what: &str) {
    wait_until_agree(names, &format!("{what}: replicas still differ"), |d| {
        let first = log_stream(&dirs[0].join(d));
        dirs[1..].iter().any(|x| log_stream(&x.join(d)) != first)
    });
}

/// Polls until partition dir `d` ends at the same offset in `a` and `b`, for every `d` of
/// `names`.
fn wait_same_end(a: &Path, b: &Path, names: &[String], what: &str) {
    wait_until_agree(names, &format!("{what}: replicas still end apart"), |d| {
        log_end(&a.join(d)) != log_end(&b.join(d))
    });
}

/// Polls (two minutes at most) until `differs` is false for every name; fails with `failure`
/// and the names that still differ.
fn wait_until_agree(names: &[String], failure: &str, differs: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let differ: Vec<&String> = names.iter().filter(|d| differs(d)).collect();
        if differ.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "{failure}: {differ:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Creates the workload's topics in cluster `b` with replication factor `rf` and waits until
/// every broker has made their partition dirs (as the metadata reaches it). Returns each
/// broker's id and log dir.
pub(crate) fn create_topics(
    b: &Cluster,
    workload: &workload::Workload,
    rf: i16,
) -> Vec<(u32, PathBuf)> {
    let client = b.client();
    for t in &workload.topics {
        let cfg: Vec<(&str, &str)> = t
            .configs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        client
            .create_topic(&t.name, t.partitions, rf, &cfg)
            .unwrap();
    }
    let want: usize = workload.topics.iter().map(|t| t.partitions as usize).sum();
    let dirs: Vec<(u32, PathBuf)> = b
        .broker_ids()
        .into_iter()
        .map(|id| (id, b.log_dirs(id).unwrap()[0].clone()))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while dirs
        .iter()
        .any(|(_, d)| topic_ids(d).keys().filter(|k| !k.starts_with("__")).count() < want)
    {
        assert!(Instant::now() < deadline, "partition dirs never appeared");
        std::thread::sleep(Duration::from_millis(100));
    }
    dirs
}

/// Appends one record with `key` to each of `parts` (acks=all); returns the acks.
pub(crate) fn append_one_each<'a>(
    client: &Client,
    key: &[u8],
    parts: impl IntoIterator<Item = (&'a str, i32)>,
) -> Vec<segvault_harness::client::Ack> {
    let mut plan = Plan::new();
    plan.producer("one-each", &[("acks", "all")]);
    for (topic, p) in parts {
        plan.send(Send {
            producer: "one-each".into(),
            topic: topic.into(),
            partition: Some(p),
            timestamp: None,
            key: Some(key.to_vec()),
            value: Some(format!("{topic}-{p}").into_bytes()),
            headers: vec![],
            aborted: false,
        });
    }
    plan.close("one-each");
    client.run(&plan).unwrap().acks
}

/// `topic-partition -> partition.metadata` of every partition dir in a log dir.
pub(crate) fn topic_ids(log_dir: &Path) -> BTreeMap<String, String> {
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
fn bare_metal_point_in_time_and_new_cluster_3_9_2() {
    let _machine = crate::common::machine::shared();
    round_trip("3.9.2");
}

#[test]
fn bare_metal_point_in_time_and_new_cluster_4_4_0() {
    let _machine = crate::common::machine::shared();
    round_trip("4.4.0");
}

/// The batches of a partition dir as one byte stream: every `.log` file in offset order.
fn log_stream(pdir: &Path) -> Vec<u8> {
    segments(pdir)
        .into_iter()
        .flat_map(|(_, p)| std::fs::read(p).unwrap())
        .collect()
}

/// Bare metal in a real cluster (`kafka-format.md` §6 (a) 5): one broker of three (RF 3, a
/// separate controller) is archived, lost, and rebuilt from the archive while its peers go on
/// taking writes. Restarted on the restored dir it rejoins as a follower, behind the leaders,
/// and catches up: every partition it holds ends up with the same batch bytes as the other
/// replicas, the restored prefix included, with no divergence and no "Truncation detected".
#[test]
// Over 120 lines on purpose: one scenario against real brokers, each step working on the
// state the previous step left (split, its parts could only be called in this order).
fn a_lost_broker_of_three_is_rebuilt_and_catches_up_4_4_0() {
    let _machine = crate::common::machine::shared();
    let version = "4.4.0";
    let tmp = tempfile::tempdir().unwrap();
    let store = format!("file://{}", tmp.path().join("store").display());
    let spec = ClusterSpec::cluster(version, 3, 1)
        .config("offsets.topic.num.partitions", 1)
        .config("transaction.state.log.num.partitions", 1)
        .config("metadata.log.max.snapshot.interval.ms", 2000)
        .config("replica.high.watermark.checkpoint.interval.ms", 500)
        .config("log.index.size.max.bytes", 8192)
        .config("log.roll.ms", 2000);
    let mut c = Cluster::start(spec).unwrap();
    let brokers = c.broker_ids();
    let (lost, peer) = (brokers[1], brokers[0]);
    let client = c.client();
    let workload = workload::standard(60, now_ms() - 600_000);
    let run = workload.run(&client, 3).unwrap();
    let lost_dir = c.log_dirs(lost).unwrap()[0].clone();
    close_every_segment(&client, &lost_dir, &run.partitions);
    let total = archive_settled(&store, &lost_dir, &[]);
    assert_eq!(total["unarchived_committed_segments"], 0, "{total}");

    // The broker is lost; its peers go on taking writes.
    c.kill(lost).unwrap();
    std::fs::remove_dir_all(&lost_dir).unwrap();
    append_one_each(
        &client,
        b"while-lost",
        run.partitions
            .iter()
            .flat_map(|(t, &n)| (0..n).map(move |p| (t.as_str(), p))),
    );

    let out = segvault_ok(
        &[
            "restore",
            &store,
            "--to",
            lost_dir.to_str().unwrap(),
            "--mode",
            "bare-metal",
            "--format",
            "json",
        ],
        &[],
    );
    let ends = restored_ends(&out);
    assert!(
        ends.len() >= run.partitions.values().sum::<i32>() as usize,
        "{ends:?}"
    );
    // Every replicated partition (the sentinel topic has one replica, wherever it landed).
    let peer_dir = c.log_dirs(peer).unwrap()[0].clone();
    let restored: BTreeMap<String, Vec<u8>> = ends
        .keys()
        .map(|(t, p)| format!("{t}-{p}"))
        .filter(|d| peer_dir.join(d).is_dir())
        .map(|d| {
            let s = log_stream(&lost_dir.join(&d));
            (d, s)
        })
        .collect();
    assert!(restored.len() >= run.partitions.values().sum::<i32>() as usize + 2);
    let mark = std::fs::metadata(&c.node(lost).unwrap().log_file)
        .unwrap()
        .len() as usize;
    c.restart(lost).unwrap();

    // Caught up: the same batch bytes as the peer's replica, partition by partition.
    // The internal topics are compacted by each broker's own cleaner, at its own time: their
    // replicas hold the same records but not always the same bytes, so they are caught up when
    // their log ends agree; every other partition must hold the same batch bytes.
    let (internal, names): (Vec<String>, Vec<String>) =
        restored.keys().cloned().partition(|d| d.starts_with("__"));
    wait_same_bytes(&[lost_dir.clone(), peer_dir.clone()], &names, version);
    wait_same_end(&lost_dir, &peer_dir, &internal, version);
    // Every workload partition grew past its restored end (the writes made while the broker
    // was lost), and kept the restored bytes as they were. (The internal topics are compacted:
    // their replicas are equal, but each broker's cleaner may rewrite its own segments.)
    for (d, before) in restored.iter().filter(|(d, _)| !d.starts_with("__")) {
        let now = log_stream(&lost_dir.join(d));
        assert!(
            now.len() > before.len(),
            "{version} {d}: did not catch up past the restore"
        );
        assert!(
            now.starts_with(before),
            "{version} {d}: the restored prefix changed"
        );
    }
    let what = format!("{version} rebuilt broker");
    assert_log_clean(&c, lost, mark, &["Recovering unflushed segment"], &what);
    eprintln!(
        "{version}: broker {lost} rebuilt from the archive caught up on {} partitions",
        restored.len()
    );

    // ---- the same archive into a new three-broker cluster, one identical copy per replica ----
    // (§6 (b) 3: every replica gets the restored data, so whichever is elected leader holds it.)
    let topics: Vec<&str> = run.partitions.keys().map(String::as_str).collect();
    let source = serve(&client, &topics);
    drop(c);
    let mut b = Cluster::start(ClusterSpec::cluster(version, 3, 1)).unwrap();
    let dirs = create_topics(&b, &workload, 3);
    let want: usize = run.partitions.values().sum::<i32>() as usize;
    for (id, _) in &dirs {
        b.stop(*id).unwrap();
    }
    let selection = "^(codec-.*|idempotent|txn|log-append-time)$";
    let mut new_ends = BTreeMap::new();
    for (_, d) in &dirs {
        let out = segvault_ok(
            &[
                "restore",
                &store,
                "--to",
                d.to_str().unwrap(),
                "--mode",
                "new-cluster",
                "--topic",
                selection,
                "--format",
                "json",
            ],
            &[],
        );
        new_ends = restored_ends(&out);
        assert_eq!(new_ends.len(), want, "{new_ends:?}");
    }
    let marks: Vec<usize> = dirs
        .iter()
        .map(|(id, _)| {
            std::fs::metadata(&b.node(*id).unwrap().log_file)
                .unwrap()
                .len() as usize
        })
        .collect();
    for (id, _) in &dirs {
        b.restart(*id).unwrap();
    }
    let client = b.client();
    let served = serve(&client, &topics);
    let mut compared = 0;
    for ((topic, iso), parts) in &served {
        for (p, r) in parts {
            let end = new_ends[&(topic.clone(), *p)].0;
            let want = below(&source[&(topic.clone(), *iso)][p], end);
            assert!(
                r.records.iter().collect::<Vec<_>>() == want,
                "{version} {topic}-{p} {iso:?}: the new cluster serves other records"
            );
            compared += want.len();
        }
    }
    assert!(
        compared > 500,
        "{version}: only {compared} records compared"
    );
    // New records, acknowledged by all three replicas, continue every partition at its end.
    let parts = new_ends.keys().map(|(t, p)| (t.as_str(), *p));
    for ack in &append_one_each(&client, b"after-restore", parts) {
        let (end, _) = new_ends[&(ack.topic.clone(), ack.partition)];
        assert_eq!(
            ack.offset, end,
            "{version} {}-{}: new record's offset",
            ack.topic, ack.partition
        );
    }
    // The three replicas hold the same bytes (polled: followers fetch the new record).
    let names: Vec<String> = new_ends.keys().map(|(t, p)| format!("{t}-{p}")).collect();
    let log_dirs: Vec<PathBuf> = dirs.iter().map(|(_, d)| d.clone()).collect();
    wait_same_bytes(&log_dirs, &names, version);
    for ((id, _), mark) in dirs.iter().zip(marks) {
        assert_log_clean(
            &b,
            *id,
            mark,
            &[],
            &format!("{version} new 3-broker cluster"),
        );
    }
    eprintln!("{version}: a new 3-broker cluster serves {compared} restored records from identical replicas");
}
