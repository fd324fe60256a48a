//! Verifies a closed segment before upload and summarises the part of it that will be
//! archived: every batch's CRC, a clean end (a closed segment never ends in a partial batch),
//! offsets that only go up, and the counts a manifest records.

use super::manifest::RangeStats;
use segvault_format::mapped::MappedFile;
use segvault_format::segment::{
    log_entries, Batch, LogEntries, SegmentEnd, HEADER_SIZE_UP_TO_MAGIC,
};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;

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
    /// A batch reaches the offset where the next segment begins: the file is not the segment
    /// the listing named (the log cleaner merged it with its successors meanwhile), or the
    /// log is broken. The caller looks again to tell which.
    Beyond {
        position: u64,
        batch_base: i64,
        batch_last: i64,
        next: i64,
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
            Refusal::Beyond { position, batch_base, batch_last, next } => write!(
                f,
                "the batch at byte {position} spans offsets {batch_base}..={batch_last}, but the next segment begins at offset {next}"
            ),
        }
    }
}

/// Verifies `data` (a whole `.log`) and summarises the batches from the first one whose base
/// offset is at or above `start`. The whole walk at once: the reference the streaming walks
/// are tested against (the archive itself walks with [`summarize_releasing`] or a [`Walker`]).
#[cfg_attr(not(test), allow(dead_code))]
pub fn summarize(data: &[u8], start: i64, frame_bytes: u64) -> Result<Summary, Refusal> {
    summarize_releasing(data, start..i64::MAX, frame_bytes, |_| {})
}

/// Bytes walked between two calls of `done`.
pub const RELEASE_EVERY: usize = 16 << 20;

/// [`summarize`] of the segment that holds `range` (its end is the next segment's base
/// offset: a batch reaching it is refused), calling `done(p)` every [`RELEASE_EVERY`] bytes
/// or so with a position `p` the walk has passed and never reads below again, so a caller can
/// drop the mapping's pages before `p` (see `MappedFile::release`).
pub fn summarize_releasing(
    data: &[u8],
    range: std::ops::Range<i64>,
    frame_bytes: u64,
    mut done: impl FnMut(usize),
) -> Result<Summary, Refusal> {
    let mut released = 0usize;
    let mut w = Walker::new(data, range.start, frame_bytes).until(range.end);
    w.advance(data.len(), data.len(), |batch| {
        let position = batch.position() as usize;
        if position >= released + RELEASE_EVERY {
            released = position;
            done(released);
        }
    });
    w.finish()
}

/// The walk of [`summarize`], one step at a time, over data that may still be arriving (a
/// restore writing a file it verifies behind the writer) or that a caller consumes as it is
/// verified (an upload that copies only verified bytes): each [`advance`](Walker::advance)
/// walks, verifies and summarises the next complete entries, and says up to where.
#[derive(Debug)]
pub struct Walker<'a> {
    data: &'a [u8],
    entries: LogEntries<'a>,
    start: i64,
    /// The next segment's base offset: no batch may reach it.
    next: i64,
    frame_bytes: u64,
    s: Summary,
    magic: BTreeSet<u8>,
    codecs: BTreeSet<String>,
    digest: Sha256,
    previous_last: Option<i64>,
    in_slice: bool,
    /// Set when the walk has reached the end of `data` cleanly.
    ended: bool,
    /// Set when the walk stopped at a problem; nothing more is walked.
    failed: Option<Refusal>,
}

impl<'a> Walker<'a> {
    /// A walk over `data` (a whole `.log`; see [`summarize`] for `start` and `frame_bytes`).
    pub fn new(data: &'a [u8], start: i64, frame_bytes: u64) -> Walker<'a> {
        Walker {
            data,
            entries: log_entries(data),
            start,
            next: i64::MAX,
            frame_bytes,
            s: Summary {
                slice_position: data.len() as u64,
                stats: RangeStats::default(),
                frame_starts: Vec::new(),
            },
            magic: BTreeSet::new(),
            codecs: BTreeSet::new(),
            digest: Sha256::new(),
            previous_last: None,
            in_slice: false,
            ended: false,
            failed: None,
        }
    }

    /// The walk of a segment followed by one that begins at offset `next`: a batch reaching
    /// `next` stops it ([`Refusal::Beyond`]).
    pub fn until(mut self, next: i64) -> Walker<'a> {
        self.next = next;
        self
    }

    /// Every entry below this byte position is verified and summarised (an entry boundary).
    /// (Read by the tests, which check it against what was handed in.)
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn position(&self) -> u64 {
        self.entries.position()
    }

    /// Where the archived slice begins, once the walk has got there (or ended without).
    pub fn slice_position(&self) -> Option<u64> {
        (self.in_slice || self.ended).then_some(self.s.slice_position)
    }

    /// Whether the walk is over: at the end of the data, or stopped at a problem.
    pub fn is_over(&self) -> bool {
        self.ended || self.failed.is_some()
    }

    /// Why the walk stopped early, if it did.
    pub fn failure(&self) -> Option<&Refusal> {
        self.failed.as_ref()
    }

    /// Walks the entries that begin before `target` and lie wholly within the first `avail`
    /// bytes of the data (all of it when `avail` is its length), calling `each` with every
    /// entry that is verified (its CRC included) and summarised. Returns the new
    /// [`position`](Walker::position). With `avail` at the data's length and `target` at or
    /// past it, walks to the end.
    pub fn advance(
        &mut self,
        target: usize,
        avail: usize,
        mut each: impl FnMut(&Batch<'a>),
    ) -> u64 {
        let len = self.data.len();
        let avail = avail.min(len);
        while !self.is_over() {
            let pos = self.entries.position() as usize;
            if pos >= target && pos < len {
                break;
            }
            if avail < len && !self.complete_at(pos, avail) {
                break; // the rest of this entry has not arrived yet
            }
            match self.entries.next() {
                Some(batch) => {
                    if let Err(r) = self.add(&batch) {
                        self.failed = Some(r);
                        break;
                    }
                    each(&batch);
                }
                None => match self.entries.finish() {
                    SegmentEnd::Clean => self.ended = true,
                    SegmentEnd::PartialTail { position, bytes } => {
                        self.failed = Some(Refusal::Corrupt {
                            position,
                            offset: self.previous_last.map(|l| l + 1),
                            message: format!(
                                "a closed segment ends with a partial batch of {bytes} bytes"
                            ),
                        })
                    }
                    SegmentEnd::Corrupt(e) => {
                        self.failed = Some(Refusal::Corrupt {
                            position: e.position(),
                            offset: e.offset,
                            message: e.to_string(),
                        })
                    }
                },
            }
        }
        self.entries.position()
    }

    /// Whether the entry at `pos` lies within the first `avail` bytes (enough of it for the
    /// walk to judge it: its header when the size it states is impossible).
    fn complete_at(&self, pos: usize, avail: usize) -> bool {
        let Some(size) = self.data.get(pos + 8..pos + 12) else {
            return false;
        };
        let size = i32::from_be_bytes([size[0], size[1], size[2], size[3]]);
        let need = if size < 0 {
            HEADER_SIZE_UP_TO_MAGIC
        } else {
            (12 + size as usize).max(HEADER_SIZE_UP_TO_MAGIC)
        };
        pos.saturating_add(need) <= avail
    }

    /// One verified entry into the summary.
    fn add(&mut self, batch: &Batch<'_>) -> Result<(), Refusal> {
        let position = batch.position();
        let base = batch.base_offset();
        let last = batch.last_offset().ok_or_else(|| Refusal::Corrupt {
            position,
            offset: Some(base),
            message: "last offset overflows".into(),
        })?;
        if let Some(p) = self.previous_last {
            if base <= p {
                return Err(Refusal::Corrupt {
                    position,
                    offset: Some(base),
                    message: format!("expected a base offset above the previous batch's last offset {p}, found {base}"),
                });
            }
        }
        if last >= self.next {
            return Err(Refusal::Beyond {
                position,
                batch_base: base,
                batch_last: last,
                next: self.next,
            });
        }
        let gap_before = self.previous_last.map_or(0, |p| base - p - 1);
        self.previous_last = Some(last);
        if !self.in_slice {
            if last < self.start {
                return Ok(());
            }
            if base < self.start {
                return Err(Refusal::Misaligned {
                    position,
                    batch_base: base,
                    batch_last: last,
                    start: self.start,
                });
            }
            self.in_slice = true;
            self.s.slice_position = position;
        }
        let since_frame = self
            .s
            .frame_starts
            .last()
            .map_or(u64::MAX, |&(p, _)| position - p);
        if since_frame >= self.frame_bytes {
            self.s.frame_starts.push((position, base));
        }
        let st = &mut self.s.stats;
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
        self.magic.insert(batch.magic());
        if let Some(c) = batch.compression() {
            if !self.codecs.contains(c.name()) {
                self.codecs.insert(c.name().to_string());
            }
        } else if !self.codecs.contains("unknown") {
            self.codecs.insert("unknown".to_string());
        }
        if let Some(ts) = batch.max_timestamp().filter(|&t| t >= 0) {
            st.min_timestamp = Some(st.min_timestamp.map_or(ts, |m: i64| m.min(ts)));
            st.max_timestamp = Some(st.max_timestamp.map_or(ts, |m: i64| m.max(ts)));
        }
        self.digest.update(base.to_be_bytes());
        self.digest.update(last.to_be_bytes());
        self.digest.update(crc_of(batch.bytes()).to_be_bytes());
        Ok(())
    }

    /// Walks whatever is left (all of the data must be there by now) and returns the summary,
    /// or why the segment cannot be archived.
    pub fn finish(mut self) -> Result<Summary, Refusal> {
        let len = self.data.len();
        self.advance(len, len, |_| {});
        if let Some(r) = self.failed {
            return Err(r);
        }
        let mut s = self.s;
        s.stats.batch_digest = hex::encode(self.digest.finalize());
        s.stats.magic = self.magic.into_iter().collect();
        s.stats.codecs = self.codecs.into_iter().collect();
        Ok(s)
    }
}

/// The stored CRC field of a batch or legacy message (bytes 17..21 for v2, 12..16 legacy):
/// identical across replicas holding the same batch, and already verified by the walk.
fn crc_of(bytes: &[u8]) -> u32 {
    let at = if bytes.get(16) == Some(&2) { 17 } else { 12 };
    bytes
        .get(at..at + 4)
        .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// [`summarize`] is CPU work over a whole segment: on a
/// multi-threaded runtime it runs with `block_in_place`, so the other partitions' uploads keep
/// their worker threads. The pages the walk has passed are released as it goes, so the
/// mapping's resident pages stay at a window, not the segment.
pub(crate) fn summarize_blocking(
    log: &MappedFile,
    range: std::ops::Range<i64>,
    frame_bytes: u64,
) -> Result<Summary, Refusal> {
    let run = || {
        let s = summarize_releasing(log, range, frame_bytes, |done| log.release(0..done));
        log.release(0..log.len());
        s
    };
    crate::sys::blocking(run)
}

#[cfg(test)]
mod tests {
    use super::*;
    use segvault_format::encode;

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
        // The next segment begins at 15: the whole walk is clean; at 12 (a listing made
        // before the cleaner merged segments) the batch reaching it is refused, with its place.
        assert_eq!(summarize_releasing(&data, 0..15, 1 << 20, |_| {}), Ok(all));
        let second = segment(&[(0, 5)]).len() as u64;
        assert_eq!(
            summarize_releasing(&data, 0..12, 1 << 20, |_| {}),
            Err(Refusal::Beyond {
                position: 2 * second,
                batch_base: 10,
                batch_last: 14,
                next: 12
            })
        );
    }

    /// The walk fed a few bytes at a time (as a restore writes a file it verifies behind
    /// the writer) gives what the walk over the whole data gives, clean or not, and never
    /// walks an entry that has not wholly arrived.
    #[test]
    fn a_walk_over_arriving_data_agrees_with_the_whole_walk() {
        let data = segment(&[(0, 5), (5, 3), (8, 40), (48, 1), (49, 7)]);
        let mut flipped = data.clone();
        flipped[data.len() / 2] ^= 4;
        let cut = data[..data.len() - 3].to_vec();
        for d in [&data, &flipped, &cut] {
            for start in [0, 8] {
                let whole = summarize(d, start, 64);
                for step in [1, 3, 17, 100, 1 << 20] {
                    let mut w = Walker::new(d, start, 64);
                    let mut avail = 0;
                    let mut seen = 0;
                    while avail < d.len() {
                        avail = (avail + step).min(d.len());
                        w.advance(usize::MAX, avail, |b| {
                            assert!(b.position() as usize + b.size() <= avail);
                            seen += 1;
                        });
                        assert!(w.position() as usize <= avail);
                    }
                    assert_eq!(w.finish(), whole, "step {step}, start {start}");
                    let _ = seen;
                }
                // A small target walks at least one entry a call, and stops at it.
                let mut w = Walker::new(d, start, 64);
                let mut calls = 0;
                while !w.is_over() {
                    let p = w.position() as usize;
                    w.advance(p + 1, d.len(), |_| {});
                    calls += 1;
                    assert!(calls < 100);
                }
                assert_eq!(w.finish(), whole);
            }
        }
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
