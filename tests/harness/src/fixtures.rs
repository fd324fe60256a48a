//! Regenerates `fixtures/`: small real log directories written by real brokers of every pinned
//! version. Run with `cargo run -p segvault-harness --bin harness -- fixtures`.
//!
//! Per version, one combined node runs the standard workload plus a compacted topic, the
//! cleaner is waited for, and a KRaft metadata snapshot is waited for. Then the log dir is
//! copied twice: `live/` while the broker runs (active segments with preallocated,
//! zero-filled index tails, no clean-shutdown marker) and `clean/` after a clean shutdown.
//! `expected.json` records the digests and group offsets the broker served.
//!
//! Every record the producers send has a fixed timestamp (`FIXTURE_BASE_TS` onwards), so a
//! regeneration gives the same record timestamps; only what the broker stamps itself (the
//! LogAppendTime topic, transaction markers, internal topics) carries the day of generation.
//! Every topic has `retention.ms=-1`, and brokers started on a fixture run with time-based
//! retention off (see `cluster::NO_WALL_CLOCK_EXPIRY`): a fixture is served whole on any date.

use crate::client::{Isolation, Send};
use crate::cluster::{Cluster, ClusterSpec, DEADLINE};
use crate::workload::{self, TopicSpec};
use anyhow::{bail, Context, Result};
use serde_json::json;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Broker configs of every fixture broker: small preallocated indexes (so a live copy stays
/// small), one partition for each internal topic, a frequent metadata snapshot and a quick
/// cleaner.
pub const FIXTURE_BROKER_CONFIG: &[(&str, &str)] = &[
    ("log.index.size.max.bytes", "8192"),
    ("offsets.topic.num.partitions", "1"),
    ("transaction.state.log.num.partitions", "1"),
    ("metadata.log.max.snapshot.interval.ms", "2000"),
    ("log.cleaner.backoff.ms", "200"),
    ("log.cleaner.min.cleanable.ratio", "0.01"),
];

/// The compacted topic: few keys, many updates, tombstones; time rolls make cleanable segments.
pub const COMPACTED_TOPIC: &str = "compacted";

/// `delete.retention.ms` of the compacted fixture topic: 100 years, far from the overflow of
/// the delete horizon (the cleaner adds it to the wall clock).
const TOMBSTONES_KEPT_MS: &str = "3153600000000";

/// Records per workload topic in the fixtures.
pub const FIXTURE_SCALE: usize = 120;
pub const FIXTURE_BASE_TS: i64 = 1_763_000_000_000;

pub fn generate(out: &Path, versions: &[&str]) -> Result<()> {
    for v in versions {
        let dir = out.join(format!("kafka-{v}"));
        if dir.exists() {
            fs::remove_dir_all(&dir)?;
        }
        fs::create_dir_all(&dir)?;
        generate_version(&dir, v).with_context(|| format!("generating fixtures for Kafka {v}"))?;
    }
    Ok(())
}

// Over 120 lines on purpose: one scenario against real brokers, each step working on the
// state the previous step left (split, its parts could only be called in this order).
fn generate_version(out: &Path, version: &str) -> Result<()> {
    let mut spec = ClusterSpec::combined(version);
    for (k, v) in FIXTURE_BROKER_CONFIG {
        spec = spec.config(k, v);
    }
    let mut cluster = Cluster::start(spec)?;
    let client = cluster.client();
    let mut w = workload::standard(FIXTURE_SCALE, FIXTURE_BASE_TS);
    w.topics.push(TopicSpec {
        name: COMPACTED_TOPIC.into(),
        partitions: 1,
        configs: workload::no_time_retention(&[
            ("cleanup.policy", "compact"),
            ("segment.ms", "10000"),
            ("segment.jitter.ms", "0"),
            ("min.cleanable.dirty.ratio", "0.01"),
            ("min.compaction.lag.ms", "0"),
            // Tombstones outlive any test (100 years): a cleaner run on a served fixture
            // must not drop them because the fixture has become a day old.
            ("delete.retention.ms", TOMBSTONES_KEPT_MS),
        ]),
    });
    w.plan.producer(
        "p-compact",
        &[("compression.type", "none"), ("acks", "all")],
    );
    for i in 0..200usize {
        w.plan.send(Send {
            producer: "p-compact".into(),
            topic: COMPACTED_TOPIC.into(),
            partition: Some(0),
            timestamp: Some(FIXTURE_BASE_TS + i as i64 * 1000),
            key: Some(format!("k{}", i % 8).into_bytes()),
            value: if i % 23 == 22 {
                None
            } else {
                Some(format!("v{i}").into_bytes())
            },
            headers: vec![],
            aborted: false,
        });
        // Separate batches, so the broker can roll between them by timestamp.
        if i % 5 == 4 {
            w.plan.flush("p-compact");
        }
    }
    w.plan.close("p-compact");
    let run = w.run(&client, 1)?;

    let log_dir = cluster.log_dirs(1)?[0].clone();
    // The cleaner has run once the compacted partition appears in cleaner-offset-checkpoint.
    wait_for("the log cleaner to compact the topic", || {
        let cp = fs::read_to_string(log_dir.join("cleaner-offset-checkpoint")).unwrap_or_default();
        Ok(cp
            .lines()
            .any(|l| l.starts_with(&format!("{COMPACTED_TOPIC} 0 "))))
    })?;
    wait_for("a KRaft metadata snapshot", || {
        Ok(!files_ending(&log_dir.join("__cluster_metadata-0"), ".checkpoint")?.is_empty())
    })?;
    // Replication and recovery checkpoints are written periodically; wait until they list the
    // workload topics so the live copy has them.
    wait_for("replication-offset-checkpoint", || {
        Ok(
            fs::read_to_string(log_dir.join("replication-offset-checkpoint"))
                .unwrap_or_default()
                .contains("codec-none 0"),
        )
    })?;

    // The digests the broker serves now: compaction changed what `compacted` serves, so they
    // are observed rather than derived from the acks.
    let mut topics = serde_json::Map::new();
    for t in run.partitions.keys() {
        let mut per_iso = serde_json::Map::new();
        for iso in Isolation::BOTH {
            let d = client.digest(t, iso)?;
            if t != COMPACTED_TOPIC && d != run.produced.digest(t, iso, run.partitions[t]) {
                bail!("{t} {iso:?}: the broker serves something else than was produced");
            }
            let parts: serde_json::Map<String, serde_json::Value> = d
                .iter()
                .map(|(p, d)| {
                    (p.to_string(), json!({"records": d.records, "first_offset": d.first_offset, "last_offset": d.last_offset, "sha256": d.sha256}))
                })
                .collect();
            per_iso.insert(iso.as_str().into(), parts.into());
        }
        topics.insert(
            t.clone(),
            json!({"topic_id": run.topic_ids[t], "digests": per_iso}),
        );
    }
    let groups: Vec<_> = client
        .group_offsets()?
        .iter()
        .map(|((g, t, p), o)| json!({"group": g, "topic": t, "partition": p, "offset": o}))
        .collect();

    // The live copy leaves out __cluster_metadata-0: its active segment's indexes are
    // preallocated to 10 MiB each (the metadata log ignores log.index.size.max.bytes), which
    // alone would break the fixtures' size budget. The clean copy has it, with a snapshot.
    copy_dir(&log_dir, &out.join("live"), &["__cluster_metadata-0"])
        .context("copying the live log dir")?;
    cluster.stop(1)?;
    if !log_dir.join(".kafka_cleanshutdown").exists() {
        bail!(
            "no clean-shutdown marker in {} after SIGTERM",
            log_dir.display()
        );
    }
    copy_dir(&log_dir, &out.join("clean"), &[]).context("copying the cleanly shut down log dir")?;

    let expected = json!({
        "kafka_version": version,
        "cluster_id": cluster.cluster_id,
        "node_id": 1,
        "broker_config": FIXTURE_BROKER_CONFIG.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
        "topics": topics,
        "groups": groups,
    });
    fs::write(
        out.join("expected.json"),
        serde_json::to_string_pretty(&expected)? + "\n",
    )?;
    Ok(())
}

fn wait_for(what: &str, mut ready: impl FnMut() -> Result<bool>) -> Result<()> {
    let start = Instant::now();
    while !ready()? {
        if start.elapsed() > DEADLINE {
            bail!("timed out after {DEADLINE:?} waiting for {what}");
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    Ok(())
}

fn files_ending(dir: &Path, suffix: &str) -> Result<Vec<PathBuf>> {
    let mut v = Vec::new();
    for e in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let p = e?.path();
        if p.to_string_lossy().ends_with(suffix) {
            v.push(p);
        }
    }
    Ok(v)
}

/// Copies a directory tree file by file, as a backup tool would (no snapshot: files of a
/// running broker are read as they are at that moment). The broker's `.lock` is not copied,
/// nor top-level entries named in `skip`.
pub fn copy_dir(from: &Path, to: &Path, skip: &[&str]) -> Result<()> {
    fs::create_dir_all(to)?;
    let mut entries: Vec<_> = fs::read_dir(from)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name();
        if name == ".lock" || skip.iter().any(|s| name == *s) {
            continue;
        }
        let ty = e.file_type()?;
        let dst = to.join(&name);
        if ty.is_dir() {
            copy_dir(&e.path(), &dst, &[])?;
        } else if ty.is_file() {
            match fs::copy(e.path(), &dst) {
                Ok(_) => {}
                // A file the broker deleted or renamed meanwhile (a .deleted segment, a .tmp
                // checkpoint) is simply not part of the copy.
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => {
                    return Err(err).with_context(|| format!("copying {}", e.path().display()))
                }
            }
        }
    }
    Ok(())
}
