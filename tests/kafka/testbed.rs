//! The test bed itself, against real brokers of every pinned Kafka version: every workload
//! produced and consumed back with matching digests, on one combined node and on a cluster of
//! 3 brokers with replication factor 3; clean stop, kill -9 and restart; a broker that fails
//! to start reports its log.

use crate::common::logdir::files_with;
use segvault_harness::cluster::Role;
use segvault_harness::*;
use std::fs;
use std::path::Path;

/// First explicit CreateTime timestamp of the workloads: a fixed, recent instant.
const BASE_TS: i64 = 1_763_000_000_000;

/// What a combined node must show on disk after the standard workload.
fn assert_workload_on_disk(log_dir: &Path) {
    // Time-based rolls: several segments per codec partition.
    for codec in workload::CODECS {
        let logs = files_with(&log_dir.join(format!("codec-{codec}-0")), ".log");
        assert!(
            logs.len() >= 3,
            "codec-{codec}-0 has {} segments, expected >= 3",
            logs.len()
        );
    }
    // Aborted transactions leave a non-empty transaction index in some segment.
    let txn_index_bytes: u64 = ["txn-0", "txn-1"]
        .iter()
        .flat_map(|p| files_with(&log_dir.join(p), ".txnindex"))
        .map(|f| fs::metadata(f).unwrap().len())
        .sum();
    assert!(
        txn_index_bytes > 0 && txn_index_bytes.is_multiple_of(34),
        "txnindex bytes {txn_index_bytes}"
    );
    for internal in [
        "__consumer_offsets-0",
        "__transaction_state-0",
        "__cluster_metadata-0",
    ] {
        assert!(
            log_dir.join(internal).is_dir(),
            "{internal} missing in {}",
            log_dir.display()
        );
    }
    let pm = fs::read_to_string(log_dir.join("codec-none-0/partition.metadata")).unwrap();
    assert!(
        pm.starts_with("version: 0\ntopic_id: "),
        "partition.metadata: {pm:?}"
    );
}

fn combined_round_trip(version: &str) {
    let mut c = Cluster::start(ClusterSpec::combined(version)).unwrap();
    let run = workload::standard(150, BASE_TS)
        .run(&c.client(), 1)
        .unwrap();
    run.check(&c.client()).unwrap();
    // Committed offsets are what the groups read: the partial group stopped at 50 records,
    // the read_committed group read every committed record (aborted ones are invisible).
    let partial: i64 = run
        .committed
        .iter()
        .filter(|(k, _)| k.0 == "g-partial")
        .map(|(_, v)| v)
        .sum();
    assert!(
        partial > 0 && partial <= 50,
        "g-partial committed {partial}"
    );
    let committed_txn_records: usize = run.produced.expected[&Isolation::ReadCommitted]["txn"]
        .values()
        .map(Vec::len)
        .sum();
    let all_txn_records: usize = run.produced.expected[&Isolation::ReadUncommitted]["txn"]
        .values()
        .map(Vec::len)
        .sum();
    assert!(
        committed_txn_records < all_txn_records,
        "the workload must abort some transactions"
    );

    let dir = c.log_dirs(1).unwrap()[0].clone();
    assert_workload_on_disk(&dir);

    // A clean stop leaves the clean-shutdown marker; the data comes back after a restart.
    c.stop(1).unwrap();
    assert!(
        dir.join(".kafka_cleanshutdown").exists(),
        "no clean-shutdown marker after SIGTERM"
    );
    c.restart(1).unwrap();
    run.check(&c.client()).unwrap();

    // kill -9 leaves no marker; the broker recovers and still serves the same records.
    c.kill(1).unwrap();
    assert!(
        !dir.join(".kafka_cleanshutdown").exists(),
        "marker present after SIGKILL"
    );
    assert!(dir.join(".lock").exists());
    c.restart(1).unwrap();
    run.check(&c.client()).unwrap();
}

fn cluster_round_trip(version: &str) {
    let c = Cluster::start(ClusterSpec::cluster(version, 3, 1)).unwrap();
    assert_eq!(c.broker_ids(), vec![1, 2, 3]);
    assert_eq!(
        c.nodes
            .iter()
            .filter(|n| n.role == Role::Controller)
            .count(),
        1
    );
    let run = workload::standard(60, BASE_TS).run(&c.client(), 3).unwrap();
    run.check(&c.client()).unwrap();
    // Replication factor 3: every partition of every workload topic on all three brokers,
    // in the metadata and on each broker's disk.
    let parts = c.client().describe().unwrap();
    for (topic, &n) in &run.partitions {
        for p in 0..n {
            let info = parts
                .iter()
                .find(|i| &i.topic == topic && i.partition == p)
                .unwrap();
            let mut r = info.replicas.clone();
            r.sort();
            assert_eq!(r, vec![1, 2, 3], "{topic}-{p}");
            assert_eq!(info.topic_id, run.topic_ids[topic]);
            for b in c.broker_ids() {
                let d = c.log_dirs(b).unwrap()[0].join(format!("{topic}-{p}"));
                assert!(
                    d.join("partition.metadata").exists(),
                    "{} missing",
                    d.display()
                );
            }
        }
    }
}

#[test]
fn kafka_3_9_combined_every_workload_round_trips() {
    let _machine = crate::common::machine::shared();
    combined_round_trip(KAFKA_VERSIONS[0]);
}

#[test]
fn kafka_4_combined_every_workload_round_trips() {
    let _machine = crate::common::machine::shared();
    combined_round_trip(KAFKA_VERSIONS[1]);
}

#[test]
fn kafka_3_9_three_brokers_rf3_round_trip() {
    let _machine = crate::common::machine::shared();
    cluster_round_trip(KAFKA_VERSIONS[0]);
}

#[test]
fn kafka_4_three_brokers_rf3_round_trip() {
    let _machine = crate::common::machine::shared();
    cluster_round_trip(KAFKA_VERSIONS[1]);
}

#[test]
fn broker_that_cannot_start_reports_its_log() {
    let _machine = crate::common::machine::shared();
    // A log dir whose meta.properties names another node: the broker refuses it and exits.
    // The harness must say so at once and show the broker's own words, not time out.
    let mut c = Cluster::start(ClusterSpec::combined(KAFKA_VERSIONS[0])).unwrap();
    c.stop(1).unwrap();
    let meta = c.log_dirs(1).unwrap()[0].join("meta.properties");
    let text = fs::read_to_string(&meta).unwrap();
    assert!(text.contains("node.id=1"), "{text}");
    fs::write(&meta, text.replace("node.id=1", "node.id=7")).unwrap();
    let err = format!("{:#}", c.restart(1).unwrap_err());
    assert!(err.contains("exited with"), "{err}");
    assert!(err.contains("--- last"), "no log tail in: {err}");
    assert!(
        err.contains("node id"),
        "the log tail does not give the broker's reason: {err}"
    );
}
