//! The command line: argument parsing (clap) and rendering. No logic lives here beyond
//! choosing what to read and how to print it; reading and judging is in [`segvault_core::logdir`]
//! and [`segvault_format`].
//!
//! Exit codes (every subcommand): 0 nothing wrong (notes are fine), 1 an integrity problem
//! (severity `corrupt` or `partial`), 2 a usage or I/O error (missing file, a directory
//! where a file was expected, unreadable). When both happen, 2 wins. A panic would be 101;
//! the tests assert it never happens.

mod agent;
mod archive;
mod inspect;
mod output;
mod render;
mod restore;
mod verify;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// Exit code: nothing wrong.
pub const EXIT_OK: i32 = 0;
/// Exit code: corruption or another integrity problem was found.
pub const EXIT_PROBLEM: i32 = 1;
/// Exit code: usage or I/O error.
pub const EXIT_ERROR: i32 = 2;

const ABOUT: &str =
    "Verify, inspect, archive and restore Apache Kafka log directories, reading the broker's files directly";

const LONG_ABOUT: &str = "\
segvault reads a Kafka broker's log directories directly (no Kafka protocol, no JVM).

Exit codes: 0 = clean (notes are information only), 1 = corruption or an integrity problem
was found, 2 = usage or I/O error (missing file, directory where a file was expected).";

#[derive(Debug, Parser)]
#[command(name = "segvault", version, about = ABOUT, long_about = LONG_ABOUT)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print what a Kafka file holds: batches, records, index entries, snapshots, checkpoints.
    #[command(long_about = inspect::LONG_HELP)]
    Inspect(InspectArgs),
    /// Check whole broker log directories: every CRC, index, snapshot and metadata file.
    #[command(long_about = verify::LONG_HELP)]
    Verify(VerifyArgs),
    /// Archive closed, committed segments to object storage (one pass with --once).
    #[command(long_about = archive::LONG_HELP)]
    Archive(ArchiveArgs),
    /// Run continuously: archive on file events and a periodic rescan, serve metrics.
    #[command(long_about = agent::LONG_HELP, after_long_help = agent::AFTER_HELP)]
    Agent(agent::AgentArgs),
    /// Show what an archive holds: clusters, brokers, topics, partitions, ranges, gaps.
    #[command(long_about = restore::LS_HELP)]
    Ls(LsArgs),
    /// Rebuild a broker log dir from the archive (bare-metal or into a new cluster).
    #[command(long_about = restore::RESTORE_HELP)]
    Restore(RestoreArgs),
}

#[derive(Debug, clap::Args)]
struct LsArgs {
    /// The archive: file:///path, s3://bucket/prefix, gs://bucket/prefix, az://container/prefix.
    #[arg(value_name = "STORE", env = "SEGVAULT_STORE")]
    store: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Debug, clap::Args)]
struct RestoreArgs {
    /// The archive: file:///path, s3://bucket/prefix, gs://bucket/prefix, az://container/prefix.
    #[arg(value_name = "STORE", env = "SEGVAULT_STORE")]
    store: String,
    /// The broker log dir to write (a `log.dirs` entry; created if missing).
    #[arg(long, value_name = "LOGDIR")]
    to: PathBuf,
    /// bare-metal: the same broker rejoins its cluster; new-cluster: into topics created anew.
    #[arg(long, value_enum, default_value_t = segvault_core::restore::plan::Mode::BareMetal)]
    mode: segvault_core::restore::plan::Mode,
    /// The archived cluster id (needed when the archive holds several).
    #[arg(long, value_name = "ID")]
    cluster: Option<String>,
    /// Bare-metal: the node id to rebuild (needed when the archive holds several).
    #[arg(long, value_name = "N")]
    node: Option<i32>,
    /// Only topics matching this regular expression.
    #[arg(long, value_name = "REGEX")]
    topic: Option<String>,
    /// Only this partition number.
    #[arg(long, value_name = "N")]
    partition: Option<i32>,
    /// Keep only batches whose offsets are all below N.
    #[arg(long, value_name = "N", conflicts_with = "until_time")]
    until_offset: Option<i64>,
    /// Keep only batches whose records are all older than T (ms since the epoch or RFC 3339).
    #[arg(long, value_name = "T")]
    until_time: Option<String>,
    /// New-cluster: the topic id to write (default: the target's partition.metadata).
    #[arg(long, value_name = "UUID")]
    topic_id: Option<String>,
    /// Print the plan; write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Replace partitions that already hold data, and a differing meta.properties.
    #[arg(long)]
    force: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, each with a "type" field.
    Json,
}

/// How keys, values and header values are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Payload {
    /// Leave them out (sizes are still shown).
    None,
    /// As UTF-8 text (invalid bytes replaced by U+FFFD).
    Utf8,
    /// As lower-case hex.
    Hex,
    /// As standard base64.
    Base64,
}

#[derive(Debug, clap::Args)]
struct InspectArgs {
    /// Go down to every record (decompressing; legacy wrapper messages expanded).
    #[arg(long)]
    records: bool,
    /// How to show keys and values (with --records).
    #[arg(long, value_enum, default_value_t = Payload::Utf8)]
    payload: Payload,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Stop reading a .log after this many bytes (like kafka-dump-log --max-bytes).
    #[arg(long, value_name = "N")]
    max_bytes: Option<u64>,
    /// Skip batches whose last offset is below N (seeks with the segment's .index).
    #[arg(long, value_name = "N")]
    from_offset: Option<i64>,
    /// Files to inspect: .log, .index, .timeindex, .txnindex, .snapshot, KRaft .checkpoint,
    /// bootstrap.checkpoint, offset checkpoints, leader-epoch-checkpoint, partition.metadata,
    /// meta.properties, quorum-state, .kafka_cleanshutdown.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct VerifyArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Check batch headers and CRCs only; do not decompress and validate every record
    /// (record counts are then the batch headers' counts, legacy wrappers count 1).
    #[arg(long)]
    shallow: bool,
    /// Broker log directories (each a `log.dirs` entry holding <topic>-<partition> dirs).
    #[arg(required = true, value_name = "LOGDIR")]
    log_dirs: Vec<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct ArchiveArgs {
    /// Make one pass and exit (the long-running agent is `segvault agent`).
    #[arg(long, required = true)]
    once: bool,
    /// A broker log dir (a `log.dirs` entry); repeatable.
    #[arg(long = "log-dir", required = true, value_name = "DIR")]
    log_dirs: Vec<PathBuf>,
    /// Where to archive: file:///path, s3://bucket/prefix, gs://bucket/prefix, az://container/prefix.
    #[arg(long, value_name = "URL", env = "SEGVAULT_STORE")]
    store: String,
    /// Compress .log data with zstd at this level, in independently decompressible frames.
    #[arg(long, value_name = "LEVEL")]
    zstd: Option<i32>,
    /// With --zstd: uncompressed bytes per independently decompressible frame, the unit a
    /// reader fetches with one ranged GET.
    #[arg(long, value_name = "BYTES", default_value_t = 4 << 20)]
    zstd_frame_bytes: u64,
    /// Partitions archived at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Upload rate limit, bytes per second.
    #[arg(long, value_name = "BYTES_PER_SEC")]
    rate_limit: Option<u64>,
    /// Seconds the archive must have stood still at offsets this broker no longer has before
    /// they are recorded as a gap (other replicas may still have them).
    #[arg(long, default_value_t = 600, value_name = "SECS")]
    gap_after: u64,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

/// Parses the arguments of the process, runs the command and returns the exit code.
pub fn run() -> i32 {
    run_with(std::env::args_os())
}

/// Like [`run`] with explicit arguments (the first is the program name).
pub fn run_with<I, T>(args: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_ERROR } else { EXIT_OK };
            let _ = e.print();
            return code;
        }
    };
    match cli.command {
        Command::Inspect(a) => inspect::run(inspect::Options {
            records: a.records,
            payload: a.payload,
            format: a.format,
            max_bytes: a.max_bytes,
            from_offset: a.from_offset,
            files: a.files,
        }),
        Command::Verify(a) => verify::run(verify::Options {
            format: a.format,
            shallow: a.shallow,
            log_dirs: a.log_dirs,
        }),
        Command::Archive(a) => archive::run(archive::Options {
            log_dirs: a.log_dirs,
            store: a.store,
            zstd: a.zstd,
            zstd_frame_bytes: a.zstd_frame_bytes,
            concurrency: a.concurrency,
            rate_limit: a.rate_limit,
            gap_after_secs: a.gap_after,
            format: a.format,
        }),
        Command::Agent(a) => agent::run(a),
        Command::Ls(a) => restore::ls(restore::LsOptions {
            store: a.store,
            format: a.format,
        }),
        Command::Restore(a) => restore::restore(restore::RestoreOptions {
            store: a.store,
            to: a.to,
            mode: a.mode,
            cluster: a.cluster,
            node: a.node,
            topic: a.topic,
            partition: a.partition,
            until_offset: a.until_offset,
            until_time: a.until_time,
            topic_id: a.topic_id,
            dry_run: a.dry_run,
            force: a.force,
            format: a.format,
        }),
    }
}
