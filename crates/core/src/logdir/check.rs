//! Reading and judging the content of one file: a segment (`.log` with its indexes), a
//! producer snapshot, a KRaft snapshot, or one of the small text files.
//!
//! Both `segvault inspect` (which prints what it reads) and `segvault verify` (which only
//! counts) are thin layers over [`check_segment`] and [`check_file`]: the walk emits
//! [`Event`]s to a callback and returns [`SegmentStats`]. One pass over the mmapped `.log`
//! checks batch CRCs, framing, offset order, records (when asked) and cross-checks the
//! `.index`, `.timeindex` and `.txnindex` as it goes, so memory stays bounded by one batch
//! (plus the small txn index), never by the segment.
//!
//! Severity policy (see [`Severity`]): corruption is anything a broker would reject,
//! truncate or serve wrongly; `partial` is an incomplete write at the end of a segment
//! that is not the active one; `note` is information that needs no action (a live active
//! segment's partial tail, preallocated zero index tails, kafka-dump-log-only index
//! "mismatches" that are valid multi-batch appends).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{json, Value};

use segvault_format::batch::{TimestampType, MAGIC_OFFSET, V2_CRC_START};
use segvault_format::control::{decode_control_record, ControlRecord};
use segvault_format::index::{OffsetEntry, OffsetIndex, TimeEntry, TimeIndex};
use segvault_format::internal::{
    parse_group_key, parse_offset_commit_value, parse_txn_key, parse_txn_value, GroupKey,
};
use segvault_format::kraft::{decode_metadata_record, parse_quorum_state, MetadataFields};
use segvault_format::mapped::MappedFile;
use segvault_format::segment::{log_entries, Batch, LogEntries, SegmentEnd};
use segvault_format::snapshot::parse_producer_snapshot;
use segvault_format::{ErrorKind, FormatError, Limits};

/// How bad a problem is. Exit code 1 for `Corrupt` and `Partial`, 0 for `Note`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Information; no action needed.
    Note,
    /// An incomplete write at the end of a closed segment (recovery would truncate it).
    Partial,
    /// Data a broker would reject, truncate or serve wrongly.
    Corrupt,
}

impl Severity {
    /// True for severities that make the exit code 1.
    pub fn is_failure(self) -> bool {
        self != Severity::Note
    }
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Note => "note",
            Severity::Partial => "partial",
            Severity::Corrupt => "corrupt",
        }
    }
}

/// Serializes a path as text, replacing bytes that are not UTF-8 (serde's own `Path`
/// serializer fails on them, and a file name must never stop a report).
pub(crate) fn lossy_path<S: serde::Serializer>(
    p: &std::path::Path,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_str(&p.to_string_lossy())
}

/// A finding about a file, with where it is and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The file.
    #[serde(serialize_with = "lossy_path")]
    pub file: PathBuf,
    /// Byte position in that file, when it applies.
    pub position: Option<u64>,
    /// Kafka offset involved, when known.
    pub offset: Option<i64>,
    /// Severity.
    pub severity: Severity,
    /// Machine-readable kind (e.g. `crc`, `partial_tail`, `index_mismatch`).
    pub kind: &'static str,
    /// What was expected and what was found.
    pub message: String,
}

impl Problem {
    fn new(file: &Path, severity: Severity, kind: &'static str, message: String) -> Problem {
        Problem {
            file: file.to_path_buf(),
            position: None,
            offset: None,
            severity,
            kind,
            message,
        }
    }
    fn at(mut self, position: Option<u64>, offset: Option<i64>) -> Problem {
        self.position = position;
        self.offset = offset;
        self
    }
    /// From a format error: kind, position and offset come from the error.
    pub fn from_format(file: &Path, severity: Severity, e: &FormatError) -> Problem {
        Problem::new(file, severity, kind_name(e.kind), e.to_string())
            .at(Some(e.position()), e.offset)
    }
}

fn kind_name(k: ErrorKind) -> &'static str {
    match k {
        ErrorKind::Truncated => "truncated",
        ErrorKind::Crc => "crc",
        ErrorKind::BadLength => "bad_length",
        ErrorKind::BadVersion => "bad_version",
        ErrorKind::BadValue => "bad_value",
        ErrorKind::Decompress => "decompress",
        ErrorKind::Limit => "limit",
        ErrorKind::Syntax => "syntax",
    }
}

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
    pub fn for_topic(topic: &str) -> Decoder {
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
    fn new(file: &Path, position: u64, b: &Batch<'_>, crc_valid: bool) -> BatchLine {
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
    pub control: Option<Value>,
    /// Decoded internal-topic record.
    pub decoded: Option<Value>,
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
    fn new(file: &Path, index: &'static str, entry: usize) -> IndexEntryLine {
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
    /// Any other structured line (producer state entries, checkpoint entries, parsed
    /// metadata files); always has a `type` field.
    Info(&'a Value),
    /// A problem.
    Problem(&'a Problem),
}

/// What a walk over one file found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SegmentStats {
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
    /// Index entries that point to the wrong place (segvault's judgement; see module doc).
    pub index_mismatches: u64,
    /// Offset-index entries kafka-dump-log reports as "Index offset: X, log offset: Y"
    /// (real mismatches included).
    pub dump_log_index_mismatches: u64,
    /// Bytes of an incomplete batch at the end.
    pub partial_tail_bytes: u64,
    /// Batches whose base offset is above the previous batch's last offset + 1.
    pub offset_gaps: u64,
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
struct Out<'s, 'f> {
    sink: &'s mut dyn FnMut(Event<'_>),
    file_stats: &'f mut SegmentStats,
}

impl Out<'_, '_> {
    fn problem(&mut self, p: Problem) {
        match p.severity {
            Severity::Corrupt => self.file_stats.corrupt += 1,
            Severity::Partial => self.file_stats.partial += 1,
            Severity::Note => self.file_stats.notes += 1,
        }
        (self.sink)(Event::Problem(&p));
    }
    fn emit(&mut self, e: Event<'_>) {
        (self.sink)(e)
    }
}

/// Error opening a file: the path and what went wrong (exit code 2 territory).
#[derive(Debug)]
pub struct OpenError {
    /// The file.
    pub path: PathBuf,
    /// Description, with the OS error.
    pub message: String,
    /// The file does not exist (any more): on a live broker, retention or the log cleaner
    /// renamed it after it was listed.
    pub vanished: bool,
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.message)
    }
}

impl std::error::Error for OpenError {}

/// Maps a file; only a regular file (`MappedFile::open` checks the opened file).
pub fn open(path: &Path) -> Result<MappedFile, OpenError> {
    crate::sys::map(&path).map_err(|e| OpenError {
        path: path.to_path_buf(),
        message: format!("cannot read: {e}"),
        vanished: e.kind() == std::io::ErrorKind::NotFound,
    })
}

// ---------------------------------------------------------------------------------------
// Offset index, streamed against the batches in position order.

#[derive(Default, Clone, Copy)]
struct EntryState {
    started: bool,
    dump_log_ok: bool,
    found: bool,
    first_last_offset: Option<i64>,
}

struct OffsetIndexCheck<'a> {
    path: PathBuf,
    idx: OffsetIndex<'a>,
    valid: usize,
    i: usize,
    state: EntryState,
}

/// Valid entries of an index, treating a lone all-zero entry 0 in an all-zero file as part
/// of the preallocated tail (a freshly created active index has no entries at all).
fn valid_and_tail<E: segvault_format::index::IndexEntry>(
    idx: &segvault_format::index::IndexFile<'_, E>,
    data: &[u8],
) -> (usize, usize) {
    let whole = idx.all_entries();
    let entry_bytes = whole.saturating_mul(E::SIZE);
    if idx.valid_entries == 1
        && data
            .get(..entry_bytes)
            .is_some_and(|d| d.iter().all(|&b| b == 0))
    {
        (0, whole)
    } else {
        (idx.valid_entries, idx.tail_entries)
    }
}

struct Span {
    position: u64,
    base: i64,
    last: i64,
    max_ts: Option<i64>,
}

impl<'a> OffsetIndexCheck<'a> {
    fn entry(&self, i: usize) -> Option<OffsetEntry> {
        (i < self.valid).then(|| self.idx.entry(i)).flatten()
    }

    fn feed(&mut self, b: &Span, out: &mut Out<'_, '_>) {
        while let Some(e) = self.entry(self.i) {
            let p = e.position.max(0) as u64;
            let next = self
                .entry(self.i + 1)
                .map(|n| n.position.max(0) as u64)
                .filter(|&n| n > p)
                .unwrap_or(u64::MAX);
            if b.position < p {
                return;
            }
            if b.position >= next {
                self.finish_entry(None, out);
                continue;
            }
            let off = self.idx.absolute(e.relative_offset);
            if b.position == p {
                self.state.started = true;
                self.state.dump_log_ok = b.last == off;
                self.state.first_last_offset = Some(b.last);
            }
            if b.last == off {
                self.state.found = true;
            }
            return;
        }
    }

    /// Judges the current entry and moves on. `end`: the walk ended at this position (all
    /// later entries were never reached); `None` while batches are still coming.
    fn finish_entry(&mut self, end: Option<(u64, Severity)>, out: &mut Out<'_, '_>) {
        let Some(e) = self.entry(self.i) else { return };
        let i = self.i;
        self.i += 1;
        let st = std::mem::take(&mut self.state);
        let off = self.idx.absolute(e.relative_offset);
        let at = Some((i * 8) as u64);
        if !st.started {
            let p = e.position;
            match end {
                Some((end_pos, sev)) if p >= 0 && p as u64 >= end_pos => {
                    if sev == Severity::Note {
                        // Beyond what was read (--max-bytes, or a live copy whose .log
                        // was copied before its index): nothing to judge.
                        return;
                    }
                    out.file_stats.index_mismatches += 1;
                    out.problem(
                        Problem::new(
                            &self.path,
                            sev,
                            "index_beyond_log",
                            format!(
                                "entry {i} (offset {off}, position {p}) points past the valid data of the .log, which ends at byte {end_pos}"
                            ),
                        )
                        .at(at, Some(off)),
                    );
                }
                _ => {
                    out.file_stats.index_mismatches += 1;
                    out.file_stats.dump_log_index_mismatches += 1;
                    out.problem(
                        Problem::new(
                            &self.path,
                            Severity::Corrupt,
                            "index_position",
                            format!(
                                "entry {i} (offset {off}): expected a batch to start at byte {p} of the .log, found none"
                            ),
                        )
                        .at(at, Some(off)),
                    );
                }
            }
            return;
        }
        let first = st.first_last_offset.unwrap_or(-1);
        if !st.found {
            out.file_stats.index_mismatches += 1;
            out.file_stats.dump_log_index_mismatches += 1;
            out.problem(
                Problem::new(
                    &self.path,
                    Severity::Corrupt,
                    "index_mismatch",
                    format!(
                        "entry {i}: expected a batch appended from byte {} to end at offset {off}, found none (kafka-dump-log: \"Index offset: {off}, log offset: {first}\")",
                        e.position
                    ),
                )
                .at(at, Some(off)),
            );
        } else if !st.dump_log_ok {
            out.file_stats.dump_log_index_mismatches += 1;
            out.problem(
                Problem::new(
                    &self.path,
                    Severity::Note,
                    "index_dump_log_mismatch",
                    format!(
                        "entry {i}: kafka-dump-log reports \"Index offset: {off}, log offset: {first}\", but the entry is valid: the append at byte {} held several batches and the last one ends at offset {off}",
                        e.position
                    ),
                )
                .at(at, Some(off)),
            );
        }
    }

    fn finish(&mut self, end_pos: u64, sev: Severity, out: &mut Out<'_, '_>) {
        while self.i < self.valid {
            self.finish_entry(Some((end_pos, sev)), out);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Time index, streamed against batches in offset order.

struct TimeIndexCheck<'a> {
    path: PathBuf,
    idx: TimeIndex<'a>,
    valid: usize,
    j: usize,
    prev: Option<TimeEntry>,
}

impl TimeIndexCheck<'_> {
    fn entry(&self, j: usize) -> Option<TimeEntry> {
        (j < self.valid).then(|| self.idx.entry(j)).flatten()
    }

    fn feed(&mut self, b: &Span, out: &mut Out<'_, '_>) {
        while let Some(e) = self.entry(self.j) {
            let off = self.idx.absolute(e.relative_offset);
            if off > b.last {
                return;
            }
            let j = self.j;
            self.j += 1;
            let at = Some((j * 12) as u64);
            if let Some(p) = self.prev {
                if e.timestamp < p.timestamp {
                    out.file_stats.index_mismatches += 1;
                    out.problem(
                        Problem::new(
                            &self.path,
                            Severity::Corrupt,
                            "time_index_order",
                            format!(
                                "entry {j}: expected a timestamp >= {} (the previous entry's), found {}",
                                p.timestamp, e.timestamp
                            ),
                        )
                        .at(at, Some(off)),
                    );
                }
            }
            self.prev = Some(e);
            let contains = b.base <= off;
            let ts_ok = b.max_ts == Some(e.timestamp);
            let found = format!(
                "the first batch ending at or after it spans offsets {}..={} with max timestamp {}",
                b.base,
                b.last,
                b.max_ts.map_or("none".into(), |t| t.to_string())
            );
            if !(contains && ts_ok) {
                out.file_stats.index_mismatches += 1;
                out.problem(
                    Problem::new(
                        &self.path,
                        Severity::Corrupt,
                        "time_index_mismatch",
                        format!(
                            "entry {j} (timestamp {}, offset {off}): expected a batch holding that offset with that max timestamp; {found}",
                            e.timestamp
                        ),
                    )
                    .at(at, Some(off)),
                );
            } else if off != b.last {
                out.problem(
                    Problem::new(
                        &self.path,
                        Severity::Note,
                        "time_index_dump_log_mismatch",
                        format!(
                            "entry {j} (timestamp {}, offset {off}) names a record inside a batch rather than its last offset {} (kafka-dump-log reports \"Indexed offset: {off}, found log offset: {}\")",
                            e.timestamp, b.last, b.last
                        ),
                    )
                    .at(at, Some(off)),
                );
            }
        }
    }

    fn finish(&mut self, end_pos: u64, sev: Severity, out: &mut Out<'_, '_>) {
        while let Some(e) = self.entry(self.j) {
            let j = self.j;
            self.j += 1;
            if sev == Severity::Note {
                continue;
            }
            let off = self.idx.absolute(e.relative_offset);
            out.file_stats.index_mismatches += 1;
            out.problem(
                Problem::new(
                    &self.path,
                    sev,
                    "time_index_beyond_log",
                    format!(
                        "entry {j} (timestamp {}, offset {off}): expected a batch ending at or after offset {off}, but the valid data of the .log ends at byte {end_pos} before it",
                        e.timestamp
                    ),
                )
                .at(Some((j * 12) as u64), Some(off)),
            );
        }
    }
}

// ---------------------------------------------------------------------------------------

/// What an index file's shape says, whatever its entry type: a length that is not a whole
/// number of `entry_size` entries, and what its zero-filled tail means (see
/// [`index_zero_tail_problem`]).
fn index_shape_problems(
    path: &Path,
    len: usize,
    has_trailing_bytes: bool,
    (valid, tail, tail_zero): (usize, usize, bool),
    entry_size: usize,
    active: bool,
) -> Vec<Problem> {
    let mut v = Vec::new();
    if has_trailing_bytes {
        v.push(
            Problem::new(
                path,
                Severity::Corrupt,
                "index_length",
                format!("expected a length divisible by {entry_size}, found {len} bytes"),
            )
            .at(Some(len as u64), None),
        );
    }
    v.extend(index_zero_tail_problem(
        path, valid, tail, tail_zero, entry_size, active,
    ));
    v
}

fn index_zero_tail_problem(
    path: &Path,
    valid: usize,
    tail: usize,
    tail_zero: bool,
    entry_size: usize,
    active: bool,
) -> Option<Problem> {
    if tail == 0 {
        return None;
    }
    let pos = Some((valid * entry_size) as u64);
    if !tail_zero {
        return Some(
            Problem::new(
                path,
                Severity::Corrupt,
                "index_tail_garbage",
                format!(
                    "expected entries with increasing offsets or a zero-filled preallocated tail after entry {valid}, found {tail} entries of non-zero bytes after an entry at the base offset"
                ),
            )
            .at(pos, None),
        );
    }
    Some(
        Problem::new(
            path,
            Severity::Note,
            "index_preallocated_tail",
            format!(
                "{tail} zero-filled preallocated entries after the {valid} valid ones (not entries; {})",
                if active {
                    "the broker preallocates the active segment's indexes"
                } else {
                    "the broker trims these when a segment is closed, so this file was copied while its segment was active"
                }
            ),
        )
        .at(pos, None),
    )
}

/// Bytes and entries of one window of the pipelined walk in [`check_segment`]: small
/// enough to stay in cache, large enough that handing one over costs nothing.
const WINDOW_BYTES: usize = 1 << 20;
const WINDOW_ENTRIES: usize = 64;

/// Frames the next window of entries into `into`, each with its CRC verdict.
fn next_window<'a>(walk: &mut LogEntries<'a>, into: &mut Vec<(Batch<'a>, bool)>) {
    into.clear();
    let mut bytes = 0usize;
    while bytes < WINDOW_BYTES && into.len() < WINDOW_ENTRIES {
        let Some(b) = walk.next() else { break };
        bytes = bytes.saturating_add(b.size());
        let ok = b.crc_ok();
        into.push((b, ok));
    }
}

/// Walks a segment: see the module doc. Returns `Err` only when a file cannot be opened.
pub fn check_segment(
    input: &SegmentInput,
    opts: &WalkOptions,
    sink: &mut dyn FnMut(Event<'_>),
) -> Result<SegmentStats, OpenError> {
    let mut stats = SegmentStats::default();
    let log_map = if opts.index_only {
        None
    } else {
        Some(open(&input.log)?)
    };
    let maps =
        [&input.index, &input.timeindex, &input.txnindex].map(|p| p.as_ref().map(|p| open(p)));
    let [idx_map, time_map, txn_map] = maps;
    let idx_map = idx_map.transpose()?;
    let time_map = time_map.transpose()?;
    let txn_map = txn_map.transpose()?;
    let mut out = Out {
        sink,
        file_stats: &mut stats,
    };
    let file = input.log.as_path();
    let base = input.base_offset.unwrap_or(0);

    // Index files: parse, emit entries, report structural problems, prepare streaming checks.
    let mut oic = None;
    if let (Some(path), Some(map)) = (&input.index, &idx_map) {
        let idx = OffsetIndex::parse(map, base);
        let (valid, tail) = valid_and_tail(&idx, map);
        out.file_stats.index_entries += valid as u64;
        out.file_stats.index_tail_entries += tail as u64;
        if opts.emit_index_entries {
            for i in 0..valid {
                if let Some(e) = idx.entry(i) {
                    let mut l = IndexEntryLine::new(path, "offset", i);
                    l.offset = Some(idx.absolute(e.relative_offset));
                    l.position = Some(i64::from(e.position));
                    out.emit(Event::IndexEntry(&l));
                }
            }
        }
        for p in index_shape_problems(
            path,
            map.len(),
            idx.trailing_bytes != 0,
            (valid, tail, idx.tail_all_zero),
            8,
            input.active,
        ) {
            out.problem(p);
        }
        if let Err(e) = idx.check() {
            out.file_stats.index_mismatches += 1;
            out.problem(Problem::from_format(path, Severity::Corrupt, &e).with_kind("index_order"));
        }
        oic = Some(OffsetIndexCheck {
            path: path.clone(),
            idx,
            valid,
            i: 0,
            state: EntryState::default(),
        });
    }
    let mut tic = None;
    if let (Some(path), Some(map)) = (&input.timeindex, &time_map) {
        let idx = TimeIndex::parse(map, base);
        let (valid, tail) = valid_and_tail(&idx, map);
        out.file_stats.index_entries += valid as u64;
        out.file_stats.index_tail_entries += tail as u64;
        if opts.emit_index_entries {
            for i in 0..valid {
                if let Some(e) = idx.entry(i) {
                    let mut l = IndexEntryLine::new(path, "time", i);
                    l.timestamp = Some(e.timestamp);
                    l.offset = Some(idx.absolute(e.relative_offset));
                    out.emit(Event::IndexEntry(&l));
                }
            }
        }
        for p in index_shape_problems(
            path,
            map.len(),
            idx.trailing_bytes != 0,
            (valid, tail, idx.tail_all_zero),
            12,
            input.active,
        ) {
            out.problem(p);
        }
        tic = Some(TimeIndexCheck {
            path: path.clone(),
            idx,
            valid,
            j: 0,
            prev: None,
        });
    }
    // Aborted transactions: (producer id, marker offset) -> (entry, matched).
    let mut aborted: HashMap<(i64, i64), (usize, bool)> = HashMap::new();
    if let (Some(path), Some(map)) = (&input.txnindex, &txn_map) {
        match segvault_format::index::parse_txn_index(map) {
            Ok(entries) => {
                for (i, t) in entries.iter().enumerate() {
                    if opts.emit_index_entries {
                        let mut l = IndexEntryLine::new(path, "txn", i);
                        l.producer_id = Some(t.producer_id);
                        l.first_offset = Some(t.first_offset);
                        l.last_offset = Some(t.last_offset);
                        l.last_stable_offset = Some(t.last_stable_offset);
                        out.emit(Event::IndexEntry(&l));
                    }
                    aborted.insert((t.producer_id, t.last_offset), (i, false));
                }
                out.file_stats.index_entries += entries.len() as u64;
            }
            Err(e) => out.problem(Problem::from_format(path, Severity::Corrupt, &e)),
        }
    }

    // Where to start and stop reading the .log.
    let data: &[u8] = log_map.as_deref().unwrap_or(&[]);
    let limit = opts.max_bytes.map_or(data.len(), |m| {
        usize::try_from(m).unwrap_or(usize::MAX).min(data.len())
    });
    let mut start = 0usize;
    if let Some(from) = opts.from_offset {
        let seek_map = match &opts.seek_index {
            Some(p) if p.is_file() => open(p).ok(),
            _ => None,
        };
        let seek_data: Option<&[u8]> = match (&seek_map, &idx_map) {
            (Some(m), _) => Some(m),
            (None, Some(m)) => Some(m),
            _ => None,
        };
        if let Some(d) = seek_data {
            let idx = OffsetIndex::parse(d, base);
            let (valid, _) = valid_and_tail(&idx, d);
            // Largest entry with an offset below the target: its batch starts at or
            // before the first batch we want.
            for i in 0..valid {
                match idx.entry(i) {
                    Some(e) if idx.absolute(e.relative_offset) < from => {
                        start = (e.position.max(0) as usize).min(limit)
                    }
                    _ => break,
                }
            }
        }
    }
    if let Some(oc) = &mut oic {
        // Entries before the start are not checked.
        while let Some(e) = oc.entry(oc.i) {
            if (e.position.max(0) as usize) < start {
                oc.i += 1;
            } else {
                break;
            }
        }
    }
    let slice = data.get(start..limit).unwrap_or(&[]);
    let start_pos = start as u64;
    let mut walk = log_entries(slice).without_crc_check();
    let mut prev_last: Option<i64> = None;
    let mut first_checked = false;
    let limits = Limits::default();

    // One entry: its events, records, offset checks and index cross-checks. `crc_ok` is
    // the entry's CRC verdict, computed by the caller (possibly ahead, on another thread).
    let mut process = |b: Batch<'_>, crc_ok: bool| {
        let pos = start_pos + b.position();
        let size = b.size() as u64;
        let last = b.last_offset().unwrap_or(i64::MAX);
        if let Some(from) = opts.from_offset {
            if last < from {
                return;
            }
        }
        out.file_stats.batches += 1;
        out.file_stats.bytes += size;
        let line = BatchLine::new(file, pos, &b, crc_ok);
        if opts.emit_batches {
            out.emit(Event::Batch(&line));
        }
        if !line.crc_valid {
            out.file_stats.crc_failures += 1;
            if let Err(e) = b.verify_crc() {
                out.problem(Problem::from_format(
                    file,
                    Severity::Corrupt,
                    &e.shifted(start_pos),
                ));
            }
        }
        // Records.
        let mut first_in_entry = match b {
            Batch::V2(v) => Some(v.header.base_offset),
            Batch::Legacy(l) if !l.is_compressed() => Some(l.offset),
            Batch::Legacy(_) => None,
        };
        let mut counted = b.shallow_record_count().max(0) as u64;
        let mut first_record: Option<i64> = None;
        let mut abort_marker: Option<i64> = None;
        if opts.records != RecordMode::Shallow || b.is_control() {
            let emit = opts.records == RecordMode::Emit;
            match walk_records(
                file,
                pos,
                start_pos,
                &b,
                opts.decoder,
                emit,
                limits,
                &mut out,
            ) {
                Ok(r) => {
                    if opts.records != RecordMode::Shallow {
                        counted = r.count;
                    }
                    if r.first_offset.is_some() {
                        first_in_entry = first_in_entry.or(r.first_offset);
                        first_record = first_record.or(r.first_offset);
                    }
                    if r.abort {
                        abort_marker = b.last_offset();
                    }
                }
                Err(p) => out.problem(p),
            }
        }
        out.file_stats.records += counted;
        if b.is_control() {
            out.file_stats.control_records += counted;
        }
        // Offsets: order, gaps, range of the segment.
        if let Some(first) = first_in_entry {
            if !first_checked {
                first_checked = true;
                if input.base_offset.is_some_and(|bo| first < bo) {
                    out.problem(
                        Problem::new(file, Severity::Corrupt, "offset_below_base", format!(
                            "expected the first batch to start at or after the segment's base offset {base} (its file name), found base offset {first}"
                        )).at(Some(pos), Some(first)),
                    );
                }
            }
            if let Some(pl) = prev_last {
                if first <= pl {
                    out.problem(
                        Problem::new(file, Severity::Corrupt, "offset_overlap", format!(
                            "expected a base offset above {pl} (the previous batch's last offset), found {first}"
                        )).at(Some(pos), Some(first)),
                    );
                } else if first > pl.saturating_add(1) {
                    out.file_stats.offset_gaps += 1;
                }
            }
            if out.file_stats.first_offset.is_none() {
                out.file_stats.first_offset = Some(first_record.unwrap_or(first));
            }
        } else if prev_last.is_some_and(|pl| last <= pl) {
            out.problem(
                Problem::new(
                    file,
                    Severity::Corrupt,
                    "offset_overlap",
                    format!(
                        "expected a last offset above {} (the previous entry's), found {last}",
                        prev_last.unwrap_or_default()
                    ),
                )
                .at(Some(pos), Some(last)),
            );
        }
        if let Some(v2) = match b {
            Batch::V2(v) => Some(v),
            _ => None,
        } {
            if v2.header.last_offset_delta < 0 {
                out.problem(
                    Problem::new(
                        file,
                        Severity::Corrupt,
                        "bad_value",
                        format!(
                            "expected a non-negative last offset delta, found {}",
                            v2.header.last_offset_delta
                        ),
                    )
                    .at(Some(pos + 23), Some(v2.header.base_offset)),
                );
            }
        }
        if input.base_offset.is_some() && last.saturating_sub(base) > i64::from(i32::MAX) {
            out.problem(
                Problem::new(file, Severity::Corrupt, "offset_out_of_segment", format!(
                    "expected a last offset within 2^31-1 of the segment base {base} (indexes store 32-bit relative offsets), found {last}"
                )).at(Some(pos), Some(last)),
            );
        }
        prev_last = Some(prev_last.map_or(last, |p| p.max(last)));
        out.file_stats.last_offset = prev_last;
        // Cross-checks.
        let span = Span {
            position: pos,
            base: first_in_entry.unwrap_or(last),
            last,
            max_ts: b.max_timestamp(),
        };
        if let Some(oc) = &mut oic {
            oc.feed(&span, &mut out);
        }
        if let Some(tc) = &mut tic {
            tc.feed(&span, &mut out);
        }
        if let Some(marker) = abort_marker {
            let pid = b.producer_id();
            match aborted.get_mut(&(pid, marker)) {
                Some(slot) => slot.1 = true,
                None if input.txnindex.is_some() || !input.active => {
                    let sev = if input.active {
                        Severity::Note
                    } else {
                        Severity::Corrupt
                    };
                    out.file_stats.index_mismatches += u64::from(sev == Severity::Corrupt);
                    out.problem(
                        Problem::new(file, sev, "txn_index_missing", format!(
                            "expected the .txnindex to list the aborted transaction of producer {pid} whose ABORT marker is at offset {marker}, found {} (read_committed consumers would receive its records)",
                            if input.txnindex.is_some() { "no such entry" } else { "no .txnindex" }
                        )).at(Some(pos), Some(marker)),
                    );
                }
                None => {}
            }
        }
    };
    if opts.pipeline {
        // While this thread handles one window of entries, a helper thread frames the
        // next ones and verifies their CRCs (faulting their pages in). Bounded: at most
        // two windows queued, one being framed, one being handled.
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<(Batch<'_>, bool)>>(2);
        let helper_walk = walk;
        let joined = std::thread::scope(|s| {
            let helper = s.spawn(move || {
                let mut walk = helper_walk;
                loop {
                    let mut w = Vec::new();
                    next_window(&mut walk, &mut w);
                    if w.is_empty() || tx.send(w).is_err() {
                        break;
                    }
                }
                walk
            });
            for w in rx {
                for (b, crc_ok) in w {
                    process(b, crc_ok);
                }
            }
            helper.join()
        });
        walk = match joined {
            Ok(w) => w,
            Err(panic) => std::panic::resume_unwind(panic),
        };
    } else {
        for b in walk.by_ref() {
            let crc_ok = b.crc_ok();
            process(b, crc_ok);
        }
    }

    let indexes = [
        (&input.index, &idx_map),
        (&input.timeindex, &time_map),
        (&input.txnindex, &txn_map),
    ];
    if opts.index_only {
        all_intact(&indexes)?;
        return Ok(stats);
    }
    // How the walk ended.
    let end = walk.finish();
    let valid_end = start_pos + walk.position();
    let cut_by_max = limit < data.len();
    let mut end_sev = Severity::Corrupt;
    match end {
        SegmentEnd::Clean => end_sev = Severity::Note,
        SegmentEnd::PartialTail { position, bytes } => {
            let position = start_pos + position;
            if cut_by_max && position + bytes == limit as u64 {
                end_sev = Severity::Note;
                out.problem(
                    Problem::new(file, Severity::Note, "max_bytes", format!(
                        "stopped at --max-bytes {limit}: the entry at byte {position} continues past it"
                    )).at(Some(position), None),
                );
            } else if let Some(real_end) = length_field_corrupted(data, position as usize) {
                out.problem(
                    Problem::new(file, Severity::Corrupt, "bad_length", format!(
                        "the length field at byte {} says the batch runs past the end of the file ({} bytes left), but a batch with a valid CRC ends at byte {real_end}: the length field is corrupt",
                        position + 8, bytes
                    )).at(Some(position + 8), read_i64(data, position as usize)),
                );
            } else {
                out.file_stats.partial_tail_bytes = bytes;
                let sev = if input.active {
                    Severity::Note
                } else {
                    Severity::Partial
                };
                end_sev = sev;
                out.problem(
                    Problem::new(file, sev, "partial_tail", format!(
                        "expected a complete batch at byte {position}, found only {bytes} bytes before the end of the file ({}; a broker's recovery truncates them)",
                        if input.active { "the active segment of a live broker can end like this" } else { "this is not the active segment" }
                    )).at(Some(position), read_i64(data, position as usize)),
                );
            }
        }
        SegmentEnd::Corrupt(e) => {
            let e = e.shifted(start_pos);
            let tail_start = valid_end as usize;
            let all_zero = data
                .get(tail_start.min(limit)..limit)
                .is_some_and(|t| t.iter().all(|&b| b == 0));
            if all_zero && tail_start < limit {
                let bytes = (limit - tail_start) as u64;
                out.file_stats.partial_tail_bytes = bytes;
                let sev = if input.active && out.file_stats.batches > 0 {
                    Severity::Note
                } else {
                    Severity::Partial
                };
                end_sev = sev;
                out.problem(
                    Problem::new(file, sev, "zero_tail", format!(
                        "expected a batch at byte {tail_start}, found {bytes} zero bytes to the end of the file (preallocation with file.preallocate, or a crash before data reached the disk; recovery truncates them)"
                    )).at(Some(tail_start as u64), None),
                );
            } else {
                out.problem(Problem::from_format(file, Severity::Corrupt, &e));
            }
        }
    }
    if let Some(oc) = &mut oic {
        let sev = if cut_by_max || (input.active && end_sev == Severity::Note) {
            Severity::Note
        } else {
            end_sev.max(Severity::Partial)
        };
        oc.finish(valid_end, sev, &mut out);
    }
    if let Some(tc) = &mut tic {
        let sev = if cut_by_max || (input.active && end_sev == Severity::Note) {
            Severity::Note
        } else {
            end_sev.max(Severity::Partial)
        };
        tc.finish(valid_end, sev, &mut out);
    }
    if !cut_by_max && opts.from_offset.is_none() {
        let mut left: Vec<_> = aborted.iter().filter(|(_, (_, m))| !m).collect();
        left.sort_by_key(|(_, (i, _))| *i);
        for ((pid, marker), (i, _)) in left {
            let sev = if input.active {
                Severity::Note
            } else {
                Severity::Corrupt
            };
            out.file_stats.index_mismatches += u64::from(sev == Severity::Corrupt);
            let path = input.txnindex.clone().unwrap_or_default();
            out.problem(
                Problem::new(&path, sev, "txn_index_mismatch", format!(
                    "entry {i}: expected an ABORT marker of producer {pid} at offset {marker} in the .log, found none"
                )).at(Some((*i * 34) as u64), Some(*marker)),
            );
        }
    }
    // Truncated while read: an I/O error for the file, whatever the walk made of the zeros.
    if let Some(m) = &log_map {
        intact(&input.log, m)?;
    }
    all_intact(&indexes)?;
    Ok(stats)
}

impl Problem {
    fn with_kind(mut self, kind: &'static str) -> Problem {
        self.kind = kind;
        self
    }
}

fn read_i64(data: &[u8], at: usize) -> Option<i64> {
    data.get(at..at.checked_add(8)?)
        .and_then(|b| b.try_into().ok())
        .map(i64::from_be_bytes)
}

/// A partial tail can be a lie: a corrupted length field makes a complete batch look like
/// it runs past the end of the file. If a v2 batch at `pos` has a valid CRC for some
/// shorter length that ends at the end of the file or where another plausible entry
/// starts, returns that end. Scans at most 16 MiB (bigger batches are unusual).
fn length_field_corrupted(data: &[u8], pos: usize) -> Option<u64> {
    const MAX_SCAN: usize = 16 << 20;
    let rest = data.get(pos..)?;
    if rest.len() < 61 || rest.get(MAGIC_OFFSET) != Some(&2) {
        return None;
    }
    let stored = u32::from_be_bytes(rest.get(17..21)?.try_into().ok()?);
    let covered = rest.get(V2_CRC_START..)?;
    let mut crc = 0u32;
    let mut done = 0usize;
    // Candidate ends: every byte from the minimal batch size on.
    let first_end = 61 - V2_CRC_START;
    let max = covered.len().min(MAX_SCAN);
    if max < first_end {
        return None;
    }
    crc = crc32c::crc32c_append(crc, covered.get(..first_end)?);
    done += first_end;
    loop {
        if crc == stored {
            let end = V2_CRC_START + done;
            let next = rest.get(end..).unwrap_or(&[]);
            let plausible_next = next.is_empty()
                || (next.len() >= 17
                    && matches!(next.get(MAGIC_OFFSET), Some(0..=2))
                    && next
                        .get(8..12)
                        .and_then(|b| b.try_into().ok())
                        .map(i32::from_be_bytes)
                        .is_some_and(|len| len >= 14));
            if plausible_next {
                return Some((pos + end) as u64);
            }
        }
        if done >= max {
            return None;
        }
        crc = crc32c::crc32c_append(crc, &covered[done..done + 1]);
        done += 1;
    }
}

struct RecordsResult {
    count: u64,
    first_offset: Option<i64>,
    abort: bool,
}

/// Decodes (and optionally emits) the records of a batch or legacy entry.
#[allow(clippy::too_many_arguments)]
fn walk_records(
    file: &Path,
    pos: u64,
    start_pos: u64,
    b: &Batch<'_>,
    decoder: Decoder,
    emit: bool,
    limits: Limits,
    out: &mut Out<'_, '_>,
) -> Result<RecordsResult, Problem> {
    let to_problem = |e: FormatError| {
        let kind = match e.kind {
            ErrorKind::Crc => "crc",
            ErrorKind::Decompress => "decompress",
            _ => "record",
        };
        Problem::from_format(file, Severity::Corrupt, &e.shifted(start_pos)).with_kind(kind)
    };
    let mut res = RecordsResult {
        count: 0,
        first_offset: None,
        abort: false,
    };
    match b {
        Batch::V2(v) => {
            let control = v.header.attributes.is_control();
            let delta = v.header.last_offset_delta;
            let mut recs = v.records_with_limits(limits).map_err(to_problem)?;
            let mut prev_delta = -1i32;
            while let Some(r) = recs.next_record() {
                let r = r.map_err(to_problem)?;
                if r.offset_delta <= prev_delta || r.offset_delta > delta {
                    return Err(Problem::new(file, Severity::Corrupt, "record", format!(
                        "expected record offset deltas increasing within 0..={delta}, found {} after {prev_delta}",
                        r.offset_delta
                    )).at(Some(pos), Some(v.header.base_offset)));
                }
                prev_delta = r.offset_delta;
                res.count += 1;
                let offset = v.record_offset(r.offset_delta).unwrap_or(i64::MAX);
                if res.first_offset.is_none() {
                    res.first_offset = Some(offset);
                }
                let control_json = if control {
                    let c = decode_control_record(r.key, r.value);
                    if let Ok(ControlRecord::EndTxn { commit: false, .. }) = c {
                        res.abort = true;
                    }
                    Some(control_to_json(c))
                } else {
                    None
                };
                if emit {
                    let view = RecordView {
                        file,
                        batch_position: pos,
                        offset,
                        timestamp: v.record_timestamp(r.timestamp_delta),
                        key: r.key,
                        value: r.value,
                        headers: r.headers().map(|h| (h.key, h.value)).collect(),
                        control: control_json,
                        decoded: if control {
                            None
                        } else {
                            decode(decoder, r.key, r.value)
                        },
                    };
                    out.emit(Event::Record(&view));
                }
            }
        }
        Batch::Legacy(l) => {
            if !l.is_compressed() {
                res.count = 1;
                res.first_offset = Some(l.offset);
                if emit {
                    let view = RecordView {
                        file,
                        batch_position: pos,
                        offset: l.offset,
                        timestamp: l.timestamp,
                        key: l.key,
                        value: l.value,
                        headers: Vec::new(),
                        control: None,
                        decoded: decode(decoder, l.key, l.value),
                    };
                    out.emit(Event::Record(&view));
                }
            } else {
                let inner = l.inner(limits).map_err(to_problem)?;
                let mut prev: Option<i64> = None;
                for m in inner.iter() {
                    let m = m.map_err(to_problem)?;
                    if prev.is_some_and(|p| m.offset <= p) || m.offset > l.offset {
                        return Err(Problem::new(file, Severity::Corrupt, "record", format!(
                            "expected inner message offsets increasing up to the wrapper's {}, found {} after {}",
                            l.offset, m.offset, prev.map_or("none".into(), |p| p.to_string())
                        )).at(Some(pos), Some(l.offset)));
                    }
                    prev = Some(m.offset);
                    res.count += 1;
                    if res.first_offset.is_none() {
                        res.first_offset = Some(m.offset);
                    }
                    if emit {
                        let view = RecordView {
                            file,
                            batch_position: pos,
                            offset: m.offset,
                            timestamp: m.timestamp,
                            key: m.entry.key,
                            value: m.entry.value,
                            headers: Vec::new(),
                            control: None,
                            decoded: decode(decoder, m.entry.key, m.entry.value),
                        };
                        out.emit(Event::Record(&view));
                    }
                }
            }
        }
    }
    Ok(res)
}

fn control_to_json(c: Result<ControlRecord, FormatError>) -> Value {
    match c {
        Ok(ControlRecord::EndTxn {
            commit,
            version,
            coordinator_epoch,
        }) => json!({
            "type": if commit { "COMMIT" } else { "ABORT" }, "version": version, "coordinator_epoch": coordinator_epoch
        }),
        Ok(ControlRecord::LeaderChange { version, leader_id }) => {
            json!({"type": "LEADER_CHANGE", "version": version, "leader_id": leader_id})
        }
        Ok(ControlRecord::SnapshotHeader {
            version,
            last_contained_log_timestamp,
        }) => {
            json!({"type": "SNAPSHOT_HEADER", "version": version, "last_contained_log_timestamp": last_contained_log_timestamp})
        }
        Ok(ControlRecord::SnapshotFooter { version }) => {
            json!({"type": "SNAPSHOT_FOOTER", "version": version})
        }
        Ok(ControlRecord::KraftVersion {
            version,
            kraft_version,
        }) => json!({"type": "KRAFT_VERSION", "version": version, "kraft_version": kraft_version}),
        Ok(ControlRecord::KraftVoters {
            version,
            voter_count,
            first_voter_id,
        }) => {
            json!({"type": "KRAFT_VOTERS", "version": version, "voter_count": voter_count, "first_voter_id": first_voter_id})
        }
        Ok(ControlRecord::Unknown {
            key_version,
            type_id,
        }) => json!({"type": "UNKNOWN", "key_version": key_version, "type_id": type_id}),
        Err(e) => json!({"type": "INVALID", "error": e.to_string()}),
    }
}

/// Decodes an internal-topic record's key and value into JSON (`None` for plain topics).
pub fn decode(decoder: Decoder, key: Option<&[u8]>, value: Option<&[u8]>) -> Option<Value> {
    match decoder {
        Decoder::None => None,
        Decoder::ConsumerOffsets => Some(decode_group(key, value)),
        Decoder::TransactionState => Some(decode_txn(key, value)),
        Decoder::ClusterMetadata => Some(decode_metadata(value)),
    }
}

fn decode_group(key: Option<&[u8]>, value: Option<&[u8]>) -> Value {
    let Some(key) = key else {
        return json!({"type": "invalid", "error": "a null key"});
    };
    match parse_group_key(key) {
        Ok(GroupKey::OffsetCommit {
            version,
            group,
            topic,
            partition,
        }) => {
            let mut v = json!({"type": "offset_commit", "key_version": version, "group": group, "topic": topic, "partition": partition});
            match value.map(parse_offset_commit_value) {
                None => v["tombstone"] = json!(true),
                Some(Ok(c)) => {
                    v["offset"] = json!(c.offset);
                    v["leader_epoch"] = json!(c.leader_epoch);
                    v["metadata"] = json!(c.metadata);
                    v["commit_timestamp"] = json!(c.commit_timestamp);
                }
                Some(Err(e)) => v["value_error"] = json!(e.to_string()),
            }
            v
        }
        Ok(GroupKey::GroupMetadata { group }) => {
            json!({"type": "group_metadata", "group": group, "tombstone": value.is_none()})
        }
        Ok(GroupKey::Other { version }) => json!({"type": "other", "key_version": version}),
        Err(e) => json!({"type": "invalid", "error": e.to_string()}),
    }
}

fn decode_txn(key: Option<&[u8]>, value: Option<&[u8]>) -> Value {
    let Some(key) = key else {
        return json!({"type": "invalid", "error": "a null key"});
    };
    match parse_txn_key(key) {
        Ok(id) => {
            let mut v = json!({"type": "transaction", "transactional_id": id});
            match value.map(parse_txn_value) {
                None => v["tombstone"] = json!(true),
                Some(Ok(t)) => {
                    v["producer_id"] = json!(t.producer_id);
                    v["producer_epoch"] = json!(t.producer_epoch);
                    v["timeout_ms"] = json!(t.timeout_ms);
                    v["state"] = json!(format!("{:?}", t.state));
                }
                Some(Err(e)) => v["value_error"] = json!(e.to_string()),
            }
            v
        }
        Err(e) => json!({"type": "invalid", "error": e.to_string()}),
    }
}

fn decode_metadata(value: Option<&[u8]>) -> Value {
    let Some(value) = value else {
        return json!({"type": "invalid", "error": "a null value"});
    };
    match decode_metadata_record(value) {
        Ok(r) => {
            let mut v = json!({
                "type": r.type_name.unwrap_or("Unknown"), "api_key": r.api_key, "version": r.version,
            });
            match r.fields {
                MetadataFields::Topic { name, topic_id } => {
                    v["name"] = json!(name);
                    v["topic_id"] = json!(topic_id.to_string());
                }
                MetadataFields::Partition {
                    partition_id,
                    topic_id,
                } => {
                    v["partition_id"] = json!(partition_id);
                    v["topic_id"] = json!(topic_id.to_string());
                }
                MetadataFields::RemoveTopic { topic_id } => {
                    v["topic_id"] = json!(topic_id.to_string())
                }
                MetadataFields::Broker {
                    broker_id,
                    broker_epoch,
                } => {
                    v["broker_id"] = json!(broker_id);
                    v["broker_epoch"] = json!(broker_epoch);
                }
                MetadataFields::Controller { controller_id } => {
                    v["controller_id"] = json!(controller_id)
                }
                MetadataFields::FeatureLevel { name, level } => {
                    v["name"] = json!(name);
                    v["level"] = json!(level);
                }
                MetadataFields::Config {
                    resource_type,
                    resource_name,
                    name,
                } => {
                    v["resource_type"] = json!(resource_type);
                    v["resource_name"] = json!(resource_name);
                    v["name"] = json!(name);
                }
                MetadataFields::ProducerIds {
                    broker_id,
                    broker_epoch,
                    next_producer_id,
                } => {
                    v["broker_id"] = json!(broker_id);
                    v["broker_epoch"] = json!(broker_epoch);
                    v["next_producer_id"] = json!(next_producer_id);
                }
                MetadataFields::Other => {}
            }
            v
        }
        Err(e) => json!({"type": "invalid", "error": e.to_string()}),
    }
}

// ---------------------------------------------------------------------------------------
// Other files.

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
) -> Result<SegmentStats, OpenError> {
    let mut stats = SegmentStats::default();
    let map = open(path)?;
    let data: &[u8] = &map;
    stats.bytes = data.len() as u64;
    let mut out = Out {
        sink,
        file_stats: &mut stats,
    };
    let file = path.to_string_lossy().into_owned();
    let info = |out: &mut Out<'_, '_>, v: Value| {
        if emit {
            out.emit(Event::Info(&v));
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
                    info(
                        &mut out,
                        json!({"type": "producer_state", "file": file, "producer_id": e.producer_id, "producer_epoch": e.epoch,
                        "last_sequence": e.last_sequence, "last_offset": e.last_offset, "offset_delta": e.offset_delta,
                        "timestamp": e.timestamp, "coordinator_epoch": e.coordinator_epoch, "current_txn_first_offset": e.current_txn_first_offset}),
                    );
                }
                out.file_stats.records = s.entries.len() as u64;
            }
            Err(e) => corrupt(&mut out, e),
        },
        FileKind::OffsetCheckpoint => match parse_offset_checkpoint(data) {
            Ok(v) => {
                for e in &v {
                    info(
                        &mut out,
                        json!({"type": "checkpoint_entry", "file": file, "topic": e.topic, "partition": e.partition, "offset": e.offset}),
                    );
                }
                out.file_stats.records = v.len() as u64;
            }
            Err(e) => corrupt(&mut out, e),
        },
        FileKind::LeaderEpochCheckpoint => match parse_leader_epoch_checkpoint(data) {
            Ok(v) => {
                for e in &v {
                    info(
                        &mut out,
                        json!({"type": "leader_epoch", "file": file, "epoch": e.epoch, "start_offset": e.start_offset}),
                    );
                }
                out.file_stats.records = v.len() as u64;
            }
            Err(e) => corrupt(&mut out, e),
        },
        FileKind::PartitionMetadata => match parse_partition_metadata(data) {
            Ok(id) => info(
                &mut out,
                json!({"type": "partition_metadata", "file": file, "version": 0, "topic_id": id.to_string()}),
            ),
            Err(e) => corrupt(&mut out, e),
        },
        FileKind::MetaProperties => match parse_meta_properties(data) {
            Ok(m) => info(
                &mut out,
                json!({"type": "meta_properties", "file": file, "version": m.version, "node_id": m.node_id,
                "cluster_id": m.cluster_id, "directory_id": m.directory_id.map(|d| d.to_string()), "properties": m.properties}),
            ),
            Err(e) => corrupt(&mut out, e),
        },
        FileKind::QuorumState => match parse_quorum_state(data) {
            Ok(q) => info(
                &mut out,
                json!({"type": "quorum_state", "file": file, "state": q}),
            ),
            Err(e) => corrupt(&mut out, e),
        },
        FileKind::CleanShutdown => match parse_clean_shutdown(data) {
            Ok(epoch) => info(
                &mut out,
                json!({"type": "clean_shutdown", "file": file, "broker_epoch": epoch}),
            ),
            Err(e) => corrupt(&mut out, e),
        },
        _ => {
            out.problem(Problem::new(path, Severity::Note, "unknown_file", "not a file kind segvault knows (expected a segment, index, snapshot, checkpoint or metadata file); ignored".into()));
        }
    }
    intact(path, &map)?;
    Ok(stats)
}

/// [`intact`] for each mapped index file.
fn all_intact(files: &[(&Option<PathBuf>, &Option<MappedFile>)]) -> Result<(), OpenError> {
    for (p, m) in files {
        if let (Some(p), Some(m)) = (p, m) {
            intact(p, m)?;
        }
    }
    Ok(())
}

/// An [`OpenError`] if `map` was truncated while read: what was checked was not the file.
fn intact(path: &Path, map: &MappedFile) -> Result<(), OpenError> {
    map.check_intact().map_err(|e| OpenError {
        path: path.to_path_buf(),
        message: e.to_string(),
        vanished: false,
    })
}
