//! Encoders for record batches and legacy messages.
//!
//! The parsers are checked against these in the property tests (random batches in every
//! codec must decode to exactly what was encoded), and fixtures can be built with them.
//! They follow what the Java client writes (xerial framing for snappy, LZ4 frames, gzip
//! members, zstd frames) but are not tuned for speed.

use std::io::Write;

use super::compression::Compression;
use super::compression::XERIAL_MAGIC;
use super::primitives::{encode_varint, encode_varlong};

/// One record to encode.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordSpec {
    /// Timestamp delta.
    pub timestamp_delta: i64,
    /// Offset delta; `None` = the record's index.
    pub offset_delta: Option<i32>,
    /// Key (None = null).
    pub key: Option<Vec<u8>>,
    /// Value (None = null).
    pub value: Option<Vec<u8>>,
    /// Headers (key, nullable value).
    pub headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl RecordSpec {
    /// A record with key and value.
    pub fn kv(key: &[u8], value: &[u8]) -> RecordSpec {
        RecordSpec {
            key: Some(key.to_vec()),
            value: Some(value.to_vec()),
            ..RecordSpec::default()
        }
    }
}

/// A batch to encode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchSpec {
    /// Base offset.
    pub base_offset: i64,
    /// Partition leader epoch.
    pub partition_leader_epoch: i32,
    /// Codec.
    pub compression: Compression,
    /// Extra attribute bits (3: LogAppendTime, 4: transactional, 5: control, 6: delete
    /// horizon); the codec bits are taken from `compression`.
    pub attribute_flags: i16,
    /// Last offset delta; `None` = the largest record offset delta (0 if no records).
    pub last_offset_delta: Option<i32>,
    /// Base timestamp.
    pub base_timestamp: i64,
    /// Max timestamp; `None` = base + largest delta.
    pub max_timestamp: Option<i64>,
    /// Producer id.
    pub producer_id: i64,
    /// Producer epoch.
    pub producer_epoch: i16,
    /// Base sequence.
    pub base_sequence: i32,
    /// Records.
    pub records: Vec<RecordSpec>,
}

impl Default for BatchSpec {
    fn default() -> Self {
        BatchSpec {
            base_offset: 0,
            partition_leader_epoch: 0,
            compression: Compression::None,
            attribute_flags: 0,
            last_offset_delta: None,
            base_timestamp: 1_700_000_000_000,
            max_timestamp: None,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            records: Vec::new(),
        }
    }
}

/// Encodes one record (Length varint included).
pub fn encode_record(r: &RecordSpec, index: i32, out: &mut Vec<u8>) {
    let mut body = vec![0u8]; // attributes
    encode_varlong(r.timestamp_delta, &mut body);
    encode_varint(r.offset_delta.unwrap_or(index), &mut body);
    for field in [&r.key, &r.value] {
        match field {
            Some(b) => {
                encode_varint(b.len() as i32, &mut body);
                body.extend_from_slice(b);
            }
            None => encode_varint(-1, &mut body),
        }
    }
    encode_varint(r.headers.len() as i32, &mut body);
    for (k, v) in &r.headers {
        encode_varint(k.len() as i32, &mut body);
        body.extend_from_slice(k);
        match v {
            Some(v) => {
                encode_varint(v.len() as i32, &mut body);
                body.extend_from_slice(v);
            }
            None => encode_varint(-1, &mut body),
        }
    }
    encode_varint(body.len() as i32, out);
    out.extend_from_slice(&body);
}

/// Compresses `data` as Kafka's Java client would for `codec`.
pub fn compress(codec: Compression, data: &[u8]) -> Vec<u8> {
    match codec {
        Compression::None => data.to_vec(),
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(data).expect("write to Vec");
            e.finish().expect("write to Vec")
        }
        Compression::Snappy => {
            // xerial SnappyOutputStream: header, then 32 KiB blocks with int32 lengths.
            let mut out = XERIAL_MAGIC.to_vec();
            out.extend_from_slice(&1i32.to_be_bytes());
            out.extend_from_slice(&1i32.to_be_bytes());
            let mut enc = snap::raw::Encoder::new();
            for chunk in data.chunks(32 * 1024) {
                let c = enc.compress_vec(chunk).expect("snappy compress");
                out.extend_from_slice(&(c.len() as i32).to_be_bytes());
                out.extend_from_slice(&c);
            }
            out
        }
        Compression::Lz4 => {
            let mut e = lz4_flex::frame::FrameEncoder::new(Vec::new());
            e.write_all(data).expect("write to Vec");
            e.finish().expect("write to Vec")
        }
        Compression::Zstd => zstd::encode_all(data, 3).expect("zstd compress"),
    }
}

/// Encodes a complete v2 batch, CRC included.
pub fn encode_batch(spec: &BatchSpec) -> Vec<u8> {
    let mut records = Vec::new();
    for (i, r) in spec.records.iter().enumerate() {
        encode_record(r, i as i32, &mut records);
    }
    let records = compress(spec.compression, &records);
    let last_delta = spec.last_offset_delta.unwrap_or_else(|| {
        spec.records
            .iter()
            .enumerate()
            .map(|(i, r)| r.offset_delta.unwrap_or(i as i32))
            .max()
            .unwrap_or(0)
    });
    let max_ts = spec.max_timestamp.unwrap_or_else(|| {
        spec.base_timestamp.saturating_add(
            spec.records
                .iter()
                .map(|r| r.timestamp_delta)
                .max()
                .unwrap_or(0),
        )
    });
    let attributes = (spec.attribute_flags & !0x07) | i16::from(spec.compression.id());
    let mut b = Vec::with_capacity(61 + records.len());
    b.extend_from_slice(&spec.base_offset.to_be_bytes());
    b.extend_from_slice(&((49 + records.len()) as i32).to_be_bytes());
    b.extend_from_slice(&spec.partition_leader_epoch.to_be_bytes());
    b.push(2);
    b.extend_from_slice(&[0; 4]); // CRC, filled below
    b.extend_from_slice(&attributes.to_be_bytes());
    b.extend_from_slice(&last_delta.to_be_bytes());
    b.extend_from_slice(&spec.base_timestamp.to_be_bytes());
    b.extend_from_slice(&max_ts.to_be_bytes());
    b.extend_from_slice(&spec.producer_id.to_be_bytes());
    b.extend_from_slice(&spec.producer_epoch.to_be_bytes());
    b.extend_from_slice(&spec.base_sequence.to_be_bytes());
    b.extend_from_slice(&(spec.records.len() as i32).to_be_bytes());
    b.extend_from_slice(&records);
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

/// A legacy (magic 0/1) message to encode.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LegacySpec {
    /// Offset field.
    pub offset: i64,
    /// 0 or 1.
    pub magic: u8,
    /// Attributes byte.
    pub attributes: u8,
    /// Timestamp (written for magic 1 only).
    pub timestamp: i64,
    /// Key.
    pub key: Option<Vec<u8>>,
    /// Value.
    pub value: Option<Vec<u8>>,
}

/// Encodes one legacy entry with a correct CRC-32.
pub fn encode_legacy(spec: &LegacySpec) -> Vec<u8> {
    let mut msg = vec![spec.magic, spec.attributes];
    if spec.magic >= 1 {
        msg.extend_from_slice(&spec.timestamp.to_be_bytes());
    }
    for field in [&spec.key, &spec.value] {
        match field {
            Some(b) => {
                msg.extend_from_slice(&(b.len() as i32).to_be_bytes());
                msg.extend_from_slice(b);
            }
            None => msg.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
    let mut out = spec.offset.to_be_bytes().to_vec();
    out.extend_from_slice(&((msg.len() + 4) as i32).to_be_bytes());
    out.extend_from_slice(&crc32fast::hash(&msg).to_be_bytes());
    out.extend_from_slice(&msg);
    out
}

/// Encodes a compressed legacy wrapper at `offset` holding `inner`.
pub fn encode_legacy_wrapper(
    offset: i64,
    magic: u8,
    codec: Compression,
    inner: &[LegacySpec],
) -> Vec<u8> {
    let mut set = Vec::new();
    for m in inner {
        set.extend(encode_legacy(m));
    }
    encode_legacy(&LegacySpec {
        offset,
        magic,
        attributes: codec.id(),
        timestamp: inner.iter().map(|m| m.timestamp).max().unwrap_or(-1),
        key: None,
        value: Some(compress(codec, &set)),
    })
}

/// A test segment: `batches` uncompressed v2 batches of `records` records each, at
/// consecutive offsets from 0, every value `value_len` bytes or more.
pub fn test_segment(batches: i64, records: i64, value_len: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..batches {
        out.extend(encode_batch(&BatchSpec {
            base_offset: i * records,
            records: (0..records)
                .map(|r| {
                    let v = format!("v{i}-{r}-{}", "x".repeat(value_len));
                    RecordSpec::kv(b"k", v.as_bytes())
                })
                .collect(),
            ..Default::default()
        }));
    }
    out
}
