//! The committed fixtures are real log dirs: a broker of the same Kafka version, started on a
//! copy of `fixtures/kafka-<v>/clean`, serves exactly the records and group offsets recorded
//! in `expected.json` when they were generated. Also checks that the fixtures hold what
//! fixtures/README.md promises, so a regeneration cannot silently drop a case.

use crate::common::logdir::files_with;
use crate::common::paths::fixture_root;
use segvault_harness::fixtures::copy_dir;
use segvault_harness::*;
use serde_json::Value;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn serve_clean_fixture(version: &str) {
    let root = fixture_root(version);
    let expected: Value =
        serde_json::from_str(&fs::read_to_string(root.join("expected.json")).unwrap()).unwrap();
    assert_eq!(expected["kafka_version"], version);

    // Retention and offset-expiry checks every 200 ms instead of every 5 and 10 minutes, so
    // that any deletion by age happens before the digests are read, not after.
    let mut c = Cluster::start(
        ClusterSpec::combined(version)
            .config("log.retention.check.interval.ms", 200)
            .config("offsets.retention.check.interval.ms", 200)
            // The first retention check comes 30 s after start by default.
            .config("log.initial.task.delay.ms", 500),
    )
    .unwrap();
    c.stop(1).unwrap();
    let copy = c.root().join("restored-fixture");
    copy_dir(&root.join("clean"), &copy, &[]).unwrap();
    c.restart_on(1, std::slice::from_ref(&copy)).unwrap();
    let client = c.client();
    retention_checks_ran(&client, &copy);

    let topics = expected["topics"].as_object().unwrap();
    let mut want_topics: Vec<String> = workload::CODECS
        .iter()
        .map(|c| format!("codec-{c}"))
        .collect();
    want_topics.extend(["compacted", "idempotent", "log-append-time", "txn"].map(String::from));
    want_topics.sort();
    assert_eq!(topics.keys().cloned().collect::<Vec<_>>(), want_topics);
    for (topic, t) in topics {
        for iso in Isolation::BOTH {
            let got = client.digest(topic, iso).unwrap();
            let want = t["digests"][iso.as_str()].as_object().unwrap();
            assert_eq!(got.len(), want.len(), "{topic} {iso:?} partitions");
            for (p, d) in want {
                let g = &got[&p.parse::<i32>().unwrap()];
                assert_eq!(
                    g.records as u64,
                    d["records"].as_u64().unwrap(),
                    "{topic}-{p} {iso:?} records"
                );
                assert_eq!(
                    g.sha256,
                    d["sha256"].as_str().unwrap(),
                    "{topic}-{p} {iso:?} digest"
                );
            }
        }
    }
    let groups = client.group_offsets().unwrap();
    let want_groups = expected["groups"].as_array().unwrap();
    assert!(!want_groups.is_empty());
    for g in want_groups {
        let key = (
            g["group"].as_str().unwrap().to_string(),
            g["topic"].as_str().unwrap().to_string(),
            g["partition"].as_i64().unwrap() as i32,
        );
        assert_eq!(
            groups.get(&key),
            Some(&g["offset"].as_i64().unwrap()),
            "{key:?}"
        );
    }
}

/// Returns once the broker has finished at least one whole retention check since it started
/// on the fixture. A canary topic with `retention.ms=1` (a topic override, which the harness
/// default `log.retention.ms=-1` leaves alone) gets one record; a check deletes its segment
/// and rolls a new one at offset 1. A second record is deleted by a later check, which
/// started after the first had gone through every log, the fixture's included. So whatever
/// a check would delete of the fixture by age is deleted by then, on any date and however
/// slow the machine: the digests that follow see it.
fn retention_checks_ran(client: &Client, log_dir: &Path) {
    const CANARY: &str = "retention-canary";
    client
        .create_topic(CANARY, 1, 1, &[("retention.ms", "1")])
        .unwrap();
    let pdir = log_dir.join(format!("{CANARY}-0"));
    for offset in 0..2i64 {
        let mut plan = Plan::new();
        plan.producer("p-canary", &[("acks", "all")]);
        plan.send(Send {
            producer: "p-canary".into(),
            topic: CANARY.into(),
            partition: Some(0),
            timestamp: Some(fixtures::FIXTURE_BASE_TS),
            key: None,
            value: Some(b"canary".to_vec()),
            headers: vec![],
            aborted: false,
        });
        plan.close("p-canary");
        let acks = client.run(&plan).unwrap();
        assert_eq!(acks.acks[0].offset, offset, "canary record");
        let rolled = pdir.join(format!("{:020}.log", offset + 1));
        let start = Instant::now();
        while !rolled.exists() {
            assert!(
                start.elapsed() < cluster::DEADLINE,
                "no retention check deleted the canary's offset {offset} within {:?}: {:?}",
                cluster::DEADLINE,
                names(&pdir)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn kafka_3_9_serves_its_clean_fixture_exactly() {
    let _machine = crate::common::machine::shared();
    serve_clean_fixture(FIXTURE_VERSIONS[0]);
}

#[test]
fn kafka_4_serves_its_clean_fixture_exactly() {
    let _machine = crate::common::machine::shared();
    serve_clean_fixture(FIXTURE_VERSIONS[1]);
}

#[test]
fn fixtures_hold_every_promised_case() {
    let _machine = crate::common::machine::shared();
    for v in FIXTURE_VERSIONS {
        let clean = fixture_root(v).join("clean");
        let live = fixture_root(v).join("live");
        // Clean shutdown marker only in the clean copy; the live copy is mid-flight.
        assert!(clean.join(".kafka_cleanshutdown").exists(), "{v}");
        assert!(!live.join(".kafka_cleanshutdown").exists(), "{v}");
        for codec in workload::CODECS {
            assert!(
                files_with(&clean.join(format!("codec-{codec}-0")), ".log").len() >= 3,
                "{v} codec-{codec}-0 segments"
            );
        }
        // Aborted transaction: a non-empty .txnindex.
        let mut txn = 0;
        for p in ["txn-0", "txn-1"] {
            for n in names(&clean.join(p))
                .iter()
                .filter(|n| n.ends_with(".txnindex"))
            {
                txn += fs::metadata(clean.join(p).join(n)).unwrap().len();
            }
        }
        assert!(txn >= 34, "{v}: txnindex bytes {txn}");
        // The cleaner ran on the compacted topic and left its replaced segments as .deleted.
        let cp = fs::read_to_string(clean.join("cleaner-offset-checkpoint")).unwrap();
        assert!(
            cp.lines().any(|l| l.starts_with("compacted 0 ")),
            "{v}: {cp}"
        );
        assert!(
            !files_with(&clean.join("compacted-0"), ".log.deleted").is_empty(),
            "{v}"
        );
        // Internal topics, and a KRaft snapshot in the clean copy.
        assert!(
            clean.join("__consumer_offsets-0").is_dir()
                && clean.join("__transaction_state-0").is_dir(),
            "{v}"
        );
        assert!(
            !files_with(&clean.join("__cluster_metadata-0"), ".checkpoint").is_empty(),
            "{v}"
        );
        assert!(
            clean.join("__cluster_metadata-0/quorum-state").exists(),
            "{v}"
        );
        // The live copy's active segment has a preallocated index with a zero-filled tail.
        let zstd = live.join("codec-zstd-0");
        let active = names(&zstd)
            .into_iter()
            .filter(|n| n.ends_with(".index"))
            .max()
            .unwrap();
        let bytes = fs::read(zstd.join(&active)).unwrap();
        assert_eq!(bytes.len(), 8192, "{v}: {active} is not preallocated");
        assert!(
            bytes[bytes.len() - 64..].iter().all(|&b| b == 0),
            "{v}: no zero tail"
        );
    }
}
