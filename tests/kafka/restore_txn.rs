//! A transaction open at the archived end, restored in every mode and checked against the
//! source broker after the source aborted it.
//!
//! A real broker holds, per partition, committed and aborted transactions and plain records,
//! then a transaction that is still open when its segment rolls: the archive ends inside it,
//! and its ABORT marker lands in the unarchived active segment. On partition 0 a second
//! transaction begun before it commits after its first record, so ending the log at the open
//! transaction's first offset would leave that one open in turn.
//!
//! - **Bare metal** (the archived producer state is placed): read_committed consumers stop at
//!   the open transaction's first offset (the broker knows it is open), read_uncommitted
//!   serves everything archived.
//! - **Point in time inside the open transaction** (no archived producer snapshot reaches the
//!   cut log): the broker rebuilds producer state from the log and stops read_committed there
//!   too.
//! - **New cluster** (no producer state): every partition ends where no transaction was open,
//!   the report says where and why, and both isolation levels serve exactly the source's
//!   records below that offset; new records continue there.
//!
//! In every mode the restarted broker logs no ERROR and recovers no segment.

use crate::restore_kafka::{
    archive_settled, assert_log_clean, high_watermarks, log_end, log_len, segments, segvault_ok,
};
use segvault_harness::client::PartitionRecords;
use segvault_harness::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

const TOPIC: &str = "open-txn";
const PARTITIONS: i32 = 2;

fn send(producer: &str, partition: i32, key: &str) -> Send {
    Send {
        producer: producer.into(),
        topic: TOPIC.into(),
        partition: Some(partition),
        timestamp: None,
        key: Some(key.as_bytes().to_vec()),
        value: Some(format!("value of {key}").into_bytes()),
        headers: vec![],
        aborted: false,
    }
}

/// The workload, up to the hand-over: the transaction of producer `open` stays open until
/// the test creates `go`; `ready` is created once its records are on the broker.
fn workload(ready: &Path, go: &Path) -> Plan {
    let mut plan = Plan::new();
    plan.producer("plain", &[("acks", "all")]);
    for (name, id) in [
        ("committed", "t-committed"),
        ("aborted", "t-aborted"),
        ("straddle", "t-straddle"),
        ("open", "t-open"),
    ] {
        plan.producer(
            name,
            &[
                ("transactional.id", id),
                ("acks", "all"),
                ("transaction.timeout.ms", "600000"),
            ],
        );
    }
    for p in 0..PARTITIONS {
        for i in 0..5 {
            plan.send(send("plain", p, &format!("plain-{p}-{i}")));
        }
    }
    plan.flush("plain");
    plan.begin("committed");
    for p in 0..PARTITIONS {
        for i in 0..5 {
            plan.send(send("committed", p, &format!("committed-{p}-{i}")));
        }
    }
    plan.commit("committed");
    plan.begin("aborted");
    for p in 0..PARTITIONS {
        for i in 0..3 {
            plan.send(send("aborted", p, &format!("aborted-{p}-{i}")));
        }
    }
    plan.abort("aborted");
    // Partition 0: a transaction begun before the open one and committed after its start.
    plan.begin("straddle");
    plan.send(send("straddle", 0, "straddle-0"));
    plan.flush("straddle");
    plan.begin("open");
    // One batch per record, so that a cut can fall inside the transaction.
    for i in 0..4 {
        for p in 0..PARTITIONS {
            plan.send(send("open", p, &format!("open-{p}-{i}")));
        }
        plan.flush("open");
    }
    plan.send(send("straddle", 0, "straddle-1"));
    plan.commit("straddle");
    for p in 0..PARTITIONS {
        plan.send(send("plain", p, &format!("after-open-{p}")));
    }
    plan.flush("plain");
    plan.signal(ready);
    plan.await_file(go);
    plan.abort("open");
    plan
}

/// Polls (two minutes at most) until `cond` holds.
pub(crate) fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Rolls every partition of the topic past `ends` (one record per round to each partition
/// not rolled yet; the topic rolls by `segment.ms`), then waits until the checkpointed high
/// watermark covers the closed segments and a KRaft snapshot covers the topic.
fn roll_past(client: &Client, log_dir: &Path, ends: &BTreeMap<i32, i64>) {
    let active = |p: i32| {
        segments(&log_dir.join(format!("{TOPIC}-{p}")))
            .last()
            .unwrap()
            .0
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let open: Vec<i32> = ends
            .keys()
            .copied()
            .filter(|p| active(*p) < ends[p])
            .collect();
        if open.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{TOPIC}: partitions {open:?} never rolled"
        );
        let mut plan = Plan::new();
        plan.producer("roller", &[("acks", "all")]);
        for p in open {
            plan.send(send("roller", p, "roll"));
        }
        client.run(&plan).unwrap();
        std::thread::sleep(Duration::from_millis(500));
    }
    let names: Vec<String> = ends.keys().map(|p| format!("{TOPIC}-{p}")).collect();
    wait_archivable(log_dir, &names);
}

/// Waits until the checkpointed high watermark of each partition dir of `names` reaches its
/// active segment (every closed segment is committed, so archived) and a KRaft snapshot
/// covers the metadata log as it is now (the topics and their configs).
pub(crate) fn wait_archivable(log_dir: &Path, names: &[String]) {
    let active = |d: &str| segments(&log_dir.join(d)).last().unwrap().0;
    wait_for("the high watermark checkpoint", || {
        let hw = high_watermarks(log_dir);
        names
            .iter()
            .all(|d| hw.get(d).copied().unwrap_or(-1) >= active(d))
    });
    let meta_end = log_end(&log_dir.join("__cluster_metadata-0"));
    wait_for("a KRaft snapshot", || {
        crate::common::logdir::newest_kraft_snapshot(log_dir) >= meta_end
    });
}

type Views = BTreeMap<(Isolation, i32), PartitionRecords>;

fn views(client: &Client) -> Views {
    let mut out = BTreeMap::new();
    for iso in Isolation::BOTH {
        for (p, r) in client.consume(TOPIC, iso).unwrap() {
            out.insert((iso, p), r);
        }
    }
    out
}

/// The source's records of partition `p` in `iso` below `end`.
fn below(source: &Views, iso: Isolation, p: i32, end: i64) -> Vec<Record> {
    source[&(iso, p)]
        .records
        .iter()
        .filter(|r| r.offset < end)
        .cloned()
        .collect()
}

/// The offset of the record keyed `key` in what the source serves read_uncommitted.
fn offset_of(source: &Views, p: i32, key: &str) -> i64 {
    source[&(Isolation::ReadUncommitted, p)]
        .records
        .iter()
        .find(|r| r.key.as_deref() == Some(key.as_bytes()))
        .unwrap_or_else(|| panic!("{key} not served"))
        .offset
}

/// Where a log without producer state must end, from the source's batches below `end` (read
/// with `segvault inspect`): the greatest batch offset at or below `open_first` that no
/// transaction spans (begun below it, its marker at or above it, or none).
fn stable_end_of(pdir: &Path, end: i64, open_first: i64) -> i64 {
    // Per producer: the first offset of its transaction, then its marker's offset.
    let mut spans: Vec<(i64, i64)> = Vec::new();
    let mut begun: BTreeMap<i64, i64> = BTreeMap::new();
    let mut bases = vec![open_first];
    for (_, log) in segments(pdir) {
        // Exit 0: the source's segments are whole, their ABORTs in their `.txnindex`.
        let out = segvault_ok(&["inspect", "--format", "json", log.to_str().unwrap()], &[]);
        for b in out
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        {
            if b["type"] != "batch" || b["base_offset"].as_i64().unwrap() >= end {
                continue;
            }
            let (base, pid) = (
                b["base_offset"].as_i64().unwrap(),
                b["producer_id"].as_i64().unwrap(),
            );
            bases.push(base);
            if b["control"] == true {
                if let Some(first) = begun.remove(&pid) {
                    spans.push((first, base));
                }
            } else if b["transactional"] == true {
                begun.entry(pid).or_insert(base);
            }
        }
    }
    spans.extend(begun.values().map(|&f| (f, i64::MAX)));
    bases
        .into_iter()
        .filter(|&x| x <= open_first && !spans.iter().any(|&(f, m)| f < x && m >= x))
        .max()
        .unwrap()
}

/// The partition reports of a JSON restore, by partition.
fn reports(stdout: &str) -> BTreeMap<i32, Value> {
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["type"] == "partition" && l["report"]["topic"] == TOPIC)
        .map(|l| {
            (
                l["report"]["partition"].as_i64().unwrap() as i32,
                l["report"].clone(),
            )
        })
        .collect()
}

fn restore(store: &str, to: &Path, extra: &[&str]) -> String {
    let mut args = vec![
        "restore",
        store,
        "--to",
        to.to_str().unwrap(),
        "--format",
        "json",
    ];
    args.extend_from_slice(extra);
    segvault_ok(&args, &[])
}

fn open_transaction_at_the_archived_end(version: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let store = format!("file://{}", tmp.path().join("store").display());
    let spec = ClusterSpec::combined(version)
        .config("offsets.topic.num.partitions", 1)
        .config("transaction.state.log.num.partitions", 1)
        .config("metadata.log.max.snapshot.interval.ms", 2000)
        .config("replica.high.watermark.checkpoint.interval.ms", 500)
        .config("log.cleaner.enable", false);
    let mut a = Cluster::start(spec).unwrap();
    let client = a.client();
    client
        .create_topic(TOPIC, PARTITIONS, 1, &[("segment.ms", "3000")])
        .unwrap();
    let log_dir = a.log_dirs(1).unwrap()[0].clone();

    // ---- the workload runs up to the open transaction, which stays open -------------------
    let (ready, go) = (tmp.path().join("ready"), tmp.path().join("go"));
    let plan = workload(&ready, &go);
    let producer = {
        let client = client.clone();
        std::thread::spawn(move || client.run(&plan))
    };
    wait_for("the open transaction's records", || {
        ready.exists() || producer.is_finished()
    });
    assert!(
        ready.exists(),
        "the workload ended early: {:?}",
        producer.join()
    );
    let ends: BTreeMap<i32, i64> = (0..PARTITIONS)
        .map(|p| (p, log_end(&log_dir.join(format!("{TOPIC}-{p}")))))
        .collect();
    roll_past(&client, &log_dir, &ends);
    archive_settled(&store, &log_dir, &[]);
    // ---- then the source aborts it: its marker is in the unarchived active segment ---------
    std::fs::write(&go, b"").unwrap();
    producer.join().unwrap().unwrap();
    let source = views(&client);
    let archived_end = |p: i32| {
        segments(&log_dir.join(format!("{TOPIC}-{p}")))
            .last()
            .unwrap()
            .0
    };
    let archived: BTreeMap<i32, i64> = (0..PARTITIONS).map(|p| (p, archived_end(p))).collect();
    let open_first: BTreeMap<i32, i64> = (0..PARTITIONS)
        .map(|p| (p, offset_of(&source, p, &format!("open-{p}-0"))))
        .collect();
    let stable_end: BTreeMap<i32, i64> = (0..PARTITIONS)
        .map(|p| {
            let pdir = log_dir.join(format!("{TOPIC}-{p}"));
            (p, stable_end_of(&pdir, archived[&p], open_first[&p]))
        })
        .collect();
    for p in 0..PARTITIONS {
        // The archive ends inside the open transaction, whose records the source aborted.
        assert!(
            open_first[&p] < archived[&p],
            "{version} p{p}: {open_first:?} {archived:?}"
        );
        let rc = &source[&(Isolation::ReadCommitted, p)].records;
        assert!(
            !rc.iter()
                .any(|r| r.key.as_deref().is_some_and(|k| k.starts_with(b"open-"))),
            "{version} p{p}: the source serves the aborted records read_committed"
        );
        assert!(rc
            .iter()
            .any(|r| r.offset > open_first[&p] && r.offset < archived[&p]));
    }
    // Partition 0's straddling transaction began before the open one.
    assert!(
        stable_end[&0] <= offset_of(&source, 0, "straddle-0"),
        "{stable_end:?} {open_first:?}"
    );

    // ---- 1. bare metal: producer state restored, read_committed stops at the open one -------
    a.kill(1).unwrap();
    std::fs::remove_dir_all(&log_dir).unwrap();
    let out = restore(&store, &log_dir, &["--mode", "bare-metal"]);
    let got = reports(&out);
    for p in 0..PARTITIONS {
        assert_eq!(
            got[&p]["log_end_offset"], archived[&p],
            "{version} p{p}: {}",
            got[&p]
        );
        let open = got[&p]["open_transactions"].as_array().unwrap();
        assert_eq!(open.len(), 1, "{version} p{p}: {}", got[&p]);
        assert_eq!(open[0][1], open_first[&p], "{version} p{p}: {}", got[&p]);
        assert!(got[&p]["open_transactions_cut"].is_null(), "{}", got[&p]);
    }
    let mark = log_len(&a);
    a.restart(1).unwrap();
    check_served(
        version,
        "bare metal",
        &a.client(),
        &source,
        &archived,
        &open_first,
    );
    assert_log_clean(&a, 1, mark, &[], &format!("{version} bare metal"));

    // ---- 2. point in time inside the open transaction: no archived snapshot reaches it -----
    a.kill(1).unwrap();
    let at = tmp.path().join("point-in-time");
    let cut = open_first[&1] + 2;
    let out = restore(
        &store,
        &at,
        &[
            "--mode",
            "bare-metal",
            "--topic",
            &format!("^{TOPIC}$"),
            "--partition",
            "1",
            "--until-offset",
            &cut.to_string(),
        ],
    );
    let got = reports(&out);
    assert_eq!(got[&1]["log_end_offset"], cut, "{version}: {}", got[&1]);
    let mark = log_len(&a);
    a.restart_on(1, std::slice::from_ref(&at)).unwrap();
    let client = a.client();
    let served = views(&client);
    let r = &served[&(Isolation::ReadCommitted, 1)];
    assert_eq!(
        r.end_offset, open_first[&1],
        "{version} point in time: last stable offset"
    );
    assert_eq!(
        r.records,
        below(&source, Isolation::ReadCommitted, 1, open_first[&1])
    );
    let r = &served[&(Isolation::ReadUncommitted, 1)];
    assert_eq!(
        r.records,
        below(&source, Isolation::ReadUncommitted, 1, cut)
    );
    assert_log_clean(&a, 1, mark, &[], &format!("{version} point in time"));
    drop(a);

    // ---- 3. new cluster: no producer state, so each partition ends where none was open ------
    let mut b = Cluster::start(ClusterSpec::combined(version)).unwrap();
    b.client().create_topic(TOPIC, PARTITIONS, 1, &[]).unwrap();
    let target = b.log_dirs(1).unwrap()[0].clone();
    wait_for("the new cluster's partition dirs", || {
        (0..PARTITIONS).all(|p| {
            target
                .join(format!("{TOPIC}-{p}/partition.metadata"))
                .exists()
        })
    });
    b.stop(1).unwrap();
    let out = restore(
        &store,
        &target,
        &["--mode", "new-cluster", "--topic", &format!("^{TOPIC}$")],
    );
    let got = reports(&out);
    for p in 0..PARTITIONS {
        let r = &got[&p];
        assert_eq!(r["log_end_offset"], stable_end[&p], "{version} p{p}: {r}");
        assert_eq!(r["cut_at"], stable_end[&p], "{version} p{p}: {r}");
        let c = &r["open_transactions_cut"];
        assert_eq!(c["at"], stable_end[&p], "{version} p{p}: {r}");
        assert_eq!(c["archived_end"], archived[&p], "{version} p{p}: {r}");
        assert_eq!(
            c["transactions"][0][1], open_first[&p],
            "{version} p{p}: {r}"
        );
        assert!(r["open_transactions"].as_array().unwrap().is_empty(), "{r}");
    }
    let mark = log_len(&b);
    b.restart(1).unwrap();
    let client = b.client();
    let served = views(&client);
    for p in 0..PARTITIONS {
        for iso in Isolation::BOTH {
            let r = &served[&(iso, p)];
            assert_eq!(
                r.end_offset, stable_end[&p],
                "{version} new cluster p{p} {iso:?}"
            );
            assert_eq!(
                r.records,
                below(&source, iso, p, stable_end[&p]),
                "{version} new cluster p{p} {iso:?}: records"
            );
        }
    }
    // New records continue each partition where it ends.
    let mut plan = Plan::new();
    plan.producer("after", &[("acks", "all")]);
    for p in 0..PARTITIONS {
        plan.send(send("after", p, "after-restore"));
    }
    let produced = client.run(&plan).unwrap();
    let mut offsets: Vec<(i32, i64)> = produced
        .acks
        .iter()
        .map(|a| (a.partition, a.offset))
        .collect();
    offsets.sort();
    assert_eq!(
        offsets,
        stable_end.iter().map(|(p, o)| (*p, *o)).collect::<Vec<_>>()
    );
    assert_log_clean(&b, 1, mark, &[], &format!("{version} new cluster"));
    eprintln!(
        "{version}: archived ends {archived:?}, open transactions from {open_first:?}: bare metal \
         and point in time stop read_committed there; new cluster ends at {stable_end:?}"
    );
}

/// Bare metal: read_uncommitted serves everything archived; read_committed stops at the open
/// transaction's first offset, the records below it the source's.
fn check_served(
    version: &str,
    what: &str,
    client: &Client,
    source: &Views,
    archived: &BTreeMap<i32, i64>,
    open_first: &BTreeMap<i32, i64>,
) {
    let served = views(client);
    for p in 0..PARTITIONS {
        let ru = &served[&(Isolation::ReadUncommitted, p)];
        assert_eq!(
            ru.end_offset, archived[&p],
            "{version} {what} p{p}: high watermark"
        );
        assert_eq!(
            ru.records,
            below(source, Isolation::ReadUncommitted, p, archived[&p])
        );
        let rc = &served[&(Isolation::ReadCommitted, p)];
        assert_eq!(
            rc.end_offset, open_first[&p],
            "{version} {what} p{p}: last stable offset"
        );
        assert_eq!(
            rc.records,
            below(source, Isolation::ReadCommitted, p, open_first[&p])
        );
    }
}

#[test]
fn open_transaction_at_the_archived_end_3_9_2() {
    open_transaction_at_the_archived_end("3.9.2");
}

#[test]
fn open_transaction_at_the_archived_end_4_4_0() {
    open_transaction_at_the_archived_end("4.4.0");
}
