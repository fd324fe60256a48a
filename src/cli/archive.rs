//! `segvault archive --once`: one archive pass, for cron and tests.

use super::{Format, EXIT_ERROR, EXIT_OK, EXIT_PROBLEM};
use segvault_core::archive::{self, Outcome, Report, Store};
use std::path::PathBuf;
use std::time::Duration;

pub const LONG_HELP: &str = "\
Copy every closed, committed segment of broker log dirs to object storage, once.

A segment is archived when a later segment exists and that segment's base offset is at or
below the partition's high watermark (replication-offset-checkpoint), so a follower's
truncation can never change it. Each segment's CRCs are verified first; a corrupt segment is
never uploaded: it is reported (exit 1) and recorded under corrupt/ in the archive.

Each offset range is stored once, even when agents on several brokers archive replicas of the
same partition: manifests are claimed with conditional creates, and a replica whose batches
differ from the archived copy is recorded under divergence/ (exit 1).

The broker keeps working while a pass runs: a segment that retention or the log cleaner
renames away is still read under its .deleted name; one the cleaner merged with its successors
is not published under the old range, and the next pass archives the replacement (reported as
`changed`, exit 0). Nothing is ever written to the log dirs.

Store URLs: file:///path (or a plain path), s3://bucket/prefix, gs://bucket/prefix,
az://container/prefix. Credentials come from the standard environment (AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL and AWS_ALLOW_HTTP=true for an
S3-compatible server on http; GOOGLE_*; AZURE_*).

Examples:
  segvault archive --once --log-dir /var/lib/kafka/data --store file:///backup/kafka
  segvault archive --once --log-dir /data/k1 --log-dir /data/k2 --store s3://bucket/kafka --zstd 3

Exit codes: 0 archived (or nothing to do), 1 corrupt segments or divergent replicas found,
2 usage, I/O or store error.";

/// `segvault archive --once`: its flags (the field docs are the help text).
#[derive(Debug, clap::Args)]
pub struct ArchiveArgs {
    /// Make one pass and exit (the long-running agent is `segvault agent`).
    #[arg(long, required = true)]
    pub once: bool,
    /// A broker log dir (a `log.dirs` entry); repeatable.
    #[arg(long = "log-dir", required = true, value_name = "DIR")]
    pub log_dirs: Vec<PathBuf>,
    /// Where to archive: file:///path, s3://bucket/prefix, gs://bucket/prefix, az://container/prefix.
    #[arg(long, value_name = "URL", env = "SEGVAULT_STORE")]
    pub store: String,
    /// Compress .log data with zstd at this level, in independently decompressible frames.
    #[arg(long, value_name = "LEVEL")]
    pub zstd: Option<i32>,
    /// With --zstd: uncompressed bytes per independently decompressible frame, the unit a
    /// reader fetches with one ranged GET.
    #[arg(long, value_name = "BYTES", default_value_t = 4 << 20)]
    pub zstd_frame_bytes: u64,
    /// Partitions archived at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Upload rate limit, bytes per second.
    #[arg(long, value_name = "BYTES_PER_SEC")]
    pub rate_limit: Option<u64>,
    /// Seconds the archive must have stood still at offsets this broker no longer has before
    /// they are recorded as a gap (other replicas may still have them).
    #[arg(long, default_value_t = 600, value_name = "SECS")]
    pub gap_after: u64,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

pub fn run(o: ArchiveArgs) -> i32 {
    let store = match archive::open(&o.store) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("segvault archive: {e}");
            return EXIT_ERROR;
        }
    };
    let opts = archive::PassOptions {
        zstd_level: o.zstd,
        frame_bytes: o.zstd_frame_bytes.max(1),
        concurrency: o.concurrency,
        rate_limit: o.rate_limit,
        gap_after: Duration::from_secs(o.gap_after),
        on_published: None,
        memory: None,
    };
    let Some(rt) = super::runtime("archive") else {
        return EXIT_ERROR;
    };
    let report = match rt.block_on(archive::archive_once(&store, &o.log_dirs, &opts)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("segvault archive: {e}");
            return EXIT_ERROR;
        }
    };
    match o.format {
        Format::Json => print_json(&report, &store),
        Format::Text => print_text(&report, &store),
    }
    if !report.failures.is_empty() {
        eprintln!(
            "segvault archive: {} partitions could not be archived (the others were): {}",
            report.failures.len(),
            report
                .failures
                .iter()
                .map(|f| format!("{}: {}", f.partition, f.error))
                .collect::<Vec<_>>()
                .join("; ")
        );
        EXIT_ERROR
    } else if report.corrupt > 0 || report.divergences > 0 {
        EXIT_PROBLEM
    } else {
        EXIT_OK
    }
}

/// The report as JSON lines: one per partition, one per failure, the totals.
fn print_json(report: &Report, store: &Store) {
    for p in &report.partitions {
        println!("{}", serde_json::json!({"type": "partition", "report": p}));
    }
    for f in &report.failures {
        println!("{}", serde_json::json!({"type": "failure", "failure": f}));
    }
    println!(
        "{}",
        serde_json::json!({"type": "total", "uploaded_segments": report.uploaded_segments,
            "uploaded_bytes": report.uploaded_bytes, "gaps": report.gaps, "corrupt": report.corrupt,
            "divergences": report.divergences, "changed": report.changed,
            "renamed_segments": report.renamed_segments,
            "unarchived_segments": report.unarchived_segments,
            "unarchived_committed_segments": report.unarchived_committed_segments,
            "failures": report.failures.len(),
            "store": store.url})
    );
}

/// The report as text: a line per outcome and skipped partition, the totals, the failures.
fn print_text(report: &Report, store: &Store) {
    for p in &report.partitions {
        for out in &p.outcomes {
            let tp = format!("{}-{}", p.topic, p.partition);
            print_outcome(&tp, out);
        }
        if let Some(reason) = &p.skipped {
            println!("skipped   {}-{}: {reason}", p.topic, p.partition);
        }
    }
    println!(
        "{} segments, {} bytes uploaded to {}; {} gaps, {} corrupt, {} divergences",
        report.uploaded_segments,
        report.uploaded_bytes,
        store.url,
        report.gaps,
        report.corrupt,
        report.divergences
    );
    for f in &report.failures {
        println!("FAILED    {}: {}; not archived", f.partition, f.error);
    }
    if report.changed > 0 {
        println!(
            "{} partitions changed under the pass (the broker's log cleaner or retention \
             replaced a segment): their ranges from there on were left for the next pass",
            report.changed
        );
    }
    if report.unarchived_committed_segments > 0 {
        println!(
            "{} closed, committed segments are not archived yet: a later pass archives \
             them, or, once --gap-after has passed, records the offsets before them \
             that no replica has any more as a gap",
            report.unarchived_committed_segments
        );
    }
}

/// One outcome's line of the text report.
fn print_outcome(tp: &str, out: &Outcome) {
    let meaning = out.meaning();
    match out {
        Outcome::Uploaded {
            start,
            next,
            bytes,
            renamed,
            ..
        } => println!(
            "{meaning}  {tp} [{start}, {next}) {bytes} bytes{}",
            if *renamed {
                format!(" ({})", Outcome::RENAMED)
            } else {
                String::new()
            }
        ),
        Outcome::ClaimedByOther {
            start,
            next,
            divergent,
        } => {
            println!(
                "replica   {tp} [{start}, {next}) {meaning}{}",
                if *divergent { ", DIVERGENT" } else { "" }
            )
        }
        Outcome::Gap { start, next } => {
            println!("GAP       {tp} [{start}, {next}): {meaning}")
        }
        Outcome::Corrupt {
            base,
            position,
            offset,
            message,
        } => {
            println!("CORRUPT   {tp} segment {base} at byte {position} (offset {offset:?}): {message}; {meaning}")
        }
        Outcome::Divergent { start, message } => {
            println!("DIVERGENT {tp} at {start}: {message}")
        }
        Outcome::Changed { base, message } => {
            println!("changed   {tp} segment {base}: {message}")
        }
    }
}
