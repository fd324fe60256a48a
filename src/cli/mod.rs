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
    Inspect(inspect::InspectArgs),
    /// Check whole broker log directories: every CRC, index, snapshot and metadata file.
    #[command(long_about = verify::LONG_HELP)]
    Verify(verify::VerifyArgs),
    /// Archive closed, committed segments to object storage (one pass with --once).
    #[command(long_about = archive::LONG_HELP)]
    Archive(archive::ArchiveArgs),
    /// Run continuously: archive on file events and a periodic rescan, serve metrics.
    #[command(long_about = agent::LONG_HELP, after_long_help = agent::AFTER_HELP)]
    Agent(agent::AgentArgs),
    /// Show what an archive holds: clusters, brokers, topics, partitions, ranges, gaps.
    #[command(long_about = restore::LS_HELP)]
    Ls(restore::LsArgs),
    /// Rebuild a broker log dir from the archive (bare-metal or into a new cluster).
    #[command(long_about = restore::RESTORE_HELP)]
    Restore(restore::RestoreArgs),
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

/// The async runtime of a subcommand (two workers); `None` after saying why on stderr.
pub(crate) fn runtime(cmd: &str) -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("segvault {cmd}: cannot start the async runtime: {e}");
            None
        }
    }
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
        Command::Inspect(a) => inspect::run(a),
        Command::Verify(a) => verify::run(a),
        Command::Archive(a) => archive::run(a),
        Command::Agent(a) => agent::run(a),
        Command::Ls(a) => restore::ls(a),
        Command::Restore(a) => restore::restore(a),
    }
}
