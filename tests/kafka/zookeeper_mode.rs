//! ZooKeeper mode, checked by a real Kafka 3.9.2 broker and a real ZooKeeper (3.8.4, from the
//! same Maven download), as `restore_kafka.rs` checks KRaft:
//!
//! 1. **Archive.** A ZooKeeper-mode broker (no `__cluster_metadata-0`; `meta.properties`
//!    version 0 with `broker.id`) runs every standard workload; sentinels roll every
//!    partition, internal topics included; `segvault archive --once` copies the live log dir
//!    to a filesystem store with nothing committed left out.
//! 2. **Bare metal.** The broker is killed, its log dir wiped, `segvault restore --mode
//!    bare-metal` rebuilds it (its own `meta.properties`, byte for byte). Restarted (once
//!    ZooKeeper dropped the killed broker's registration), it serves the same records at the
//!    same offsets in both isolation levels, every group's committed offsets are the same
//!    (read back from the restored `__consumer_offsets`), and it logs no ERROR, no segment
//!    recovery, no truncation.
//! 3. **New cluster.** A brand-new ZooKeeper-mode cluster (its own ZooKeeper, another cluster
//!    id) creates the topics, and a consumer group there creates `__consumer_offsets`; its
//!    broker is stopped and `--mode new-cluster --force` restores the workload topics and
//!    `__consumer_offsets` into its log dir (keeping its topic ids). Restarted, it serves the
//!    same records and the same group offsets, and takes new records at every partition's
//!    restored end.

use crate::restore_kafka::{
    append_one_each, archive_settled, assert_log_clean, assert_same_records, close_every_segment,
    create_topics, log_len, log_since, restored_ends, segvault, segvault_ok, serve, topic_ids,
};
use segvault_harness::client::{GroupOffsets, TopicDigest};
use segvault_harness::*;
use serde_json::Value;
use std::path::Path;

const VERSION: &str = "3.9.2";
/// Records per workload topic.
const SCALE: usize = 120;

/// What a broker must not log after starting on a restored dir, beyond `BAD_LOG_LINES`: any
/// ERROR, and any segment recovery (every partition was restored with a verified recovery
/// point and a clean-shutdown marker).
const NOT_AFTER_RESTORE: [&str; 3] = ["] ERROR ", "Recovering", "unflushed"];

/// One ZooKeeper-mode broker, as `restore_kafka.rs` configures its KRaft one: one partition
/// per internal topic, small indexes, time rolls, and no cleaner (the filesystem archive is
/// compared with what the broker served at one moment).
fn spec() -> ClusterSpec {
    ClusterSpec::zookeeper(VERSION, 1)
        .config("offsets.topic.num.partitions", 1)
        .config("transaction.state.log.num.partitions", 1)
        .config("log.index.size.max.bytes", 8192)
        .config("log.roll.ms", 2000)
        .config("log.cleaner.enable", false)
}

fn meta_properties(log_dir: &Path) -> String {
    std::fs::read_to_string(log_dir.join("meta.properties")).unwrap()
}

/// The groups' offsets on the workload's topics. The sentinel group is left out: its last
/// commits (made to roll `__consumer_offsets`) sit in the partition's active segment, which is
/// not archived, and its topic is not restored into the new cluster.
fn workload_groups(all: &GroupOffsets, topics: &[&str]) -> GroupOffsets {
    all.iter()
        .filter(|((_, t, _), _)| topics.contains(&t.as_str()))
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

#[test]
// Over 120 lines on purpose: one scenario against real brokers, each step working on the
// state the previous step left (split, its parts could only be called in this order).
fn zookeeper_mode_archive_bare_metal_and_new_cluster_3_9_2() {
    let _machine = crate::common::machine::shared();
    let t0 = std::time::Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let store = format!("file://{}", tmp.path().join("store").display());

    // ---- a ZooKeeper-mode broker runs every workload; everything is rolled and archived -------
    let mut a = Cluster::start(spec()).unwrap();
    let zk = a
        .zookeeper()
        .expect("a ZooKeeper-mode cluster has its ZooKeeper");
    assert!(
        zk.ephemerals().unwrap().contains("/brokers/ids/1"),
        "broker 1 is not registered in ZooKeeper"
    );
    let log_dir = a.log_dirs(1).unwrap()[0].clone();
    let meta = meta_properties(&log_dir);
    for line in [
        "version=0",
        "broker.id=1",
        &format!("cluster.id={}", a.cluster_id),
    ] {
        assert!(meta.lines().any(|l| l == line), "no {line} in\n{meta}");
    }
    let client = a.client();
    let base_ts = crate::common::now_ms() - 600_000;
    let workload = workload::standard(SCALE, base_ts);
    let run = workload.run(&client, 1).unwrap();
    run.check(&client).unwrap();
    close_every_segment(&client, &log_dir, &run.partitions);
    assert!(
        !log_dir.join("__cluster_metadata-0").exists(),
        "a ZooKeeper-mode broker has no metadata log"
    );
    let topics: Vec<&str> = run.partitions.keys().map(String::as_str).collect();
    let before = serve(&client, &topics);
    for ((t, iso), parts) in run.expected() {
        let got: TopicDigest = before[&(t.clone(), iso)]
            .iter()
            .map(|(p, r)| (*p, PartitionDigest::of(&r.records)))
            .collect();
        assert_eq!(got, parts, "{VERSION} {t} {iso:?}: served before archiving");
    }
    let groups_before = client.group_offsets().unwrap();
    assert_eq!(
        workload_groups(&groups_before, &topics),
        run.committed,
        "the workload's groups before archiving"
    );
    let total = archive_settled(&store, &log_dir, &[]);
    for k in [
        "unarchived_committed_segments",
        "gaps",
        "corrupt",
        "divergences",
    ] {
        assert_eq!(total[k], 0, "{VERSION} ZooKeeper mode: {k} in {total}");
    }
    let t_archived = t0.elapsed();

    // ---- 1. bare metal: the broker is lost and rebuilt from the archive -----------------------
    a.kill(1).unwrap();
    std::fs::remove_dir_all(&log_dir).unwrap();
    let out = segvault_ok(
        &[
            "restore",
            &store,
            "--to",
            log_dir.to_str().unwrap(),
            "--mode",
            "bare-metal",
            "--format",
            "json",
        ],
        &[],
    );
    let ends = restored_ends(&out);
    let total: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(total["clean_shutdown"], "written", "{total}");
    for (t, &n) in run.partitions.iter().chain([
        (&"__consumer_offsets".to_string(), &1),
        (&"__transaction_state".to_string(), &1),
    ]) {
        for p in 0..n {
            assert!(
                ends.contains_key(&(t.clone(), p)),
                "{VERSION}: {t}-{p} not restored: {ends:?}"
            );
        }
    }
    assert_eq!(
        meta_properties(&log_dir),
        meta,
        "the restored meta.properties is the broker's own"
    );
    assert!(!log_dir.join("__cluster_metadata-0").exists());

    let mark = log_len(&a);
    // restart waits until ZooKeeper dropped the killed broker's /brokers/ids/1.
    a.restart(1).unwrap();
    let client = a.client();
    let after = serve(&client, &topics);
    let compared = assert_same_records(VERSION, &before, &after, "ZooKeeper-mode bare metal");
    assert!(compared > 1000, "only {compared} records compared");
    let groups = client.group_offsets().unwrap();
    assert_eq!(
        workload_groups(&groups, &topics),
        workload_groups(&groups_before, &topics),
        "{VERSION}: every workload group's committed offsets after a bare-metal restore"
    );
    assert!(run.committed.len() >= 3, "{:?}", run.committed);
    let restart_log = log_since(&a, mark);
    assert!(restart_log.contains("] started (kafka.server.KafkaServer)"));
    let bad: Vec<&str> = restart_log
        .lines()
        .filter(|l| NOT_AFTER_RESTORE.iter().any(|b| l.contains(b)))
        .collect();
    assert!(
        bad.is_empty(),
        "{VERSION} ZooKeeper-mode bare metal: the broker logged after the restore:\n{}",
        bad.join("\n")
    );
    assert_log_clean(&a, 1, mark, &[], "ZooKeeper-mode bare metal");
    let t_bare_metal = t0.elapsed();
    eprintln!(
        "{VERSION} ZooKeeper mode: bare metal: {compared} records and {} group offsets served as \
         before",
        run.committed.len()
    );
    let old_cluster = a.cluster_id.clone();
    drop(a);

    // ---- 2. new cluster: another ZooKeeper-mode cluster takes the archive ---------------------
    let mut b = Cluster::start(spec()).unwrap();
    assert_ne!(b.cluster_id, old_cluster, "a new cluster has its own id");
    let target = create_topics(&b, &workload, 1)[0].1.clone();
    // A group in the new cluster makes its broker create __consumer_offsets (with data: the
    // group's metadata), so the restore has to replace it: --force.
    b.client()
        .group_consume(
            "new-cluster-probe",
            "codec-none",
            1,
            Isolation::ReadUncommitted,
        )
        .unwrap();
    assert!(target.join("__consumer_offsets-0").is_dir());
    let ids_before = topic_ids(&target);
    b.stop(1).unwrap();
    let selection = "^(codec-.*|idempotent|txn|log-append-time|__consumer_offsets)$";
    let restore = |extra: &[&str]| -> Vec<String> {
        let to = target.to_str().unwrap();
        let base = [
            "restore",
            &store,
            "--to",
            to,
            "--mode",
            "new-cluster",
            "--topic",
            selection,
        ];
        base.iter().chain(extra).map(|s| s.to_string()).collect()
    };
    // Without --force the partition holding the new cluster's own group data is refused.
    let args = restore(&[]);
    let (code, out, err) = segvault(&args.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
    assert_eq!(
        code, 2,
        "restore into a dir with data, no --force:\n{out}{err}"
    );
    assert!(
        err.contains("--force") && err.contains("__consumer_offsets-0"),
        "the refusal names the partition and --force:\n{err}"
    );
    let args = restore(&["--force", "--format", "json"]);
    let out = segvault_ok(&args.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
    let new_ends = restored_ends(&out);
    let want = run.partitions.values().sum::<i32>() as usize + 1;
    assert_eq!(new_ends.len(), want, "{new_ends:?}");
    assert!(new_ends.contains_key(&("__consumer_offsets".to_string(), 0)));
    assert_eq!(
        topic_ids(&target),
        ids_before,
        "the new cluster's topic ids are kept"
    );
    let new_meta = meta_properties(&target);
    assert!(
        new_meta.contains(&format!("cluster.id={}", b.cluster_id)),
        "the new cluster's meta.properties is kept:\n{new_meta}"
    );

    let mark = log_len(&b);
    b.restart(1).unwrap();
    let client = b.client();
    let served = serve(&client, &topics);
    assert_same_records(VERSION, &before, &served, "ZooKeeper-mode new cluster");
    let groups = client.group_offsets().unwrap();
    assert_eq!(
        workload_groups(&groups, &topics),
        workload_groups(&groups_before, &topics),
        "{VERSION}: the groups' committed offsets in the new cluster"
    );
    // New records continue every restored data partition at its end.
    let parts = new_ends
        .keys()
        .filter(|(t, _)| !t.starts_with("__"))
        .map(|(t, p)| (t.as_str(), *p));
    for ack in &append_one_each(&client, b"after-restore", parts) {
        let (end, _) = new_ends[&(ack.topic.clone(), ack.partition)];
        assert_eq!(
            ack.offset, end,
            "{VERSION} {}-{}: the new record's offset",
            ack.topic, ack.partition
        );
    }
    let restart_log = log_since(&b, mark);
    let bad: Vec<&str> = restart_log
        .lines()
        .filter(|l| NOT_AFTER_RESTORE.iter().any(|b| l.contains(b)))
        .collect();
    assert!(
        bad.is_empty(),
        "{VERSION} ZooKeeper-mode new cluster: the broker logged after the restore:\n{}",
        bad.join("\n")
    );
    assert_log_clean(&b, 1, mark, &[], "ZooKeeper-mode new cluster");
    eprintln!(
        "{VERSION} ZooKeeper mode: archived at {t_archived:?}, bare metal done at \
         {t_bare_metal:?}, new cluster done at {:?}",
        t0.elapsed()
    );
}
