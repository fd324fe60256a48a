//! The walk over one segment: [`check_segment`] maps the `.log` and its indexes, and
//! [`SegmentWalk`] handles each entry (events, records, offset order, index cross-checks)
//! and then judges how the `.log` ended.

use segvault_format::mapped::MappedFile;
use segvault_format::segment::{log_entries, Batch, SegmentEnd};
use segvault_format::Limits;

use super::events::{BatchLine, Event, Out, SegmentStats};
use super::index::{seek_position, OffsetIndexCheck, Span, TimeIndexCheck};
use super::mapped::{intact, open};
use super::options::{RecordMode, SegmentInput, WalkOptions};
use super::pipeline::walk_entries;
use super::problem::{Problem, Severity};
use super::raw::{length_field_corrupted, read_i64};
use super::records::walk_records;
use super::txn::AbortedTxns;
use crate::logdir::Error;

/// The files of a segment, mapped (the `.log` unless only its indexes are read).
struct SegmentMaps {
    log: Option<MappedFile>,
    index: Option<MappedFile>,
    timeindex: Option<MappedFile>,
    txnindex: Option<MappedFile>,
}

impl SegmentMaps {
    fn open(input: &SegmentInput, index_only: bool) -> Result<SegmentMaps, Error> {
        let log = if index_only {
            None
        } else {
            Some(open(&input.log)?)
        };
        let maps =
            [&input.index, &input.timeindex, &input.txnindex].map(|p| p.as_ref().map(|p| open(p)));
        let [index, timeindex, txnindex] = maps;
        Ok(SegmentMaps {
            log,
            index: index.transpose()?,
            timeindex: timeindex.transpose()?,
            txnindex: txnindex.transpose()?,
        })
    }

    /// An error if a file was truncated while read: what was checked was not the file.
    fn intact(&self, input: &SegmentInput) -> Result<(), Error> {
        if let Some(m) = &self.log {
            intact(&input.log, m)?;
        }
        let indexes = [
            (&input.index, &self.index),
            (&input.timeindex, &self.timeindex),
            (&input.txnindex, &self.txnindex),
        ];
        for (p, m) in indexes {
            if let (Some(p), Some(m)) = (p, m) {
                intact(p, m)?;
            }
        }
        Ok(())
    }
}

/// Walks a segment: see the module doc. Returns `Err` only when a file cannot be opened.
pub fn check_segment(
    input: &SegmentInput,
    opts: &WalkOptions,
    sink: &mut dyn FnMut(Event<'_>),
) -> Result<SegmentStats, Error> {
    let mut stats = SegmentStats::default();
    let maps = SegmentMaps::open(input, opts.index_only)?;
    let mut out = Out {
        sink,
        file_stats: &mut stats,
    };
    let base = input.base_offset.unwrap_or(0);
    let emit = opts.emit_index_entries;

    // Index files: parse, emit entries, report structural problems, prepare streaming checks.
    let oic = match (&input.index, &maps.index) {
        (Some(path), Some(map)) => Some(OffsetIndexCheck::prepare(
            path,
            map,
            base,
            input.active,
            emit,
            &mut out,
        )),
        _ => None,
    };
    let tic = match (&input.timeindex, &maps.timeindex) {
        (Some(path), Some(map)) => Some(TimeIndexCheck::prepare(
            path,
            map,
            base,
            input.active,
            emit,
            &mut out,
        )),
        _ => None,
    };
    let txn = match (&input.txnindex, &maps.txnindex) {
        (Some(path), Some(map)) => Some((path.as_path(), &map[..])),
        _ => None,
    };
    let aborted = AbortedTxns::read(txn, emit, &mut out);

    // Where to start and stop reading the .log.
    let data: &[u8] = maps.log.as_deref().unwrap_or(&[]);
    let limit = opts.max_bytes.map_or(data.len(), |m| {
        usize::try_from(m).unwrap_or(usize::MAX).min(data.len())
    });
    let start = match opts.from_offset {
        Some(from) => {
            let seek_map = match &opts.seek_index {
                Some(p) if p.is_file() => open(p).ok(),
                _ => None,
            };
            let seek_data = seek_map.as_deref().or(maps.index.as_deref());
            seek_position(seek_data, base, from, limit)
        }
        None => 0,
    };
    let mut walk = SegmentWalk {
        input,
        opts,
        base,
        start_pos: start as u64,
        limits: Limits::default(),
        oic,
        tic,
        aborted,
        prev_last: None,
        first_checked: false,
    };
    if let Some(oc) = &mut walk.oic {
        oc.skip_before(start);
    }
    let slice = data.get(start..limit).unwrap_or(&[]);
    let mut entries = walk_entries(
        log_entries(slice).without_crc_check(),
        opts.pipeline,
        |b, crc_ok| walk.entry(b, crc_ok, &mut out),
    );

    if opts.index_only {
        maps.intact(input)?;
        return Ok(stats);
    }
    // How the walk ended.
    let end = entries.finish();
    let valid_end = walk.start_pos + entries.position();
    walk.finish(end, data, limit, valid_end, &mut out);
    // Truncated while read: an I/O error for the file, whatever the walk made of the zeros.
    maps.intact(input)?;
    Ok(stats)
}

/// The state of a walk over one segment's entries, between two of them.
struct SegmentWalk<'w, 'm> {
    input: &'w SegmentInput,
    opts: &'w WalkOptions,
    /// The segment's base offset (0 when the file name has none).
    base: i64,
    /// Byte position in the `.log` where the walk started (`from_offset`).
    start_pos: u64,
    limits: Limits,
    oic: Option<OffsetIndexCheck<'m>>,
    tic: Option<TimeIndexCheck<'m>>,
    aborted: AbortedTxns,
    /// The highest last offset so far.
    prev_last: Option<i64>,
    /// The first entry's base offset was checked against the segment's.
    first_checked: bool,
}

/// What the records of an entry said about its offsets.
struct EntryOffsets {
    /// The first offset the entry holds, when known (not for a compressed legacy wrapper
    /// whose records were not read).
    first: Option<i64>,
    /// The first record's offset, when records were decoded.
    first_record: Option<i64>,
    /// An ABORT marker's offset (control batches).
    abort_marker: Option<i64>,
}

impl SegmentWalk<'_, '_> {
    /// One entry: its events, records, offset checks and index cross-checks. `crc_ok` is the
    /// entry's CRC verdict, computed by the caller (possibly ahead, on another thread).
    fn entry(&mut self, b: Batch<'_>, crc_ok: bool, out: &mut Out<'_, '_>) {
        let file = self.input.log.as_path();
        let pos = self.start_pos + b.position();
        let last = b.last_offset().unwrap_or(i64::MAX);
        if self.opts.from_offset.is_some_and(|from| last < from) {
            return;
        }
        out.file_stats.data.batches += 1;
        out.file_stats.data.bytes += b.size() as u64;
        let line = BatchLine::new(file, pos, &b, crc_ok);
        if self.opts.emit_batches {
            out.emit(Event::Batch(&line));
        }
        if !line.crc_valid {
            out.file_stats.data.crc_failures += 1;
            if let Err(e) = b.verify_crc() {
                out.problem(Problem::from_format(
                    file,
                    Severity::Corrupt,
                    &e.shifted(self.start_pos),
                ));
            }
        }
        let offsets = self.records(&b, pos, out);
        self.check_offsets(&b, pos, last, &offsets, out);
        // Cross-checks.
        let span = Span {
            position: pos,
            base: offsets.first.unwrap_or(last),
            last,
            max_ts: b.max_timestamp(),
        };
        if let Some(oc) = &mut self.oic {
            oc.feed(&span, out);
        }
        if let Some(tc) = &mut self.tic {
            tc.feed(&span, out);
        }
        if let Some(marker) = offsets.abort_marker {
            self.aborted.marker(
                file,
                pos,
                (b.producer_id(), marker),
                self.input.active,
                self.input.txnindex.is_some(),
                out,
            );
        }
    }

    /// Decodes the records when asked (always for control batches), and counts them.
    fn records(&self, b: &Batch<'_>, pos: u64, out: &mut Out<'_, '_>) -> EntryOffsets {
        let mut offsets = EntryOffsets {
            first: match b {
                Batch::V2(v) => Some(v.header.base_offset),
                Batch::Legacy(l) if !l.is_compressed() => Some(l.offset),
                Batch::Legacy(_) => None,
            },
            first_record: None,
            abort_marker: None,
        };
        let mode = self.opts.records;
        let mut counted = b.shallow_record_count().max(0) as u64;
        if mode != RecordMode::Shallow || b.is_control() {
            let file = self.input.log.as_path();
            let emit = mode == RecordMode::Emit;
            let decoder = self.opts.decoder;
            match walk_records(
                file,
                pos,
                self.start_pos,
                b,
                decoder,
                emit,
                self.limits,
                out,
            ) {
                Ok(r) => {
                    if mode != RecordMode::Shallow {
                        counted = r.count;
                    }
                    if r.first_offset.is_some() {
                        offsets.first = offsets.first.or(r.first_offset);
                        offsets.first_record = r.first_offset;
                    }
                    if r.abort {
                        offsets.abort_marker = b.last_offset();
                    }
                }
                Err(p) => out.problem(p),
            }
        }
        out.file_stats.data.records += counted;
        if b.is_control() {
            out.file_stats.data.control_records += counted;
        }
        offsets
    }

    /// Offsets: order, gaps, range of the segment.
    fn check_offsets(
        &mut self,
        b: &Batch<'_>,
        pos: u64,
        last: i64,
        offsets: &EntryOffsets,
        out: &mut Out<'_, '_>,
    ) {
        let file = self.input.log.as_path();
        let base = self.base;
        let prev_last = self.prev_last;
        if let Some(first) = offsets.first {
            if !self.first_checked {
                self.first_checked = true;
                if self.input.base_offset.is_some_and(|bo| first < bo) {
                    out.problem(
                        Problem::new(file, Severity::Corrupt, "offset_below_base", format!(
                            "expected the first batch to start at or after the segment's base offset {base} (its file name), found base offset {first}"
                        )).at(Some(pos), Some(first)),
                    );
                }
            }
            if let Some(pl) = prev_last {
                if first <= pl {
                    out.problem(
                        Problem::new(file, Severity::Corrupt, "offset_overlap", format!(
                            "expected a base offset above {pl} (the previous batch's last offset), found {first}"
                        )).at(Some(pos), Some(first)),
                    );
                } else if first > pl.saturating_add(1) {
                    out.file_stats.data.offset_gaps += 1;
                }
            }
            if out.file_stats.first_offset.is_none() {
                out.file_stats.first_offset = Some(offsets.first_record.unwrap_or(first));
            }
        } else if prev_last.is_some_and(|pl| last <= pl) {
            out.problem(
                Problem::new(
                    file,
                    Severity::Corrupt,
                    "offset_overlap",
                    format!(
                        "expected a last offset above {} (the previous entry's), found {last}",
                        prev_last.unwrap_or_default()
                    ),
                )
                .at(Some(pos), Some(last)),
            );
        }
        if let Batch::V2(v2) = b {
            if v2.header.last_offset_delta < 0 {
                out.problem(
                    Problem::new(
                        file,
                        Severity::Corrupt,
                        "bad_value",
                        format!(
                            "expected a non-negative last offset delta, found {}",
                            v2.header.last_offset_delta
                        ),
                    )
                    .at(Some(pos + 23), Some(v2.header.base_offset)),
                );
            }
        }
        if self.input.base_offset.is_some() && last.saturating_sub(base) > i64::from(i32::MAX) {
            out.problem(
                Problem::new(file, Severity::Corrupt, "offset_out_of_segment", format!(
                    "expected a last offset within 2^31-1 of the segment base {base} (indexes store 32-bit relative offsets), found {last}"
                )).at(Some(pos), Some(last)),
            );
        }
        self.prev_last = Some(prev_last.map_or(last, |p| p.max(last)));
        out.file_stats.last_offset = self.prev_last;
    }

    /// After the last entry: judges how the `.log` ended, then the index entries the walk
    /// never reached and the aborted transactions whose marker it never met. `data` is the
    /// whole `.log`, read up to `limit`; the entries were valid up to `valid_end`.
    fn finish(
        &mut self,
        end: SegmentEnd,
        data: &[u8],
        limit: usize,
        valid_end: u64,
        out: &mut Out<'_, '_>,
    ) {
        let cut_by_max = limit < data.len();
        let end_sev = self.judge_end(end, data, limit, valid_end, out);
        let active = self.input.active;
        let sev = if cut_by_max || (active && end_sev == Severity::Note) {
            Severity::Note
        } else {
            end_sev.max(Severity::Partial)
        };
        if let Some(oc) = &mut self.oic {
            oc.finish(valid_end, sev, out);
        }
        if let Some(tc) = &mut self.tic {
            tc.finish(valid_end, sev, out);
        }
        if !cut_by_max && self.opts.from_offset.is_none() {
            self.aborted.finish(active, out);
        }
    }

    /// Reports how the walk ended (clean, a partial tail, zeros, corruption) and returns the
    /// severity of that end: the index entries past it are judged with it.
    fn judge_end(
        &self,
        end: SegmentEnd,
        data: &[u8],
        limit: usize,
        valid_end: u64,
        out: &mut Out<'_, '_>,
    ) -> Severity {
        let file = self.input.log.as_path();
        let active = self.input.active;
        let cut_by_max = limit < data.len();
        match end {
            SegmentEnd::Clean => Severity::Note,
            SegmentEnd::PartialTail { position, bytes } => {
                let position = self.start_pos + position;
                if cut_by_max && position + bytes == limit as u64 {
                    out.problem(
                        Problem::new(file, Severity::Note, "max_bytes", format!(
                            "stopped at --max-bytes {limit}: the entry at byte {position} continues past it"
                        )).at(Some(position), None),
                    );
                    Severity::Note
                } else if let Some(real_end) = length_field_corrupted(data, position as usize) {
                    out.problem(
                        Problem::new(file, Severity::Corrupt, "bad_length", format!(
                            "the length field at byte {} says the batch runs past the end of the file ({} bytes left), but a batch with a valid CRC ends at byte {real_end}: the length field is corrupt",
                            position + 8, bytes
                        )).at(Some(position + 8), read_i64(data, position as usize)),
                    );
                    Severity::Corrupt
                } else {
                    out.file_stats.data.partial_tail_bytes = bytes;
                    let sev = if active {
                        Severity::Note
                    } else {
                        Severity::Partial
                    };
                    out.problem(
                        Problem::new(file, sev, "partial_tail", format!(
                            "expected a complete batch at byte {position}, found only {bytes} bytes before the end of the file ({}; a broker's recovery truncates them)",
                            if active { "the active segment of a live broker can end like this" } else { "this is not the active segment" }
                        )).at(Some(position), read_i64(data, position as usize)),
                    );
                    sev
                }
            }
            SegmentEnd::Corrupt(e) => {
                let e = e.shifted(self.start_pos);
                let tail_start = valid_end as usize;
                let all_zero = data
                    .get(tail_start.min(limit)..limit)
                    .is_some_and(|t| t.iter().all(|&b| b == 0));
                if !(all_zero && tail_start < limit) {
                    out.problem(Problem::from_format(file, Severity::Corrupt, &e));
                    return Severity::Corrupt;
                }
                let bytes = (limit - tail_start) as u64;
                out.file_stats.data.partial_tail_bytes = bytes;
                let sev = if active && out.file_stats.data.batches > 0 {
                    Severity::Note
                } else {
                    Severity::Partial
                };
                out.problem(
                    Problem::new(file, sev, "zero_tail", format!(
                        "expected a batch at byte {tail_start}, found {bytes} zero bytes to the end of the file (preallocation with file.preallocate, or a crash before data reached the disk; recovery truncates them)"
                    )).at(Some(tail_start as u64), None),
                );
                sev
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use segvault_format::encode::test_segment;
    use std::path::Path;

    /// Writes `log` (and an `.index` of `(relative offset, position)` entries) as segment 0
    /// in `dir`.
    fn segment(dir: &Path, log: &[u8], index: Option<&[(i32, i32)]>, active: bool) -> SegmentInput {
        let path = dir.join("00000000000000000000.log");
        std::fs::write(&path, log).unwrap();
        let index = index.map(|entries| {
            let p = dir.join("00000000000000000000.index");
            let bytes: Vec<u8> = entries
                .iter()
                .flat_map(|(o, p)| o.to_be_bytes().into_iter().chain(p.to_be_bytes()))
                .collect();
            std::fs::write(&p, bytes).unwrap();
            p
        });
        SegmentInput {
            log: path,
            base_offset: Some(0),
            index,
            timeindex: None,
            txnindex: None,
            active,
        }
    }

    /// The events of a walk, as their debug text, and its counts.
    fn walk(input: &SegmentInput, opts: &WalkOptions) -> (Vec<String>, SegmentStats) {
        let mut events = Vec::new();
        let stats = check_segment(input, opts, &mut |e| events.push(format!("{e:?}"))).unwrap();
        (events, stats)
    }

    fn problems(events: &[String]) -> Vec<&String> {
        events.iter().filter(|e| e.starts_with("Problem")).collect()
    }

    #[test]
    fn the_pipelined_walk_emits_the_same_as_the_plain_one() {
        let dir = tempfile::tempdir().unwrap();
        let log = test_segment(300, 3, 5000);
        let input = segment(dir.path(), &log, None, false);
        let plain = WalkOptions {
            records: RecordMode::Emit,
            emit_batches: true,
            ..WalkOptions::default()
        };
        let piped = WalkOptions {
            pipeline: true,
            ..plain.clone()
        };
        let (a, sa) = walk(&input, &plain);
        let (b, sb) = walk(&input, &piped);
        assert_eq!(a, b);
        assert_eq!(format!("{sa:?}"), format!("{sb:?}"));
        assert_eq!(
            (sa.data.batches, sa.data.records, sa.data.bytes),
            (300, 900, log.len() as u64)
        );
        assert_eq!((sa.first_offset, sa.last_offset), (Some(0), Some(899)));
        assert!(problems(&a).is_empty(), "{a:?}");
    }

    #[test]
    fn a_partial_tail_is_partial_when_closed_and_a_note_when_active() {
        let dir = tempfile::tempdir().unwrap();
        let log = test_segment(3, 2, 10);
        let cut = &log[..log.len() - 5];
        for (active, severity) in [(false, "Partial"), (true, "Note")] {
            let input = segment(dir.path(), cut, None, active);
            let (events, stats) = walk(&input, &WalkOptions::default());
            let p = problems(&events);
            assert_eq!(p.len(), 1, "{p:?}");
            assert!(
                p[0].contains("\"partial_tail\"") && p[0].contains(severity),
                "{p:?}"
            );
            assert_eq!(stats.data.batches, 2);
            assert!(stats.data.partial_tail_bytes > 0);
        }
    }

    #[test]
    fn index_entries_are_cross_checked_and_seek_with_from_offset() {
        let dir = tempfile::tempdir().unwrap();
        let log = test_segment(4, 2, 10);
        let size = (log.len() / 4) as i32;
        // Entries for batches 1 (offsets 2..=3) and 3 (6..=7); the second points one byte off.
        let input = segment(
            dir.path(),
            &log,
            Some(&[(3, size), (7, 3 * size + 1)]),
            false,
        );
        let (events, stats) = walk(&input, &WalkOptions::default());
        let p = problems(&events);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("\"index_position\""), "{p:?}");
        assert_eq!((stats.index_entries, stats.data.index_mismatches), (2, 1));

        // As inspect seeks: the .index only to find where to start, not cross-checked.
        let mut seek = segment(dir.path(), &log, Some(&[(3, size), (7, 3 * size)]), false);
        let from = WalkOptions {
            from_offset: Some(5),
            emit_batches: true,
            seek_index: seek.index.take(),
            ..WalkOptions::default()
        };
        let (events, stats) = walk(&seek, &from);
        assert!(problems(&events).is_empty(), "{events:?}");
        // Seeks to the entry below offset 5 (batch 1), then skips batch 1 (ends at 3).
        assert_eq!(stats.data.batches, 2);
        assert_eq!(stats.first_offset, Some(4));
    }
}
