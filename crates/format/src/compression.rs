//! Streaming decompressors for the records section of a batch (or the value of a legacy
//! wrapper message). Each returns a `Read` so records can be decoded incrementally: no size
//! read from the input is trusted for an allocation, and the total output is capped.
//!
//! Codec details that matter for Kafka:
//! - gzip: `GZIPOutputStream`; we accept concatenated members like `GZIPInputStream`.
//! - snappy: the Java client writes xerial `SnappyOutputStream` framing (16-byte header
//!   `\x82SNAPPY\0` + version + compatible version, then int32-length-prefixed raw snappy
//!   blocks; concatenated streams repeat the header). `SnappyInputStream` falls back to one
//!   raw snappy block when the header is absent (librdkafka and some older clients write
//!   that), so we accept both.
//! - lz4: LZ4 frame format. With magic 0 Kafka (before KAFKA-3160) computed the frame
//!   descriptor checksum over the magic number too; we accept either checksum for magic 0.
//! - zstd: a standard zstd frame; the decoder's window is capped.

use std::io::{self, Read};

use super::error::{ErrorKind, FormatError, Result};

/// The compression codec of a batch (attribute bits 0-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    /// No compression.
    None,
    /// gzip (RFC 1952), as written by `java.util.zip.GZIPOutputStream`.
    Gzip,
    /// Snappy; Java writes xerial `SnappyOutputStream` framing, librdkafka may write raw.
    Snappy,
    /// LZ4 frame format.
    Lz4,
    /// Zstandard (magic 2 only).
    Zstd,
}

impl Compression {
    /// Decodes attribute bits 0-2; 5-7 are invalid (Kafka's `CompressionType.forId` throws).
    pub fn from_id(id: u8) -> Option<Compression> {
        Some(match id {
            0 => Compression::None,
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            _ => return None,
        })
    }

    /// The id stored in the attributes.
    pub fn id(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }

    /// Kafka's name of the codec, as in `compression.type` and kafka-dump-log.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

/// xerial snappy-java stream header magic.
pub const XERIAL_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
const XERIAL_HEADER_LEN: usize = 16;
const LZ4_MAGIC: u32 = 0x184D_2204;
/// Largest zstd window (log2) we accept: 2^27 = 128 MiB, the library's default limit.
const ZSTD_WINDOW_LOG_MAX: u32 = 27;

/// Returns a reader that yields the decompressed bytes of `data`, which was compressed
/// with `codec` inside an entry of the given magic. `position` is the file position used
/// in errors; `max_block` caps any single snappy block's declared size.
pub fn decompressor<'a>(
    codec: Compression,
    data: &'a [u8],
    magic: u8,
    position: u64,
    max_block: usize,
) -> Result<Box<dyn Read + 'a>> {
    let err = |what: &str, e: String| {
        FormatError::new(ErrorKind::Decompress, position, what.to_string()).found(e)
    };
    Ok(match codec {
        Compression::None => Box::new(data),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(data)),
        Compression::Snappy => {
            if data.starts_with(&XERIAL_MAGIC) {
                Box::new(XerialSnappyReader {
                    data,
                    pos: 0,
                    out: Vec::new(),
                    out_pos: 0,
                    max_block,
                    decoder: snap::raw::Decoder::new(),
                })
            } else {
                let len = snap::raw::decompress_len(data)
                    .map_err(|e| err("a raw snappy block", e.to_string()))?;
                if len > max_block {
                    return Err(FormatError::new(
                        ErrorKind::Limit,
                        position,
                        format!("a snappy block of at most {max_block} bytes"),
                    )
                    .found(len));
                }
                let out = snap::raw::Decoder::new()
                    .decompress_vec(data)
                    .map_err(|e| err("a raw snappy block", e.to_string()))?;
                Box::new(io::Cursor::new(out))
            }
        }
        Compression::Lz4 => {
            let header =
                lz4_fixed_header(data, magic == 0).map_err(|e| err("an LZ4 frame header", e))?;
            match header {
                Some((fixed, rest)) => Box::new(lz4_flex::frame::FrameDecoder::new(
                    io::Cursor::new(fixed).chain(rest),
                )),
                None => Box::new(lz4_flex::frame::FrameDecoder::new(data)),
            }
        }
        Compression::Zstd => {
            let mut d = zstd::stream::read::Decoder::with_buffer(data)
                .map_err(|e| err("a zstd frame", e.to_string()))?;
            d.window_log_max(ZSTD_WINDOW_LOG_MAX)
                .map_err(|e| err("a zstd frame", e.to_string()))?;
            Box::new(d)
        }
    })
}

/// Validates the LZ4 frame descriptor. For magic 0 (`broken_hc_allowed`) a checksum computed
/// Kafka's old way (over magic + descriptor) is accepted; then the header is returned with
/// the standard checksum so that the frame decoder accepts it.
#[allow(clippy::type_complexity)]
fn lz4_fixed_header(
    data: &[u8],
    broken_hc_allowed: bool,
) -> std::result::Result<Option<(Vec<u8>, &[u8])>, String> {
    let magic = data
        .get(..4)
        .map(|m| u32::from_le_bytes([m[0], m[1], m[2], m[3]]))
        .ok_or("at least 7 bytes")?;
    if magic != LZ4_MAGIC {
        return Err(format!("LZ4 frame magic, found {magic:#010x}"));
    }
    let flg = *data.get(4).ok_or("FLG byte")?;
    let len = 4 + 2 + if flg & 0x08 != 0 { 8 } else { 0 } + if flg & 0x01 != 0 { 4 } else { 0 };
    let descriptor = data.get(4..len).ok_or("complete frame descriptor")?;
    let stored = *data.get(len).ok_or("header checksum byte")?;
    let good = (twox_hash::XxHash32::oneshot(0, descriptor) >> 8) as u8;
    if stored == good {
        return Ok(None);
    }
    let broken = (twox_hash::XxHash32::oneshot(0, data.get(..len).unwrap_or(&[])) >> 8) as u8;
    if broken_hc_allowed && stored == broken {
        let mut fixed = data.get(..=len).unwrap_or(&[]).to_vec();
        if let Some(last) = fixed.last_mut() {
            *last = good;
        }
        let rest = data.get(len + 1..).unwrap_or(&[]);
        return Ok(Some((fixed, rest)));
    }
    Err(format!("header checksum {good:#04x}, found {stored:#04x}"))
}

/// Reads xerial snappy-java framing block by block, so at most one block is in memory.
struct XerialSnappyReader<'a> {
    data: &'a [u8],
    pos: usize,
    out: Vec<u8>,
    out_pos: usize,
    max_block: usize,
    decoder: snap::raw::Decoder,
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

impl XerialSnappyReader<'_> {
    /// Decodes the next block into `out`; false at the end of the stream.
    fn next_block(&mut self) -> io::Result<bool> {
        loop {
            let rest = self.data.get(self.pos..).unwrap_or(&[]);
            if rest.is_empty() {
                return Ok(false);
            }
            // Stream header (first, or of a concatenated stream).
            if rest.starts_with(&XERIAL_MAGIC) {
                if rest.len() < XERIAL_HEADER_LEN {
                    return Err(invalid("truncated xerial snappy header".into()));
                }
                self.pos += XERIAL_HEADER_LEN;
                continue;
            }
            let Some(len_bytes) = rest.get(..4) else {
                return Err(invalid(format!(
                    "truncated xerial block length at {}",
                    self.pos
                )));
            };
            let len = i32::from_be_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]);
            if len < 0 {
                return Err(invalid(format!("negative xerial block length {len}")));
            }
            let block = rest
                .get(4..4 + len as usize)
                .ok_or_else(|| invalid(format!("xerial block of {len} bytes is truncated")))?;
            self.pos += 4 + len as usize;
            let n = snap::raw::decompress_len(block).map_err(|e| invalid(e.to_string()))?;
            if n > self.max_block {
                return Err(invalid(format!(
                    "snappy block of {n} bytes exceeds the limit {}",
                    self.max_block
                )));
            }
            self.out.clear();
            self.out.resize(n, 0);
            let written = self
                .decoder
                .decompress(block, &mut self.out)
                .map_err(|e| invalid(e.to_string()))?;
            self.out.truncate(written);
            self.out_pos = 0;
            if !self.out.is_empty() {
                return Ok(true);
            }
        }
    }
}

impl Read for XerialSnappyReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.out_pos >= self.out.len() && !self.next_block()? {
            return Ok(0);
        }
        let avail = self.out.get(self.out_pos..).unwrap_or(&[]);
        let n = avail.len().min(buf.len());
        buf[..n].copy_from_slice(&avail[..n]);
        self.out_pos += n;
        Ok(n)
    }
}

/// A reader that fails once more than `limit` bytes were read: bounds the work and memory
/// a decompression bomb can cause.
pub(crate) struct Capped<R> {
    pub inner: R,
    pub read: u64,
    pub limit: u64,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read = self.read.saturating_add(n as u64);
        if self.read > self.limit {
            return Err(io::Error::other(format!(
                "decompressed data exceeds the limit of {} bytes",
                self.limit
            )));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(codec: Compression, data: &[u8], magic: u8) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        decompressor(codec, data, magic, 0, 1 << 20)
            .map_err(|e| io::Error::other(e.to_string()))?
            .read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn snappy_framed_and_raw() {
        let payload: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let framed = crate::encode::compress(Compression::Snappy, &payload);
        assert!(framed.starts_with(&XERIAL_MAGIC));
        assert_eq!(read_all(Compression::Snappy, &framed, 2).unwrap(), payload);
        let raw = snap::raw::Encoder::new().compress_vec(&payload).unwrap();
        assert_eq!(read_all(Compression::Snappy, &raw, 2).unwrap(), payload);
        // Truncated framed stream: error, not panic.
        assert!(read_all(Compression::Snappy, &framed[..framed.len() - 3], 2).is_err());
    }

    #[test]
    fn lz4_magic0_broken_checksum_accepted_only_for_magic0() {
        let payload = b"hello hello hello hello".repeat(10);
        let mut frame = crate::encode::compress(Compression::Lz4, &payload);
        let flg = frame[4];
        let len = 6 + if flg & 0x08 != 0 { 8 } else { 0 };
        frame[len] = (twox_hash::XxHash32::oneshot(0, &frame[..len]) >> 8) as u8;
        assert_eq!(read_all(Compression::Lz4, &frame, 0).unwrap(), payload);
        assert!(read_all(Compression::Lz4, &frame, 1).is_err());
    }
}
