//! The records of one batch or legacy entry: decoded, checked, counted and emitted.

use std::path::Path;

use segvault_format::control::{decode_control_record, ControlRecord};
use segvault_format::segment::Batch;
use segvault_format::{ErrorKind, FormatError, LegacyEntry, Limits, RecordBatch};

use super::events::{Event, Out, RecordView};
use super::internal::decode;
use super::options::Decoder;
use super::problem::{Problem, Severity};

/// What the records of an entry held.
pub(super) struct RecordsResult {
    /// Records decoded.
    pub(super) count: u64,
    /// The first record's offset.
    pub(super) first_offset: Option<i64>,
    /// A control batch holding an ABORT marker.
    pub(super) abort: bool,
}

/// Decodes (and optionally emits) the records of a batch or legacy entry.
#[allow(clippy::too_many_arguments)]
pub(super) fn walk_records(
    file: &Path,
    pos: u64,
    start_pos: u64,
    b: &Batch<'_>,
    decoder: Decoder,
    emit: bool,
    limits: Limits,
    out: &mut Out<'_, '_>,
) -> Result<RecordsResult, Problem> {
    let walk = EntryWalk {
        file,
        pos,
        start_pos,
        decoder,
        emit,
        limits,
    };
    match b {
        Batch::V2(v) => walk.v2(v, out),
        Batch::Legacy(l) => walk.legacy(l, out),
    }
}

/// The walk over one entry's records: the file, the entry's position, where the walk
/// started (error positions are shifted by it), and what to decode and emit.
struct EntryWalk<'p> {
    file: &'p Path,
    pos: u64,
    start_pos: u64,
    decoder: Decoder,
    emit: bool,
    limits: Limits,
}

impl EntryWalk<'_> {
    fn problem(&self, e: FormatError) -> Problem {
        let kind = match e.kind {
            ErrorKind::Crc => "crc",
            ErrorKind::Decompress => "decompress",
            _ => "record",
        };
        Problem::from_format(self.file, Severity::Corrupt, &e.shifted(self.start_pos))
            .with_kind(kind)
    }

    /// The records of a v2 batch: offset deltas increasing within the batch, control records
    /// decoded (an ABORT marker noted).
    fn v2(&self, v: &RecordBatch<'_>, out: &mut Out<'_, '_>) -> Result<RecordsResult, Problem> {
        let mut res = RecordsResult {
            count: 0,
            first_offset: None,
            abort: false,
        };
        let control = v.header.attributes.is_control();
        let delta = v.header.last_offset_delta;
        let mut recs = v
            .records_with_limits(self.limits)
            .map_err(|e| self.problem(e))?;
        let mut prev_delta = -1i32;
        while let Some(r) = recs.next_record() {
            let r = r.map_err(|e| self.problem(e))?;
            if r.offset_delta <= prev_delta || r.offset_delta > delta {
                return Err(Problem::new(self.file, Severity::Corrupt, "record", format!(
                    "expected record offset deltas increasing within 0..={delta}, found {} after {prev_delta}",
                    r.offset_delta
                )).at(Some(self.pos), Some(v.header.base_offset)));
            }
            prev_delta = r.offset_delta;
            res.count += 1;
            let offset = v.record_offset(r.offset_delta).unwrap_or(i64::MAX);
            if res.first_offset.is_none() {
                res.first_offset = Some(offset);
            }
            let control_record = if control {
                let c = decode_control_record(r.key, r.value);
                if let Ok(ControlRecord::EndTxn { commit: false, .. }) = c {
                    res.abort = true;
                }
                Some(c)
            } else {
                None
            };
            if self.emit {
                let view = RecordView {
                    file: self.file,
                    batch_position: self.pos,
                    offset,
                    timestamp: v.record_timestamp(r.timestamp_delta),
                    key: r.key,
                    value: r.value,
                    headers: r.headers().map(|h| (h.key, h.value)).collect(),
                    control: control_record,
                    decoded: if control {
                        None
                    } else {
                        decode(self.decoder, r.key, r.value)
                    },
                };
                out.emit(Event::Record(&view));
            }
        }
        Ok(res)
    }

    /// The message of a legacy entry, or the inner messages of a compressed wrapper (offsets
    /// increasing up to the wrapper's).
    fn legacy(&self, l: &LegacyEntry<'_>, out: &mut Out<'_, '_>) -> Result<RecordsResult, Problem> {
        let mut res = RecordsResult {
            count: 0,
            first_offset: None,
            abort: false,
        };
        if !l.is_compressed() {
            res.count = 1;
            res.first_offset = Some(l.offset);
            if self.emit {
                let view = RecordView {
                    file: self.file,
                    batch_position: self.pos,
                    offset: l.offset,
                    timestamp: l.timestamp,
                    key: l.key,
                    value: l.value,
                    headers: Vec::new(),
                    control: None,
                    decoded: decode(self.decoder, l.key, l.value),
                };
                out.emit(Event::Record(&view));
            }
        } else {
            let inner = l.inner(self.limits).map_err(|e| self.problem(e))?;
            let mut prev: Option<i64> = None;
            for m in inner.iter() {
                let m = m.map_err(|e| self.problem(e))?;
                if prev.is_some_and(|p| m.offset <= p) || m.offset > l.offset {
                    return Err(Problem::new(self.file, Severity::Corrupt, "record", format!(
                        "expected inner message offsets increasing up to the wrapper's {}, found {} after {}",
                        l.offset, m.offset, prev.map_or("none".into(), |p| p.to_string())
                    )).at(Some(self.pos), Some(l.offset)));
                }
                prev = Some(m.offset);
                res.count += 1;
                if res.first_offset.is_none() {
                    res.first_offset = Some(m.offset);
                }
                if self.emit {
                    let view = RecordView {
                        file: self.file,
                        batch_position: self.pos,
                        offset: m.offset,
                        timestamp: m.timestamp,
                        key: m.entry.key,
                        value: m.entry.value,
                        headers: Vec::new(),
                        control: None,
                        decoded: decode(self.decoder, m.entry.key, m.entry.value),
                    };
                    out.emit(Event::Record(&view));
                }
            }
        }
        Ok(res)
    }
}
