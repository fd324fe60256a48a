//! `segvault verify`: whole log directories, in parallel, with a progress bar on a terminal.

use std::io::IsTerminal;
use std::path::PathBuf;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

use super::inspect::problem_text;
use super::output::Out;
use super::{Format, EXIT_ERROR, EXIT_OK, EXIT_PROBLEM};
use segvault_core::logdir::check::RecordMode;
use segvault_core::logdir::verify::{verify_listing, LogDirReport, Totals, VerifyOptions};
use segvault_core::logdir::{scan, LogDirListing};

pub const LONG_HELP: &str = "\
Check whole broker log directories (each a log.dirs entry): every partition including
__consumer_offsets, __transaction_state and __cluster_metadata; every segment's batch CRCs,
framing, offset order and records (decompressed); .index, .timeindex and .txnindex against
their .log; producer .snapshot CRCs; KRaft .checkpoint snapshots; partition.metadata,
leader-epoch-checkpoint, meta.properties and the root offset checkpoints.

Work is spread over all cores. A progress bar is shown on stderr when it is a terminal.

What counts as what:
  corrupt   data a broker would reject, truncate or serve wrongly (exit code 1)
  partial   an incomplete batch at the end of a CLOSED segment (exit code 1)
  note      information: a partial tail of the ACTIVE segment (a live broker's copy looks
            like that; recovery truncates it), zero-filled preallocated index tails,
            kafka-dump-log-only index mismatches, missing optional files (exit code 0)
  skipped   transient entries the broker deletes or ignores at startup: *.deleted,
            *.cleaned, *.swap, *.tmp files; -delete, -future, -stray directories; and
            directory names that are not <topic>-<partition> (those also count as corrupt:
            a broker refuses to load such a log dir)
Offset gaps (a batch starting above the previous last offset + 1) are counted, not
reported: compaction and transaction markers create them. Overlaps are corruption.

Not detectable by design: a changed PartitionLeaderEpoch (outside the batch CRC; the broker
rewrites it without recomputing the CRC), and a raised base offset in the last batch of a
log when no index entry names it (it looks like a compaction gap).

Examples:
  segvault verify /var/lib/kafka/data
  segvault verify --format json /data/kafka-1 /data/kafka-2 | jq 'select(.type==\"problem\")'
  segvault verify --shallow /var/lib/kafka/data     # headers and CRCs only, faster

JSON lines (--format json), each with \"type\": partition, problem, skipped, log_dir,
total (last).

Exit codes: 0 clean (notes only), 1 corrupt or partial data found, 2 usage or I/O error.";

/// The arguments of `segvault verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Check batch headers and CRCs only; do not decompress and validate every record
    /// (record counts are then the batch headers' counts, legacy wrappers count 1).
    #[arg(long)]
    pub shallow: bool,
    /// Broker log directories (each a `log.dirs` entry holding <topic>-<partition> dirs).
    #[arg(required = true, value_name = "LOGDIR")]
    pub log_dirs: Vec<PathBuf>,
}

pub fn run(opts: VerifyArgs) -> i32 {
    let mut out = Out::new();
    let mut code = EXIT_OK;
    // Scan everything first (cheap), so the progress bar knows the total.
    let mut listings: Vec<LogDirListing> = Vec::new();
    for d in &opts.log_dirs {
        match scan(d) {
            Ok(l) => {
                if l.partitions.is_empty() && l.meta_properties.is_none() && l.skipped.is_empty() {
                    eprintln!(
                        "segvault: {}: expected a broker log directory (holding <topic>-<partition> directories or meta.properties), found neither",
                        d.display()
                    );
                    if opts.format == Format::Json {
                        out.json(
                            "error",
                            &json!({"log_dir": d.to_string_lossy(), "message": "not a broker log directory"}),
                        );
                    }
                    code = EXIT_ERROR;
                    continue;
                }
                listings.push(l)
            }
            Err(e) => {
                eprintln!("segvault: {e}");
                if opts.format == Format::Json {
                    out.json(
                        "error",
                        &json!({"log_dir": d.to_string_lossy(), "message": e.to_string()}),
                    );
                }
                code = EXIT_ERROR;
            }
        }
    }
    let total_bytes: u64 = listings
        .iter()
        .flat_map(|l| l.partitions.iter())
        .flat_map(|p| p.segments.iter())
        .filter_map(|s| std::fs::metadata(&s.log).ok())
        .map(|m| m.len())
        .sum();
    let pb = if std::io::stderr().is_terminal() {
        let pb = ProgressBar::with_draw_target(Some(total_bytes), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(
            "{spinner} verifying [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        ) {
            pb.set_style(style.progress_chars("=> "));
        }
        pb
    } else {
        ProgressBar::hidden()
    };
    let vo = VerifyOptions {
        records: if opts.shallow {
            RecordMode::Shallow
        } else {
            RecordMode::Count
        },
    };
    let mut grand = Totals::default();
    let mut reports = Vec::new();
    for l in &listings {
        let progress = |n: u64| pb.inc(n);
        let report = verify_listing(l, vo, &progress);
        grand.add(&report.totals);
        reports.push(report);
    }
    pb.finish_and_clear();
    for (l, r) in listings.iter().zip(&reports) {
        match opts.format {
            Format::Json => json_report(l, r, &mut out),
            Format::Text => text_report(l, r, &mut out),
        }
    }
    match opts.format {
        Format::Json => {
            let mut v = serde_json::to_value(&grand).unwrap_or_default();
            v["log_dirs"] = json!(reports.len());
            v["ok"] = json!(!grand.failed());
            out.json("total", &v);
        }
        Format::Text => {
            out.line(&format!(
                "total: {} log dirs, {}; {}",
                reports.len(),
                totals_text(&grand),
                if grand.failed() {
                    "PROBLEMS FOUND"
                } else {
                    "ok"
                }
            ));
        }
    }
    if grand.failed() {
        code = code.max(EXIT_PROBLEM);
        eprintln!(
            "segvault: {} corrupt and {} partial problems found",
            grand.corrupt, grand.partial
        );
    }
    if out.finish() {
        code = EXIT_ERROR;
    }
    code
}

fn totals_text(t: &Totals) -> String {
    format!(
        "{} partitions, {} segments, {} batches, {} records, {} bytes, {} CRC failures, {} index mismatches, {} offset gaps, {} corrupt, {} partial, {} notes, {} skipped",
        t.partitions, t.segments, t.data.batches, t.data.records, t.data.bytes, t.data.crc_failures, t.data.index_mismatches, t.data.offset_gaps, t.corrupt, t.partial, t.notes, t.skipped
    )
}

fn json_report(l: &LogDirListing, r: &LogDirReport, out: &mut Out) {
    for p in &r.partitions {
        let mut v = serde_json::to_value(p).unwrap_or_default();
        v["log_dir"] = json!(r.path.to_string_lossy());
        out.json("partition", &v);
        for pr in &p.problems {
            out.json("problem", pr);
        }
    }
    for pr in &r.problems {
        out.json("problem", pr);
    }
    for s in &r.skipped {
        out.json(
            "skipped",
            &json!({"log_dir": r.path.to_string_lossy(), "path": s.path.to_string_lossy(), "reason": s.reason}),
        );
    }
    let mut v = serde_json::to_value(&r.totals).unwrap_or_default();
    v["path"] = json!(r.path.to_string_lossy());
    v["clean_shutdown"] = json!(l.clean_shutdown);
    v["locked_hint"] = json!(l.locked_hint);
    if let Some(Ok(m)) = &l.meta_properties {
        v["cluster_id"] = json!(m.cluster_id);
        v["node_id"] = json!(m.node_id);
    }
    out.json("log_dir", &v);
}

fn text_report(l: &LogDirListing, r: &LogDirReport, out: &mut Out) {
    let mut head = format!("{}", r.path.display());
    if let Some(Ok(m)) = &l.meta_properties {
        head.push_str(&format!(
            " (cluster.id {}, node.id {}",
            m.cluster_id.as_deref().unwrap_or("none"),
            m.node_id.map_or("none".into(), |n| n.to_string())
        ));
        head.push_str(&format!(
            ", clean shutdown marker: {}{})",
            if l.clean_shutdown { "yes" } else { "no" },
            if l.locked_hint { ", .lock present" } else { "" }
        ));
    }
    out.line(&head);
    let width = r
        .partitions
        .iter()
        .map(|p| p.topic.len() + 6)
        .max()
        .unwrap_or(10);
    for p in &r.partitions {
        let t = &p.totals;
        let name = format!("{}-{}", p.topic, p.partition);
        let verdict = if t.corrupt > 0 {
            "CORRUPT"
        } else if t.partial > 0 {
            "PARTIAL"
        } else {
            "ok"
        };
        out.line(&format!(
            "  {name:<width$} {verdict:<7} segments {:>3}  batches {:>7}  records {:>9}  bytes {:>11}  crc-fail {}  idx-mismatch {}  gaps {}  offsets {}",
            t.segments,
            t.data.batches,
            t.data.records,
            t.data.bytes,
            t.data.crc_failures,
            t.data.index_mismatches,
            t.data.offset_gaps,
            match (p.first_offset, p.last_offset) {
                (Some(a), Some(b)) => format!("{a}..={b}"),
                _ => "none".into(),
            }
        ));
        for pr in &p.problems {
            out.line(&format!("    {}", problem_text(pr)));
        }
    }
    for pr in &r.problems {
        out.line(&format!("  {}", problem_text(pr)));
    }
    for s in &r.skipped {
        out.line(&format!("  skipped {}: {}", s.path.display(), s.reason));
    }
    out.line(&format!("  {}", totals_text(&r.totals)));
}
