//! Rebuilding a segment's `.index`, `.timeindex` and `.txnindex` from its `.log`, byte for
//! byte as the broker leaves them on disk once the segment is rolled or closed cleanly.
//!
//! Restore needs this whenever the archive lacks a segment's indexes: a range archived as a
//! slice of a segment, or a segment trimmed for a point-in-time restore. A broker given a
//! segment without `.index` recovers it (a full CRC walk); one without `.timeindex` creates
//! an empty one and never rebuilds it (time-based retention and `offsetsForTimes` then see no
//! timestamps); one without `.txnindex` silently serves aborted records to `read_committed`
//! consumers. So the indexes must be rebuilt, and rebuilt exactly.
//!
//! # The broker's rules (Apache Kafka, `storage/.../log/LogSegment.java`)
//!
//! Offset and time index (`LogSegment.append`, `LogSegment.recover`,
//! `OffsetIndex.append`, `TimeIndex.maybeAppend`), per *append*:
//! 1. the segment's max timestamp so far (and the last offset of the first batch that
//!    reached it) is raised if the append's largest timestamp is larger. It starts at
//!    (−1, base) (`TimeIndex.lastEntry` of an empty index), so `NO_TIMESTAMP` (−1, and
//!    every magic 0 entry) never counts;
//! 2. then, if *more than* `index.interval.bytes` were appended since the last index entry
//!    (checked before this append's bytes are counted), an offset-index entry pairs the
//!    append's last offset with the position where the append starts, and a time-index
//!    entry (max timestamp so far, its offset) is added if that timestamp is larger than the
//!    last time-index entry's. The byte counter starts at 0 in a new segment, so the
//!    segment's first append is never indexed;
//! 3. at roll (`onBecomeInactiveSegment`) and close, one more time-index entry for the max
//!    timestamp so far, again only if it is larger than the last entry's; then both files
//!    are trimmed to their entries (no preallocated tail).
//!
//! Recovery (`LogSegment.recover`) applies the same rules per *batch*. On a leader a
//! produce request holds one batch per partition, and a KRaft or internal-topic append is
//! one batch, so per batch ([`build_indexes`]) reproduces what a single-node broker writes.
//! It cannot reproduce segments whose appends grouped several batches, because the grouping
//! is not recorded in the log:
//! - follower replicas append each fetched chunk (up to `replica.fetch.max.bytes`) as one
//!   append;
//! - the log cleaner appends what it keeps of each read buffer of source
//!   (`log.cleaner.io.buffer.size` / `log.cleaner.threads` / 2, 256 KiB by default; at
//!   least one per source segment) as one append, into a fresh segment (the fixtures'
//!   cleaned segments are smaller than the interval, so there it makes no difference);
//! - legacy (magic 0/1) producers sent uncompressed messages as message sets, one append of
//!   many entries;
//! - after a broker restart the active segment continues with its byte counter reset to 0
//!   (a new `LogSegment` object) and with the close-time time entry already written.
//!
//! For those, [`build_indexes_in_appends`] takes the append boundaries and
//! [`IndexBuilder::reopen`] models a restart, if they are known; otherwise the result is
//! what the broker's own recovery would write, which is valid (the broker serves it) but not
//! byte-identical. `tests/format/index_rebuild.rs` shows each case on real broker files: per batch
//! matches every segment of the Kafka 3.9.2 and 4.3.1 fixtures and 12 of the 19 indexed
//! corpus segments; the other 7 (a follower's, and a restarted single node's) match once
//! their appends or restart are modelled.
//!
//! Transaction index: see [`TxnIndexBuilder`].

use std::collections::BTreeMap;

use super::batch::RecordBatch;
use super::control::{parse_control_key, ControlType};
use super::error::{ErrorKind, FormatError, Result};
use super::index::{AbortedTxn, TXN_ENTRY_SIZE};
use super::segment::{log_entries, Batch, SegmentEnd};
use super::snapshot::ProducerEntry;

/// Kafka's default `index.interval.bytes` (`log.index.interval.bytes`).
pub const DEFAULT_INDEX_INTERVAL_BYTES: u32 = 4096;

/// Kafka's `RecordBatch.NO_TIMESTAMP`: the max timestamp of an empty time index, and of
/// every magic 0 entry.
const NO_TIMESTAMP: i64 = -1;

/// The `.index` and `.timeindex` of one segment, as the broker leaves them after roll or
/// clean close.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SegmentIndexes {
    /// `.index` bytes: 8-byte entries, no preallocated tail.
    pub offset_index: Vec<u8>,
    /// `.timeindex` bytes: 12-byte entries, no preallocated tail, final entry included.
    pub time_index: Vec<u8>,
    /// Entries (batches or legacy messages) in the `.log`.
    pub batches: usize,
    /// Bytes of the `.log` covered (all of it: a partial or corrupt tail is an error).
    pub log_bytes: u64,
    /// Last offset of the last batch, `None` for an empty `.log`.
    pub last_offset: Option<i64>,
    /// Whether the last time-index entry is the one roll or close appended (the max
    /// timestamp grew after the last indexed append). A live broker's active segment does
    /// not have it yet.
    pub close_time_entry: bool,
}

/// Incremental builder of a segment's offset and time index, one broker append at a time.
///
/// [`build_indexes`] and [`build_indexes_in_appends`] drive it over a whole `.log`; use it
/// directly to rebuild indexes while writing a segment batch by batch.
#[derive(Debug, Clone)]
pub struct IndexBuilder {
    base_offset: i64,
    interval: u64,
    /// Where the next append must start.
    log_end: u64,
    /// `LogSegment.bytesSinceLastIndexEntry`.
    bytes_since_last_entry: u64,
    /// Max timestamp so far and the offset recorded with it (`maxTimestampAndOffsetSoFar`).
    max_timestamp: (i64, i64),
    last_indexed_offset: Option<i64>,
    /// Last time-index entry, or (−1, base) while there is none (`TimeIndex.lastEntry`).
    last_time_entry: (i64, i64),
    offset_index: Vec<u8>,
    time_index: Vec<u8>,
    batches: usize,
    last_offset: Option<i64>,
}

impl IndexBuilder {
    /// A builder for an empty segment at `base_offset`.
    pub fn new(base_offset: i64, index_interval_bytes: u32) -> IndexBuilder {
        IndexBuilder {
            base_offset,
            interval: u64::from(index_interval_bytes),
            log_end: 0,
            bytes_since_last_entry: 0,
            max_timestamp: (NO_TIMESTAMP, base_offset),
            last_indexed_offset: None,
            last_time_entry: (NO_TIMESTAMP, base_offset),
            offset_index: Vec::new(),
            time_index: Vec::new(),
            batches: 0,
            last_offset: None,
        }
    }

    /// Bytes of `.log` appended so far.
    pub fn log_bytes(&self) -> u64 {
        self.log_end
    }

    /// The offset relative to the base, as both indexes store it. Kafka refuses (and rolls
    /// before) an offset that does not fit (`LogSegment.ensureOffsetInRange`).
    fn relative(&self, offset: i64, position: u64) -> Result<i32> {
        offset
            .checked_sub(self.base_offset)
            .and_then(|r| i32::try_from(r).ok())
            .filter(|r| *r >= 0)
            .ok_or_else(|| {
                FormatError::new(
                    ErrorKind::BadValue,
                    position,
                    format!(
                        "an offset in [{}, {}] (base + a non-negative int32)",
                        self.base_offset,
                        self.base_offset.saturating_add(i64::from(i32::MAX))
                    ),
                )
                .found(offset)
                .at_offset(offset)
            })
    }

    /// One broker append (`LogSegment.append`): `batches` must be contiguous and start where
    /// the previous append ended. An empty slice appends nothing, as in Kafka.
    pub fn append(&mut self, batches: &[Batch<'_>]) -> Result<()> {
        let Some(first) = batches.first() else {
            return Ok(());
        };
        let start = self.log_end;
        let mut end = start;
        // The append's largest offset (its last batch's) and largest timestamp, with the
        // last offset of the first batch carrying it (`shallowOffsetOfMaxTimestamp`).
        let mut largest_offset = first.base_offset();
        let mut largest_ts = (NO_TIMESTAMP, -1i64);
        for b in batches {
            if b.position() != end {
                return Err(FormatError::new(
                    ErrorKind::BadValue,
                    b.position(),
                    format!("a batch starting at byte {end} (appends are contiguous)"),
                )
                .found(format!("a batch at byte {}", b.position()))
                .at_offset(b.base_offset()));
            }
            let last = b.last_offset().ok_or_else(|| {
                FormatError::new(
                    ErrorKind::BadValue,
                    b.position(),
                    "a last offset that fits an int64",
                )
                .at_offset(b.base_offset())
            })?;
            self.relative(last, b.position())?;
            largest_offset = last;
            let ts = b.max_timestamp().unwrap_or(NO_TIMESTAMP);
            if ts > largest_ts.0 {
                largest_ts = (ts, last);
            }
            end += b.size() as u64;
        }
        let physical_position = i32::try_from(start).map_err(|_| {
            FormatError::new(
                ErrorKind::BadLength,
                start,
                "a segment position that fits an int32",
            )
            .at_offset(first.base_offset())
        })?;
        if largest_ts.0 > self.max_timestamp.0 {
            self.max_timestamp = largest_ts;
        }
        if self.bytes_since_last_entry > self.interval {
            self.append_offset_entry(largest_offset, physical_position, start)?;
            self.append_time_entry(start)?;
            self.bytes_since_last_entry = 0;
        }
        self.bytes_since_last_entry += end - start;
        self.log_end = end;
        self.batches += batches.len();
        self.last_offset = Some(largest_offset);
        Ok(())
    }

    /// `OffsetIndex.append`: offsets must grow (Kafka throws `InvalidOffsetException`).
    fn append_offset_entry(&mut self, offset: i64, physical: i32, at: u64) -> Result<()> {
        if matches!(self.last_indexed_offset, Some(last) if offset <= last) {
            return Err(FormatError::new(
                ErrorKind::BadValue,
                at,
                format!(
                    "an offset above the last indexed one ({})",
                    self.last_indexed_offset.unwrap_or_default()
                ),
            )
            .found(offset)
            .at_offset(offset));
        }
        let rel = self.relative(offset, at)?;
        self.offset_index.extend_from_slice(&rel.to_be_bytes());
        self.offset_index.extend_from_slice(&physical.to_be_bytes());
        self.last_indexed_offset = Some(offset);
        Ok(())
    }

    /// `TimeIndex.maybeAppend` with the max timestamp so far: only a larger timestamp is
    /// written.
    fn append_time_entry(&mut self, at: u64) -> Result<()> {
        let (ts, offset) = self.max_timestamp;
        if ts <= self.last_time_entry.0 {
            return Ok(());
        }
        if !self.time_index.is_empty() && offset < self.last_time_entry.1 {
            return Err(FormatError::new(
                ErrorKind::BadValue,
                at,
                format!(
                    "a time-index offset not below the last one ({})",
                    self.last_time_entry.1
                ),
            )
            .found(offset)
            .at_offset(offset));
        }
        let rel = self.relative(offset, at)?;
        self.time_index.extend_from_slice(&ts.to_be_bytes());
        self.time_index.extend_from_slice(&rel.to_be_bytes());
        self.last_time_entry = (ts, offset);
        Ok(())
    }

    /// The broker stopped while this was its active segment and later reopened it: a clean
    /// close (`LogSegment.close`) or, after an unclean stop, recovery (`LogSegment.recover`,
    /// which also rebuilds the entries so far per batch) appends the time-index entry for the
    /// max timestamp so far, and the reopened segment (a new `LogSegment` object) counts bytes
    /// since the last index entry from 0 again. Later appends continue the same files.
    pub fn reopen(&mut self) -> Result<()> {
        self.append_time_entry(self.log_end)?;
        self.bytes_since_last_entry = 0;
        Ok(())
    }

    /// Roll or clean close (`onBecomeInactiveSegment`, `close`): the final time-index entry,
    /// then the trimmed files.
    pub fn finish(mut self) -> Result<SegmentIndexes> {
        let before = self.time_index.len();
        self.append_time_entry(self.log_end)?;
        Ok(SegmentIndexes {
            close_time_entry: self.time_index.len() > before,
            offset_index: self.offset_index,
            time_index: self.time_index,
            batches: self.batches,
            log_bytes: self.log_end,
            last_offset: self.last_offset,
        })
    }
}

/// Turns how a walk over `log` ended into an error unless every byte was a valid batch: a
/// closed segment has no partial tail, and an index over a log the broker would truncate
/// first would not be the broker's.
fn require_clean_end(log: &[u8], end: SegmentEnd) -> Result<()> {
    match end {
        SegmentEnd::Clean => Ok(()),
        SegmentEnd::PartialTail { position, bytes } => {
            let e = FormatError::new(
                ErrorKind::Truncated,
                position,
                "a whole batch (the segment ends in an incomplete one)",
            )
            .found(format!("{bytes} bytes"));
            // The incomplete entry's offset field, when its 8 bytes are there.
            let offset = usize::try_from(position)
                .ok()
                .and_then(|p| log.get(p..p.checked_add(8)?))
                .and_then(|b| b.try_into().ok())
                .map(i64::from_be_bytes);
            Err(match offset {
                Some(o) => e.at_offset(o),
                None => e,
            })
        }
        SegmentEnd::Corrupt(e) => Err(e),
    }
}

/// The `.index` and `.timeindex` the broker has on disk for the segment `log` (a whole
/// `.log`, every CRC verified) at `base_offset`, once rolled or closed cleanly, indexing each
/// batch as its own append (see the module doc for when that differs from the broker's
/// appends). Errors name the byte position and offset of the first batch that is corrupt,
/// incomplete, or whose offset does not fit the segment.
pub fn build_indexes(
    log: &[u8],
    base_offset: i64,
    index_interval_bytes: u32,
) -> Result<SegmentIndexes> {
    let mut b = IndexBuilder::new(base_offset, index_interval_bytes);
    let mut walk = log_entries(log);
    for batch in walk.by_ref() {
        b.append(std::slice::from_ref(&batch))?;
    }
    require_clean_end(log, walk.finish())?;
    b.finish()
}

/// Like [`build_indexes`], with the broker's appends given by the byte positions where they
/// started (each must be where a batch starts; position 0 is implied). Use it when the
/// grouping is known, e.g. a cleaned segment whose source segments are at hand.
pub fn build_indexes_in_appends(
    log: &[u8],
    base_offset: i64,
    index_interval_bytes: u32,
    append_starts: &[u64],
) -> Result<SegmentIndexes> {
    let mut b = IndexBuilder::new(base_offset, index_interval_bytes);
    let mut walk = log_entries(log);
    let mut group: Vec<Batch<'_>> = Vec::new();
    let mut starts_seen = 0;
    for batch in walk.by_ref() {
        if append_starts.contains(&batch.position()) {
            starts_seen += 1;
            b.append(&group)?;
            group.clear();
        }
        group.push(batch);
    }
    require_clean_end(log, walk.finish())?;
    b.append(&group)?;
    if starts_seen != append_starts.len() {
        let mut walk = log_entries(log);
        let bad = append_starts
            .iter()
            .find(|&&p| !walk.by_ref().any(|x| x.position() == p))
            .copied()
            .unwrap_or_default();
        return Err(FormatError::new(
            ErrorKind::BadValue,
            bad,
            "append starts in increasing order, each where a batch starts",
        ));
    }
    b.finish()
}

/// Rebuilds `.txnindex` files, segment after segment of one partition, carrying the open
/// transactions from one segment to the next.
///
/// The broker (`UnifiedLog.append`, `LogSegment.updateProducerState`,
/// `ProducerAppendInfo`, `ProducerStateManager.lastStableOffset`) writes one entry per ABORT
/// marker of a producer that had a transaction open (a marker of an empty transaction writes
/// none), into the segment holding the marker:
/// - `firstOffset`: the base offset of that producer's first transactional batch since its
///   previous marker, possibly in an earlier segment;
/// - `lastOffset`: the marker's offset;
/// - `lastStableOffset`: the first offset of the earliest transaction still open from
///   *another* producer, else the marker's offset + 1.
///
/// State before the first segment walked comes from the producer snapshot at that
/// segment's base ([`TxnIndexBuilder::from_snapshot`]: every `currentTxnFirstOffset` ≥ 0;
/// the broker never expires a producer with an open transaction), or is empty when walking
/// from the start of the log.
///
/// The walk is per batch, as recovery's. Two cases it cannot reproduce from the log alone:
/// - a follower append (one replica fetch, many batches) holding an ABORT and, later in the
///   same append, another producer's first transactional batch: the broker registers the
///   append's new transactions before computing the abort's last stable offset, so it
///   records that later first offset instead of the marker's offset + 1. A leader appends
///   one producer's batch (or one marker) at a time, so cannot do this;
/// - a compacted log where the cleaner already removed an aborted transaction's batches
///   but kept its marker: the start is gone (the cleaner copies the entry from the old
///   index instead), so the marker looks like one of an empty transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TxnIndexBuilder {
    /// Producer id → first offset of its open transaction.
    open: BTreeMap<i64, i64>,
    /// While a transaction is open: the first offset of the transaction that opened when none
    /// was (the latest offset at which no transaction was open, see
    /// [`TxnIndexBuilder::stable_end`]).
    busy_since: Option<i64>,
}

impl TxnIndexBuilder {
    /// No open transactions (the log's first segment).
    pub fn new() -> TxnIndexBuilder {
        TxnIndexBuilder::default()
    }

    /// The open transactions recorded in a producer snapshot.
    pub fn from_snapshot(entries: &[ProducerEntry]) -> TxnIndexBuilder {
        let open: BTreeMap<i64, i64> = entries
            .iter()
            .filter(|e| e.current_txn_first_offset >= 0)
            .map(|e| (e.producer_id, e.current_txn_first_offset))
            .collect();
        // The last offset with nothing open is not known from a snapshot: at most its
        // earliest open transaction's first offset.
        let busy_since = open.values().min().copied();
        TxnIndexBuilder { open, busy_since }
    }

    /// Open transactions now: producer id → first offset.
    pub fn open_transactions(&self) -> &BTreeMap<i64, i64> {
        &self.open
    }

    /// Where a log whose producer state is not kept must end so that no transaction is left
    /// open in it: `None` if none is open now; else the latest offset before which every
    /// transaction was complete, which is at or below the first offset of every transaction
    /// open now. (Cutting at an open transaction's first offset alone is not enough: a
    /// transaction begun earlier and completed after it would lose its marker and be left
    /// open in turn.)
    pub fn stable_end(&self) -> Option<i64> {
        if self.open.is_empty() {
            None
        } else {
            self.busy_since
        }
    }

    /// Walks one segment (a whole `.log`, CRCs verified) and returns its aborted
    /// transactions, in marker order; state carries over to the next call.
    pub fn add_segment(&mut self, log: &[u8]) -> Result<Vec<AbortedTxn>> {
        let mut out: Vec<AbortedTxn> = Vec::new();
        let mut walk = log_entries(log);
        for batch in walk.by_ref() {
            if let Batch::V2(b) = batch {
                if let Some(aborted) = self.apply(&b)? {
                    out.push(aborted);
                }
            }
        }
        require_clean_end(log, walk.finish())?;
        Ok(out)
    }

    /// One v2 batch (`LogSegment.updateProducerState`); legacy entries have no producer.
    fn apply(&mut self, b: &RecordBatch<'_>) -> Result<Option<AbortedTxn>> {
        let h = &b.header;
        if h.producer_id < 0 {
            return Ok(None);
        }
        let pid = h.producer_id;
        if !h.attributes.is_control() {
            let open = self.open.contains_key(&pid);
            if h.attributes.is_transactional() && !open {
                if self.open.is_empty() {
                    self.busy_since = Some(h.base_offset);
                }
                self.open.insert(pid, h.base_offset);
            } else if !h.attributes.is_transactional() && open {
                // ProducerAppendInfo throws InvalidTxnStateException here.
                return Err(FormatError::new(
                    ErrorKind::BadValue,
                    b.position,
                    format!("a transactional batch (producer {pid} has a transaction open)"),
                )
                .at_offset(h.base_offset));
            }
            return Ok(None);
        }
        let marker = h.base_offset;
        let mut records = b.records().map_err(|e| e.at_offset(marker))?;
        let ty = match records.next_record() {
            // An empty control batch: the cleaner removed the whole transaction.
            None => return Ok(None),
            Some(r) => {
                let r = r.map_err(|e| e.at_offset(marker))?;
                parse_control_key(r.key.unwrap_or(&[]))
                    .map_err(|e| {
                        FormatError::new(ErrorKind::BadValue, b.position, "a control record key")
                            .found(e)
                            .at_offset(marker)
                    })?
                    .1
            }
        };
        let abort = match ty {
            ControlType::Abort => true,
            ControlType::Commit => false,
            other => {
                return Err(FormatError::new(
                    ErrorKind::BadValue,
                    b.position,
                    "a COMMIT or ABORT marker in a control batch with a producer id",
                )
                .found(other.name())
                .at_offset(marker))
            }
        };
        let Some(first) = self.open.get(&pid).copied() else {
            return Ok(None);
        };
        let lso = self
            .open
            .iter()
            .filter(|(p, _)| **p != pid)
            .map(|(_, f)| *f)
            .min()
            .unwrap_or_else(|| marker.saturating_add(1));
        self.open.remove(&pid);
        Ok(abort.then_some(AbortedTxn {
            version: 0,
            producer_id: pid,
            first_offset: first,
            last_offset: marker,
            last_stable_offset: lso,
        }))
    }
}

/// The bytes of a `.txnindex` holding `entries` (34 bytes each, version 0). The broker
/// writes no file for a segment without aborted transactions; an empty file means the same.
pub fn encode_txn_index(entries: &[AbortedTxn]) -> Vec<u8> {
    let mut v = Vec::with_capacity(entries.len() * TXN_ENTRY_SIZE);
    for e in entries {
        v.extend_from_slice(&e.version.to_be_bytes());
        v.extend_from_slice(&e.producer_id.to_be_bytes());
        v.extend_from_slice(&e.first_offset.to_be_bytes());
        v.extend_from_slice(&e.last_offset.to_be_bytes());
        v.extend_from_slice(&e.last_stable_offset.to_be_bytes());
    }
    v
}

/// The `.txnindex` bytes of each segment of a partition, in order, starting from `state`
/// ([`TxnIndexBuilder::new`] for the log's first segment, else
/// [`TxnIndexBuilder::from_snapshot`] of the first segment's base). An error names the
/// segment's index in `segments` and the position and offset inside it.
pub fn build_txn_indexes<'a>(
    segments: impl IntoIterator<Item = &'a [u8]>,
    mut state: TxnIndexBuilder,
) -> std::result::Result<Vec<Vec<u8>>, (usize, FormatError)> {
    segments
        .into_iter()
        .enumerate()
        .map(|(i, log)| {
            state
                .add_segment(log)
                .map(|e| encode_txn_index(&e))
                .map_err(|e| (i, e))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::{encode_batch, BatchSpec, RecordSpec};
    use crate::index::parse_txn_index;

    fn batch(base_offset: i64, ts: i64, value_len: usize) -> Vec<u8> {
        encode_batch(&BatchSpec {
            base_offset,
            base_timestamp: ts,
            records: vec![RecordSpec {
                value: Some(vec![0; value_len]),
                ..RecordSpec::default()
            }],
            ..BatchSpec::default()
        })
    }

    #[test]
    fn txn_index_bytes_round_trip() {
        let e = AbortedTxn {
            version: 0,
            producer_id: 9,
            first_offset: 3,
            last_offset: 7,
            last_stable_offset: 8,
        };
        let v = encode_txn_index(&[e]);
        assert_eq!(v.len(), TXN_ENTRY_SIZE);
        assert_eq!(parse_txn_index(&v).unwrap(), vec![e]);
        assert!(encode_txn_index(&[]).is_empty());
    }

    #[test]
    fn reopen_writes_the_close_entry_and_restarts_the_count() {
        let log = [batch(0, 100, 3000), batch(1, 200, 3000), batch(2, 300, 10)].concat();
        let batches: Vec<Batch<'_>> = log_entries(&log).collect();
        let mut b = IndexBuilder::new(0, 4096);
        b.append(&batches[..2]).unwrap();
        b.append(&[]).unwrap();
        b.reopen().unwrap();
        // 6000+ bytes since the (absent) last entry, but the count restarted: no entry.
        b.append(&batches[2..]).unwrap();
        let built = b.finish().unwrap();
        assert!(built.offset_index.is_empty());
        assert_eq!(built.time_index.len(), 24);
        assert!(built.close_time_entry);
        // Per batch: an entry before the third batch, whose time entry is also the last.
        let per_batch = build_indexes(&log, 0, 4096).unwrap();
        assert_eq!(per_batch.offset_index.len(), 8);
        assert_eq!(per_batch.time_index.len(), 12);
        assert!(!per_batch.close_time_entry);
    }
}
