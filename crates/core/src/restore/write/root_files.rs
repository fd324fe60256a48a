//! The target's root files, once every partition is in place: the offset checkpoints,
//! merged, and the clean-shutdown marker.

use super::files::write_atomic;
use super::RestoredPartition;
use crate::restore::error::{io, RestoreError};
use segvault_format::text::{self, OffsetCheckpointEntry};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// Merges the restored partitions into the target's offset checkpoints.
pub(super) fn write_checkpoints(
    to: &Path,
    parts: &[RestoredPartition],
) -> Result<(), RestoreError> {
    type Value = fn(&RestoredPartition) -> i64;
    let files: [(&str, Value); 3] = [
        ("recovery-point-offset-checkpoint", |p| p.log_end_offset),
        ("replication-offset-checkpoint", |p| p.log_end_offset),
        ("log-start-offset-checkpoint", |p| p.log_start_offset),
    ];
    for (name, value) in files {
        let path = to.join(name);
        let existing = fs::read(&path).unwrap_or_default();
        let mut merged: BTreeMap<(String, i32), i64> = BTreeMap::new();
        if !existing.is_empty() {
            let entries = text::parse_offset_checkpoint(&existing).map_err(|source| {
                RestoreError::Unparsable {
                    path: path.clone(),
                    source,
                }
            })?;
            for e in entries {
                merged.insert((e.topic.to_string(), e.partition), e.offset);
            }
        }
        for p in parts {
            merged.insert((p.topic.clone(), p.partition), value(p));
        }
        let entries: Vec<OffsetCheckpointEntry> = merged
            .iter()
            .map(|((t, p), o)| OffsetCheckpointEntry {
                topic: t,
                partition: *p,
                offset: *o,
            })
            .collect();
        write_atomic(&path, text::write_offset_checkpoint(&entries).as_bytes())?;
    }
    Ok(())
}

/// The broker's clean-shutdown marker (`CleanShutdownFileHandler`).
const CLEAN_SHUTDOWN: &str = ".kafka_cleanshutdown";

/// Writes the clean-shutdown marker when every partition dir under `to` is one this restore
/// placed. Without it the broker treats the dir as crashed and re-reads the segment holding
/// each recovery point, i.e. the last segment of every partition, although segvault verified
/// every batch CRC, placed the broker's own indexes (SHA-256 checked) or rebuilt them, and
/// wrote the recovery points at the log ends (`kafka-format.md` §6 (a) 3). Partitions it did
/// not place may need that recovery, so then no marker is written. The broker epoch is -1: it
/// matches no registration, so the controller still treats the restart as unclean for
/// KIP-966's eligible leader replicas (the restored data may be older than the controller
/// remembers); only the log recovery is skipped. Brokers before 3.7 only test that the file
/// exists.
pub(super) fn mark_clean_shutdown(
    to: &Path,
    parts: &[RestoredPartition],
) -> Result<&'static str, RestoreError> {
    let marker = to.join(CLEAN_SHUTDOWN);
    if marker.exists() {
        return Ok("kept");
    }
    let placed: BTreeSet<String> = parts
        .iter()
        .map(|p| format!("{}-{}", p.topic, p.partition))
        .collect();
    for e in fs::read_dir(to).map_err(io(to))? {
        let e = e.map_err(io(to))?;
        let name = e.file_name().to_string_lossy().into_owned();
        // The metadata log belongs to the Raft layer, which ignores the marker.
        if e.path().is_dir() && name != "__cluster_metadata-0" && !placed.contains(&name) {
            return Ok("absent");
        }
    }
    write_atomic(&marker, br#"{"version":"0","broker_epoch":"-1"}"#)?;
    Ok("written")
}
