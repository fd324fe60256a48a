//! Cross-checks of the `.index`, `.timeindex` and `.txnindex` against the batches of their
//! `.log`, streamed as the walk goes, and what an index file's shape says on its own.

use std::path::{Path, PathBuf};

use segvault_format::index::{OffsetEntry, OffsetIndex, TimeEntry, TimeIndex};

use super::events::{Event, IndexEntryLine, Out};
use super::problem::{Problem, Severity};

// ---------------------------------------------------------------------------------------
// Offset index, streamed against the batches in position order.

#[derive(Default, Clone, Copy)]
struct EntryState {
    started: bool,
    dump_log_ok: bool,
    found: bool,
    first_last_offset: Option<i64>,
}

pub(super) struct OffsetIndexCheck<'a> {
    path: PathBuf,
    idx: OffsetIndex<'a>,
    valid: usize,
    i: usize,
    state: EntryState,
}

/// Valid entries of an index, treating a lone all-zero entry 0 in an all-zero file as part
/// of the preallocated tail (a freshly created active index has no entries at all).
fn valid_and_tail<E: segvault_format::index::IndexEntry>(
    idx: &segvault_format::index::IndexFile<'_, E>,
    data: &[u8],
) -> (usize, usize) {
    let whole = idx.all_entries();
    let entry_bytes = whole.saturating_mul(E::SIZE);
    if idx.valid_entries == 1
        && data
            .get(..entry_bytes)
            .is_some_and(|d| d.iter().all(|&b| b == 0))
    {
        (0, whole)
    } else {
        (idx.valid_entries, idx.tail_entries)
    }
}

/// What the index cross-checks need of one batch.
pub(super) struct Span {
    /// Byte position in the `.log`.
    pub(super) position: u64,
    /// First offset it holds.
    pub(super) base: i64,
    /// Last offset.
    pub(super) last: i64,
    /// Max timestamp.
    pub(super) max_ts: Option<i64>,
}

impl<'a> OffsetIndexCheck<'a> {
    fn entry(&self, i: usize) -> Option<OffsetEntry> {
        (i < self.valid).then(|| self.idx.entry(i)).flatten()
    }

    pub(super) fn feed(&mut self, b: &Span, out: &mut Out<'_, '_>) {
        while let Some(e) = self.entry(self.i) {
            let p = e.position.max(0) as u64;
            let next = self
                .entry(self.i + 1)
                .map(|n| n.position.max(0) as u64)
                .filter(|&n| n > p)
                .unwrap_or(u64::MAX);
            if b.position < p {
                return;
            }
            if b.position >= next {
                self.finish_entry(None, out);
                continue;
            }
            let off = self.idx.absolute(e.relative_offset);
            if b.position == p {
                self.state.started = true;
                self.state.dump_log_ok = b.last == off;
                self.state.first_last_offset = Some(b.last);
            }
            if b.last == off {
                self.state.found = true;
            }
            return;
        }
    }

    /// Judges the current entry and moves on. `end`: the walk ended at this position (all
    /// later entries were never reached); `None` while batches are still coming.
    fn finish_entry(&mut self, end: Option<(u64, Severity)>, out: &mut Out<'_, '_>) {
        let Some(e) = self.entry(self.i) else { return };
        let i = self.i;
        self.i += 1;
        let st = std::mem::take(&mut self.state);
        let off = self.idx.absolute(e.relative_offset);
        let at = Some((i * 8) as u64);
        if !st.started {
            let p = e.position;
            match end {
                Some((end_pos, sev)) if p >= 0 && p as u64 >= end_pos => {
                    if sev == Severity::Note {
                        // Beyond what was read (--max-bytes, or a live copy whose .log
                        // was copied before its index): nothing to judge.
                        return;
                    }
                    out.file_stats.data.index_mismatches += 1;
                    out.problem(
                        Problem::new(
                            &self.path,
                            sev,
                            "index_beyond_log",
                            format!(
                                "entry {i} (offset {off}, position {p}) points past the valid data of the .log, which ends at byte {end_pos}"
                            ),
                        )
                        .at(at, Some(off)),
                    );
                }
                _ => {
                    out.file_stats.data.index_mismatches += 1;
                    out.file_stats.dump_log_index_mismatches += 1;
                    out.problem(
                        Problem::new(
                            &self.path,
                            Severity::Corrupt,
                            "index_position",
                            format!(
                                "entry {i} (offset {off}): expected a batch to start at byte {p} of the .log, found none"
                            ),
                        )
                        .at(at, Some(off)),
                    );
                }
            }
            return;
        }
        let first = st.first_last_offset.unwrap_or(-1);
        if !st.found {
            out.file_stats.data.index_mismatches += 1;
            out.file_stats.dump_log_index_mismatches += 1;
            out.problem(
                Problem::new(
                    &self.path,
                    Severity::Corrupt,
                    "index_mismatch",
                    format!(
                        "entry {i}: expected a batch appended from byte {} to end at offset {off}, found none (kafka-dump-log: \"Index offset: {off}, log offset: {first}\")",
                        e.position
                    ),
                )
                .at(at, Some(off)),
            );
        } else if !st.dump_log_ok {
            out.file_stats.dump_log_index_mismatches += 1;
            out.problem(
                Problem::new(
                    &self.path,
                    Severity::Note,
                    "index_dump_log_mismatch",
                    format!(
                        "entry {i}: kafka-dump-log reports \"Index offset: {off}, log offset: {first}\", but the entry is valid: the append at byte {} held several batches and the last one ends at offset {off}",
                        e.position
                    ),
                )
                .at(at, Some(off)),
            );
        }
    }

    pub(super) fn finish(&mut self, end_pos: u64, sev: Severity, out: &mut Out<'_, '_>) {
        while self.i < self.valid {
            self.finish_entry(Some((end_pos, sev)), out);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Time index, streamed against batches in offset order.

pub(super) struct TimeIndexCheck<'a> {
    path: PathBuf,
    idx: TimeIndex<'a>,
    valid: usize,
    j: usize,
    prev: Option<TimeEntry>,
}

impl TimeIndexCheck<'_> {
    fn entry(&self, j: usize) -> Option<TimeEntry> {
        (j < self.valid).then(|| self.idx.entry(j)).flatten()
    }

    pub(super) fn feed(&mut self, b: &Span, out: &mut Out<'_, '_>) {
        while let Some(e) = self.entry(self.j) {
            let off = self.idx.absolute(e.relative_offset);
            if off > b.last {
                return;
            }
            let j = self.j;
            self.j += 1;
            let at = Some((j * 12) as u64);
            if let Some(p) = self.prev {
                if e.timestamp < p.timestamp {
                    out.file_stats.data.index_mismatches += 1;
                    out.problem(
                        Problem::new(
                            &self.path,
                            Severity::Corrupt,
                            "time_index_order",
                            format!(
                                "entry {j}: expected a timestamp >= {} (the previous entry's), found {}",
                                p.timestamp, e.timestamp
                            ),
                        )
                        .at(at, Some(off)),
                    );
                }
            }
            self.prev = Some(e);
            let contains = b.base <= off;
            let ts_ok = b.max_ts == Some(e.timestamp);
            let found = format!(
                "the first batch ending at or after it spans offsets {}..={} with max timestamp {}",
                b.base,
                b.last,
                b.max_ts.map_or("none".into(), |t| t.to_string())
            );
            if !(contains && ts_ok) {
                out.file_stats.data.index_mismatches += 1;
                out.problem(
                    Problem::new(
                        &self.path,
                        Severity::Corrupt,
                        "time_index_mismatch",
                        format!(
                            "entry {j} (timestamp {}, offset {off}): expected a batch holding that offset with that max timestamp; {found}",
                            e.timestamp
                        ),
                    )
                    .at(at, Some(off)),
                );
            } else if off != b.last {
                out.problem(
                    Problem::new(
                        &self.path,
                        Severity::Note,
                        "time_index_dump_log_mismatch",
                        format!(
                            "entry {j} (timestamp {}, offset {off}) names a record inside a batch rather than its last offset {} (kafka-dump-log reports \"Indexed offset: {off}, found log offset: {}\")",
                            e.timestamp, b.last, b.last
                        ),
                    )
                    .at(at, Some(off)),
                );
            }
        }
    }

    pub(super) fn finish(&mut self, end_pos: u64, sev: Severity, out: &mut Out<'_, '_>) {
        while let Some(e) = self.entry(self.j) {
            let j = self.j;
            self.j += 1;
            if sev == Severity::Note {
                continue;
            }
            let off = self.idx.absolute(e.relative_offset);
            out.file_stats.data.index_mismatches += 1;
            out.problem(
                Problem::new(
                    &self.path,
                    sev,
                    "time_index_beyond_log",
                    format!(
                        "entry {j} (timestamp {}, offset {off}): expected a batch ending at or after offset {off}, but the valid data of the .log ends at byte {end_pos} before it",
                        e.timestamp
                    ),
                )
                .at(Some((j * 12) as u64), Some(off)),
            );
        }
    }
}

// ---------------------------------------------------------------------------------------

/// What an index file's shape says, whatever its entry type: a length that is not a whole
/// number of `entry_size` entries, and what its zero-filled tail means (see
/// [`index_zero_tail_problem`]).
fn index_shape_problems(
    path: &Path,
    len: usize,
    has_trailing_bytes: bool,
    (valid, tail, tail_zero): (usize, usize, bool),
    entry_size: usize,
    active: bool,
) -> Vec<Problem> {
    let mut v = Vec::new();
    if has_trailing_bytes {
        v.push(
            Problem::new(
                path,
                Severity::Corrupt,
                "index_length",
                format!("expected a length divisible by {entry_size}, found {len} bytes"),
            )
            .at(Some(len as u64), None),
        );
    }
    v.extend(index_zero_tail_problem(
        path, valid, tail, tail_zero, entry_size, active,
    ));
    v
}

fn index_zero_tail_problem(
    path: &Path,
    valid: usize,
    tail: usize,
    tail_zero: bool,
    entry_size: usize,
    active: bool,
) -> Option<Problem> {
    if tail == 0 {
        return None;
    }
    let pos = Some((valid * entry_size) as u64);
    if !tail_zero {
        return Some(
            Problem::new(
                path,
                Severity::Corrupt,
                "index_tail_garbage",
                format!(
                    "expected entries with increasing offsets or a zero-filled preallocated tail after entry {valid}, found {tail} entries of non-zero bytes after an entry at the base offset"
                ),
            )
            .at(pos, None),
        );
    }
    Some(
        Problem::new(
            path,
            Severity::Note,
            "index_preallocated_tail",
            format!(
                "{tail} zero-filled preallocated entries after the {valid} valid ones (not entries; {})",
                if active {
                    "the broker preallocates the active segment's indexes"
                } else {
                    "the broker trims these when a segment is closed, so this file was copied while its segment was active"
                }
            ),
        )
        .at(pos, None),
    )
}

impl<'a> OffsetIndexCheck<'a> {
    /// Parses an `.index`: counts its entries, emits them when `emit`, reports what its
    /// shape and order say, and returns the check to stream the batches through.
    pub(super) fn prepare(
        path: &Path,
        map: &'a [u8],
        base: i64,
        active: bool,
        emit: bool,
        out: &mut Out<'_, '_>,
    ) -> OffsetIndexCheck<'a> {
        let idx = OffsetIndex::parse(map, base);
        let (valid, tail) = valid_and_tail(&idx, map);
        out.file_stats.index_entries += valid as u64;
        out.file_stats.index_tail_entries += tail as u64;
        if emit {
            for i in 0..valid {
                if let Some(e) = idx.entry(i) {
                    let mut l = IndexEntryLine::new(path, "offset", i);
                    l.offset = Some(idx.absolute(e.relative_offset));
                    l.position = Some(i64::from(e.position));
                    out.emit(Event::IndexEntry(&l));
                }
            }
        }
        for p in index_shape_problems(
            path,
            map.len(),
            idx.trailing_bytes != 0,
            (valid, tail, idx.tail_all_zero),
            8,
            active,
        ) {
            out.problem(p);
        }
        if let Err(e) = idx.check() {
            out.file_stats.data.index_mismatches += 1;
            out.problem(Problem::from_format(path, Severity::Corrupt, &e).with_kind("index_order"));
        }
        OffsetIndexCheck {
            path: path.to_path_buf(),
            idx,
            valid,
            i: 0,
            state: EntryState::default(),
        }
    }

    /// Skips the entries before byte `start` of the `.log`, where the walk begins: they are
    /// not checked.
    pub(super) fn skip_before(&mut self, start: usize) {
        while let Some(e) = self.entry(self.i) {
            if (e.position.max(0) as usize) < start {
                self.i += 1;
            } else {
                break;
            }
        }
    }
}

/// Where to start reading a `.log` to reach offset `from`: the position of the last `.index`
/// entry below it (its batch starts at or before the first batch wanted), at most `limit`;
/// 0 without an index.
pub(super) fn seek_position(index: Option<&[u8]>, base: i64, from: i64, limit: usize) -> usize {
    let Some(d) = index else { return 0 };
    let idx = OffsetIndex::parse(d, base);
    let (valid, _) = valid_and_tail(&idx, d);
    let mut start = 0usize;
    for i in 0..valid {
        match idx.entry(i) {
            Some(e) if idx.absolute(e.relative_offset) < from => {
                start = (e.position.max(0) as usize).min(limit)
            }
            _ => break,
        }
    }
    start
}

impl<'a> TimeIndexCheck<'a> {
    /// Parses a `.timeindex`: counts its entries, emits them when `emit`, reports what its
    /// shape says, and returns the check to stream the batches through.
    pub(super) fn prepare(
        path: &Path,
        map: &'a [u8],
        base: i64,
        active: bool,
        emit: bool,
        out: &mut Out<'_, '_>,
    ) -> TimeIndexCheck<'a> {
        let idx = TimeIndex::parse(map, base);
        let (valid, tail) = valid_and_tail(&idx, map);
        out.file_stats.index_entries += valid as u64;
        out.file_stats.index_tail_entries += tail as u64;
        if emit {
            for i in 0..valid {
                if let Some(e) = idx.entry(i) {
                    let mut l = IndexEntryLine::new(path, "time", i);
                    l.timestamp = Some(e.timestamp);
                    l.offset = Some(idx.absolute(e.relative_offset));
                    out.emit(Event::IndexEntry(&l));
                }
            }
        }
        for p in index_shape_problems(
            path,
            map.len(),
            idx.trailing_bytes != 0,
            (valid, tail, idx.tail_all_zero),
            12,
            active,
        ) {
            out.problem(p);
        }
        TimeIndexCheck {
            path: path.to_path_buf(),
            idx,
            valid,
            j: 0,
            prev: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logdir::check::events::{collect, SegmentStats};

    /// `.index` bytes: (relative offset, position) entries.
    fn offset_index(entries: &[(i32, i32)]) -> Vec<u8> {
        entries
            .iter()
            .flat_map(|(o, p)| o.to_be_bytes().into_iter().chain(p.to_be_bytes()))
            .collect()
    }

    /// `.timeindex` bytes: (timestamp, relative offset) entries.
    fn time_index(entries: &[(i64, i32)]) -> Vec<u8> {
        entries
            .iter()
            .flat_map(|(t, o)| {
                t.to_be_bytes()
                    .into_iter()
                    .chain(o.to_be_bytes())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    fn span(position: u64, base: i64, last: i64, max_ts: i64) -> Span {
        Span {
            position,
            base,
            last,
            max_ts: Some(max_ts),
        }
    }

    #[test]
    fn a_lone_zero_entry_in_a_zero_file_is_preallocated_tail() {
        let zeros = vec![0u8; 8 * 4];
        let idx = OffsetIndex::parse(&zeros, 0);
        assert_eq!(valid_and_tail(&idx, &zeros), (0, 4));
        let real = offset_index(&[(0, 0), (5, 100)]);
        let idx = OffsetIndex::parse(&real, 0);
        assert_eq!(valid_and_tail(&idx, &real), (2, 0));
    }

    #[test]
    fn zero_tail_is_a_note_and_garbage_is_corrupt() {
        let p = Path::new("x.index");
        assert_eq!(index_zero_tail_problem(p, 3, 0, true, 8, false), None);
        let note = index_zero_tail_problem(p, 3, 2, true, 8, true).unwrap();
        assert_eq!(
            (note.kind, note.severity),
            ("index_preallocated_tail", Severity::Note)
        );
        assert_eq!(note.position, Some(24));
        let bad = index_zero_tail_problem(p, 3, 2, false, 8, false).unwrap();
        assert_eq!(
            (bad.kind, bad.severity),
            ("index_tail_garbage", Severity::Corrupt)
        );
        let shape = index_shape_problems(p, 27, true, (3, 0, true), 8, false);
        assert_eq!(shape.len(), 1);
        assert_eq!(
            (shape[0].kind, shape[0].position),
            ("index_length", Some(27))
        );
    }

    #[test]
    fn seek_position_is_the_last_entry_below_the_offset() {
        let idx = offset_index(&[(0, 0), (10, 400), (20, 800)]);
        assert_eq!(seek_position(Some(&idx), 100, 115, 10_000), 400);
        assert_eq!(seek_position(Some(&idx), 100, 121, 10_000), 800);
        assert_eq!(seek_position(Some(&idx), 100, 121, 500), 500);
        assert_eq!(seek_position(Some(&idx), 100, 100, 10_000), 0);
        assert_eq!(seek_position(None, 100, 121, 10_000), 0);
    }

    #[test]
    fn offset_index_entries_matched_against_batches() {
        // Entries at offsets 9 (byte 0) and 29 (byte 200); batches 0..=9 @0, 10..=19 @100,
        // 20..=29 @200.
        let bytes = offset_index(&[(9, 0), (29, 200)]);
        let (kinds, stats) = collect(|out| {
            let mut c =
                OffsetIndexCheck::prepare(Path::new("x.index"), &bytes, 0, false, false, out);
            for (pos, base) in [(0, 0), (100, 10), (200, 20)] {
                c.feed(&span(pos, base, base + 9, 0), out);
            }
            c.finish(300, Severity::Corrupt, out);
        });
        assert!(kinds.is_empty(), "{kinds:?}");
        assert_eq!((stats.index_entries, stats.data.index_mismatches), (2, 0));

        // An entry whose offset is not the last of the append at its position, and one
        // pointing where no batch starts.
        let bytes = offset_index(&[(5, 0), (29, 150)]);
        let (kinds, stats) = collect(|out| {
            let mut c =
                OffsetIndexCheck::prepare(Path::new("x.index"), &bytes, 0, false, false, out);
            for (pos, base) in [(0, 0), (100, 10), (200, 20)] {
                c.feed(&span(pos, base, base + 9, 0), out);
            }
            c.finish(300, Severity::Corrupt, out);
        });
        assert_eq!(kinds, ["index_mismatch", "index_position"]);
        assert_eq!(
            (stats.data.index_mismatches, stats.dump_log_index_mismatches),
            (2, 2)
        );
    }

    #[test]
    fn a_multi_batch_append_is_only_a_dump_log_mismatch() {
        // One append at byte 0 held batches 0..=9 and 10..=19; the entry names offset 19.
        let bytes = offset_index(&[(19, 0)]);
        let (kinds, stats) = collect(|out| {
            let mut c =
                OffsetIndexCheck::prepare(Path::new("x.index"), &bytes, 0, false, false, out);
            c.feed(&span(0, 0, 9, 0), out);
            c.feed(&span(100, 10, 19, 0), out);
            c.finish(200, Severity::Corrupt, out);
        });
        assert_eq!(kinds, ["index_dump_log_mismatch"]);
        assert_eq!(
            (stats.data.index_mismatches, stats.dump_log_index_mismatches),
            (0, 1)
        );
    }

    #[test]
    fn offset_index_beyond_the_log() {
        let bytes = offset_index(&[(9, 0), (19, 100)]);
        for (sev, expected) in [
            (Severity::Partial, vec!["index_beyond_log"]),
            (Severity::Note, vec![]),
        ] {
            let (kinds, _) = collect(|out| {
                let mut c =
                    OffsetIndexCheck::prepare(Path::new("x.index"), &bytes, 0, false, false, out);
                c.feed(&span(0, 0, 9, 0), out);
                c.finish(100, sev, out);
            });
            assert_eq!(kinds, expected);
        }
    }

    #[test]
    fn time_index_entries_matched_against_batches() {
        let good = time_index(&[(1000, 9), (2000, 19)]);
        let (kinds, stats) = collect(|out| {
            let mut c =
                TimeIndexCheck::prepare(Path::new("x.timeindex"), &good, 0, false, false, out);
            c.feed(&span(0, 0, 9, 1000), out);
            c.feed(&span(100, 10, 19, 2000), out);
            c.finish(200, Severity::Corrupt, out);
        });
        assert!(kinds.is_empty(), "{kinds:?}");
        assert_eq!(stats.index_entries, 2);

        // Decreasing timestamps, a wrong max timestamp, an entry inside a batch, and one
        // past the end of the log.
        let bad = time_index(&[(2000, 9), (1500, 19), (3000, 25), (4000, 39)]);
        let (kinds, _) = collect(|out| {
            let mut c =
                TimeIndexCheck::prepare(Path::new("x.timeindex"), &bad, 0, false, false, out);
            c.feed(&span(0, 0, 9, 2000), out);
            c.feed(&span(100, 10, 19, 1500), out);
            c.feed(&span(200, 20, 29, 3000), out);
            c.finish(300, Severity::Partial, out);
        });
        assert_eq!(
            kinds,
            [
                "time_index_order",
                "time_index_dump_log_mismatch",
                "time_index_beyond_log"
            ]
        );
    }

    #[test]
    fn index_entries_are_emitted_when_asked() {
        let bytes = offset_index(&[(9, 0), (19, 100)]);
        let mut lines = Vec::new();
        let mut stats = SegmentStats::default();
        let mut sink = |e: Event<'_>| {
            if let Event::IndexEntry(l) = e {
                lines.push((l.index, l.entry, l.offset, l.position));
            }
        };
        let mut out = Out {
            sink: &mut sink,
            file_stats: &mut stats,
        };
        OffsetIndexCheck::prepare(Path::new("x.index"), &bytes, 100, true, true, &mut out);
        assert_eq!(
            lines,
            [
                ("offset", 0, Some(109), Some(0)),
                ("offset", 1, Some(119), Some(100))
            ]
        );
    }
}
