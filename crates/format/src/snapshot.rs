//! Producer state snapshots, `<N>.snapshot` (state of every producer for offsets < N).
//!
//! Layout (`ProducerSnapshot.json`, non-flexible): int16 version (1) @0, uint32 CRC-32C @2
//! over bytes [6, EOF), int32 entry count @6, then 46-byte entries. The broker deletes a
//! snapshot whose CRC fails and falls back to an older one, so we verify it.

use nom::number::complete::{be_i16, be_i32, be_i64, be_u32};

use super::error::{ErrorKind, FormatError, Result};
use super::primitives::run;

/// Bytes per producer entry.
pub const PRODUCER_ENTRY_SIZE: usize = 46;
/// Header bytes (version, crc, count).
pub const SNAPSHOT_HEADER_SIZE: usize = 10;

/// One producer's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProducerEntry {
    /// Producer id.
    pub producer_id: i64,
    /// Producer epoch.
    pub epoch: i16,
    /// Last sequence written.
    pub last_sequence: i32,
    /// Offset of the last record written.
    pub last_offset: i64,
    /// lastOffset − first offset of the last batch.
    pub offset_delta: i32,
    /// Timestamp of the last batch.
    pub timestamp: i64,
    /// Transaction coordinator epoch.
    pub coordinator_epoch: i32,
    /// First offset of the open transaction, −1 if none.
    pub current_txn_first_offset: i64,
}

/// A parsed producer snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerSnapshot {
    /// File format version (1).
    pub version: i16,
    /// Stored CRC-32C (verified by [`parse_producer_snapshot`]).
    pub crc: u32,
    /// Entries.
    pub entries: Vec<ProducerEntry>,
}

/// Parses and verifies a producer snapshot: version 1, CRC-32C, count ≥ 0 and matching the
/// file length exactly.
pub fn parse_producer_snapshot(data: &[u8]) -> Result<ProducerSnapshot> {
    let (rest, (version, crc, count)) = run(
        data,
        0,
        "a producer snapshot header (int16 version, uint32 crc, int32 count)",
        (be_i16, be_u32, be_i32),
    )?;
    if version != 1 {
        return Err(
            FormatError::new(ErrorKind::BadVersion, 0, "snapshot version 1").found(version),
        );
    }
    let computed = crc32c::crc32c(data.get(6..).unwrap_or(&[]));
    if computed != crc {
        return Err(
            FormatError::new(ErrorKind::Crc, 2, format!("CRC-32C {crc:#010x} (stored)"))
                .found(format!("{computed:#010x} (computed)")),
        );
    }
    let expected = (count.max(0) as usize).checked_mul(PRODUCER_ENTRY_SIZE);
    if count < 0 || expected != Some(rest.len()) {
        return Err(FormatError::new(
            ErrorKind::BadLength,
            6,
            format!("{count} entries of {PRODUCER_ENTRY_SIZE} bytes"),
        )
        .found(format!("{} bytes after the header", rest.len())));
    }
    let mut entries = Vec::with_capacity(count as usize);
    for (i, chunk) in rest.chunks_exact(PRODUCER_ENTRY_SIZE).enumerate() {
        let pos = (SNAPSHOT_HEADER_SIZE + i * PRODUCER_ENTRY_SIZE) as u64;
        let (_, t) = run(
            chunk,
            pos,
            "a producer entry",
            (
                be_i64, be_i16, be_i32, be_i64, be_i32, be_i64, be_i32, be_i64,
            ),
        )?;
        entries.push(ProducerEntry {
            producer_id: t.0,
            epoch: t.1,
            last_sequence: t.2,
            last_offset: t.3,
            offset_delta: t.4,
            timestamp: t.5,
            coordinator_epoch: t.6,
            current_txn_first_offset: t.7,
        });
    }
    Ok(ProducerSnapshot {
        version,
        crc,
        entries,
    })
}

/// Writes a producer snapshot (version 1) with its CRC: the bytes Kafka writes.
pub fn write_producer_snapshot(entries: &[ProducerEntry]) -> Vec<u8> {
    let mut v = Vec::with_capacity(SNAPSHOT_HEADER_SIZE + entries.len() * PRODUCER_ENTRY_SIZE);
    v.extend_from_slice(&1i16.to_be_bytes());
    v.extend_from_slice(&[0; 4]);
    v.extend_from_slice(&(entries.len() as i32).to_be_bytes());
    for e in entries {
        v.extend_from_slice(&e.producer_id.to_be_bytes());
        v.extend_from_slice(&e.epoch.to_be_bytes());
        v.extend_from_slice(&e.last_sequence.to_be_bytes());
        v.extend_from_slice(&e.last_offset.to_be_bytes());
        v.extend_from_slice(&e.offset_delta.to_be_bytes());
        v.extend_from_slice(&e.timestamp.to_be_bytes());
        v.extend_from_slice(&e.coordinator_epoch.to_be_bytes());
        v.extend_from_slice(&e.current_txn_first_offset.to_be_bytes());
    }
    let crc = crc32c::crc32c(&v[6..]);
    v[2..6].copy_from_slice(&crc.to_be_bytes());
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_crc() {
        let e = ProducerEntry {
            producer_id: 42,
            epoch: 1,
            last_sequence: 9,
            last_offset: 100,
            offset_delta: 3,
            timestamp: 1_700_000_000_000,
            coordinator_epoch: 5,
            current_txn_first_offset: -1,
        };
        let v = write_producer_snapshot(&[e, e]);
        assert_eq!(v.len(), 10 + 2 * 46);
        assert_eq!(parse_producer_snapshot(&v).unwrap().entries, vec![e, e]);
        for i in 6..v.len() {
            let mut m = v.clone();
            m[i] ^= 0x10;
            assert_eq!(
                parse_producer_snapshot(&m).unwrap_err().kind,
                ErrorKind::Crc
            );
        }
        assert!(parse_producer_snapshot(&v[..v.len() - 1]).is_err());
        assert_eq!(
            parse_producer_snapshot(&write_producer_snapshot(&[]))
                .unwrap()
                .entries
                .len(),
            0
        );
    }
}
