//! Record batches of magic 2 (Kafka 0.11+): the 61-byte header, its attributes, and the
//! CRC-32C that covers everything from the attributes to the end of the batch.
//!
//! The header is parsed with nom into plain values; the batch keeps a borrowed slice of its
//! bytes (zero-copy over the mmapped segment) so records are decoded only when asked for.

use nom::number::complete::{be_i16, be_i32, be_i64, be_u32, be_u8};

use super::compression::Compression;
use super::error::{ErrorKind, FormatError, Result};
use super::primitives::run;

/// Bytes before the length field's end: BaseOffset (8) + Length (4). `Length` counts what
/// follows them, so a batch or legacy entry occupies `LOG_OVERHEAD + Length` bytes.
pub const LOG_OVERHEAD: usize = 12;
/// Size of the v2 batch header; also the smallest possible v2 batch (no records).
pub const V2_HEADER_SIZE: usize = 61;
/// Position of the magic byte in every entry format (v0, v1 and v2).
pub const MAGIC_OFFSET: usize = 16;
/// Where the CRC-covered region of a v2 batch starts (the attributes).
pub const V2_CRC_START: usize = 21;

/// Timestamp type (attribute bit 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimestampType {
    /// Producer-supplied timestamps.
    CreateTime,
    /// The broker overwrote timestamps at append; every record's is the batch MaxTimestamp.
    LogAppendTime,
}

/// The attributes of a v2 batch (int16, only the low byte is used).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BatchAttributes(pub i16);

impl BatchAttributes {
    /// Raw codec id (bits 0-2).
    pub fn codec_id(self) -> u8 {
        (self.0 & 0x07) as u8
    }
    /// The codec, or `None` for the invalid ids 5-7.
    pub fn compression(self) -> Option<Compression> {
        Compression::from_id(self.codec_id())
    }
    /// Bit 3.
    pub fn timestamp_type(self) -> TimestampType {
        if self.0 & 0x08 != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }
    /// Bit 4: part of a transaction.
    pub fn is_transactional(self) -> bool {
        self.0 & 0x10 != 0
    }
    /// Bit 5: a control batch (transaction marker or KRaft control record).
    pub fn is_control(self) -> bool {
        self.0 & 0x20 != 0
    }
    /// Bit 6 (KIP-534): BaseTimestamp holds the delete horizon.
    pub fn has_delete_horizon(self) -> bool {
        self.0 & 0x40 != 0
    }
}

/// Every field of the 61-byte v2 batch header, in file order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BatchHeader {
    /// Offset of the first record (offset delta 0).
    pub base_offset: i64,
    /// Bytes after this field (batch size − 12).
    pub length: i32,
    /// Leader epoch when appended, −1 if none. Outside the CRC.
    pub partition_leader_epoch: i32,
    /// Always 2 here.
    pub magic: u8,
    /// Stored CRC-32C of bytes [21, 12+length).
    pub crc: u32,
    /// Codec, timestamp type, transactional, control, delete horizon.
    pub attributes: BatchAttributes,
    /// lastOffset − baseOffset; preserved by compaction even if the records are gone.
    pub last_offset_delta: i32,
    /// Timestamp of the first record, or the delete horizon if that attribute is set.
    pub base_timestamp: i64,
    /// Largest timestamp in the batch.
    pub max_timestamp: i64,
    /// −1 for non-idempotent producers.
    pub producer_id: i64,
    /// −1 for non-idempotent producers.
    pub producer_epoch: i16,
    /// Sequence of the first record, −1 if none.
    pub base_sequence: i32,
    /// Number of records (must be consumed exactly).
    pub record_count: i32,
}

/// Parses the fixed 61-byte header (nom). Does not validate the values.
pub fn parse_header(input: &[u8], position: u64) -> Result<BatchHeader> {
    let (_, t) = run(
        input,
        position,
        "a 61-byte record batch header",
        (
            be_i64, be_i32, be_i32, be_u8, be_u32, be_i16, be_i32, be_i64, be_i64, be_i64, be_i16,
            be_i32, be_i32,
        ),
    )?;
    Ok(BatchHeader {
        base_offset: t.0,
        length: t.1,
        partition_leader_epoch: t.2,
        magic: t.3,
        crc: t.4,
        attributes: BatchAttributes(t.5),
        last_offset_delta: t.6,
        base_timestamp: t.7,
        max_timestamp: t.8,
        producer_id: t.9,
        producer_epoch: t.10,
        base_sequence: t.11,
        record_count: t.12,
    })
}

/// A v2 record batch borrowed from a segment (or any byte slice).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordBatch<'a> {
    /// Byte position of the batch in the file.
    pub position: u64,
    /// The parsed header.
    pub header: BatchHeader,
    bytes: &'a [u8],
}

impl<'a> RecordBatch<'a> {
    /// Parses a batch from `input` (which starts at file position `position`); `input` may
    /// extend past the batch. Checks framing (length within input, ≥ minimum) and magic, but
    /// not the CRC (see [`RecordBatch::verify_crc`]) nor the records.
    pub fn parse(input: &'a [u8], position: u64) -> Result<RecordBatch<'a>> {
        let header = parse_header(input, position)?;
        if header.magic != 2 {
            return Err(FormatError::new(
                ErrorKind::BadVersion,
                position + MAGIC_OFFSET as u64,
                "magic 2",
            )
            .found(header.magic)
            .at_offset(header.base_offset));
        }
        let min = (V2_HEADER_SIZE - LOG_OVERHEAD) as i32;
        if header.length < min {
            return Err(FormatError::new(
                ErrorKind::BadLength,
                position + 8,
                format!("batch length >= {min}"),
            )
            .found(header.length)
            .at_offset(header.base_offset));
        }
        let total = LOG_OVERHEAD + header.length as usize;
        let bytes = input.get(..total).ok_or_else(|| {
            FormatError::new(
                ErrorKind::Truncated,
                position + input.len() as u64,
                format!("{total} bytes of batch"),
            )
            .found(format!("{} bytes", input.len()))
            .at_offset(header.base_offset)
        })?;
        Ok(RecordBatch {
            position,
            header,
            bytes,
        })
    }

    /// All bytes of the batch (header included).
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }
    /// Size in bytes (12 + Length).
    pub fn size(&self) -> usize {
        self.bytes.len()
    }
    /// The records section (compressed if the codec is not none).
    pub fn records_bytes(&self) -> &'a [u8] {
        self.bytes.get(V2_HEADER_SIZE..).unwrap_or(&[])
    }
    /// baseOffset + lastOffsetDelta, `None` on overflow.
    pub fn last_offset(&self) -> Option<i64> {
        self.header
            .base_offset
            .checked_add(i64::from(self.header.last_offset_delta))
    }
    /// Offset after this batch.
    pub fn next_offset(&self) -> Option<i64> {
        self.last_offset().and_then(|o| o.checked_add(1))
    }
    /// CRC-32C computed over [21, end).
    pub fn computed_crc(&self) -> u32 {
        crc32c::crc32c(self.bytes.get(V2_CRC_START..).unwrap_or(&[]))
    }
    /// Whether the stored CRC matches.
    pub fn crc_ok(&self) -> bool {
        self.computed_crc() == self.header.crc
    }
    /// Error if the stored CRC does not match.
    pub fn verify_crc(&self) -> Result<()> {
        let computed = self.computed_crc();
        if computed == self.header.crc {
            Ok(())
        } else {
            Err(FormatError::new(
                ErrorKind::Crc,
                self.position + 17,
                format!("CRC-32C {:#010x} (stored)", self.header.crc),
            )
            .found(format!("{computed:#010x} (computed)"))
            .at_offset(self.header.base_offset))
        }
    }
    /// Sequence of the last record (wraps to 0 after i32::MAX as Kafka does), −1 if none.
    pub fn last_sequence(&self) -> i32 {
        let h = &self.header;
        if h.base_sequence < 0 {
            return -1;
        }
        let s = i64::from(h.base_sequence) + i64::from(h.last_offset_delta);
        if s > i64::from(i32::MAX) {
            (s - i64::from(i32::MAX) - 1) as i32
        } else {
            s as i32
        }
    }
    /// Absolute offset of a record of this batch.
    pub fn record_offset(&self, offset_delta: i32) -> Option<i64> {
        self.header.base_offset.checked_add(i64::from(offset_delta))
    }
    /// Absolute timestamp of a record: MaxTimestamp for LogAppendTime, else base + delta.
    pub fn record_timestamp(&self, timestamp_delta: i64) -> Option<i64> {
        if self.header.attributes.timestamp_type() == TimestampType::LogAppendTime {
            Some(self.header.max_timestamp)
        } else {
            self.header.base_timestamp.checked_add(timestamp_delta)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::{encode_batch, BatchSpec, RecordSpec};

    fn sample() -> Vec<u8> {
        encode_batch(&BatchSpec {
            base_offset: 100,
            records: vec![RecordSpec::kv(b"k", b"v"), RecordSpec::kv(b"k2", b"v2")],
            ..BatchSpec::default()
        })
    }

    #[test]
    fn header_fields_and_crc() {
        let b = sample();
        let batch = RecordBatch::parse(&b, 0).unwrap();
        assert_eq!(batch.header.base_offset, 100);
        assert_eq!(batch.header.record_count, 2);
        assert_eq!(batch.last_offset(), Some(101));
        assert_eq!(batch.size(), b.len());
        assert!(batch.crc_ok());
    }

    #[test]
    fn crc_flip_detected_everywhere_in_covered_range() {
        let b = sample();
        for i in V2_CRC_START..b.len() {
            let mut m = b.clone();
            m[i] ^= 0x01;
            let batch = RecordBatch::parse(&m, 0).unwrap();
            let e = batch.verify_crc().unwrap_err();
            assert_eq!(e.kind, ErrorKind::Crc, "flip at {i}");
        }
        // The leader epoch is outside the CRC: a flip there keeps the CRC valid.
        let mut m = b.clone();
        m[12] ^= 0xff;
        assert!(RecordBatch::parse(&m, 0).unwrap().crc_ok());
    }

    #[test]
    fn short_length_and_bad_magic_are_corruption() {
        let mut b = sample();
        b[8..12].copy_from_slice(&10i32.to_be_bytes());
        assert_eq!(
            RecordBatch::parse(&b, 0).unwrap_err().kind,
            ErrorKind::BadLength
        );
        let mut b = sample();
        b[16] = 7;
        assert_eq!(
            RecordBatch::parse(&b, 0).unwrap_err().kind,
            ErrorKind::BadVersion
        );
    }
}
