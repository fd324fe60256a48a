//! Index files of a segment: `.index` (offset → position), `.timeindex` (timestamp →
//! offset) and `.txnindex` (aborted transactions).
//!
//! Offset and time indexes are preallocated and mmapped by the broker, so a file copied
//! from a live broker (or left by a crash) can end in zero-filled entries that Kafka itself
//! reads as entries `(base, 0)`. Like `DumpLogSegments`, we end the valid entries at the
//! first entry i > 0 whose relative offset is 0, and report how many entries follow.

use nom::number::complete::{be_i16, be_i32, be_i64};

use super::error::{ErrorKind, FormatError, Result};
use super::primitives::run;

/// Bytes per `.index` entry.
pub const OFFSET_ENTRY_SIZE: usize = 8;
/// Bytes per `.timeindex` entry.
pub const TIME_ENTRY_SIZE: usize = 12;
/// Bytes per `.txnindex` entry.
pub const TXN_ENTRY_SIZE: usize = 34;

/// An `.index` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OffsetEntry {
    /// Offset − segment base (the last offset of the indexed batch).
    pub relative_offset: i32,
    /// Byte position of that batch in the `.log`.
    pub position: i32,
}

/// A `.timeindex` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimeEntry {
    /// Largest timestamp so far in the segment.
    pub timestamp: i64,
    /// Offset − base of the batch that carries it.
    pub relative_offset: i32,
}

/// A parsed `.index` or `.timeindex`, borrowed from the file's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexFile<'a, E> {
    /// The segment's base offset (from the file name).
    pub base_offset: i64,
    /// Entries before the zero-filled tail.
    pub valid_entries: usize,
    /// Whole entries after the valid ones (a preallocated tail, normally zeros).
    pub tail_entries: usize,
    /// True if every byte of the tail entries is zero.
    pub tail_all_zero: bool,
    /// Bytes after the last whole entry (non-zero = length not a multiple of entry size).
    pub trailing_bytes: usize,
    data: &'a [u8],
    _entry: std::marker::PhantomData<E>,
}

/// Parser of fixed-size index entries.
pub trait IndexEntry: Sized + Copy {
    /// Entry size in bytes.
    const SIZE: usize;
    /// Parses exactly `SIZE` bytes.
    fn parse(b: &[u8]) -> Option<Self>;
    /// Relative offset of the entry.
    fn relative_offset(&self) -> i32;
}

impl IndexEntry for OffsetEntry {
    const SIZE: usize = OFFSET_ENTRY_SIZE;
    fn parse(b: &[u8]) -> Option<Self> {
        let (_, (relative_offset, position)) = run(b, 0, "", (be_i32, be_i32)).ok()?;
        Some(OffsetEntry {
            relative_offset,
            position,
        })
    }
    fn relative_offset(&self) -> i32 {
        self.relative_offset
    }
}

impl IndexEntry for TimeEntry {
    const SIZE: usize = TIME_ENTRY_SIZE;
    fn parse(b: &[u8]) -> Option<Self> {
        let (_, (timestamp, relative_offset)) = run(b, 0, "", (be_i64, be_i32)).ok()?;
        Some(TimeEntry {
            timestamp,
            relative_offset,
        })
    }
    fn relative_offset(&self) -> i32 {
        self.relative_offset
    }
}

/// An `.index` file.
pub type OffsetIndex<'a> = IndexFile<'a, OffsetEntry>;
/// A `.timeindex` file.
pub type TimeIndex<'a> = IndexFile<'a, TimeEntry>;

impl<'a, E: IndexEntry> IndexFile<'a, E> {
    /// Reads an index file. Never fails: problems are reported by the check methods.
    pub fn parse(data: &'a [u8], base_offset: i64) -> IndexFile<'a, E> {
        let whole = data.len() / E::SIZE;
        let mut valid = whole;
        for i in 1..whole {
            let e = data.get(i * E::SIZE..(i + 1) * E::SIZE).and_then(E::parse);
            if matches!(e, Some(e) if e.relative_offset() == 0) {
                valid = i;
                break;
            }
        }
        let tail = data.get(valid * E::SIZE..whole * E::SIZE).unwrap_or(&[]);
        IndexFile {
            base_offset,
            valid_entries: valid,
            tail_entries: whole - valid,
            tail_all_zero: tail.iter().all(|&b| b == 0),
            trailing_bytes: data.len() % E::SIZE,
            data,
            _entry: std::marker::PhantomData,
        }
    }

    /// Whole entries in the file, as Kafka counts them (zero tail included).
    pub fn all_entries(&self) -> usize {
        self.valid_entries + self.tail_entries
    }

    /// Entry `i` of all whole entries.
    pub fn entry(&self, i: usize) -> Option<E> {
        let start = i.checked_mul(E::SIZE)?;
        self.data
            .get(start..start.checked_add(E::SIZE)?)
            .and_then(E::parse)
    }

    /// The valid entries (before any zero tail).
    pub fn entries(&self) -> impl Iterator<Item = E> + '_ {
        (0..self.valid_entries).filter_map(move |i| self.entry(i))
    }

    /// Absolute offset of a relative one.
    pub fn absolute(&self, relative: i32) -> i64 {
        self.base_offset.saturating_add(i64::from(relative))
    }

    fn check_common(&self, kind: &str) -> Result<()> {
        if self.trailing_bytes != 0 {
            return Err(FormatError::new(
                ErrorKind::BadLength,
                self.data.len() as u64,
                format!("a {kind} length divisible by {}", E::SIZE),
            )
            .found(self.data.len()));
        }
        Ok(())
    }
}

impl OffsetIndex<'_> {
    /// Kafka's `OffsetIndex.sanityCheck`: length divisible by 8, and a non-empty index's
    /// last entry (of all whole entries) not below the base.
    pub fn kafka_sanity_check(&self) -> Result<()> {
        self.check_common("offset index")?;
        if let Some(last) = self
            .all_entries()
            .checked_sub(1)
            .and_then(|i| self.entry(i))
        {
            if last.relative_offset < 0 {
                return Err(FormatError::new(
                    ErrorKind::BadValue,
                    ((self.all_entries() - 1) * OFFSET_ENTRY_SIZE) as u64,
                    "a last offset >= the base offset",
                )
                .found(self.absolute(last.relative_offset)));
            }
        }
        Ok(())
    }

    /// Stricter check of the valid entries: length, offsets strictly increasing and ≥ 0,
    /// positions non-negative and strictly increasing.
    pub fn check(&self) -> Result<()> {
        self.check_common("offset index")?;
        let mut prev: Option<OffsetEntry> = None;
        for (i, e) in self.entries().enumerate() {
            let pos = (i * OFFSET_ENTRY_SIZE) as u64;
            if e.relative_offset < 0 || e.position < 0 {
                return Err(FormatError::new(
                    ErrorKind::BadValue,
                    pos,
                    "non-negative relative offset and position",
                )
                .found(format!("({}, {})", e.relative_offset, e.position)));
            }
            if let Some(p) = prev {
                if e.relative_offset <= p.relative_offset || e.position <= p.position {
                    return Err(FormatError::new(
                        ErrorKind::BadValue,
                        pos,
                        "offsets and positions increasing",
                    )
                    .found(format!(
                        "({}, {}) after ({}, {})",
                        e.relative_offset, e.position, p.relative_offset, p.position
                    )));
                }
            }
            prev = Some(e);
        }
        Ok(())
    }
}

impl TimeIndex<'_> {
    /// Kafka's `TimeIndex.sanityCheck` over all whole entries: length divisible by 12;
    /// last timestamp ≥ first; last offset ≥ base. (A zero tail fails it, as in Kafka.)
    pub fn kafka_sanity_check(&self) -> Result<()> {
        self.check_common("time index")?;
        let n = self.all_entries();
        if let (Some(first), Some(last)) =
            (self.entry(0), n.checked_sub(1).and_then(|i| self.entry(i)))
        {
            let pos = ((n - 1) * TIME_ENTRY_SIZE) as u64;
            if last.timestamp < first.timestamp {
                return Err(FormatError::new(
                    ErrorKind::BadValue,
                    pos,
                    "a last timestamp >= the first",
                )
                .found(format!("{} < {}", last.timestamp, first.timestamp)));
            }
            if last.relative_offset < 0 {
                return Err(FormatError::new(
                    ErrorKind::BadValue,
                    pos,
                    "a last offset >= the base offset",
                )
                .found(self.absolute(last.relative_offset)));
            }
        }
        Ok(())
    }

    /// Stricter check of the valid entries: length; offsets ≥ 0 and non-decreasing;
    /// timestamps non-decreasing (the roll-time entry may repeat an offset).
    pub fn check(&self) -> Result<()> {
        self.check_common("time index")?;
        let mut prev: Option<TimeEntry> = None;
        for (i, e) in self.entries().enumerate() {
            let pos = (i * TIME_ENTRY_SIZE) as u64;
            if e.relative_offset < 0 {
                return Err(FormatError::new(
                    ErrorKind::BadValue,
                    pos,
                    "a non-negative relative offset",
                )
                .found(e.relative_offset));
            }
            if let Some(p) = prev {
                if e.timestamp < p.timestamp || e.relative_offset < p.relative_offset {
                    return Err(FormatError::new(
                        ErrorKind::BadValue,
                        pos,
                        "timestamps and offsets non-decreasing",
                    )
                    .found(format!(
                        "({}, {}) after ({}, {})",
                        e.timestamp, e.relative_offset, p.timestamp, p.relative_offset
                    )));
                }
            }
            prev = Some(e);
        }
        Ok(())
    }
}

/// Where a batch starts in the `.log` and what it ends with; input of the cross checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BatchSpan {
    /// Byte position of the batch.
    pub position: u64,
    /// Last offset of the batch.
    pub last_offset: i64,
    /// Largest timestamp of the batch (`None` for magic 0).
    pub max_timestamp: Option<i64>,
}

/// Cross-checks an offset index against the batches of its `.log` (sorted by position).
///
/// The broker writes an entry per *append* (`LogSegment.append`): the append's largest
/// offset paired with the position of its first batch. An append can hold several batches
/// (a produce request or replica fetch with more than one), so the indexed offset is the
/// last offset of a batch at or after the position, before the next entry's position.
/// (`DumpLogSegments` compares it with the first batch only, and so reports such
/// multi-batch appends as mismatches.) Returns the number of entries checked.
pub fn cross_check_offset_index(idx: &OffsetIndex<'_>, batches: &[BatchSpan]) -> Result<usize> {
    let entries: Vec<OffsetEntry> = idx.entries().collect();
    for (i, e) in entries.iter().enumerate() {
        let offset = idx.absolute(e.relative_offset);
        let err = |expected: &str| {
            FormatError::new(
                ErrorKind::BadValue,
                (i * OFFSET_ENTRY_SIZE) as u64,
                expected.to_string(),
            )
            .found(format!("entry (offset {offset}, position {})", e.position))
            .at_offset(offset)
        };
        let pos = u64::try_from(e.position).map_err(|_| err("a non-negative position"))?;
        let start = batches
            .binary_search_by_key(&pos, |b| b.position)
            .map_err(|_| err("a position where a batch starts"))?;
        let limit = entries
            .get(i + 1)
            .and_then(|n| u64::try_from(n.position).ok())
            .unwrap_or(u64::MAX);
        let found = batches
            .get(start..)
            .unwrap_or(&[])
            .iter()
            .take_while(|b| b.position < limit)
            .any(|b| b.last_offset == offset);
        if !found {
            return Err(err(
                "the last offset of a batch appended from that position",
            ));
        }
    }
    Ok(entries.len())
}

/// Cross-checks a time index against the batches of its `.log` (sorted by position):
/// each entry's offset must be the last offset of a batch whose max timestamp is the
/// entry's timestamp (the broker records the batch holding the largest timestamp so far).
/// Returns the number of entries checked.
pub fn cross_check_time_index(ti: &TimeIndex<'_>, batches: &[BatchSpan]) -> Result<usize> {
    let mut n = 0;
    for (i, e) in ti.entries().enumerate() {
        let offset = ti.absolute(e.relative_offset);
        let ok = batches
            .iter()
            .any(|b| b.last_offset == offset && b.max_timestamp == Some(e.timestamp));
        if !ok {
            return Err(FormatError::new(
                ErrorKind::BadValue,
                (i * TIME_ENTRY_SIZE) as u64,
                "a batch ending at the entry's offset with the entry's timestamp as its max",
            )
            .found(format!(
                "entry (timestamp {}, offset {offset})",
                e.timestamp
            ))
            .at_offset(offset));
        }
        n += 1;
    }
    Ok(n)
}

/// An aborted transaction (`.txnindex` entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AbortedTxn {
    /// Entry version (0).
    pub version: i16,
    /// Producer of the aborted transaction.
    pub producer_id: i64,
    /// First offset of the transaction.
    pub first_offset: i64,
    /// Offset of the ABORT marker.
    pub last_offset: i64,
    /// Last stable offset when the abort was written.
    pub last_stable_offset: i64,
}

/// Parses a whole `.txnindex`: 34-byte entries, version 0 (Kafka rejects others), the
/// length a multiple of 34, each `first_offset <= last_offset`, last offsets strictly
/// increasing.
pub fn parse_txn_index(data: &[u8]) -> Result<Vec<AbortedTxn>> {
    if !data.len().is_multiple_of(TXN_ENTRY_SIZE) {
        return Err(FormatError::new(
            ErrorKind::BadLength,
            (data.len() - data.len() % TXN_ENTRY_SIZE) as u64,
            format!("a transaction index length divisible by {TXN_ENTRY_SIZE}"),
        )
        .found(data.len()));
    }
    let mut out = Vec::with_capacity(data.len() / TXN_ENTRY_SIZE);
    let mut prev_last: Option<i64> = None;
    for (i, chunk) in data.chunks_exact(TXN_ENTRY_SIZE).enumerate() {
        let pos = (i * TXN_ENTRY_SIZE) as u64;
        let (_, (version, producer_id, first_offset, last_offset, last_stable_offset)) = run(
            chunk,
            pos,
            "an aborted transaction entry",
            (be_i16, be_i64, be_i64, be_i64, be_i64),
        )?;
        if version != 0 {
            return Err(
                FormatError::new(ErrorKind::BadVersion, pos, "aborted txn version 0")
                    .found(version),
            );
        }
        if first_offset > last_offset || first_offset < 0 {
            return Err(FormatError::new(
                ErrorKind::BadValue,
                pos,
                "0 <= first offset <= last offset",
            )
            .found(format!("{first_offset}..{last_offset}"))
            .at_offset(last_offset));
        }
        if matches!(prev_last, Some(p) if last_offset <= p) {
            return Err(FormatError::new(
                ErrorKind::BadValue,
                pos,
                "last offsets strictly increasing",
            )
            .at_offset(last_offset));
        }
        prev_last = Some(last_offset);
        out.push(AbortedTxn {
            version,
            producer_id,
            first_offset,
            last_offset,
            last_stable_offset,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offset_index(entries: &[(i32, i32)], zero_tail: usize) -> Vec<u8> {
        let mut v = Vec::new();
        for (o, p) in entries {
            v.extend_from_slice(&o.to_be_bytes());
            v.extend_from_slice(&p.to_be_bytes());
        }
        v.resize(v.len() + zero_tail * 8, 0);
        v
    }

    #[test]
    fn zero_filled_tail_is_recognised() {
        let v = offset_index(&[(10, 4100), (20, 8300)], 5);
        let idx = OffsetIndex::parse(&v, 1000);
        assert_eq!(idx.valid_entries, 2);
        assert_eq!(idx.tail_entries, 5);
        assert!(idx.tail_all_zero);
        assert_eq!(
            idx.entries()
                .map(|e| idx.absolute(e.relative_offset))
                .collect::<Vec<_>>(),
            vec![1010, 1020]
        );
        idx.check().unwrap();
        idx.kafka_sanity_check().unwrap();
        // An index whose first entry is at relative 0 keeps it (only i > 0 ends the list).
        let v = offset_index(&[(0, 0), (5, 4096)], 2);
        let idx = OffsetIndex::parse(&v, 0);
        assert_eq!((idx.valid_entries, idx.tail_entries), (2, 2));
        // A fully zero file: one "entry" (0, 0) then the tail.
        let v = vec![0u8; 80];
        let idx = OffsetIndex::parse(&v, 0);
        assert_eq!((idx.valid_entries, idx.tail_entries), (1, 9));
    }

    #[test]
    fn sanity_checks() {
        let mut v = offset_index(&[(10, 4100)], 0);
        v.push(0);
        assert_eq!(
            OffsetIndex::parse(&v, 0)
                .kafka_sanity_check()
                .unwrap_err()
                .kind,
            ErrorKind::BadLength
        );
        let v = offset_index(&[(10, 4100), (-3, 9000)], 0);
        assert!(OffsetIndex::parse(&v, 0).kafka_sanity_check().is_err());
        let v = offset_index(&[(10, 4100), (9, 9000)], 0);
        assert!(OffsetIndex::parse(&v, 0).check().is_err());
        // Time index: zero tail fails Kafka's own check but not ours on valid entries.
        let mut t = Vec::new();
        for (ts, o) in [(100i64, 1i32), (200, 5)] {
            t.extend_from_slice(&ts.to_be_bytes());
            t.extend_from_slice(&o.to_be_bytes());
        }
        t.resize(t.len() + 36, 0);
        let ti = TimeIndex::parse(&t, 0);
        assert_eq!((ti.valid_entries, ti.tail_entries), (2, 3));
        ti.check().unwrap();
        assert!(ti.kafka_sanity_check().is_err());
    }

    #[test]
    fn txn_index() {
        let mut v = Vec::new();
        for (f, l) in [(3i64, 9i64), (12, 20)] {
            v.extend_from_slice(&0i16.to_be_bytes());
            v.extend_from_slice(&7i64.to_be_bytes());
            v.extend_from_slice(&f.to_be_bytes());
            v.extend_from_slice(&l.to_be_bytes());
            v.extend_from_slice(&l.to_be_bytes());
        }
        let t = parse_txn_index(&v).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[1].first_offset, 12);
        assert!(parse_txn_index(&v[..40]).is_err());
        let mut bad = v.clone();
        bad[1] = 1;
        assert_eq!(
            parse_txn_index(&bad).unwrap_err().kind,
            ErrorKind::BadVersion
        );
    }
}
