//! Legacy message sets, magic 0 (Kafka 0.8-0.9) and magic 1 (0.10, KIP-31/32).
//!
//! Each entry is `offset i64, size i32, message`; the message is `crc u32, magic i8,
//! attributes i8, [timestamp i64 (v1)], key (i32 length), value (i32 length)`, and the CRC
//! is CRC-32 (IEEE) over magic..end. A compressed entry is a "wrapper" whose value is a
//! compressed message set; see [`LegacyEntry::inner`].

use std::io::Read;

use nom::number::complete::{be_i32, be_i64, be_u32, be_u8};

use super::batch::{TimestampType, LOG_OVERHEAD};
use super::compression::Compression;
use super::compression::{decompressor, Capped};
use super::error::{ErrorKind, FormatError, Result};
use super::primitives::{i32_nullable_bytes, run};
use super::records::Limits;

/// Smallest v0 message after the 12-byte log header (crc, magic, attrs, key len, value len).
pub const RECORD_OVERHEAD_V0: usize = 14;
/// Smallest v1 message (adds the timestamp).
pub const RECORD_OVERHEAD_V1: usize = 22;

/// One legacy entry (a message, or a compressed wrapper), borrowed from its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegacyEntry<'a> {
    /// Position of the entry in its input (the file, or a decompressed wrapper value).
    pub position: u64,
    /// The offset field: absolute for top-level entries (for a wrapper: its last inner
    /// offset); for inner messages absolute (v0) or relative (v1).
    pub offset: i64,
    /// Size of the message after the 12-byte log header.
    pub size: i32,
    /// Stored CRC-32.
    pub crc: u32,
    /// 0 or 1.
    pub magic: u8,
    /// Attributes: codec bits 0-2, timestamp type bit 3 (v1).
    pub attributes: u8,
    /// Timestamp (v1 only; −1 means none).
    pub timestamp: Option<i64>,
    /// Key, `None` if null.
    pub key: Option<&'a [u8]>,
    /// Value, `None` if null. For a wrapper: the compressed inner message set.
    pub value: Option<&'a [u8]>,
    bytes: &'a [u8],
}

impl<'a> LegacyEntry<'a> {
    /// Parses one entry from the start of `input` (file position `position`). `input` may
    /// extend past the entry. Checks size bounds, magic, and that key and value exactly
    /// fill the message; not the CRC.
    pub fn parse(input: &'a [u8], position: u64) -> Result<LegacyEntry<'a>> {
        let (_, (offset, size, crc, magic, attributes)) = run(
            input,
            position,
            "a legacy message header (offset, size, crc, magic, attributes)",
            (be_i64, be_i32, be_u32, be_u8, be_u8),
        )?;
        let overhead = match magic {
            0 => RECORD_OVERHEAD_V0,
            1 => RECORD_OVERHEAD_V1,
            m => {
                return Err(
                    FormatError::new(ErrorKind::BadVersion, position + 16, "magic 0 or 1")
                        .found(m)
                        .at_offset(offset),
                )
            }
        };
        if size < 0 || (size as usize) < overhead {
            return Err(FormatError::new(
                ErrorKind::BadLength,
                position + 8,
                format!("message size >= {overhead} for magic {magic}"),
            )
            .found(size)
            .at_offset(offset));
        }
        let total = LOG_OVERHEAD + size as usize;
        let bytes = input.get(..total).ok_or_else(|| {
            FormatError::new(
                ErrorKind::Truncated,
                position + input.len() as u64,
                format!("{total} bytes of message"),
            )
            .at_offset(offset)
        })?;
        let body = bytes.get(18..).unwrap_or(&[]);
        let body_pos = position + 18;
        let (rest, (timestamp, key, value)) = if magic == 1 {
            let (r, (ts, k, v)) = run(
                body,
                body_pos,
                "timestamp, key and value",
                (be_i64, i32_nullable_bytes, i32_nullable_bytes),
            )
            .map_err(|e| e.at_offset(offset))?;
            (r, (Some(ts), k, v))
        } else {
            let (r, (k, v)) = run(
                body,
                body_pos,
                "key and value",
                (i32_nullable_bytes, i32_nullable_bytes),
            )
            .map_err(|e| e.at_offset(offset))?;
            (r, (None, k, v))
        };
        if !rest.is_empty() {
            return Err(FormatError::new(
                ErrorKind::BadLength,
                position + 8,
                "key and value to fill the message size exactly",
            )
            .found(format!("{} bytes left over", rest.len()))
            .at_offset(offset));
        }
        Ok(LegacyEntry {
            position,
            offset,
            size,
            crc,
            magic,
            attributes,
            timestamp,
            key,
            value,
            bytes,
        })
    }

    /// All bytes of the entry.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }
    /// 12 + size.
    pub fn total_size(&self) -> usize {
        self.bytes.len()
    }
    /// Raw codec id.
    pub fn codec_id(&self) -> u8 {
        self.attributes & 0x07
    }
    /// Codec; `None` for ids other than 0-3 (zstd is illegal for legacy formats).
    pub fn compression(&self) -> Option<Compression> {
        match Compression::from_id(self.codec_id()) {
            Some(Compression::Zstd) | None => None,
            c => c,
        }
    }
    /// True for a compressed wrapper.
    pub fn is_compressed(&self) -> bool {
        self.codec_id() != 0
    }
    /// Timestamp type (v1; v0 has none and reports CreateTime).
    pub fn timestamp_type(&self) -> TimestampType {
        if self.magic >= 1 && self.attributes & 0x08 != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }
    /// CRC-32 over magic..end.
    pub fn computed_crc(&self) -> u32 {
        crc32fast::hash(self.bytes.get(16..).unwrap_or(&[]))
    }
    /// Whether the stored CRC matches.
    pub fn crc_ok(&self) -> bool {
        self.computed_crc() == self.crc
    }
    /// Error if the stored CRC does not match.
    pub fn verify_crc(&self) -> Result<()> {
        let computed = self.computed_crc();
        if computed == self.crc {
            return Ok(());
        }
        Err(FormatError::new(
            ErrorKind::Crc,
            self.position + 12,
            format!("CRC-32 {:#010x} (stored)", self.crc),
        )
        .found(format!("{computed:#010x} (computed)"))
        .at_offset(self.offset))
    }

    /// Decompresses a wrapper's value and parses the inner messages (with absolute
    /// offsets). The inner set is held in memory (v1 offsets need the last inner offset
    /// first, as in Kafka's `DeepRecordsIterator`), capped by `limits`.
    pub fn inner(&self, limits: Limits) -> Result<InnerMessages> {
        let codec = self.compression().ok_or_else(|| {
            FormatError::new(ErrorKind::BadValue, self.position + 17, "legacy codec 1-3")
                .found(self.codec_id())
                .at_offset(self.offset)
        })?;
        let value = self.value.ok_or_else(|| {
            FormatError::new(
                ErrorKind::BadValue,
                self.position,
                "a non-null wrapper value",
            )
            .at_offset(self.offset)
        })?;
        let mut data = Vec::new();
        if codec == Compression::None {
            data.extend_from_slice(value);
        } else {
            let r = decompressor(
                codec,
                value,
                self.magic,
                self.position,
                limits.max_record_bytes,
            )
            .map_err(|e| e.at_offset(self.offset))?;
            let mut capped = Capped {
                inner: r,
                read: 0,
                limit: limits.max_decompressed_bytes,
            };
            capped.read_to_end(&mut data).map_err(|e| {
                FormatError::new(
                    ErrorKind::Decompress,
                    self.position,
                    "a decompressible value",
                )
                .found(e)
                .at_offset(self.offset)
            })?;
        }
        // First pass: framing of every inner message, and the last inner offset.
        let mut count = 0usize;
        let mut last_inner = None;
        let mut pos = 0usize;
        while pos < data.len() {
            let e = LegacyEntry::parse(data.get(pos..).unwrap_or(&[]), pos as u64)
                .map_err(|e| e.in_decompressed(self.position, 0).at_offset(self.offset))?;
            last_inner = Some(e.offset);
            count += 1;
            pos += e.total_size();
        }
        let Some(last_inner) = last_inner else {
            return Err(FormatError::new(
                ErrorKind::BadValue,
                self.position,
                "a compressed message set with at least one message",
            )
            .at_offset(self.offset));
        };
        let base = if self.magic == 0 || self.offset == 0 {
            // v0: inner offsets are absolute; v1 wrapper offset 0: old librdkafka (Kafka
            // then uses the inner offsets as they are).
            0
        } else {
            if self.offset < last_inner {
                return Err(FormatError::new(
                    ErrorKind::BadValue,
                    self.position,
                    "a wrapper offset >= the last inner offset",
                )
                .found(format!("{} < {last_inner}", self.offset))
                .at_offset(self.offset));
            }
            self.offset - last_inner
        };
        Ok(InnerMessages {
            data,
            count,
            base,
            wrapper_position: self.position,
            wrapper_timestamp: if self.timestamp_type() == TimestampType::LogAppendTime {
                self.timestamp
            } else {
                None
            },
        })
    }
}

/// The decompressed inner messages of a legacy wrapper.
#[derive(Debug, Clone)]
pub struct InnerMessages {
    data: Vec<u8>,
    count: usize,
    base: i64,
    wrapper_position: u64,
    wrapper_timestamp: Option<i64>,
}

/// One inner message with its absolute offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InnerMessage<'a> {
    /// Absolute offset.
    pub offset: i64,
    /// Effective timestamp: the wrapper's for LogAppendTime wrappers, else the message's.
    pub timestamp: Option<i64>,
    /// The message (positions are within the decompressed data).
    pub entry: LegacyEntry<'a>,
}

impl InnerMessages {
    /// Number of inner messages.
    pub fn len(&self) -> usize {
        self.count
    }
    /// True if there are none (never, for a valid wrapper).
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
    /// Decompressed size.
    pub fn decompressed_len(&self) -> usize {
        self.data.len()
    }
    /// The inner messages; each also has its CRC checked.
    pub fn iter(&self) -> impl Iterator<Item = Result<InnerMessage<'_>>> + '_ {
        let mut pos = 0usize;
        std::iter::from_fn(move || {
            if pos >= self.data.len() {
                return None;
            }
            let r = LegacyEntry::parse(self.data.get(pos..).unwrap_or(&[]), pos as u64)
                .and_then(|e| e.verify_crc().map(|_| e))
                .map(|e| InnerMessage {
                    offset: self.base.saturating_add(e.offset),
                    timestamp: self.wrapper_timestamp.or(e.timestamp),
                    entry: e,
                })
                .map_err(|e| e.in_decompressed(self.wrapper_position, 0));
            match &r {
                Ok(m) => pos += m.entry.total_size(),
                Err(_) => pos = self.data.len(),
            }
            Some(r)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::{encode_legacy, LegacySpec};

    #[test]
    fn v0_and_v1_roundtrip_with_crc() {
        for magic in [0u8, 1] {
            let b = encode_legacy(&LegacySpec {
                offset: 5,
                magic,
                timestamp: 1234,
                key: Some(b"k".to_vec()),
                value: Some(b"value".to_vec()),
                ..LegacySpec::default()
            });
            let e = LegacyEntry::parse(&b, 0).unwrap();
            assert_eq!(e.offset, 5);
            assert_eq!(e.key, Some(&b"k"[..]));
            assert_eq!(e.value, Some(&b"value"[..]));
            assert_eq!(e.timestamp, if magic == 1 { Some(1234) } else { None });
            assert!(e.crc_ok());
            let mut m = b.clone();
            let last = m.len() - 1;
            m[last] ^= 1;
            assert_eq!(
                LegacyEntry::parse(&m, 0)
                    .unwrap()
                    .verify_crc()
                    .unwrap_err()
                    .kind,
                ErrorKind::Crc
            );
        }
    }

    #[test]
    fn compressed_wrapper_offsets() {
        for (magic, codec) in [
            (0u8, Compression::Gzip),
            (1, Compression::Snappy),
            (1, Compression::Lz4),
            (0, Compression::Lz4),
        ] {
            let inner: Vec<LegacySpec> = (0..3)
                .map(|i| LegacySpec {
                    offset: if magic == 0 { 10 + i } else { i },
                    magic,
                    value: Some(vec![i as u8; 10]),
                    ..LegacySpec::default()
                })
                .collect();
            let w = crate::encode::encode_legacy_wrapper(12, magic, codec, &inner);
            let e = LegacyEntry::parse(&w, 0).unwrap();
            assert!(e.crc_ok());
            let msgs = e.inner(Limits::default()).unwrap();
            let offs: Vec<i64> = msgs.iter().map(|m| m.unwrap().offset).collect();
            assert_eq!(offs, vec![10, 11, 12], "magic {magic} {codec:?}");
        }
    }
}
