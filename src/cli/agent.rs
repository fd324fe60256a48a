//! `segvault agent`: the long-running archiver. Merges flags, environment and the TOML
//! config file (in that order of precedence), sets up logging, and runs
//! [`segvault_core::archive::agent`].

use super::{Format, EXIT_ERROR, EXIT_OK};
use segvault_core::archive::agent::{self, Config};
use segvault_core::archive::PassOptions;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub const LONG_HELP: &str = "\
Run continuously next to a broker: archive every closed, committed segment of its log dirs
as it appears (the same passes as `segvault archive --once`), serve Prometheus metrics, and
stop cleanly on SIGTERM or SIGINT.

Every log dir is watched (inotify, recursive): a segment roll, a checkpoint update or a
deletion schedules a pass after a short debounce, and a full rescan runs every
--rescan-interval seconds in case events were lost. Passes never overlap. A failed pass
(store unreachable, throttled, ...) is logged and counted, and retried at the next trigger;
the agent does not exit. All archive state is in the store: restarting, or killing the agent
at any moment, loses nothing and stores nothing twice.

Startup checks (exit 2 with a message naming the path or URL): every log dir is a readable
broker log dir (with meta.properties), the store answers a LIST of its root with the
credentials given, the metrics address can be bound.

Shutdown: on SIGTERM or SIGINT no new pass starts; a pass in flight may finish for up to
--grace-period seconds, then it is abandoned (a range without its manifest is never visible
as archived; the next run redoes it). A second signal abandons it at once. Exit 0.

Every option can be given as a flag, as an environment variable, or in the config file
(--config); flags override the environment, which overrides the file.

Logs go to stderr, one line per archived segment, gap, corrupt segment, divergence or failed
pass (--log-format json for one JSON object per line). RUST_LOG overrides the level filter
(default: info).

HTTP (--metrics-addr, default 127.0.0.1:9464; `off` disables):
  GET /metrics   Prometheus text format
  GET /healthz   200 \"ok\" while passes succeed; 503 \"starting\" before the first, and
                 503 \"unhealthy: ...\" after --unhealthy-after-failures failed passes in a
                 row or when the last successful pass is older than --unhealthy-after
                 seconds (a pass fails if any partition could not be archived)";

pub const AFTER_HELP: &str = "\
Metrics (counters are since the agent started; the lag gauges are read off the log dirs
after every pass, failed or not):
  segvault_uploaded_bytes_total          bytes stored for archived segments (after compression)
  segvault_uploaded_segments_total       segment ranges archived (manifests this agent created),
                                         counted as each is published
  segvault_pass_failures_total           passes that ended with an error
  segvault_corrupt_segments_total        distinct segments refused by verification
  segvault_divergences_total             distinct ranges where a replica differs from the archive
  segvault_gaps_total                    ranges recorded as gaps (offsets no replica had)
  segvault_passes_total                  passes finished, successful or not
  segvault_checkpoint_rewrites_ignored_total
                                         checkpoint rewrites that committed no waiting segment
                                         (no pass was started for them)
  segvault_archive_lag_segments          closed segments not yet archived, committed or not
  segvault_archive_lag_seconds           seconds since the last pass that left no closed
                                         committed segment unarchived; 0 when caught up
  segvault_oldest_unarchived_segment_age_seconds
                                         now - .log mtime of the oldest closed segment not yet
                                         archived; 0 if none
  segvault_last_pass_timestamp_seconds   unix time the last successful pass finished
  segvault_consecutive_failed_passes     passes failed in a row since the last successful one

Config file (TOML; every key optional, same meaning as the flag):
  log_dirs = [\"/var/lib/kafka/data-1\", \"/var/lib/kafka/data-2\"]
  store = \"s3://my-bucket/kafka-archive\"
  zstd = 3                       # compress .log data; omit for none
  zstd_frame_bytes = 4194304     # uncompressed bytes per zstd frame (one ranged GET)
  concurrency = 4
  rate_limit = 50000000          # bytes per second
  gap_after = 600                # seconds
  rescan_interval = 60           # seconds
  debounce_ms = 1000
  metrics_addr = \"0.0.0.0:9464\"  # or \"off\"
  log_format = \"json\"            # or \"text\"
  grace_period = 30              # seconds
  unhealthy_after_failures = 3
  unhealthy_after = 600          # seconds

Environment: SEGVAULT_CONFIG, SEGVAULT_LOG_DIRS (comma-separated), SEGVAULT_STORE,
SEGVAULT_ZSTD, SEGVAULT_CONCURRENCY, SEGVAULT_RATE_LIMIT, SEGVAULT_GAP_AFTER,
SEGVAULT_RESCAN_INTERVAL, SEGVAULT_DEBOUNCE_MS, SEGVAULT_METRICS_ADDR, SEGVAULT_LOG_FORMAT,
SEGVAULT_GRACE_PERIOD, SEGVAULT_UNHEALTHY_AFTER_FAILURES, SEGVAULT_UNHEALTHY_AFTER; store credentials as for `segvault archive` (AWS_*, GOOGLE_*, AZURE_*).

Examples:
  segvault agent --config /etc/segvault/agent.toml
  segvault agent --log-dir /var/lib/kafka/data --store s3://bucket/kafka --zstd 3
  SEGVAULT_STORE=file:///backup/kafka segvault agent --log-dir /data/k1 --metrics-addr off

Exit codes: 0 stopped cleanly after SIGTERM/SIGINT, 2 usage, configuration or startup error.";

#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    /// TOML config file (see below); flags and environment variables override it.
    #[arg(long, value_name = "FILE", env = "SEGVAULT_CONFIG")]
    config: Option<PathBuf>,
    /// A broker log dir (a `log.dirs` entry); repeatable.
    #[arg(
        long = "log-dir",
        value_name = "DIR",
        env = "SEGVAULT_LOG_DIRS",
        value_delimiter = ','
    )]
    log_dirs: Vec<PathBuf>,
    /// Where to archive: file:///path, s3://bucket/prefix, gs://bucket/prefix, az://container/prefix.
    #[arg(long, value_name = "URL", env = "SEGVAULT_STORE")]
    store: Option<String>,
    /// Compress .log data with zstd at this level, in independently decompressible frames.
    #[arg(long, value_name = "LEVEL", env = "SEGVAULT_ZSTD")]
    zstd: Option<i32>,
    /// With --zstd: uncompressed bytes per independently decompressible frame, the unit a
    /// reader fetches with one ranged GET [default: 4194304].
    #[arg(long, value_name = "BYTES", env = "SEGVAULT_ZSTD_FRAME_BYTES")]
    zstd_frame_bytes: Option<u64>,
    /// Partitions archived at once [default: 4].
    #[arg(long, value_name = "N", env = "SEGVAULT_CONCURRENCY")]
    concurrency: Option<usize>,
    /// Upload rate limit, bytes per second [default: none].
    #[arg(long, value_name = "BYTES_PER_SEC", env = "SEGVAULT_RATE_LIMIT")]
    rate_limit: Option<u64>,
    /// Seconds the archive must have stood still at offsets this broker no longer has before
    /// they are recorded as a gap [default: 600].
    #[arg(long, value_name = "SECS", env = "SEGVAULT_GAP_AFTER")]
    gap_after: Option<u64>,
    /// Seconds between full rescans, whatever the file events [default: 60].
    #[arg(long, value_name = "SECS", env = "SEGVAULT_RESCAN_INTERVAL")]
    rescan_interval: Option<f64>,
    /// Milliseconds between a file event and the pass it triggers [default: 1000].
    #[arg(long, value_name = "MS", env = "SEGVAULT_DEBOUNCE_MS")]
    debounce_ms: Option<u64>,
    /// Address for /metrics and /healthz, or `off` [default: 127.0.0.1:9464].
    #[arg(long, value_name = "ADDR|off", env = "SEGVAULT_METRICS_ADDR")]
    metrics_addr: Option<String>,
    /// Log format [default: text].
    #[arg(long, value_enum, env = "SEGVAULT_LOG_FORMAT")]
    log_format: Option<Format>,
    /// Seconds an in-flight pass may run on after SIGTERM/SIGINT [default: 30].
    #[arg(long, value_name = "SECS", env = "SEGVAULT_GRACE_PERIOD")]
    grace_period: Option<f64>,
    /// /healthz answers 503 after this many passes failed in a row [default: 3].
    #[arg(long, value_name = "N", env = "SEGVAULT_UNHEALTHY_AFTER_FAILURES")]
    unhealthy_after_failures: Option<u64>,
    /// /healthz answers 503 when the last successful pass (or, before one, the start) is
    /// older than this many seconds [default: 600].
    #[arg(long, value_name = "SECS", env = "SEGVAULT_UNHEALTHY_AFTER")]
    unhealthy_after: Option<f64>,
}

/// The config file: the same options as the flags.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    log_dirs: Option<Vec<PathBuf>>,
    store: Option<String>,
    zstd: Option<i32>,
    zstd_frame_bytes: Option<u64>,
    concurrency: Option<usize>,
    rate_limit: Option<u64>,
    gap_after: Option<u64>,
    rescan_interval: Option<f64>,
    debounce_ms: Option<u64>,
    metrics_addr: Option<String>,
    log_format: Option<String>,
    grace_period: Option<f64>,
    unhealthy_after_failures: Option<u64>,
    unhealthy_after: Option<f64>,
}

fn secs(what: &str, v: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(v)
        .map_err(|_| format!("{what}: expected a non-negative number of seconds, got {v}"))
}

/// Merges flags (and environment, which clap has already folded into them) over the file.
fn merge(a: AgentArgs) -> Result<(Config, Format), String> {
    let f: FileConfig = match &a.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("config file {}: {e}", path.display()))?;
            toml::from_str(&text).map_err(|e| format!("config file {}: {e}", path.display()))?
        }
        None => FileConfig::default(),
    };
    let log_dirs = if a.log_dirs.is_empty() {
        f.log_dirs.unwrap_or_default()
    } else {
        a.log_dirs
    };
    if log_dirs.is_empty() {
        return Err("no log dir: give --log-dir DIR (repeatable), SEGVAULT_LOG_DIRS, or log_dirs in --config".into());
    }
    let store = a
        .store
        .or(f.store)
        .ok_or("no store: give --store URL, SEGVAULT_STORE, or store in --config")?;
    let log_format = match (a.log_format, f.log_format.as_deref()) {
        (Some(fmt), _) => fmt,
        (None, None | Some("text")) => Format::Text,
        (None, Some("json")) => Format::Json,
        (None, Some(other)) => {
            return Err(format!(
                "log_format {other:?}: expected \"text\" or \"json\""
            ))
        }
    };
    let metrics_addr = match a.metrics_addr.or(f.metrics_addr).as_deref() {
        None => Some(SocketAddr::from(([127, 0, 0, 1], 9464))),
        Some("off") => None,
        Some(s) => Some(s.parse().map_err(|e| {
            format!("metrics address {s:?}: expected HOST:PORT (e.g. 127.0.0.1:9464) or off: {e}")
        })?),
    };
    let options = PassOptions {
        zstd_level: a.zstd.or(f.zstd),
        frame_bytes: a
            .zstd_frame_bytes
            .or(f.zstd_frame_bytes)
            .unwrap_or(PassOptions::default().frame_bytes)
            .max(1),
        concurrency: a.concurrency.or(f.concurrency).unwrap_or(4),
        rate_limit: a.rate_limit.or(f.rate_limit),
        gap_after: Duration::from_secs(a.gap_after.or(f.gap_after).unwrap_or(600)),
        on_published: None,
        memory: None,
    };
    let rescan_interval = secs(
        "rescan interval",
        a.rescan_interval.or(f.rescan_interval).unwrap_or(60.0),
    )?;
    if rescan_interval.is_zero() {
        return Err("rescan interval: expected more than 0 seconds".into());
    }
    let cfg = Config {
        log_dirs,
        store,
        options,
        rescan_interval,
        debounce: Duration::from_millis(a.debounce_ms.or(f.debounce_ms).unwrap_or(1000)),
        metrics_addr,
        grace_period: secs(
            "grace period",
            a.grace_period.or(f.grace_period).unwrap_or(30.0),
        )?,
        store_check_timeout: Duration::from_secs(15),
        unhealthy_after_failures: a
            .unhealthy_after_failures
            .or(f.unhealthy_after_failures)
            .unwrap_or(3)
            .max(1),
        unhealthy_after: secs(
            "unhealthy after",
            a.unhealthy_after.or(f.unhealthy_after).unwrap_or(600.0),
        )?,
    };
    Ok((cfg, log_format))
}

fn init_logging(format: Format) {
    use tracing_subscriber::EnvFilter;
    // The agent logs every outcome itself (deduplicated); the pass's own lines would repeat them.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,segvault_core::archive::pass=off"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        Format::Json => b.json().flatten_event(true).try_init(),
        Format::Text => b.with_ansi(false).try_init(),
    };
}

pub fn run(a: AgentArgs) -> i32 {
    let (cfg, format) = match merge(a) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("segvault agent: {e}");
            return EXIT_ERROR;
        }
    };
    init_logging(format);
    let Some(rt) = super::runtime("agent") else {
        return EXIT_ERROR;
    };
    let result = rt.block_on(agent::run(cfg));
    // Do not wait for a blocking task (an abandoned pass's verification) to finish.
    rt.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(()) => EXIT_OK,
        Err(e) => {
            eprintln!("segvault agent: {e}");
            EXIT_ERROR
        }
    }
}
