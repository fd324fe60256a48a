//! `segvault inspect`: the forensic view of single files.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use serde::Serialize;

use super::output::{push_escaped, push_payload_text, JsonPayload, Out};
use super::render::{control_json, file_info_json, internal_json};
use super::{Format, Payload, EXIT_ERROR, EXIT_OK, EXIT_PROBLEM};
use segvault_core::logdir::check::{
    check_file, check_segment, file_kind, Decoder, Event, FileKind, Problem, RecordMode,
    RecordView, SegmentInput, SegmentStats, Severity, WalkOptions,
};
use segvault_core::logdir::{base_offset_of, is_active_segment, log_beside};

pub const LONG_HELP: &str = "\
Print what a Kafka file holds, checking it as it goes.

By default a .log is shown batch by batch (like kafka-dump-log without --deep-iteration);
--records goes down to every record, decompressing every codec and expanding legacy
wrapper messages. Records of __consumer_offsets, __transaction_state and
__cluster_metadata are decoded (group/topic/partition, transactional id and state,
metadata record type), chosen by the name of the file's directory.

Index files are printed and cross-checked against the .log of the same base name: every
check kafka-dump-log makes, plus segvault's own judgement. The broker writes one index
entry per append and an append can hold several batches, so kafka-dump-log's
\"Index offset: X, log offset: Y\" can fire on valid files: segvault reports those as notes
(kind index_dump_log_mismatch) and only real mismatches as corrupt. A zero-filled tail
(preallocation of an active segment's index) is recognised and not read as entries.

A partial batch at the end of the ACTIVE segment (the highest base offset in its
directory) is a note: a live broker's segment looks like that. Anywhere else it is
severity partial (exit code 1).

Examples:
  segvault inspect /var/lib/kafka/orders-0/00000000000000000000.log
  segvault inspect --records --payload hex orders-0/00000000000000001200.log
  segvault inspect --format json --records __consumer_offsets-0/*.log | jq 'select(.type==\"record\") | .decoded'
  segvault inspect orders-0/00000000000000000000.index orders-0/00000000000000000000.timeindex
  segvault inspect --from-offset 5000 --max-bytes 1048576 orders-0/00000000000000000000.log
  segvault inspect meta.properties replication-offset-checkpoint orders-0/partition.metadata

JSON lines (--format json), each with \"type\": batch, record, index_entry, problem,
summary (one per file, last), and for other files producer_state, checkpoint_entry,
leader_epoch, partition_metadata, meta_properties, quorum_state, clean_shutdown.

Exit codes: 0 clean (notes only), 1 corrupt or partial data found, 2 usage or I/O error.";

/// The arguments of `segvault inspect`.
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// Go down to every record (decompressing; legacy wrapper messages expanded).
    #[arg(long)]
    pub records: bool,
    /// How to show keys and values (with --records).
    #[arg(long, value_enum, default_value_t = Payload::Utf8)]
    pub payload: Payload,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Stop reading a .log after this many bytes (like kafka-dump-log --max-bytes).
    #[arg(long, value_name = "N")]
    pub max_bytes: Option<u64>,
    /// Skip batches whose last offset is below N (seeks with the segment's .index).
    #[arg(long, value_name = "N")]
    pub from_offset: Option<i64>,
    /// Files to inspect: .log, .index, .timeindex, .txnindex, .snapshot, KRaft .checkpoint,
    /// bootstrap.checkpoint, offset checkpoints, leader-epoch-checkpoint, partition.metadata,
    /// meta.properties, quorum-state, .kafka_cleanshutdown.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

pub fn run(opts: InspectArgs) -> i32 {
    let mut out = Out::new();
    let mut code = EXIT_OK;
    for f in &opts.files {
        let c = inspect_file(f, &opts, &mut out);
        code = code.max(c);
        if out.error.is_some() {
            break;
        }
    }
    if out.finish() {
        code = EXIT_ERROR;
    }
    code
}

fn error(path: &Path, message: &str, out: &mut Out, format: Format) -> i32 {
    eprintln!("segvault: {}: {message}", path.display());
    if format == Format::Json {
        out.json(
            "error",
            &json!({"file": path.to_string_lossy(), "message": message}),
        );
    }
    EXIT_ERROR
}

fn inspect_file(path: &Path, opts: &InspectArgs, out: &mut Out) -> i32 {
    match std::fs::metadata(path) {
        Err(e) => return error(path, &format!("cannot read: {e}"), out, opts.format),
        Ok(m) if m.is_dir() => {
            return error(
                path,
                "expected a file, found a directory (use `segvault verify` for a log directory)",
                out,
                opts.format,
            )
        }
        Ok(m) if !m.is_file() => return error(path, "expected a regular file", out, opts.format),
        Ok(_) => {}
    }
    let kind = file_kind(path);
    let mut worst: Option<Severity> = None;
    let filter_file: Option<PathBuf>;
    let result = {
        let format = opts.format;
        let pmode = if opts.records {
            opts.payload
        } else {
            Payload::None
        };
        let mut only: Option<PathBuf> = None;
        let res = match kind {
            FileKind::Log | FileKind::BatchCheckpoint => {
                let (input, wo) = log_walk(path, kind == FileKind::Log, opts);
                let mut sink = |e: Event<'_>| render(e, format, pmode, &mut worst, out, None);
                check_segment(&input, &wo, &mut sink)
            }
            FileKind::Index | FileKind::TimeIndex | FileKind::TxnIndex => {
                let (input, wo) = index_walk(path, kind);
                let (log, has_log) = (input.log.clone(), !wo.index_only);
                only = Some(path.to_path_buf());
                let only_ref = only.clone();
                let mut sink =
                    |e: Event<'_>| render(e, format, pmode, &mut worst, out, only_ref.as_deref());
                let r = check_segment(&input, &wo, &mut sink);
                if !has_log {
                    let p = Problem {
                        file: path.to_path_buf(),
                        position: None,
                        offset: None,
                        severity: Severity::Note,
                        kind: "no_log",
                        message: format!(
                            "no {} beside this index: entries printed but not cross-checked",
                            log.display()
                        ),
                    };
                    render(Event::Problem(&p), format, pmode, &mut worst, out, None);
                }
                r
            }
            FileKind::Unknown => {
                return error(
                    path,
                    "not a file kind segvault knows: expected a name like 00000000000000000000.log/.index/.timeindex/.txnindex/.snapshot, <offset>-<epoch>.checkpoint, or a broker metadata file name",
                    out,
                    opts.format,
                );
            }
            other => {
                let mut sink = |e: Event<'_>| render(e, format, pmode, &mut worst, out, None);
                check_file(path, other, true, &mut sink)
            }
        };
        filter_file = only;
        res
    };
    let stats = match result {
        Ok(s) => s,
        Err(e) => return error(e.path(), &e.detail().to_string(), out, opts.format),
    };
    summary(path, kind, &stats, filter_file.is_some(), opts.format, out);
    match worst {
        Some(s) if s.is_failure() => EXIT_PROBLEM,
        _ => EXIT_OK,
    }
}

/// What to walk for a `.log` (or a batch-format checkpoint: `is_log` false) and how: every
/// batch, its records when `--records`, seeking with the segment's `.index` for
/// `--from-offset`.
fn log_walk(path: &Path, is_log: bool, opts: &InspectArgs) -> (SegmentInput, WalkOptions) {
    // The ABORT markers are matched against the segment's `.txnindex`: the one beside it,
    // if there is one (a closed segment without it, holding an ABORT, is reported).
    let txnindex = Some(path.with_extension("txnindex")).filter(|t| is_log && t.is_file());
    let input = SegmentInput {
        log: path.to_path_buf(),
        base_offset: if is_log { base_offset_of(path) } else { None },
        index: None,
        timeindex: None,
        txnindex,
        active: is_log && is_active_segment(path),
    };
    let wo = WalkOptions {
        records: if opts.records {
            RecordMode::Emit
        } else {
            RecordMode::Shallow
        },
        emit_batches: true,
        max_bytes: opts.max_bytes,
        from_offset: opts.from_offset,
        decoder: if is_log {
            Decoder::for_file(path)
        } else {
            Decoder::ClusterMetadata
        },
        seek_index: if is_log {
            Some(path.with_extension("index"))
        } else {
            None
        },
        // This thread renders while a helper frames and checks CRCs ahead.
        pipeline: true,
        ..WalkOptions::default()
    };
    (input, wo)
}

/// What to walk for an index file: its entries, cross-checked against the `.log` beside it
/// when there is one (`index_only` when there is none).
fn index_walk(path: &Path, kind: FileKind) -> (SegmentInput, WalkOptions) {
    let log = log_beside(path);
    let has_log = log.is_file();
    let mut input = SegmentInput {
        log: log.clone(),
        base_offset: base_offset_of(path),
        index: None,
        timeindex: None,
        txnindex: None,
        active: has_log && is_active_segment(&log),
    };
    match kind {
        FileKind::Index => input.index = Some(path.to_path_buf()),
        FileKind::TimeIndex => input.timeindex = Some(path.to_path_buf()),
        _ => input.txnindex = Some(path.to_path_buf()),
    }
    let wo = WalkOptions {
        emit_index_entries: true,
        index_only: !has_log,
        ..WalkOptions::default()
    };
    (input, wo)
}

fn summary(
    path: &Path,
    kind: FileKind,
    s: &SegmentStats,
    index: bool,
    format: Format,
    out: &mut Out,
) {
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let (batches, records, bytes, crc) = if index {
        (0, 0, size, 0)
    } else {
        (
            s.data.batches,
            s.data.records,
            s.data.bytes,
            s.data.crc_failures,
        )
    };
    match format {
        Format::Json => {
            let v = json!({
                "file": path.to_string_lossy(), "batches": batches, "records": records, "bytes": bytes,
                "crc_failures": crc, "index_mismatches": s.data.index_mismatches,
                "partial_tail_bytes": s.data.partial_tail_bytes, "problems": s.problems(),
                "corrupt": s.corrupt, "partial": s.partial, "notes": s.notes,
                "dump_log_index_mismatches": s.dump_log_index_mismatches,
                "index_entries": s.index_entries, "index_tail_entries": s.index_tail_entries,
                "first_offset": if index { None } else { s.first_offset },
                "last_offset": if index { None } else { s.last_offset },
                "offset_gaps": if index { 0 } else { s.data.offset_gaps },
            });
            out.json("summary", &v);
        }
        Format::Text => {
            let verdict = if s.corrupt > 0 {
                "CORRUPT"
            } else if s.partial > 0 {
                "PARTIAL"
            } else {
                "ok"
            };
            let body = match kind {
                FileKind::Index | FileKind::TimeIndex | FileKind::TxnIndex => format!(
                    "{} entries, {} preallocated zero entries, {} index mismatches ({} as kafka-dump-log counts)",
                    s.index_entries, s.index_tail_entries, s.data.index_mismatches, s.dump_log_index_mismatches
                ),
                FileKind::Log | FileKind::BatchCheckpoint => format!(
                    "{} batches, {} records, {} bytes, offsets {}, {} CRC failures, {} partial-tail bytes",
                    s.data.batches,
                    s.data.records,
                    s.data.bytes,
                    match (s.first_offset, s.last_offset) {
                        (Some(a), Some(b)) => format!("{a}..={b}"),
                        _ => "none".into(),
                    },
                    s.data.crc_failures,
                    s.data.partial_tail_bytes
                ),
                _ => format!("{} entries", s.data.records),
            };
            out.line(&format!(
                "== {}: {verdict}: {body}; {} problems ({} corrupt, {} partial, {} notes)",
                path.display(),
                s.problems(),
                s.corrupt,
                s.partial,
                s.notes
            ));
        }
    }
}

fn render(
    e: Event<'_>,
    format: Format,
    mode: Payload,
    worst: &mut Option<Severity>,
    out: &mut Out,
    only: Option<&Path>,
) {
    if let Event::Problem(p) = &e {
        if only.is_some_and(|o| o != p.file) {
            return;
        }
        *worst = (*worst).max(Some(p.severity));
    }
    match format {
        Format::Json => render_json(e, mode, out),
        Format::Text => render_text(e, mode, out),
    }
}

/// A record's JSON line, borrowed (keys in the order of the `serde_json::Value` this
/// replaced: `type`, then alphabetical).
#[derive(Serialize)]
struct RecordJson<'a> {
    #[serde(rename = "type")]
    ty: &'static str,
    batch_position: u64,
    control: Option<Value>,
    decoded: Option<Value>,
    file: &'a Path,
    headers: HeadersJson<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<JsonPayload<'a>>,
    key_size: i64,
    offset: i64,
    timestamp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<JsonPayload<'a>>,
    value_size: i64,
}

struct HeadersJson<'a> {
    headers: &'a [(&'a [u8], Option<&'a [u8]>)],
    mode: Payload,
}

#[derive(Serialize)]
struct HeaderJson<'a> {
    key: std::borrow::Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<JsonPayload<'a>>,
}

impl Serialize for HeadersJson<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.headers.iter().map(|(k, v)| HeaderJson {
            key: String::from_utf8_lossy(k),
            value: (self.mode != Payload::None).then_some(JsonPayload {
                bytes: *v,
                mode: self.mode,
            }),
        }))
    }
}

fn record_json<'a>(r: &'a RecordView<'a>, mode: Payload) -> RecordJson<'a> {
    let with_payload = mode != Payload::None;
    RecordJson {
        ty: "record",
        batch_position: r.batch_position,
        control: r.control.as_ref().map(control_json),
        decoded: r.decoded.as_ref().map(internal_json),
        file: r.file,
        headers: HeadersJson {
            headers: &r.headers,
            mode,
        },
        key: with_payload.then_some(JsonPayload { bytes: r.key, mode }),
        key_size: r.key.map_or(-1, |k| k.len() as i64),
        offset: r.offset,
        timestamp: r.timestamp,
        value: with_payload.then_some(JsonPayload {
            bytes: r.value,
            mode,
        }),
        value_size: r.value.map_or(-1, |v| v.len() as i64),
    }
}

fn render_json(e: Event<'_>, mode: Payload, out: &mut Out) {
    match e {
        Event::Batch(b) => out.json("batch", b),
        Event::Record(r) => out.json_line(&record_json(r, mode)),
        Event::IndexEntry(i) => out.json("index_entry", i),
        Event::Problem(p) => out.json("problem", p),
        Event::Info { file, info } => {
            if let Ok(s) = serde_json::to_string(&file_info_json(file, &info)) {
                out.line(&s)
            }
        }
    }
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or("none".into(), |v| v.to_string())
}

/// One line for a problem, marked so it stands out.
pub fn problem_text(p: &Problem) -> String {
    let marker = match p.severity {
        Severity::Corrupt => "!! CORRUPT",
        Severity::Partial => "!! PARTIAL",
        Severity::Note => "-- note",
    };
    let mut where_ = p.file.display().to_string();
    if let Some(pos) = p.position {
        where_.push_str(&format!(" byte {pos}"));
    }
    if let Some(o) = p.offset {
        where_.push_str(&format!(" offset {o}"));
    }
    format!("{marker} [{}] {where_}: {}", p.kind, p.message)
}

/// Appends the text line of a record (without the newline) to `buf`.
fn record_text(r: &RecordView<'_>, mode: Payload, buf: &mut Vec<u8>) {
    let mut n = itoa::Buffer::new();
    buf.extend_from_slice(b"  | offset: ");
    buf.extend_from_slice(n.format(r.offset).as_bytes());
    buf.extend_from_slice(b" timestamp: ");
    match r.timestamp {
        Some(t) => buf.extend_from_slice(n.format(t).as_bytes()),
        None => buf.extend_from_slice(b"none"),
    }
    buf.extend_from_slice(b" keySize: ");
    buf.extend_from_slice(n.format(r.key.map_or(-1, |k| k.len() as i64)).as_bytes());
    buf.extend_from_slice(b" valueSize: ");
    buf.extend_from_slice(n.format(r.value.map_or(-1, |v| v.len() as i64)).as_bytes());
    if !r.headers.is_empty() {
        buf.extend_from_slice(b" headers: [");
        for (i, (k, v)) in r.headers.iter().enumerate() {
            if i > 0 {
                buf.extend_from_slice(b", ");
            }
            push_escaped(buf, k);
            if mode != Payload::None {
                buf.push(b'=');
                push_payload_text(buf, *v, mode);
            }
        }
        buf.push(b']');
    }
    // Writing JSON to a Vec cannot fail (a Value always serializes).
    if let Some(c) = &r.control {
        buf.extend_from_slice(b" control: ");
        let _ = serde_json::to_writer(&mut *buf, &control_json(c));
    } else if let Some(d) = &r.decoded {
        buf.extend_from_slice(b" decoded: ");
        let _ = serde_json::to_writer(&mut *buf, &internal_json(d));
    }
    if mode != Payload::None && r.control.is_none() {
        buf.extend_from_slice(b" key: ");
        push_payload_text(buf, r.key, mode);
        buf.extend_from_slice(b" value: ");
        push_payload_text(buf, r.value, mode);
    }
}

fn render_text(e: Event<'_>, mode: Payload, out: &mut Out) {
    match e {
        Event::Batch(b) => {
            let mut s = format!(
                "baseOffset: {} lastOffset: {} count: {} position: {} size: {} magic: {} codec: {} crc: {:#010x} ({}) ",
                b.base_offset,
                opt(b.last_offset),
                b.records,
                b.position,
                b.size,
                b.magic,
                b.codec,
                b.crc,
                if b.crc_valid { "valid" } else { "INVALID" },
            );
            if b.magic >= 2 {
                s.push_str(&format!(
                    "epoch: {} producer: {}/{} baseSequence: {} transactional: {} control: {} ",
                    opt(b.partition_leader_epoch),
                    b.producer_id,
                    b.producer_epoch,
                    b.base_sequence,
                    b.transactional,
                    b.control
                ));
            }
            s.push_str(&format!("{}: {}", b.timestamp_type, opt(b.max_timestamp)));
            out.line(&s);
        }
        Event::Record(r) => {
            record_text(r, mode, out.buf());
            out.end_line();
        }
        Event::IndexEntry(i) => {
            let s = match i.index {
                "offset" => format!(
                    "offset index entry {}: offset: {} position: {}",
                    i.entry,
                    opt(i.offset),
                    opt(i.position)
                ),
                "time" => format!(
                    "time index entry {}: timestamp: {} offset: {}",
                    i.entry,
                    opt(i.timestamp),
                    opt(i.offset)
                ),
                _ => format!(
                    "txn index entry {}: producerId: {} firstOffset: {} lastOffset: {} lastStableOffset: {}",
                    i.entry,
                    opt(i.producer_id),
                    opt(i.first_offset),
                    opt(i.last_offset),
                    opt(i.last_stable_offset)
                ),
            };
            out.line(&s);
        }
        Event::Problem(p) => out.line(&problem_text(p)),
        Event::Info { file, info } => {
            let mut v = file_info_json(file, &info);
            let ty = v
                .get("type")
                .and_then(|t| t.as_str())
                .unwrap_or("info")
                .to_string();
            if let Some(o) = v.as_object_mut() {
                o.remove("type");
                o.remove("file");
            }
            out.line(&format!("{ty}: {v}"));
        }
    }
}
