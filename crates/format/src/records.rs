//! Records inside a v2 batch: varint-framed, decoded one at a time.
//!
//! Uncompressed batches are decoded zero-copy (keys, values and headers borrow the
//! segment). Compressed batches are decompressed as a stream: each record is read into a
//! reusable buffer whose growth is driven by bytes actually produced, never by a length
//! field, so a corrupt or hostile batch cannot make us allocate more than it decompresses
//! to (and that total is capped by [`Limits`]). Because a record may then borrow the
//! iterator's buffer, [`Records::next_record`] is a "lending" method rather than
//! `Iterator::next`.

use std::io::Read;

use nom::number::complete::be_i8;

use super::batch::RecordBatch;
use super::compression::Compression;
use super::compression::{decompressor, Capped};
use super::error::{ErrorKind, FormatError, Result};
use super::primitives::{
    fast, read_varint_from, run, varint, varint_bytes, varint_nullable_bytes, varlong,
};

/// Memory bounds for decoding records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest single record (its Length varint) accepted.
    pub max_record_bytes: usize,
    /// Largest decompressed size of one batch (or legacy wrapper).
    pub max_decompressed_bytes: u64,
}

impl Default for Limits {
    /// 64 MiB per record and 1 GiB per decompressed batch: far above Kafka's defaults
    /// (`message.max.bytes` ≈ 1 MiB) but small enough to stop decompression bombs.
    fn default() -> Self {
        Limits {
            max_record_bytes: 64 << 20,
            max_decompressed_bytes: 1 << 30,
        }
    }
}

/// One record of a v2 batch. Offsets and timestamps are deltas; use
/// [`RecordBatch::record_offset`] / [`RecordBatch::record_timestamp`] for absolute values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// The Length varint: bytes of the record after it.
    pub length: i32,
    /// Unused by Kafka (always 0).
    pub attributes: i8,
    /// Timestamp − batch BaseTimestamp.
    pub timestamp_delta: i64,
    /// Offset − batch BaseOffset.
    pub offset_delta: i32,
    /// Key, `None` if null.
    pub key: Option<&'a [u8]>,
    /// Value, `None` if null (a tombstone).
    pub value: Option<&'a [u8]>,
    header_count: u32,
    headers_raw: &'a [u8],
}

/// A record header. Keys are UTF-8 in Kafka, but kept as bytes (Java decodes lossily).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    /// Header key bytes.
    pub key: &'a [u8],
    /// Header value, `None` if null.
    pub value: Option<&'a [u8]>,
}

impl<'a> Record<'a> {
    /// Number of headers.
    pub fn header_count(&self) -> u32 {
        self.header_count
    }
    /// The headers (already validated when the record was parsed).
    pub fn headers(&self) -> impl Iterator<Item = Header<'a>> + 'a {
        let mut rest = self.headers_raw;
        let mut left = self.header_count;
        std::iter::from_fn(move || {
            if left == 0 {
                return None;
            }
            left -= 1;
            let (r, (key, value)) = header(rest).ok()?;
            rest = r;
            Some(Header { key, value })
        })
    }
}

type HeaderParts<'a> = (&'a [u8], Option<&'a [u8]>);

fn header(input: &[u8]) -> super::primitives::PResult<'_, HeaderParts<'_>> {
    let (input, key) = varint_bytes(input)?;
    let (input, value) = varint_nullable_bytes(input)?;
    Ok((input, (key, value)))
}

/// The hot path of [`parse_record_body`]: the same checks without error reporting
/// (`None` on any failure; the caller then re-parses with nom for the precise error).
#[inline(always)]
fn parse_record_body_fast(body: &[u8], length: i32) -> Option<Record<'_>> {
    let mut p = 0usize;
    let attributes = *body.first()? as i8;
    p += 1;
    let timestamp_delta = fast::varlong(body, &mut p)?;
    let offset_delta = fast::varint(body, &mut p)?;
    let key = fast::varint_nullable_bytes(body, &mut p)?;
    let value = fast::varint_nullable_bytes(body, &mut p)?;
    let header_count = fast::varint(body, &mut p)?;
    if header_count < 0 {
        return None;
    }
    let headers_start = p;
    for _ in 0..header_count {
        fast::varint_bytes(body, &mut p)?;
        fast::varint_nullable_bytes(body, &mut p)?;
    }
    if p != body.len() {
        return None;
    }
    Some(Record {
        length,
        attributes,
        timestamp_delta,
        offset_delta,
        key,
        value,
        header_count: header_count as u32,
        headers_raw: body.get(headers_start..).unwrap_or(&[]),
    })
}

/// Parses a record body (the bytes after its Length varint, exactly `length` of them).
/// `position` is where the body starts (for errors).
pub fn parse_record_body(body: &[u8], length: i32, position: u64) -> Result<Record<'_>> {
    if let Some(r) = parse_record_body_fast(body, length) {
        return Ok(r);
    }
    parse_record_body_slow(body, length, position)
}

/// [`parse_record_body`] with nom, reporting where and what failed.
#[cold]
fn parse_record_body_slow(body: &[u8], length: i32, position: u64) -> Result<Record<'_>> {
    let (rest, (attributes, timestamp_delta, offset_delta, key, value, header_count)) = run(
        body,
        position,
        "record fields (attributes, timestamp delta, offset delta, key, value, header count)",
        (
            be_i8,
            varlong,
            varint,
            varint_nullable_bytes,
            varint_nullable_bytes,
            varint,
        ),
    )?;
    if header_count < 0 {
        return Err(FormatError::new(
            ErrorKind::BadLength,
            position,
            "a non-negative header count",
        )
        .found(header_count));
    }
    let headers_raw = rest;
    let mut cur = rest;
    for _ in 0..header_count {
        let here = position + (body.len() - cur.len()) as u64;
        let (r, _) = run(cur, here, "a record header (key, value)", header)?;
        cur = r;
    }
    if !cur.is_empty() {
        return Err(FormatError::new(
            ErrorKind::BadLength,
            position,
            format!("a record of exactly {length} bytes"),
        )
        .found(format!("{} bytes left over", cur.len())));
    }
    let used = headers_raw.len() - cur.len();
    Ok(Record {
        length,
        attributes,
        timestamp_delta,
        offset_delta,
        key,
        value,
        header_count: header_count as u32,
        headers_raw: headers_raw.get(..used).unwrap_or(&[]),
    })
}

enum Source<'a> {
    Plain { data: &'a [u8], pos: usize },
    Stream(Capped<Box<dyn Read + 'a>>),
}

/// Decodes the records of one batch, exactly `record_count` of them, then checks that
/// nothing is left (Kafka: "records not consumed exactly" is corruption).
pub struct Records<'a> {
    source: Source<'a>,
    remaining: u32,
    total: u32,
    batch_position: u64,
    base_offset: i64,
    buf: Vec<u8>,
    stream_pos: u64,
    limits: Limits,
    done: bool,
}

/// The records of a batch are read through [`Records`], which lives here (the batch type
/// only knows its header and bytes).
impl<'a> RecordBatch<'a> {
    /// Iterates the records (decompressing incrementally if needed).
    pub fn records(&self) -> Result<Records<'a>> {
        Records::new(self, Limits::default())
    }
    /// Like [`RecordBatch::records`] with explicit memory limits.
    pub fn records_with_limits(&self, limits: Limits) -> Result<Records<'a>> {
        Records::new(self, limits)
    }
}

impl<'a> Records<'a> {
    /// Prepares decoding of `batch`'s records.
    pub fn new(batch: &RecordBatch<'a>, limits: Limits) -> Result<Records<'a>> {
        let h = &batch.header;
        if h.record_count < 0 {
            return Err(FormatError::new(
                ErrorKind::BadLength,
                batch.position + 57,
                "a non-negative record count",
            )
            .found(h.record_count)
            .at_offset(h.base_offset));
        }
        let codec = h.attributes.compression().ok_or_else(|| {
            FormatError::new(ErrorKind::BadValue, batch.position + 21, "codec id 0-4")
                .found(h.attributes.codec_id())
                .at_offset(h.base_offset)
        })?;
        let data = batch.records_bytes();
        let records_pos = batch.position + super::batch::V2_HEADER_SIZE as u64;
        let source = if codec == Compression::None {
            Source::Plain { data, pos: 0 }
        } else {
            let r = decompressor(
                codec,
                data,
                2,
                records_pos,
                limits.max_record_bytes.max(1 << 20),
            )
            .map_err(|e| e.at_offset(h.base_offset))?;
            Source::Stream(Capped {
                inner: r,
                read: 0,
                limit: limits.max_decompressed_bytes,
            })
        };
        Ok(Records {
            source,
            remaining: h.record_count as u32,
            total: h.record_count as u32,
            batch_position: batch.position,
            base_offset: h.base_offset,
            buf: Vec::new(),
            stream_pos: 0,
            limits,
            done: false,
        })
    }

    /// Records not yet decoded.
    pub fn remaining(&self) -> u32 {
        self.remaining
    }

    fn fail(&mut self, e: FormatError) -> Option<Result<Record<'_>>> {
        self.done = true;
        Some(Err(e.at_offset(self.base_offset)))
    }

    fn decompress_error(&self, e: std::io::Error, expected: &str) -> FormatError {
        let kind = if e.kind() == std::io::ErrorKind::UnexpectedEof {
            ErrorKind::Truncated
        } else if e.to_string().contains("exceeds the limit") {
            ErrorKind::Limit
        } else {
            ErrorKind::Decompress
        };
        FormatError::new(kind, self.stream_pos, expected.to_string())
            .found(e)
            .in_decompressed(self.batch_position, 0)
    }

    /// The next record, `None` after the last one (or after an error).
    #[allow(clippy::should_implement_trait)]
    pub fn next_record(&mut self) -> Option<Result<Record<'_>>> {
        if self.done {
            return None;
        }
        if self.remaining == 0 {
            self.done = true;
            return self.check_end().err().map(Err);
        }
        let index = self.total - self.remaining;
        self.remaining -= 1;
        if let Source::Plain { data, pos } = self.source {
            return match self.plain_record(data, pos, index) {
                Ok((end, rec)) => {
                    self.source = Source::Plain { data, pos: end };
                    Some(Ok(rec))
                }
                Err(e) => {
                    self.done = true;
                    Some(Err(e.at_offset(self.base_offset)))
                }
            };
        }
        self.streamed_record(index)
    }

    /// Record `index` of an uncompressed batch, starting at `start` in its records: the
    /// record and where the next one starts.
    fn plain_record(
        &self,
        data: &'a [u8],
        start: usize,
        index: u32,
    ) -> Result<(usize, Record<'a>)> {
        // Fast path: a well-formed record; anything else is re-parsed below for the precise
        // error.
        let mut p = start;
        if let Some(len) = fast::varint(data, &mut p) {
            if len >= 0 && len as usize <= self.limits.max_record_bytes {
                let body_start = p;
                if let Some(body) = fast::take(data, &mut p, len as usize) {
                    if let Some(rec) = parse_record_body_fast(body, len) {
                        return Ok((body_start + len as usize, rec));
                    }
                }
            }
        }
        let rest = data.get(start..).unwrap_or(&[]);
        let file_pos = self.batch_position + 61 + start as u64;
        let (after, len) = run(rest, file_pos, "a record length varint", varint)?;
        let body_pos = file_pos + (rest.len() - after.len()) as u64;
        if len < 0 || len as usize > self.limits.max_record_bytes {
            return Err(FormatError::new(
                ErrorKind::BadLength,
                file_pos,
                "a record length within the limit",
            )
            .found(len));
        }
        let body = after.get(..len as usize).ok_or_else(|| {
            FormatError::new(
                ErrorKind::BadLength,
                body_pos,
                format!("record {index} of {} within the batch", self.total),
            )
            .found(format!("length {len} but {} bytes left", after.len()))
        })?;
        let rec = parse_record_body(body, len, body_pos)?;
        Ok((start + rest.len() - after.len() + len as usize, rec))
    }

    /// Record `index` of a compressed batch, read from the decompressing stream.
    fn streamed_record(&mut self, index: u32) -> Option<Result<Record<'_>>> {
        let Source::Stream(reader) = &mut self.source else {
            // Only called for a stream (next_record handles the plain source).
            return None;
        };
        let len = match read_varint_from(reader) {
            Ok(Some(l)) => l,
            Ok(None) => {
                let e = FormatError::new(
                    ErrorKind::BadLength,
                    self.stream_pos,
                    format!("{} records", self.total),
                )
                .found(format!("{index}"))
                .in_decompressed(self.batch_position, 0);
                return self.fail(e);
            }
            Err(e) => {
                let e = self.decompress_error(e, "a record length varint");
                return self.fail(e);
            }
        };
        let varint_len = {
            let mut tmp = Vec::new();
            super::primitives::encode_varint(len, &mut tmp);
            tmp.len() as u64
        };
        if len < 0 || len as usize > self.limits.max_record_bytes {
            let e = FormatError::new(
                ErrorKind::BadLength,
                self.stream_pos,
                "a record length within the limit",
            )
            .found(len)
            .in_decompressed(self.batch_position, 0);
            return self.fail(e);
        }
        self.buf.clear();
        let got = match reader.by_ref().take(len as u64).read_to_end(&mut self.buf) {
            Ok(n) => n,
            Err(e) => {
                let e = self.decompress_error(e, "record bytes");
                return self.fail(e);
            }
        };
        if got != len as usize {
            let e = FormatError::new(
                ErrorKind::BadLength,
                self.stream_pos,
                format!("record {index} of {len} bytes"),
            )
            .found(format!("{got} bytes before the end of the stream"))
            .in_decompressed(self.batch_position, 0);
            return self.fail(e);
        }
        let body_pos = self.stream_pos + varint_len;
        self.stream_pos = body_pos + len as u64;
        let batch_position = self.batch_position;
        let base_offset = self.base_offset;
        match parse_record_body(&self.buf, len, body_pos) {
            Ok(r) => Some(Ok(r)),
            Err(e) => {
                self.done = true;
                Some(Err(e
                    .in_decompressed(batch_position, 0)
                    .at_offset(base_offset)))
            }
        }
    }

    fn check_end(&mut self) -> Result<()> {
        match &mut self.source {
            Source::Plain { data, pos } => {
                let left = data.len().saturating_sub(*pos);
                if left != 0 {
                    return Err(FormatError::new(
                        ErrorKind::BadLength,
                        self.batch_position + 61 + *pos as u64,
                        format!("no bytes after record {}", self.total),
                    )
                    .found(format!("{left} bytes"))
                    .at_offset(self.base_offset));
                }
            }
            Source::Stream(reader) => {
                let mut b = [0u8; 1];
                match reader.read(&mut b) {
                    Ok(0) => {}
                    Ok(_) => {
                        return Err(FormatError::new(
                            ErrorKind::BadLength,
                            self.stream_pos,
                            format!("end of decompressed data after {} records", self.total),
                        )
                        .found("more bytes")
                        .in_decompressed(self.batch_position, 0)
                        .at_offset(self.base_offset))
                    }
                    Err(e) => {
                        return Err(self
                            .decompress_error(e, "end of the compressed stream")
                            .at_offset(self.base_offset))
                    }
                }
            }
        }
        Ok(())
    }

    /// Decodes every record, calling `f` on each; returns the number of records.
    pub fn try_for_each<F>(mut self, mut f: F) -> Result<u32>
    where
        F: FnMut(&Record<'_>) -> Result<()>,
    {
        let mut n = 0u32;
        while let Some(r) = self.next_record() {
            let r = r?;
            f(&r)?;
            n += 1;
        }
        Ok(n)
    }

    /// Decodes and validates every record; returns how many there were.
    pub fn verify(self) -> Result<u32> {
        self.try_for_each(|_| Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::primitives::{encode_varint, encode_varlong};
    use proptest::prelude::*;

    /// A record body with the given fields, then `extra` appended (to break it).
    fn body(
        ts: i64,
        od: i32,
        key: Option<&[u8]>,
        headers: &[(Vec<u8>, Option<Vec<u8>>)],
    ) -> Vec<u8> {
        let mut b = vec![0u8];
        encode_varlong(ts, &mut b);
        encode_varint(od, &mut b);
        for f in [key, Some(&b"value"[..])] {
            match f {
                None => encode_varint(-1, &mut b),
                Some(f) => {
                    encode_varint(f.len() as i32, &mut b);
                    b.extend_from_slice(f);
                }
            }
        }
        encode_varint(headers.len() as i32, &mut b);
        for (k, v) in headers {
            encode_varint(k.len() as i32, &mut b);
            b.extend_from_slice(k);
            match v {
                None => encode_varint(-1, &mut b),
                Some(v) => {
                    encode_varint(v.len() as i32, &mut b);
                    b.extend_from_slice(v);
                }
            }
        }
        b
    }

    fn agree(b: &[u8]) {
        let fast = parse_record_body_fast(b, b.len() as i32);
        let slow = parse_record_body_slow(b, b.len() as i32, 0);
        match (fast, slow) {
            (Some(f), Ok(s)) => assert_eq!(f, s),
            (None, Err(_)) => {}
            (f, s) => panic!("fast {f:?} vs slow {s:?} on {b:?}"),
        }
    }

    proptest! {
        /// The fast path and the nom path accept the same bodies and decode them alike.
        #[test]
        fn fast_and_slow_record_parsers_agree(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            agree(&bytes);
        }

        #[test]
        fn fast_and_slow_agree_on_near_valid_bodies(
            ts in any::<i64>(), od in any::<i32>(), key in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..8)),
            headers in proptest::collection::vec((proptest::collection::vec(any::<u8>(), 0..4), proptest::option::of(proptest::collection::vec(any::<u8>(), 0..4))), 0..3),
            cut in any::<usize>(), flip in any::<(usize, u8)>(),
        ) {
            let b = body(ts, od, key.as_deref(), &headers);
            agree(&b);
            prop_assert!(parse_record_body_fast(&b, b.len() as i32).is_some());
            agree(&b[..cut % (b.len() + 1)]);
            let mut c = b.clone();
            let i = flip.0 % c.len();
            c[i] ^= flip.1;
            agree(&c);
            c.push(0);
            agree(&c);
        }
    }
}
