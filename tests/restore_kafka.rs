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

fn segvault(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_segvault"))
        .args(args)
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

fn bare_metal(version: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let url = format!("file://{}", tmp.path().join("store").display());
    let mut c = Cluster::start(ClusterSpec::combined(version)).unwrap();
    c.stop(1).unwrap();
    let original = c.root().join("original");
    copy_dir(&fixture(version), &original, &[]).unwrap();
    let (code, out, err) = segvault(&[
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
    let (code, out, err) = segvault(&[
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
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // (log end, first offset of the earliest transaction left open) per restored partition.
    let ends: BTreeMap<(String, i32), (i64, Option<i64>)> = lines
        .iter()
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
        .collect();
    assert!(ends.len() >= 10, "{version}: {ends:?}");
    let total = lines.iter().find(|l| l["type"] == "total").unwrap();
    assert!(total["metadata_snapshot"].is_null() || total["metadata_snapshot"].is_string());

    c.restart_on(1, std::slice::from_ref(&restored)).unwrap();
    let after = serve(&c.client());
    let mut compared = 0;
    let mut pinned = 0;
    for ((topic, iso), parts) in &before {
        for (p, served) in parts {
            let (mut end, open) = ends.get(&(topic.clone(), *p)).copied().unwrap_or((0, None));
            let now = &after[&(topic.clone(), *iso)][p];
            if *iso == Isolation::ReadCommitted {
                // A transaction whose marker was in the unarchived active segment is open in
                // the restored log: read_committed stops at its first offset, which the
                // restore reported.
                if let Some(first) = open {
                    assert_eq!(
                        now.end_offset, first,
                        "{version} {topic}-{p}: last stable offset"
                    );
                    end = first;
                    pinned += 1;
                }
            }
            let want: Vec<&Record> = served.records.iter().filter(|r| r.offset < end).collect();
            let got: Vec<&Record> = now.records.iter().collect();
            assert_eq!(
                got.len(),
                want.len(),
                "{version} {topic}-{p} {iso:?}: records below the restored end {end}"
            );
            assert!(
                got == want,
                "{version} {topic}-{p} {iso:?}: the restored broker serves other records"
            );
            compared += got.len();
        }
    }
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
    eprintln!(
        "{version}: {compared} records served identically after a bare-metal restore; \
         {pinned} partition views stop at a transaction left open"
    );
}

#[test]
fn bare_metal_restore_is_served_identically_3_9_2() {
    bare_metal("3.9.2");
}

#[test]
fn bare_metal_restore_is_served_identically_4_3_1() {
    bare_metal("4.3.1");
}
