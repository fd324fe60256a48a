//! Files other than segments: what kind a file is by its name ([`file_kind`]), and the
//! checks of producer snapshots and the small text files ([`check_file`]).

use std::path::Path;

use segvault_format::kraft::parse_quorum_state;
use segvault_format::snapshot::parse_producer_snapshot;
use segvault_format::FormatError;

use super::events::{Event, FileInfo, Out, SegmentStats};
use super::mapped::{intact, open};
use super::problem::{Problem, Severity};
use crate::logdir::Error;

/// What kind of file a path is, by name (and, for `.checkpoint`, by directory).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// `.log` segment.
    Log,
    /// `.index`.
    Index,
    /// `.timeindex`.
    TimeIndex,
    /// `.txnindex`.
    TxnIndex,
    /// Producer `.snapshot`.
    ProducerSnapshot,
    /// KRaft `<offset>-<epoch>.checkpoint` or `bootstrap.checkpoint` (batch format).
    BatchCheckpoint,
    /// Offset checkpoint text files.
    OffsetCheckpoint,
    /// `leader-epoch-checkpoint`.
    LeaderEpochCheckpoint,
    /// `partition.metadata`.
    PartitionMetadata,
    /// `meta.properties`.
    MetaProperties,
    /// `quorum-state`.
    QuorumState,
    /// `.kafka_cleanshutdown`.
    CleanShutdown,
    /// Anything else.
    Unknown,
}

/// Classifies a file by its name. A transient suffix (`.deleted`, `.swap`, `.cleaned`, ...)
/// does not change the format: a segment the broker has renamed to `.deleted` is still a log,
/// and a forensic look at it is often the point.
pub fn file_kind(path: &Path) -> FileKind {
    use segvault_format::names::{FileName, KnownFile, SegmentFileKind};
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    match segvault_format::names::parse_file_name(name) {
        FileName::Segment(s) => match s.kind {
            SegmentFileKind::Log => FileKind::Log,
            SegmentFileKind::Index => FileKind::Index,
            SegmentFileKind::TimeIndex => FileKind::TimeIndex,
            SegmentFileKind::TxnIndex => FileKind::TxnIndex,
            SegmentFileKind::ProducerSnapshot => FileKind::ProducerSnapshot,
            SegmentFileKind::KraftSnapshot { .. } => FileKind::BatchCheckpoint,
        },
        FileName::Known(k, _) => match k {
            KnownFile::BootstrapCheckpoint => FileKind::BatchCheckpoint,
            KnownFile::RecoveryPointCheckpoint
            | KnownFile::LogStartOffsetCheckpoint
            | KnownFile::ReplicationOffsetCheckpoint
            | KnownFile::CleanerOffsetCheckpoint => FileKind::OffsetCheckpoint,
            KnownFile::LeaderEpochCheckpoint => FileKind::LeaderEpochCheckpoint,
            KnownFile::PartitionMetadata => FileKind::PartitionMetadata,
            KnownFile::MetaProperties => FileKind::MetaProperties,
            KnownFile::QuorumState => FileKind::QuorumState,
            KnownFile::CleanShutdown => FileKind::CleanShutdown,
            KnownFile::Lock => FileKind::Unknown,
        },
        _ => {
            // Non-canonical names (e.g. a renamed copy) still inspect by extension.
            match path.extension().and_then(|e| e.to_str()) {
                Some("log") => FileKind::Log,
                Some("index") => FileKind::Index,
                Some("timeindex") => FileKind::TimeIndex,
                Some("txnindex") => FileKind::TxnIndex,
                Some("snapshot") => FileKind::ProducerSnapshot,
                _ => FileKind::Unknown,
            }
        }
    }
}

/// Checks a small or non-segment file: producer snapshot and text files. Emits the parsed
/// content as [`Event::Info`] lines when `emit` is set.
pub fn check_file(
    path: &Path,
    kind: FileKind,
    emit: bool,
    sink: &mut dyn FnMut(Event<'_>),
) -> Result<SegmentStats, Error> {
    let mut stats = SegmentStats::default();
    let map = open(path)?;
    let data: &[u8] = &map;
    stats.data.bytes = data.len() as u64;
    let mut out = Out {
        sink,
        file_stats: &mut stats,
    };
    let file = path.to_string_lossy().into_owned();
    let file = file.as_str();
    let info = |out: &mut Out<'_, '_>, info: FileInfo<'_>| {
        if emit {
            out.emit(Event::Info { file, info });
        }
    };
    let corrupt = |out: &mut Out<'_, '_>, e: FormatError| {
        out.problem(Problem::from_format(path, Severity::Corrupt, &e));
    };
    use segvault_format::text::*;
    match kind {
        FileKind::ProducerSnapshot => match parse_producer_snapshot(data) {
            Ok(s) => {
                for e in &s.entries {
                    info(&mut out, FileInfo::ProducerState(e));
                }
                out.file_stats.data.records = s.entries.len() as u64;
            }
            Err(e) => corrupt(&mut out, e),
        },
        FileKind::OffsetCheckpoint => match parse_offset_checkpoint(data) {
            Ok(v) => {
                for e in &v {
                    info(&mut out, FileInfo::CheckpointEntry(e));
                }
                out.file_stats.data.records = v.len() as u64;
            }
            Err(e) => corrupt(&mut out, e),
        },
        FileKind::LeaderEpochCheckpoint => match parse_leader_epoch_checkpoint(data) {
            Ok(v) => {
                for e in &v {
                    info(&mut out, FileInfo::LeaderEpoch(e));
                }
                out.file_stats.data.records = v.len() as u64;
            }
            Err(e) => corrupt(&mut out, e),
        },
        FileKind::PartitionMetadata => match parse_partition_metadata(data) {
            Ok(id) => info(&mut out, FileInfo::PartitionMetadata(id)),
            Err(e) => corrupt(&mut out, e),
        },
        FileKind::MetaProperties => match parse_meta_properties(data) {
            Ok(m) => info(&mut out, FileInfo::MetaProperties(&m)),
            Err(e) => corrupt(&mut out, e),
        },
        FileKind::QuorumState => match parse_quorum_state(data) {
            Ok(q) => info(&mut out, FileInfo::QuorumState(&q)),
            Err(e) => corrupt(&mut out, e),
        },
        FileKind::CleanShutdown => match parse_clean_shutdown(data) {
            Ok(epoch) => info(&mut out, FileInfo::CleanShutdown(epoch)),
            Err(e) => corrupt(&mut out, e),
        },
        _ => {
            out.problem(Problem::new(path, Severity::Note, "unknown_file", "not a file kind segvault knows (expected a segment, index, snapshot, checkpoint or metadata file); ignored".into()));
        }
    }
    intact(path, &map)?;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_by_name_suffix_and_extension() {
        let cases = [
            ("t-0/00000000000000000000.log", FileKind::Log),
            ("t-0/00000000000000000000.log.deleted", FileKind::Log),
            (
                "t-0/00000000000000000000.timeindex.swap",
                FileKind::TimeIndex,
            ),
            ("t-0/00000000000000000000.index", FileKind::Index),
            ("t-0/00000000000000000000.txnindex", FileKind::TxnIndex),
            (
                "t-0/00000000000000000007.snapshot",
                FileKind::ProducerSnapshot,
            ),
            (
                "__cluster_metadata-0/00000000000000000100-0000000002.checkpoint",
                FileKind::BatchCheckpoint,
            ),
            ("bootstrap.checkpoint", FileKind::BatchCheckpoint),
            ("replication-offset-checkpoint", FileKind::OffsetCheckpoint),
            (
                "t-0/leader-epoch-checkpoint",
                FileKind::LeaderEpochCheckpoint,
            ),
            ("t-0/partition.metadata", FileKind::PartitionMetadata),
            ("meta.properties", FileKind::MetaProperties),
            ("__cluster_metadata-0/quorum-state", FileKind::QuorumState),
            (".kafka_cleanshutdown", FileKind::CleanShutdown),
            (".lock", FileKind::Unknown),
            ("copy-of-segment.log", FileKind::Log),
            ("notes.txt", FileKind::Unknown),
        ];
        for (name, kind) in cases {
            assert_eq!(file_kind(Path::new(name)), kind, "{name}");
        }
    }
}
