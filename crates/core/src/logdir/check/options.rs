//! What to check and how deep: the input files of a segment walk and its options.

use std::path::{Path, PathBuf};

/// Which internal-topic decoder applies to a file, from its directory name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoder {
    /// Plain data.
    None,
    /// `__consumer_offsets`.
    ConsumerOffsets,
    /// `__transaction_state`.
    TransactionState,
    /// `__cluster_metadata` (and KRaft snapshots, `bootstrap.checkpoint`).
    ClusterMetadata,
}

impl Decoder {
    /// The decoder for a topic name.
    pub(crate) fn for_topic(topic: &str) -> Decoder {
        match topic {
            "__consumer_offsets" => Decoder::ConsumerOffsets,
            "__transaction_state" => Decoder::TransactionState,
            "__cluster_metadata" => Decoder::ClusterMetadata,
            _ => Decoder::None,
        }
    }
    /// The decoder for a file, from its parent directory (`<topic>-<partition>`).
    pub fn for_file(path: &Path) -> Decoder {
        if path.file_name().and_then(|n| n.to_str()) == Some("bootstrap.checkpoint") {
            return Decoder::ClusterMetadata;
        }
        path.parent()
            .and_then(|d| d.file_name())
            .and_then(|n| n.to_str())
            .and_then(segvault_format::names::parse_partition_dir)
            .map(|d| Decoder::for_topic(d.topic))
            .unwrap_or(Decoder::None)
    }
}

/// How deep to go into records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordMode {
    /// Batch headers and CRCs only (counts are the shallow counts).
    Shallow,
    /// Decode every record (decompressing) to validate and count them; no record events.
    Count,
    /// Decode and emit every record.
    Emit,
}

/// What to read and emit for a segment.
#[derive(Debug, Clone)]
pub struct SegmentInput {
    /// The `.log` (or KRaft `.checkpoint`, `bootstrap.checkpoint`).
    pub log: PathBuf,
    /// Base offset from the file name, when it has one.
    pub base_offset: Option<i64>,
    /// `.index` to cross-check.
    pub index: Option<PathBuf>,
    /// `.timeindex` to cross-check.
    pub timeindex: Option<PathBuf>,
    /// `.txnindex` to cross-check.
    pub txnindex: Option<PathBuf>,
    /// The active segment of its partition (a partial tail is then expected on a live
    /// broker, and is a note). KRaft snapshots are never active: they are immutable.
    pub active: bool,
}

/// Options of the walk.
#[derive(Debug, Clone)]
pub struct WalkOptions {
    /// Record depth.
    pub records: RecordMode,
    /// Emit batch events.
    pub emit_batches: bool,
    /// Emit the entries of the index files given.
    pub emit_index_entries: bool,
    /// Stop after this many bytes of the `.log` (like kafka-dump-log `--max-bytes`).
    pub max_bytes: Option<u64>,
    /// Skip batches whose last offset is below this (seeking with the `.index`).
    pub from_offset: Option<i64>,
    /// Internal-topic decoder for records.
    pub decoder: Decoder,
    /// An `.index` used only to seek for `from_offset` (not cross-checked).
    pub seek_index: Option<PathBuf>,
    /// Read only the index files given (their `.log` is absent): entries and structure,
    /// no cross-check.
    pub index_only: bool,
    /// Frame entries and verify their CRCs on a helper thread, ahead of the one handling
    /// them (output is the same; for a single large file, e.g. `inspect`).
    pub pipeline: bool,
}

impl Default for WalkOptions {
    fn default() -> Self {
        WalkOptions {
            records: RecordMode::Shallow,
            emit_batches: false,
            emit_index_entries: false,
            max_bytes: None,
            from_offset: None,
            decoder: Decoder::None,
            seek_index: None,
            index_only: false,
            pipeline: false,
        }
    }
}
