//! Shared nom building blocks: Kafka's zigzag varints, nullable byte fields, and the
//! conversion of nom errors into [`FormatError`]s that carry a byte position.
//!
//! All parsers here are "complete" parsers over `&[u8]`: running out of input is an error
//! (reported as [`ErrorKind::Truncated`]), never a request for more data.

use nom::error::{Error as NomError, ErrorKind as NomKind};
use nom::number::complete::{be_i16, be_i32, be_u8};
use nom::{IResult, Parser};

use super::error::{ErrorKind, FormatError, Result};

/// nom's result over byte slices with its simple error type.
pub(crate) type PResult<'a, T> = IResult<&'a [u8], T, NomError<&'a [u8]>>;

fn fail<T>(input: &[u8], code: NomKind) -> PResult<'_, T> {
    Err(nom::Err::Error(NomError::new(input, code)))
}

/// Runs a nom parser over `input`, which starts at position `base`, and turns a nom error
/// into a [`FormatError`] that says what was `expected` and where parsing stopped.
pub(crate) fn run<'a, T, P>(
    input: &'a [u8],
    base: u64,
    expected: &str,
    mut parser: P,
) -> Result<(&'a [u8], T)>
where
    P: Parser<&'a [u8], Output = T, Error = NomError<&'a [u8]>>,
{
    match parser.parse(input) {
        Ok(v) => Ok(v),
        Err(nom::Err::Error(e)) | Err(nom::Err::Failure(e)) => {
            let consumed = input.len().saturating_sub(e.input.len()) as u64;
            let kind = match e.code {
                NomKind::Eof | NomKind::Complete => ErrorKind::Truncated,
                NomKind::TooLarge => ErrorKind::BadValue,
                _ => ErrorKind::BadValue,
            };
            Err(FormatError::new(
                kind,
                base.saturating_add(consumed),
                expected,
            ))
        }
        Err(nom::Err::Incomplete(_)) => Err(FormatError::new(
            ErrorKind::Truncated,
            base.saturating_add(input.len() as u64),
            expected,
        )),
    }
}

/// Raw unsigned LEB128 of at most 5 bytes, like Kafka's `ByteUtils.readUnsignedVarint`
/// (which, like us, accepts and drops bits beyond 32 in the fifth byte).
pub(crate) fn unsigned_varint(input: &[u8]) -> PResult<'_, u32> {
    let mut value: u32 = 0;
    let mut rest = input;
    for i in 0..5u32 {
        let (r, b) = be_u8(rest)?;
        rest = r;
        value |= u32::from(b & 0x7f).wrapping_shl(7 * i);
        if b & 0x80 == 0 {
            return Ok((rest, value));
        }
    }
    fail(input, NomKind::TooLarge)
}

/// Zigzag varint (int32), at most 5 bytes (`ByteUtils.readVarint`).
pub(crate) fn varint(input: &[u8]) -> PResult<'_, i32> {
    let (rest, raw) = unsigned_varint(input)?;
    Ok((rest, ((raw >> 1) as i32) ^ -((raw & 1) as i32)))
}

/// Zigzag varlong (int64), at most 10 bytes (`ByteUtils.readVarlong`).
pub(crate) fn varlong(input: &[u8]) -> PResult<'_, i64> {
    let mut raw: u64 = 0;
    let mut rest = input;
    for i in 0..10u32 {
        let (r, b) = be_u8(rest)?;
        rest = r;
        raw |= u64::from(b & 0x7f).wrapping_shl(7 * i);
        if b & 0x80 == 0 {
            return Ok((rest, ((raw >> 1) as i64) ^ -((raw & 1) as i64)));
        }
    }
    fail(input, NomKind::TooLarge)
}

/// Bytes whose length is a zigzag varint; a negative length means null (Kafka treats any
/// negative key or value size as null).
pub(crate) fn varint_nullable_bytes(input: &[u8]) -> PResult<'_, Option<&[u8]>> {
    let (rest, len) = varint(input)?;
    if len < 0 {
        return Ok((rest, None));
    }
    let (rest, b) = nom::bytes::complete::take(len as u32 as usize)(rest)?;
    Ok((rest, Some(b)))
}

/// Bytes whose length is a zigzag varint that must not be negative.
pub(crate) fn varint_bytes(input: &[u8]) -> PResult<'_, &[u8]> {
    let (rest, len) = varint(input)?;
    if len < 0 {
        return fail(input, NomKind::Verify);
    }
    nom::bytes::complete::take(len as u32 as usize)(rest)
}

/// Bytes with an int32 length, -1 (any negative) meaning null: legacy message keys/values.
pub(crate) fn i32_nullable_bytes(input: &[u8]) -> PResult<'_, Option<&[u8]>> {
    let (rest, len) = be_i32(input)?;
    if len < 0 {
        return Ok((rest, None));
    }
    let (rest, b) = nom::bytes::complete::take(len as u32 as usize)(rest)?;
    Ok((rest, Some(b)))
}

/// A non-flexible (int16 length) string, as in the __consumer_offsets and
/// __transaction_state schemas. Negative length = null.
pub(crate) fn i16_nullable_string(input: &[u8]) -> PResult<'_, Option<&[u8]>> {
    let (rest, len) = be_i16(input)?;
    if len < 0 {
        return Ok((rest, None));
    }
    let (rest, b) = nom::bytes::complete::take(len as u16 as usize)(rest)?;
    Ok((rest, Some(b)))
}

/// A flexible-version ("compact") nullable string: unsigned varint length + 1, 0 = null.
pub(crate) fn compact_nullable_bytes(input: &[u8]) -> PResult<'_, Option<&[u8]>> {
    let (rest, len1) = unsigned_varint(input)?;
    if len1 == 0 {
        return Ok((rest, None));
    }
    let (rest, b) = nom::bytes::complete::take((len1 - 1) as usize)(rest)?;
    Ok((rest, Some(b)))
}

/// Fast, allocation-free cursor readers over a byte slice for the hot path (records of
/// uncompressed batches). They decode exactly what [`unsigned_varint`], [`varint`],
/// [`varlong`] and [`varint_nullable_bytes`] decode, but return `None` on any failure
/// instead of an error: callers then re-run the nom parsers to report the precise error.
pub(crate) mod fast {
    /// [`super::unsigned_varint`] at `*pos`.
    #[inline(always)]
    pub(crate) fn unsigned_varint(b: &[u8], pos: &mut usize) -> Option<u32> {
        let mut p = *pos;
        let first = *b.get(p)?;
        p += 1;
        if first & 0x80 == 0 {
            *pos = p;
            return Some(u32::from(first));
        }
        let mut value = u32::from(first & 0x7f);
        for i in 1..5u32 {
            let byte = *b.get(p)?;
            p += 1;
            value |= u32::from(byte & 0x7f).wrapping_shl(7 * i);
            if byte & 0x80 == 0 {
                *pos = p;
                return Some(value);
            }
        }
        None
    }

    /// [`super::varint`] at `*pos`.
    #[inline(always)]
    pub(crate) fn varint(b: &[u8], pos: &mut usize) -> Option<i32> {
        let raw = unsigned_varint(b, pos)?;
        Some(((raw >> 1) as i32) ^ -((raw & 1) as i32))
    }

    /// [`super::varlong`] at `*pos`.
    #[inline(always)]
    pub(crate) fn varlong(b: &[u8], pos: &mut usize) -> Option<i64> {
        let mut p = *pos;
        let mut raw: u64 = 0;
        for i in 0..10u32 {
            let byte = *b.get(p)?;
            p += 1;
            raw |= u64::from(byte & 0x7f).wrapping_shl(7 * i);
            if byte & 0x80 == 0 {
                *pos = p;
                return Some(((raw >> 1) as i64) ^ -((raw & 1) as i64));
            }
        }
        None
    }

    /// `len` bytes at `*pos`.
    #[inline(always)]
    pub(crate) fn take<'a>(b: &'a [u8], pos: &mut usize, len: usize) -> Option<&'a [u8]> {
        let end = pos.checked_add(len)?;
        let s = b.get(*pos..end)?;
        *pos = end;
        Some(s)
    }

    /// [`super::varint_nullable_bytes`] at `*pos`.
    #[inline(always)]
    pub(crate) fn varint_nullable_bytes<'a>(
        b: &'a [u8],
        pos: &mut usize,
    ) -> Option<Option<&'a [u8]>> {
        let len = varint(b, pos)?;
        if len < 0 {
            return Some(None);
        }
        take(b, pos, len as u32 as usize).map(Some)
    }

    /// [`super::varint_bytes`] at `*pos`.
    #[inline(always)]
    pub(crate) fn varint_bytes<'a>(b: &'a [u8], pos: &mut usize) -> Option<&'a [u8]> {
        let len = varint(b, pos)?;
        if len < 0 {
            return None;
        }
        take(b, pos, len as u32 as usize)
    }
}

/// Encodes a zigzag varint (used by writers and tests).
pub fn encode_varint(value: i32, out: &mut Vec<u8>) {
    encode_unsigned_varint(((value << 1) ^ (value >> 31)) as u32, out)
}

/// Encodes an unsigned LEB128 varint.
pub fn encode_unsigned_varint(mut v: u32, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Encodes a zigzag varlong.
pub fn encode_varlong(value: i64, out: &mut Vec<u8>) {
    let mut v = ((value << 1) ^ (value >> 63)) as u64;
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads an unsigned varint from a byte stream (decompressed records), returning `None`
/// at a clean end of stream before the first byte.
pub(crate) fn read_varint_from<R: std::io::Read>(
    r: &mut R,
) -> std::result::Result<Option<i32>, std::io::Error> {
    let mut raw: u32 = 0;
    for i in 0..5u32 {
        let mut b = [0u8; 1];
        let n = loop {
            match r.read(&mut b) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        };
        if n == 0 {
            if i == 0 {
                return Ok(None);
            }
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        raw |= u32::from(b[0] & 0x7f).wrapping_shl(7 * i);
        if b[0] & 0x80 == 0 {
            return Ok(Some(((raw >> 1) as i32) ^ -((raw & 1) as i32)));
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        "varint longer than 5 bytes",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_roundtrip_and_limits() {
        for v in [0, 1, -1, 63, -64, 64, i32::MAX, i32::MIN, 300, -300] {
            let mut b = Vec::new();
            encode_varint(v, &mut b);
            assert_eq!(varint(&b).unwrap(), (&[][..], v));
            let mut c = std::io::Cursor::new(&b);
            assert_eq!(read_varint_from(&mut c).unwrap(), Some(v));
        }
        for v in [0i64, -1, i64::MAX, i64::MIN, 1 << 40] {
            let mut b = Vec::new();
            encode_varlong(v, &mut b);
            assert_eq!(varlong(&b).unwrap(), (&[][..], v));
        }
        // 6 continuation bytes: too long, not a panic.
        assert!(varint(&[0xff; 6]).is_err());
        assert!(varlong(&[0xff; 11]).is_err());
        // The fast readers agree with the nom parsers, including on failures.
        let mut inputs: Vec<Vec<u8>> = vec![vec![], vec![0x80], vec![0xff; 6], vec![0xff; 11]];
        for v in [
            0i64,
            1,
            -1,
            63,
            -64,
            300,
            i64::from(i32::MAX),
            i64::MIN,
            1 << 40,
        ] {
            let mut b = Vec::new();
            encode_varlong(v, &mut b);
            b.extend_from_slice(b"abc");
            inputs.push(b);
        }
        for i in 0..=255u8 {
            inputs.push(vec![i, 0x81, 0x01, 7, 7]);
        }
        for b in &inputs {
            let mut p = 0;
            let f = fast::varint(b, &mut p);
            assert_eq!(f, varint(b).ok().map(|(_, v)| v), "{b:?}");
            if let Ok((rest, _)) = varint(b) {
                assert_eq!(p, b.len() - rest.len());
            }
            let mut p = 0;
            assert_eq!(
                fast::varlong(b, &mut p),
                varlong(b).ok().map(|(_, v)| v),
                "{b:?}"
            );
            let mut p = 0;
            assert_eq!(
                fast::varint_nullable_bytes(b, &mut p),
                varint_nullable_bytes(b).ok().map(|(_, v)| v),
                "{b:?}"
            );
            let mut p = 0;
            assert_eq!(
                fast::varint_bytes(b, &mut p),
                varint_bytes(b).ok().map(|(_, v)| v)
            );
        }
        // Truncated.
        let e = run(&[0x80u8][..], 10, "varint", varint).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Truncated);
        assert_eq!(e.position(), 11);
    }
}
