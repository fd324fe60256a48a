//! What a walk emits ([`Event`]s: batches, records, index entries, problems) and what it
//! counts ([`SegmentStats`]).

use std::path::{Path, PathBuf};

use serde::Serialize;

use segvault_format::batch::TimestampType;
use segvault_format::control::ControlRecord;
use segvault_format::kraft::QuorumState;
use segvault_format::segment::Batch;
use segvault_format::snapshot::ProducerEntry;
use segvault_format::text::{EpochEntry, MetaProperties, OffsetCheckpointEntry, Uuid};
use segvault_format::FormatError;

use super::internal::InternalRecord;
use super::problem::{lossy_path, Problem, Severity};

/// A batch (v2) or legacy entry, with every field inspect prints.
#[derive(Debug, Clone, Serialize)]
pub struct BatchLine {
    /// File.
    #[serde(serialize_with = "lossy_path")]
    pub file: PathBuf,
    /// Byte position.
    pub position: u64,
    /// Bytes including the 12-byte log header.
    pub size: u64,
    /// v2 base offset; legacy: the entry's offset.
    pub base_offset: i64,
    /// Last offset.
    pub last_offset: Option<i64>,
    /// Magic.
    pub magic: u8,
    /// Codec name, or `invalid(<id>)`.
    pub codec: String,
    /// Record count without decompressing (legacy: 1 per entry).
    pub records: i64,
    /// Stored CRC.
    pub crc: u32,
    /// Whether it matches.
    pub crc_valid: bool,
    /// v2 only.
    pub partition_leader_epoch: Option<i32>,
    /// −1 when none.
    pub producer_id: i64,
    /// −1 when none.
    pub producer_epoch: i16,
    /// −1 when none.
    pub base_sequence: i32,
    /// Transactional bit.
    pub transactional: bool,
    /// Control bit.
    pub control: bool,
    /// `CreateTime`, `LogAppendTime` or `none` (magic 0).
    pub timestamp_type: &'static str,
    /// Max timestamp (v1: the message timestamp), `None` for magic 0.
    pub max_timestamp: Option<i64>,
    /// v2 only: whether BaseTimestamp holds a delete horizon (KIP-534).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delete_horizon: Option<bool>,
}

impl BatchLine {
    pub(super) fn new(file: &Path, position: u64, b: &Batch<'_>, crc_valid: bool) -> BatchLine {
        let (epoch_p, seq, ts_type, horizon, crc) = match b {
            Batch::V2(v) => (
                v.header.producer_epoch,
                v.header.base_sequence,
                match v.header.attributes.timestamp_type() {
                    TimestampType::CreateTime => "CreateTime",
                    TimestampType::LogAppendTime => "LogAppendTime",
                },
                Some(v.header.attributes.has_delete_horizon()),
                v.header.crc,
            ),
            Batch::Legacy(l) => (
                -1,
                -1,
                if l.magic == 0 {
                    "none"
                } else {
                    match l.timestamp_type() {
                        TimestampType::CreateTime => "CreateTime",
                        TimestampType::LogAppendTime => "LogAppendTime",
                    }
                },
                None,
                l.crc,
            ),
        };
        let codec = match b.compression() {
            Some(c) => c.name().to_string(),
            None => {
                let id = match b {
                    Batch::V2(v) => v.header.attributes.codec_id(),
                    Batch::Legacy(l) => l.codec_id(),
                };
                format!("invalid({id})")
            }
        };
        BatchLine {
            file: file.to_path_buf(),
            position,
            size: b.size() as u64,
            base_offset: b.base_offset(),
            last_offset: b.last_offset(),
            magic: b.magic(),
            codec,
            records: b.shallow_record_count(),
            crc,
            crc_valid,
            partition_leader_epoch: b.partition_leader_epoch(),
            producer_id: b.producer_id(),
            producer_epoch: epoch_p,
            base_sequence: seq,
            transactional: b.is_transactional(),
            control: b.is_control(),
            timestamp_type: ts_type,
            max_timestamp: b.max_timestamp(),
            delete_horizon: horizon,
        }
    }
}

/// One record (v2 record, or legacy message / inner message), borrowed for the callback.
#[derive(Debug, Clone)]
pub struct RecordView<'a> {
    /// File.
    pub file: &'a Path,
    /// Position of the batch (or wrapper) holding it.
    pub batch_position: u64,
    /// Absolute offset.
    pub offset: i64,
    /// Absolute timestamp (`None` for magic 0).
    pub timestamp: Option<i64>,
    /// Key.
    pub key: Option<&'a [u8]>,
    /// Value.
    pub value: Option<&'a [u8]>,
    /// Headers (key, value).
    pub headers: Vec<(&'a [u8], Option<&'a [u8]>)>,
    /// Decoded control record (control batches).
    pub control: Option<Result<ControlRecord, FormatError>>,
    /// Decoded internal-topic record.
    pub decoded: Option<InternalRecord<'a>>,
}

/// An index entry.
#[derive(Debug, Clone, Serialize)]
pub struct IndexEntryLine {
    /// The index file.
    #[serde(serialize_with = "lossy_path")]
    pub file: PathBuf,
    /// `offset`, `time` or `txn`.
    pub index: &'static str,
    /// Entry number.
    pub entry: usize,
    /// Offset index: absolute offset; time index: absolute offset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
    /// Offset index: position in the `.log`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<i64>,
    /// Time index: timestamp.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<i64>,
    /// Txn index fields.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub producer_id: Option<i64>,
    /// Txn index: first offset of the aborted transaction.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_offset: Option<i64>,
    /// Txn index: offset of the ABORT marker.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_offset: Option<i64>,
    /// Txn index: LSO at the abort.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_stable_offset: Option<i64>,
}

impl IndexEntryLine {
    pub(super) fn new(file: &Path, index: &'static str, entry: usize) -> IndexEntryLine {
        IndexEntryLine {
            file: file.to_path_buf(),
            index,
            entry,
            offset: None,
            position: None,
            timestamp: None,
            producer_id: None,
            first_offset: None,
            last_offset: None,
            last_stable_offset: None,
        }
    }
}

/// Something a walk produced.
#[derive(Debug)]
pub enum Event<'a> {
    /// A batch header.
    Batch(&'a BatchLine),
    /// A record.
    Record(&'a RecordView<'a>),
    /// An index entry.
    IndexEntry(&'a IndexEntryLine),
    /// What a small file holds (producer state entries, checkpoint entries, parsed
    /// metadata files), one event per entry.
    Info {
        /// The file, as a string (lossy for a non-UTF-8 path).
        file: &'a str,
        /// The entry.
        info: FileInfo<'a>,
    },
    /// A problem.
    Problem(&'a Problem),
}

/// One entry of a small file, as parsed by segvault-format.
#[derive(Debug, Clone, Copy)]
pub enum FileInfo<'a> {
    /// A producer's state in a `.snapshot`.
    ProducerState(&'a ProducerEntry),
    /// An entry of an offset checkpoint (replication, recovery point, log start, cleaner).
    CheckpointEntry(&'a OffsetCheckpointEntry<'a>),
    /// An entry of `leader-epoch-checkpoint`.
    LeaderEpoch(&'a EpochEntry),
    /// `partition.metadata`: the topic id.
    PartitionMetadata(Uuid),
    /// `meta.properties`.
    MetaProperties(&'a MetaProperties),
    /// `quorum-state`.
    QuorumState(&'a QuorumState),
    /// `.kafka_cleanshutdown`: the broker epoch, when it has one.
    CleanShutdown(Option<i64>),
}

/// What the data of one or more files held, counted as it was read: the counters a walk
/// over one file ([`SegmentStats`]) and the totals of a log dir (`verify::Totals`) share.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DataCounts {
    /// Batches (or legacy entries) read.
    pub batches: u64,
    /// Records: decoded count in Count/Emit modes, else the shallow count.
    pub records: u64,
    /// Records of control batches (transaction markers, KRaft control records), included
    /// in `records`.
    pub control_records: u64,
    /// Bytes of complete batches read.
    pub bytes: u64,
    /// Batches whose CRC does not match.
    pub crc_failures: u64,
    /// Index entries that point to the wrong place (segvault's judgement; see module doc;
    /// kafka-dump-log-only mismatches are notes, not counted).
    pub index_mismatches: u64,
    /// Bytes of incomplete batches at the end of segments.
    pub partial_tail_bytes: u64,
    /// Batches whose base offset is above the previous batch's last offset + 1 (within a
    /// segment, or across segments).
    pub offset_gaps: u64,
}

impl DataCounts {
    /// Adds `other` to these.
    pub(crate) fn add(&mut self, other: &DataCounts) {
        self.batches += other.batches;
        self.records += other.records;
        self.control_records += other.control_records;
        self.bytes += other.bytes;
        self.crc_failures += other.crc_failures;
        self.index_mismatches += other.index_mismatches;
        self.partial_tail_bytes += other.partial_tail_bytes;
        self.offset_gaps += other.offset_gaps;
    }
}

/// What a walk over one file found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SegmentStats {
    /// What the data held.
    #[serde(flatten)]
    pub data: DataCounts,
    /// Offset-index entries kafka-dump-log reports as "Index offset: X, log offset: Y"
    /// (real mismatches included).
    pub dump_log_index_mismatches: u64,
    /// First offset held: the first record's when records were decoded (compaction can
    /// remove a batch's first records), else the first batch's base offset.
    pub first_offset: Option<i64>,
    /// Last offset of the last batch.
    pub last_offset: Option<i64>,
    /// Entries of the index files before any zero-filled tail.
    pub index_entries: u64,
    /// Zero-filled (preallocated) entries after them.
    pub index_tail_entries: u64,
    /// Problems by severity.
    pub corrupt: u64,
    /// Partial problems.
    pub partial: u64,
    /// Notes.
    pub notes: u64,
}

impl SegmentStats {
    /// Number of problems of every severity.
    pub fn problems(&self) -> u64 {
        self.corrupt + self.partial + self.notes
    }
}

/// Sink for events; counts problems into stats as they pass.
pub(super) struct Out<'s, 'f> {
    pub(super) sink: &'s mut dyn FnMut(Event<'_>),
    pub(super) file_stats: &'f mut SegmentStats,
}

impl Out<'_, '_> {
    pub(super) fn problem(&mut self, p: Problem) {
        match p.severity {
            Severity::Corrupt => self.file_stats.corrupt += 1,
            Severity::Partial => self.file_stats.partial += 1,
            Severity::Note => self.file_stats.notes += 1,
        }
        (self.sink)(Event::Problem(&p));
    }
    pub(super) fn emit(&mut self, e: Event<'_>) {
        (self.sink)(e)
    }
}

/// Runs `f` with an [`Out`] and returns the kinds of the problems it reported, and the
/// counts (for the checks' unit tests).
#[cfg(test)]
pub(super) fn collect(f: impl FnOnce(&mut Out<'_, '_>)) -> (Vec<&'static str>, SegmentStats) {
    let mut stats = SegmentStats::default();
    let mut kinds = Vec::new();
    let mut sink = |e: Event<'_>| {
        if let Event::Problem(p) = e {
            kinds.push(p.kind);
        }
    };
    let mut out = Out {
        sink: &mut sink,
        file_stats: &mut stats,
    };
    f(&mut out);
    (kinds, stats)
}
