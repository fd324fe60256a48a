//! The records of one batch or legacy entry: decoded, checked, counted and emitted.

use std::path::Path;

use segvault_format::control::{decode_control_record, ControlRecord};
use segvault_format::segment::Batch;
use segvault_format::{ErrorKind, FormatError, Limits};

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
    let to_problem = |e: FormatError| {
        let kind = match e.kind {
            ErrorKind::Crc => "crc",
            ErrorKind::Decompress => "decompress",
            _ => "record",
        };
        Problem::from_format(file, Severity::Corrupt, &e.shifted(start_pos)).with_kind(kind)
    };
    let mut res = RecordsResult {
        count: 0,
        first_offset: None,
        abort: false,
    };
    match b {
        Batch::V2(v) => {
            let control = v.header.attributes.is_control();
            let delta = v.header.last_offset_delta;
            let mut recs = v.records_with_limits(limits).map_err(to_problem)?;
            let mut prev_delta = -1i32;
            while let Some(r) = recs.next_record() {
                let r = r.map_err(to_problem)?;
                if r.offset_delta <= prev_delta || r.offset_delta > delta {
                    return Err(Problem::new(file, Severity::Corrupt, "record", format!(
                        "expected record offset deltas increasing within 0..={delta}, found {} after {prev_delta}",
                        r.offset_delta
                    )).at(Some(pos), Some(v.header.base_offset)));
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
                if emit {
                    let view = RecordView {
                        file,
                        batch_position: pos,
                        offset,
                        timestamp: v.record_timestamp(r.timestamp_delta),
                        key: r.key,
                        value: r.value,
                        headers: r.headers().map(|h| (h.key, h.value)).collect(),
                        control: control_record,
                        decoded: if control {
                            None
                        } else {
                            decode(decoder, r.key, r.value)
                        },
                    };
                    out.emit(Event::Record(&view));
                }
            }
        }
        Batch::Legacy(l) => {
            if !l.is_compressed() {
                res.count = 1;
                res.first_offset = Some(l.offset);
                if emit {
                    let view = RecordView {
                        file,
                        batch_position: pos,
                        offset: l.offset,
                        timestamp: l.timestamp,
                        key: l.key,
                        value: l.value,
                        headers: Vec::new(),
                        control: None,
                        decoded: decode(decoder, l.key, l.value),
                    };
                    out.emit(Event::Record(&view));
                }
            } else {
                let inner = l.inner(limits).map_err(to_problem)?;
                let mut prev: Option<i64> = None;
                for m in inner.iter() {
                    let m = m.map_err(to_problem)?;
                    if prev.is_some_and(|p| m.offset <= p) || m.offset > l.offset {
                        return Err(Problem::new(file, Severity::Corrupt, "record", format!(
                            "expected inner message offsets increasing up to the wrapper's {}, found {} after {}",
                            l.offset, m.offset, prev.map_or("none".into(), |p| p.to_string())
                        )).at(Some(pos), Some(l.offset)));
                    }
                    prev = Some(m.offset);
                    res.count += 1;
                    if res.first_offset.is_none() {
                        res.first_offset = Some(m.offset);
                    }
                    if emit {
                        let view = RecordView {
                            file,
                            batch_position: pos,
                            offset: m.offset,
                            timestamp: m.timestamp,
                            key: m.entry.key,
                            value: m.entry.value,
                            headers: Vec::new(),
                            control: None,
                            decoded: decode(decoder, m.entry.key, m.entry.value),
                        };
                        out.emit(Event::Record(&view));
                    }
                }
            }
        }
    }
    Ok(res)
}
