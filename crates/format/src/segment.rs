//! Walking a `.log` segment (or a KRaft `.checkpoint`, or `bootstrap.checkpoint`): a
//! sequence of entries framed by `offset i64, length i32`, each either a v2 record batch or
//! a legacy message, told apart by the magic byte at position 16 of every entry (a broker
//! upgraded across formats keeps old entries, so both can appear in one file).
//!
//! The end of the walk is classified like the broker's `FileLogInputStream` does:
//! a clean end, a partial tail (fewer bytes than the entry needs: what recovery truncates),
//! or corruption (impossible size, unknown magic, bad CRC, malformed header).

use super::batch::{RecordBatch, LOG_OVERHEAD, MAGIC_OFFSET};
use super::compression::Compression;
use super::error::{ErrorKind, FormatError};
use super::legacy::{LegacyEntry, RECORD_OVERHEAD_V0};

/// Bytes needed to read an entry's offset, size and magic (Kafka's
/// `HEADER_SIZE_UP_TO_MAGIC`).
pub const HEADER_SIZE_UP_TO_MAGIC: usize = 17;

/// One entry of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Batch<'a> {
    /// Magic 2 record batch.
    V2(RecordBatch<'a>),
    /// Magic 0 or 1 message (possibly a compressed wrapper).
    Legacy(LegacyEntry<'a>),
}

impl<'a> Batch<'a> {
    /// Position in the file.
    pub fn position(&self) -> u64 {
        match self {
            Batch::V2(b) => b.position,
            Batch::Legacy(l) => l.position,
        }
    }
    /// Magic byte.
    pub fn magic(&self) -> u8 {
        match self {
            Batch::V2(_) => 2,
            Batch::Legacy(l) => l.magic,
        }
    }
    /// Size in bytes, including the 12-byte log header.
    pub fn size(&self) -> usize {
        match self {
            Batch::V2(b) => b.size(),
            Batch::Legacy(l) => l.total_size(),
        }
    }
    /// The entry's bytes.
    pub fn bytes(&self) -> &'a [u8] {
        match self {
            Batch::V2(b) => b.bytes(),
            Batch::Legacy(l) => l.bytes(),
        }
    }
    /// The offset field of the entry: v2 base offset; legacy message offset (for a
    /// compressed wrapper, its last inner offset).
    pub fn base_offset(&self) -> i64 {
        match self {
            Batch::V2(b) => b.header.base_offset,
            Batch::Legacy(l) => l.offset,
        }
    }
    /// Last offset in the entry (what the offset index pairs with the entry's position).
    pub fn last_offset(&self) -> Option<i64> {
        match self {
            Batch::V2(b) => b.last_offset(),
            Batch::Legacy(l) => Some(l.offset),
        }
    }
    /// Codec; `None` if the attribute holds an invalid id.
    pub fn compression(&self) -> Option<Compression> {
        match self {
            Batch::V2(b) => b.header.attributes.compression(),
            Batch::Legacy(l) => l.compression(),
        }
    }
    /// Whether the stored checksum matches.
    pub fn crc_ok(&self) -> bool {
        match self {
            Batch::V2(b) => b.crc_ok(),
            Batch::Legacy(l) => l.crc_ok(),
        }
    }
    /// Error if the stored checksum does not match.
    pub fn verify_crc(&self) -> Result<(), FormatError> {
        match self {
            Batch::V2(b) => b.verify_crc(),
            Batch::Legacy(l) => l.verify_crc(),
        }
    }
    /// Records as counted without decompressing: the v2 header's count, 1 for a legacy
    /// entry (compressed wrappers included).
    pub fn shallow_record_count(&self) -> i64 {
        match self {
            Batch::V2(b) => i64::from(b.header.record_count),
            Batch::Legacy(_) => 1,
        }
    }
    /// Transactional bit (v2 only).
    pub fn is_transactional(&self) -> bool {
        matches!(self, Batch::V2(b) if b.header.attributes.is_transactional())
    }
    /// Control bit (v2 only).
    pub fn is_control(&self) -> bool {
        matches!(self, Batch::V2(b) if b.header.attributes.is_control())
    }
    /// Producer id, −1 when none (always for legacy).
    pub fn producer_id(&self) -> i64 {
        match self {
            Batch::V2(b) => b.header.producer_id,
            Batch::Legacy(_) => -1,
        }
    }
    /// Partition leader epoch (v2), `None` for legacy.
    pub fn partition_leader_epoch(&self) -> Option<i32> {
        match self {
            Batch::V2(b) => Some(b.header.partition_leader_epoch),
            Batch::Legacy(_) => None,
        }
    }
    /// Largest timestamp (v2 MaxTimestamp, v1 timestamp), `None` for v0.
    pub fn max_timestamp(&self) -> Option<i64> {
        match self {
            Batch::V2(b) => Some(b.header.max_timestamp),
            Batch::Legacy(l) => l.timestamp,
        }
    }
}

/// How the walk over a segment ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SegmentEnd {
    /// Every byte belonged to a complete, valid entry.
    Clean,
    /// The last `bytes` bytes, from `position`, are an incomplete entry (the broker's
    /// recovery truncates them; a segment being appended to can show this too).
    PartialTail {
        /// Where the incomplete entry starts.
        position: u64,
        /// How many bytes it has.
        bytes: u64,
    },
    /// A problem that is not an incomplete tail; iteration stopped at it.
    Corrupt(FormatError),
}

/// Iterator over the entries of a segment. See the module doc.
#[derive(Debug, Clone)]
pub struct LogEntries<'a> {
    data: &'a [u8],
    pos: usize,
    check_crc: bool,
    end: Option<SegmentEnd>,
}

/// Walks the entries of `data` (a whole `.log`), verifying each entry's CRC.
pub fn log_entries(data: &[u8]) -> LogEntries<'_> {
    LogEntries {
        data,
        pos: 0,
        check_crc: true,
        end: None,
    }
}

impl<'a> LogEntries<'a> {
    /// Do not stop at a CRC mismatch (check [`Batch::crc_ok`] yourself); framing problems
    /// still stop the walk.
    pub fn without_crc_check(mut self) -> Self {
        self.check_crc = false;
        self
    }
    /// How the walk ended; `None` while it has not.
    pub fn end(&self) -> Option<&SegmentEnd> {
        self.end.as_ref()
    }
    /// Position of the next entry (after the end: where the valid data ends).
    pub fn position(&self) -> u64 {
        self.pos as u64
    }

    fn stop(&mut self, end: SegmentEnd) -> Option<Batch<'a>> {
        self.end = Some(end);
        None
    }

    /// Runs the walk to its end (consuming remaining entries) and returns how it ended.
    pub fn finish(&mut self) -> SegmentEnd {
        for _ in self.by_ref() {}
        self.end.clone().unwrap_or(SegmentEnd::Clean)
    }
}

impl<'a> Iterator for LogEntries<'a> {
    type Item = Batch<'a>;

    fn next(&mut self) -> Option<Batch<'a>> {
        if self.end.is_some() {
            return None;
        }
        let rest = self.data.get(self.pos..).unwrap_or(&[]);
        let position = self.pos as u64;
        if rest.is_empty() {
            return self.stop(SegmentEnd::Clean);
        }
        if rest.len() < HEADER_SIZE_UP_TO_MAGIC {
            return self.stop(SegmentEnd::PartialTail {
                position,
                bytes: rest.len() as u64,
            });
        }
        // Both reads are within the 17 bytes checked above.
        let offset = i64::from_be_bytes(rest[0..8].try_into().unwrap_or([0; 8]));
        let size = i32::from_be_bytes(rest[8..12].try_into().unwrap_or([0; 4]));
        let magic = rest[MAGIC_OFFSET];
        if size < RECORD_OVERHEAD_V0 as i32 {
            let e = FormatError::new(
                ErrorKind::BadLength,
                position + 8,
                format!("entry size >= {RECORD_OVERHEAD_V0}"),
            )
            .found(size)
            .at_offset(offset);
            return self.stop(SegmentEnd::Corrupt(e));
        }
        let total = LOG_OVERHEAD + size as usize;
        if total > rest.len() {
            return self.stop(SegmentEnd::PartialTail {
                position,
                bytes: rest.len() as u64,
            });
        }
        let entry = match magic {
            0 | 1 => LegacyEntry::parse(rest, position).map(Batch::Legacy),
            2 => RecordBatch::parse(rest, position).map(Batch::V2),
            m => Err(
                FormatError::new(ErrorKind::BadVersion, position + 16, "magic 0, 1 or 2")
                    .found(m)
                    .at_offset(offset),
            ),
        };
        let entry = match entry {
            Ok(e) => e,
            Err(e) => return self.stop(SegmentEnd::Corrupt(e)),
        };
        if self.check_crc {
            if let Err(e) = entry.verify_crc() {
                return self.stop(SegmentEnd::Corrupt(e));
            }
        }
        self.pos += total;
        Some(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::{encode_batch, encode_legacy, BatchSpec, LegacySpec, RecordSpec};

    fn two_batches() -> Vec<u8> {
        let mut v = encode_batch(&BatchSpec {
            base_offset: 0,
            records: vec![RecordSpec::kv(b"a", b"1")],
            ..BatchSpec::default()
        });
        v.extend(encode_batch(&BatchSpec {
            base_offset: 1,
            records: vec![RecordSpec::kv(b"b", b"2"), RecordSpec::kv(b"c", b"3")],
            ..BatchSpec::default()
        }));
        v
    }

    #[test]
    fn clean_end() {
        let v = two_batches();
        let mut it = log_entries(&v);
        let offs: Vec<_> = it.by_ref().map(|b| b.last_offset().unwrap()).collect();
        assert_eq!(offs, vec![0, 2]);
        assert_eq!(it.end(), Some(&SegmentEnd::Clean));
        assert_eq!(it.position(), v.len() as u64);
    }

    #[test]
    fn every_truncation_is_a_partial_tail() {
        let v = two_batches();
        let first = RecordBatch::parse(&v, 0).unwrap().size();
        for cut in 1..v.len() {
            let mut it = log_entries(&v[..cut]);
            let n = it.by_ref().count();
            let end = it.finish();
            if cut == first {
                assert_eq!(end, SegmentEnd::Clean);
            } else {
                let start = if cut > first { first } else { 0 };
                assert_eq!(
                    end,
                    SegmentEnd::PartialTail {
                        position: start as u64,
                        bytes: (cut - start) as u64
                    },
                    "cut {cut}"
                );
                assert_eq!(n, usize::from(cut > first));
            }
        }
    }

    #[test]
    fn corruption_kinds() {
        let v = two_batches();
        let first = RecordBatch::parse(&v, 0).unwrap().size();
        // Bad CRC in the second batch.
        let mut m = v.clone();
        let last = m.len() - 1;
        m[last] ^= 0x40;
        let mut it = log_entries(&m);
        assert_eq!(it.by_ref().count(), 1);
        match it.finish() {
            SegmentEnd::Corrupt(e) => {
                assert_eq!(e.kind, ErrorKind::Crc);
                assert_eq!(e.offset, Some(1));
            }
            other => panic!("{other:?}"),
        }
        // Without the CRC check the walk goes on and reports the batch as bad.
        let mut it = log_entries(&m).without_crc_check();
        let crc: Vec<bool> = it.by_ref().map(|b| b.crc_ok()).collect();
        assert_eq!(crc, vec![true, false]);
        assert_eq!(it.finish(), SegmentEnd::Clean);
        // Size below 14.
        let mut m = v.clone();
        m[first + 8..first + 12].copy_from_slice(&13i32.to_be_bytes());
        let mut it = log_entries(&m);
        assert!(matches!(it.finish(), SegmentEnd::Corrupt(e) if e.kind == ErrorKind::BadLength));
        // Unknown magic.
        let mut m = v.clone();
        m[first + 16] = 3;
        let mut it = log_entries(&m);
        assert!(matches!(it.finish(), SegmentEnd::Corrupt(e) if e.kind == ErrorKind::BadVersion));
    }

    #[test]
    fn mixed_legacy_and_v2() {
        let mut v = encode_legacy(&LegacySpec {
            offset: 0,
            magic: 1,
            value: Some(b"old".to_vec()),
            ..LegacySpec::default()
        });
        v.extend(encode_batch(&BatchSpec {
            base_offset: 1,
            records: vec![RecordSpec::kv(b"k", b"new")],
            ..BatchSpec::default()
        }));
        let mut it = log_entries(&v);
        let magics: Vec<u8> = it.by_ref().map(|b| b.magic()).collect();
        assert_eq!(magics, vec![1, 2]);
        assert_eq!(it.finish(), SegmentEnd::Clean);
    }
}
