//! Reading the raw bytes of a `.log` at a position, outside the framing: the base offset
//! of an entry, and whether a "partial tail" is a complete batch with a corrupt length.

use segvault_format::batch::{MAGIC_OFFSET, V2_CRC_START};

pub(super) fn read_i64(data: &[u8], at: usize) -> Option<i64> {
    data.get(at..at.checked_add(8)?)
        .and_then(|b| b.try_into().ok())
        .map(i64::from_be_bytes)
}

/// A partial tail can be a lie: a corrupted length field makes a complete batch look like
/// it runs past the end of the file. If a v2 batch at `pos` has a valid CRC for some
/// shorter length that ends at the end of the file or where another plausible entry
/// starts, returns that end. Scans at most 16 MiB (bigger batches are unusual).
pub(super) fn length_field_corrupted(data: &[u8], pos: usize) -> Option<u64> {
    const MAX_SCAN: usize = 16 << 20;
    let rest = data.get(pos..)?;
    if rest.len() < 61 || rest.get(MAGIC_OFFSET) != Some(&2) {
        return None;
    }
    let stored = u32::from_be_bytes(rest.get(17..21)?.try_into().ok()?);
    let covered = rest.get(V2_CRC_START..)?;
    let mut crc = 0u32;
    let mut done = 0usize;
    // Candidate ends: every byte from the minimal batch size on.
    let first_end = 61 - V2_CRC_START;
    let max = covered.len().min(MAX_SCAN);
    if max < first_end {
        return None;
    }
    crc = crc32c::crc32c_append(crc, covered.get(..first_end)?);
    done += first_end;
    loop {
        if crc == stored {
            let end = V2_CRC_START + done;
            let next = rest.get(end..).unwrap_or(&[]);
            let plausible_next = next.is_empty()
                || (next.len() >= 17
                    && matches!(next.get(MAGIC_OFFSET), Some(0..=2))
                    && next
                        .get(8..12)
                        .and_then(|b| b.try_into().ok())
                        .map(i32::from_be_bytes)
                        .is_some_and(|len| len >= 14));
            if plausible_next {
                return Some((pos + end) as u64);
            }
        }
        if done >= max {
            return None;
        }
        crc = crc32c::crc32c_append(crc, &covered[done..done + 1]);
        done += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use segvault_format::encode::{encode_batch, BatchSpec, RecordSpec};

    fn batch(base_offset: i64) -> Vec<u8> {
        encode_batch(&BatchSpec {
            base_offset,
            records: vec![RecordSpec::kv(b"k", b"value"), RecordSpec::kv(b"k", b"v2")],
            ..BatchSpec::default()
        })
    }

    /// Sets the length field (bytes 8..12) of the entry at `pos`.
    fn set_length(data: &mut [u8], pos: usize, len: i32) {
        data[pos + 8..pos + 12].copy_from_slice(&len.to_be_bytes());
    }

    #[test]
    fn reads_big_endian_offsets_within_bounds() {
        let b = batch(0x0102_0304_0506);
        assert_eq!(read_i64(&b, 0), Some(0x0102_0304_0506));
        assert_eq!(
            read_i64(&b, b.len() - 8),
            Some(i64::from_be_bytes(b[b.len() - 8..].try_into().unwrap()))
        );
        assert_eq!(read_i64(&b, b.len() - 7), None);
        assert_eq!(read_i64(&b, usize::MAX), None);
    }

    #[test]
    fn a_too_long_length_field_on_a_complete_batch_is_found() {
        // The last batch of the file, its length raised: its CRC still holds for the true
        // length, which ends at the end of the file.
        let first = batch(0);
        let mut data = [first.clone(), batch(2)].concat();
        let pos = first.len();
        let true_len = (data.len() - pos - 12) as i32;
        set_length(&mut data, pos, true_len + 1000);
        assert_eq!(length_field_corrupted(&data, pos), Some(data.len() as u64));
        // A raised length followed by another batch: the CRC ends where it starts.
        let mut data = [batch(0), batch(2)].concat();
        set_length(&mut data, 0, 5000);
        assert_eq!(length_field_corrupted(&data, 0), Some(first.len() as u64));
    }

    #[test]
    fn a_truly_partial_batch_is_not_a_corrupt_length() {
        let b = batch(0);
        // Cut short: no length makes the CRC hold.
        assert_eq!(length_field_corrupted(&b[..b.len() - 3], 0), None);
        // Too short to be a v2 batch at all, or not magic 2.
        assert_eq!(length_field_corrupted(&b[..60], 0), None);
        let mut legacy = b.clone();
        legacy[MAGIC_OFFSET] = 1;
        assert_eq!(length_field_corrupted(&legacy, 0), None);
        assert_eq!(length_field_corrupted(&b, b.len() + 1), None);
    }

    #[test]
    fn a_crc_match_followed_by_garbage_is_not_taken() {
        // The CRC holds at the true end, but what follows is no plausible entry (magic 9).
        let first = batch(0);
        let mut data = [first.clone(), vec![0xff; 40]].concat();
        set_length(&mut data, 0, 5000);
        data[first.len() + MAGIC_OFFSET] = 9;
        assert_eq!(length_field_corrupted(&data, 0), None);
    }
}
