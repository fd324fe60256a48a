//! Verifies a closed segment before upload and summarises the part of it that will be
//! archived: every batch's CRC, a clean end (a closed segment never ends in a partial batch),
//! offsets that only go up, and the counts a manifest records.

use super::manifest::RangeStats;
use crate::format::segment::{log_entries, SegmentEnd};
use sha2::{Digest, Sha256};

/// What the archived slice of a segment holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Byte position of the first archived batch.
    pub slice_position: u64,
    /// Counts and digest, as the manifest records them.
    pub stats: RangeStats,
    /// (byte position, base offset) of each archived batch start, at most one per
    /// `frame_bytes` of data: where independently decompressible frames may begin.
    pub frame_starts: Vec<(u64, i64)>,
}

/// Why a segment cannot be archived as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Bad CRC, bad framing, partial trailing batch, offsets going backwards: never upload.
    Corrupt {
        position: u64,
        offset: Option<i64>,
        message: String,
    },
    /// `start` falls inside a batch: this replica's batches differ from the archived ones.
    Misaligned {
        position: u64,
        batch_base: i64,
        batch_last: i64,
        start: i64,
    },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Corrupt { position, offset, message } => match offset {
                Some(o) => write!(f, "corrupt at byte {position} (offset {o}): {message}"),
                None => write!(f, "corrupt at byte {position}: {message}"),
            },
            Refusal::Misaligned { position, batch_base, batch_last, start } => write!(
                f,
                "the archive continues at offset {start}, but this replica's batch at byte {position} spans offsets {batch_base}..={batch_last}"
            ),
        }
    }
}

/// Verifies `data` (a whole `.log`) and summarises the batches from the first one whose base
/// offset is at or above `start`.
pub fn summarize(data: &[u8], start: i64, frame_bytes: u64) -> Result<Summary, Refusal> {
    summarize_releasing(data, start, frame_bytes, |_| {})
}

/// Bytes walked between two calls of `done`.
pub const RELEASE_EVERY: usize = 16 << 20;

/// [`summarize`], calling `done(p)` every [`RELEASE_EVERY`] bytes or so with a position `p`
/// the walk has passed and never reads below again, so a caller can drop the mapping's
/// pages before `p` (see `MappedFile::release`).
pub fn summarize_releasing(
    data: &[u8],
    start: i64,
    frame_bytes: u64,
    mut done: impl FnMut(usize),
) -> Result<Summary, Refusal> {
    let mut released = 0usize;
    let mut s = Summary {
        slice_position: data.len() as u64,
        stats: RangeStats::default(),
        frame_starts: Vec::new(),
    };
    let mut magic = std::collections::BTreeSet::new();
    let mut codecs = std::collections::BTreeSet::new();
    let mut digest = Sha256::new();
    let mut entries = log_entries(data);
    let mut previous_last: Option<i64> = None;
    let mut in_slice = false;
    for batch in entries.by_ref() {
        let position = batch.position();
        if position as usize >= released + RELEASE_EVERY {
            released = position as usize;
            done(released);
        }
        let base = batch.base_offset();
        let last = batch.last_offset().ok_or_else(|| Refusal::Corrupt {
            position,
            offset: Some(base),
            message: "last offset overflows".into(),
        })?;
        if let Some(p) = previous_last {
            if base <= p {
                return Err(Refusal::Corrupt {
                    position,
                    offset: Some(base),
                    message: format!("expected a base offset above the previous batch's last offset {p}, found {base}"),
                });
            }
        }
        let gap_before = previous_last.map_or(0, |p| base - p - 1);
        previous_last = Some(last);
        if !in_slice {
            if last < start {
                continue;
            }
            if base < start {
                return Err(Refusal::Misaligned {
                    position,
                    batch_base: base,
                    batch_last: last,
                    start,
                });
            }
            in_slice = true;
            s.slice_position = position;
        }
        let since_frame = s
            .frame_starts
            .last()
            .map_or(u64::MAX, |&(p, _)| position - p);
        if since_frame >= frame_bytes {
            s.frame_starts.push((position, base));
        }
        let st = &mut s.stats;
        st.first_batch_offset.get_or_insert(base);
        st.last_batch_offset = Some(last);
        st.batches += 1;
        st.records += batch.shallow_record_count().max(0) as u64;
        // Compaction leaves holes between batches, and v2 batches that keep their offset span
        // with fewer records. (A legacy wrapper's shallow count is not its record count.)
        if st.batches > 1 {
            st.empty_offsets += gap_before as u64;
        }
        if batch.magic() == 2 {
            let span = (last - base + 1) as u64;
            st.empty_offsets += span.saturating_sub(batch.shallow_record_count().max(0) as u64);
        }
        st.transactional_batches += batch.is_transactional() as u64;
        st.control_batches += batch.is_control() as u64;
        magic.insert(batch.magic());
        codecs.insert(
            batch
                .compression()
                .map_or("unknown", |c| c.name())
                .to_string(),
        );
        if let Some(ts) = batch.max_timestamp().filter(|&t| t >= 0) {
            st.min_timestamp = Some(st.min_timestamp.map_or(ts, |m: i64| m.min(ts)));
            st.max_timestamp = Some(st.max_timestamp.map_or(ts, |m: i64| m.max(ts)));
        }
        digest.update(base.to_be_bytes());
        digest.update(last.to_be_bytes());
        digest.update(crc_of(batch.bytes()).to_be_bytes());
    }
    match entries.finish() {
        SegmentEnd::Clean => {}
        SegmentEnd::PartialTail { position, bytes } => {
            return Err(Refusal::Corrupt {
                position,
                offset: previous_last.map(|l| l + 1),
                message: format!("a closed segment ends with a partial batch of {bytes} bytes"),
            })
        }
        SegmentEnd::Corrupt(e) => {
            return Err(Refusal::Corrupt {
                position: e.position(),
                offset: e.offset,
                message: e.to_string(),
            })
        }
    }
    s.stats.batch_digest = hex::encode(digest.finalize());
    s.stats.magic = magic.into_iter().collect();
    s.stats.codecs = codecs.into_iter().collect();
    Ok(s)
}

/// The stored CRC field of a batch or legacy message (bytes 17..21 for v2, 12..16 legacy):
/// identical across replicas holding the same batch, and already verified by the walk.
fn crc_of(bytes: &[u8]) -> u32 {
    let at = if bytes.get(16) == Some(&2) { 17 } else { 12 };
    bytes
        .get(at..at + 4)
        .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::encode;

    fn segment(bases: &[(i64, usize)]) -> Vec<u8> {
        let mut out = Vec::new();
        for &(base, n) in bases {
            let records = (0..n)
                .map(|i| encode::RecordSpec::kv(b"k", format!("v{i}").as_bytes()))
                .collect();
            out.extend(encode::encode_batch(&encode::BatchSpec {
                base_offset: base,
                records,
                ..Default::default()
            }));
        }
        out
    }

    #[test]
    fn slices_at_a_batch_boundary_and_refuses_a_straddle() {
        let data = segment(&[(0, 5), (5, 5), (10, 5)]);
        let all = summarize(&data, 0, 1 << 20).unwrap();
        assert_eq!(
            (all.slice_position, all.stats.batches, all.stats.records),
            (0, 3, 15)
        );
        let tail = summarize(&data, 5, 1 << 20).unwrap();
        assert_eq!(
            (
                tail.stats.first_batch_offset,
                tail.stats.last_batch_offset,
                tail.stats.batches
            ),
            (Some(5), Some(14), 2)
        );
        assert!(tail.slice_position > 0);
        assert!(matches!(
            summarize(&data, 7, 1 << 20),
            Err(Refusal::Misaligned { batch_base: 5, .. })
        ));
        // The digest of the shared batches does not depend on where the slice starts.
        assert_ne!(all.stats.batch_digest, tail.stats.batch_digest);
    }

    #[test]
    fn a_partial_tail_or_flipped_bit_is_corrupt() {
        let data = segment(&[(0, 5), (5, 5)]);
        let cut = &data[..data.len() - 3];
        assert!(matches!(
            summarize(cut, 0, 1 << 20),
            Err(Refusal::Corrupt { .. })
        ));
        let mut flipped = data.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(matches!(
            summarize(&flipped, 0, 1 << 20),
            Err(Refusal::Corrupt { .. })
        ));
    }
}
