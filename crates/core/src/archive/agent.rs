//! The long-running agent (`segvault agent`): archive passes triggered by file system events
//! and by a periodic rescan, metrics over HTTP, graceful shutdown.
//!
//! - **Triggers.** Every log dir is watched recursively (inotify through `notify`). An event
//!   that can change what is archivable (a file created, renamed or removed: a segment roll, a
//!   checkpoint replaced, retention) schedules a pass after a short debounce; further events
//!   within that window, or during a pass, are coalesced into one more pass. Appends to
//!   existing files and reads (including the agent's own) are ignored: they cannot close or
//!   commit a segment. Files that change nothing archivable (a segment's indexes and
//!   producer snapshots, written with its `.log`; `leader-epoch-checkpoint`; `quorum-state`)
//!   are ignored too. A rewrite of a root checkpoint (`replication-offset-checkpoint`, every
//!   5 s on a live broker) starts a pass only if a high watermark in it now commits a closed
//!   segment that was waiting for it (the agent remembers, per partition, the offset it
//!   waits for). A full rescan also runs every `rescan_interval`, as a safety net against
//!   dropped events (inotify queue overflow, watch limits, network file systems).
//! - **State.** The agent remembers each partition's chain between passes (see
//!   [`Memory`](super::pass::Memory)), so a pass over partitions with nothing new makes no
//!   store request; the store stays the truth, read again where memory may be behind.
//! - **One pass at a time.** Passes never overlap. A failed pass (store unreachable, a log
//!   dir gone) is logged and counted, and the next trigger retries; the agent never exits on
//!   a pass error. All archive state is in the store, so nothing is lost between passes.
//! - **Shutdown.** On SIGTERM or SIGINT no new pass starts; a pass in flight may finish for up
//!   to `grace_period`, then it is dropped. Dropping is safe: data objects are written before
//!   their manifest, so an unfinished range is never visible as complete, and the next pass
//!   overwrites its data under the same deterministic keys.

use super::error::ArchiveError;
use super::metrics::{self, Metrics};
use super::pass::{self, ArchivedPartition, Outcome, PassOptions, Report};
use super::store::{self, Store};
use notify::{EventKind, RecursiveMode, Watcher};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Everything the agent needs, already merged from flags, environment and config file.
#[derive(Debug, Clone)]
pub struct Config {
    pub log_dirs: Vec<PathBuf>,
    pub store: String,
    pub options: PassOptions,
    /// Full rescan period (a pass even without events).
    pub rescan_interval: Duration,
    /// Delay between the first event and the pass it triggers.
    pub debounce: Duration,
    /// Where to serve /metrics and /healthz; `None` disables the server.
    pub metrics_addr: Option<SocketAddr>,
    /// How long an in-flight pass may run on after SIGTERM/SIGINT.
    pub grace_period: Duration,
    /// How long the startup check of the store may take.
    pub store_check_timeout: Duration,
    /// /healthz answers 503 after this many failed passes in a row ...
    pub unhealthy_after_failures: u64,
    /// ... or when the last successful pass is older than this.
    pub unhealthy_after: Duration,
}

/// Checks the configuration against the world: every log dir is a readable broker log dir,
/// and the store answers a LIST of its root with these credentials.
async fn startup_checks(cfg: &Config) -> Result<Store, ArchiveError> {
    if cfg.log_dirs.is_empty() {
        return Err(ArchiveError::NoLogDir);
    }
    for dir in &cfg.log_dirs {
        // The error names the path and what was expected there.
        pass::check_log_dir(dir).map_err(|e| ArchiveError::BadLogDir(Box::new(e)))?;
    }
    let store = store::open(&cfg.store)?;
    let list = store.inner.list_with_delimiter(None);
    match tokio::time::timeout(cfg.store_check_timeout, list).await {
        Ok(Ok(_)) => Ok(store),
        Ok(Err(source)) => Err(ArchiveError::StoreUnlisted {
            url: store.url,
            source,
        }),
        Err(_) => Err(ArchiveError::StoreSilent {
            url: store.url,
            seconds: cfg.store_check_timeout.as_secs_f64(),
        }),
    }
}

/// Runs the agent until SIGTERM or SIGINT. Returns an error only for startup problems.
pub async fn run(cfg: Config) -> Result<(), ArchiveError> {
    use tokio::signal::unix::{signal, SignalKind};
    let handle = |signal| move |source| ArchiveError::Signal { signal, source };
    let mut sigterm = signal(SignalKind::terminate()).map_err(handle("SIGTERM"))?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(handle("SIGINT"))?;

    let store = startup_checks(&cfg).await?;
    let metrics = Arc::new(Metrics {
        unhealthy_after_failures: cfg.unhealthy_after_failures,
        unhealthy_after_ms: cfg.unhealthy_after.as_millis().min(i64::MAX as u128) as i64,
        ..Metrics::default()
    });
    let server = serve_metrics(cfg.metrics_addr, &metrics).await?;

    let (watcher, mut events, mut checkpoints) = watch(&cfg.log_dirs)?;
    tracing::info!(
        store = %store.url,
        log_dirs = ?cfg.log_dirs,
        rescan_interval_s = cfg.rescan_interval.as_secs_f64(),
        "agent started"
    );

    let store = Arc::new(store);
    let log_dirs = Arc::new(cfg.log_dirs.clone());
    // Every range is counted and logged the moment it is published, whatever becomes of
    // the pass afterwards (a later failure, the grace period running out).
    let mut options = cfg.options.clone();
    options.on_published = Some(publish_hook(metrics.clone()));
    let memory = pass::Memory::default();
    options.memory = Some(memory.clone());
    let opts = Arc::new(options);
    let mut seen = Seen::default();
    // The pass in flight. It runs inside this task (not spawned: the pass future is not
    // `Send`), polled by the select below alongside signals, events and timers.
    type PassFuture =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<Report, ArchiveError>>>>;
    let mut running: Option<(PassFuture, Instant)> = None;
    // The first pass runs at once.
    let mut due: Option<Instant> = Some(Instant::now());
    let mut next_rescan = Instant::now() + cfg.rescan_interval;
    let far = Duration::from_secs(86400 * 365);

    let shutdown_signal = loop {
        let wake = due.map_or(next_rescan, |d| d.min(next_rescan));
        tokio::select! {
            _ = sigterm.recv() => break "SIGTERM",
            _ = sigint.recv() => break "SIGINT",
            Some(()) = events.recv() => {
                if due.is_none() {
                    due = Some(Instant::now() + cfg.debounce);
                }
            }
            Some(()) = checkpoints.recv() => {
                // With a pass already due, it sees the new checkpoint anyway.
                if due.is_none() {
                    if commits_something(&log_dirs, &memory) {
                        due = Some(Instant::now() + cfg.debounce);
                    } else {
                        metrics.checkpoint_rewrites_ignored.fetch_add(1, Relaxed);
                    }
                }
            }
            res = async { (&mut running.as_mut().unwrap().0).await }, if running.is_some() => {
                let (_, started) = running.take().unwrap();
                finish_pass(res, started, &metrics, &mut seen, &log_dirs);
            }
            _ = tokio::time::sleep_until(wake), if running.is_none() => {
                let now = Instant::now();
                if now >= next_rescan {
                    due = Some(now);
                }
                if due.is_some_and(|d| d <= now) {
                    due = None;
                    next_rescan = now + cfg.rescan_interval.min(far);
                    let (store, log_dirs, opts) = (store.clone(), log_dirs.clone(), opts.clone());
                    let task: PassFuture = Box::pin(async move { pass::archive_once(&store, &log_dirs, &opts).await });
                    running = Some((task, now));
                }
            }
        }
    };

    tracing::info!(
        signal = shutdown_signal,
        "shutting down: no new pass will start"
    );
    drop(watcher);
    if let Some((mut task, started)) = running.take() {
        tracing::info!(
            grace_period_s = cfg.grace_period.as_secs_f64(),
            "waiting for the pass in flight"
        );
        tokio::select! {
            res = &mut task => finish_pass(res, started, &metrics, &mut seen, &log_dirs),
            _ = tokio::time::sleep(cfg.grace_period) => {
                drop(task);
                tracing::warn!(
                    "pass abandoned after the grace period; ranges without a manifest are not archived and the next run redoes them"
                );
            }
            _ = sigterm.recv() => {
                drop(task);
                tracing::warn!("second signal: pass abandoned; the next run redoes unfinished ranges");
            }
            _ = sigint.recv() => {
                drop(task);
                tracing::warn!("second signal: pass abandoned; the next run redoes unfinished ranges");
            }
        }
    }
    if let Some(s) = server {
        s.abort();
    }
    tracing::info!(
        passes = metrics.passes.load(Relaxed),
        uploaded_segments = metrics.uploaded_segments.load(Relaxed),
        uploaded_bytes = metrics.uploaded_bytes.load(Relaxed),
        "stopped"
    );
    Ok(())
}

/// Binds the metrics address, if there is one, and serves /metrics and /healthz.
async fn serve_metrics(
    addr: Option<SocketAddr>,
    metrics: &Arc<Metrics>,
) -> Result<Option<tokio::task::JoinHandle<()>>, ArchiveError> {
    let Some(addr) = addr else {
        return Ok(None);
    };
    let (local, serve) = metrics::bind(addr, metrics.clone())
        .await
        .map_err(|source| ArchiveError::MetricsAddr { addr, source })?;
    tracing::info!(addr = %local, "serving /metrics and /healthz");
    Ok(Some(tokio::spawn(serve)))
}

/// The receivers of [`watch`]: each holds at most one "something changed".
type Triggers = (
    notify::RecommendedWatcher,
    tokio::sync::mpsc::Receiver<()>,
    tokio::sync::mpsc::Receiver<()>,
);

/// Watches every log dir (recursively) for events that can change what is archivable (the
/// first receiver) and for rewrites of the root checkpoints (the second).
fn watch(log_dirs: &[PathBuf]) -> Result<Triggers, ArchiveError> {
    // File system events: capacity-1 channels are coalescing "something changed" flags.
    let (tx, events) = tokio::sync::mpsc::channel::<()>(1);
    let (cp_tx, checkpoints) = tokio::sync::mpsc::channel::<()>(1);
    let mut watcher =
        notify::recommended_watcher(move |ev: notify::Result<notify::Event>| match ev {
            Ok(ev) => match trigger(&ev) {
                Trigger::Pass => {
                    let _ = tx.try_send(());
                }
                Trigger::Checkpoint => {
                    let _ = cp_tx.try_send(());
                }
                Trigger::Nothing => {}
            },
            Err(e) => {
                // E.g. the inotify queue overflowed: events were lost, so rescan.
                tracing::warn!(error = %e, "file watch error; scheduling a full pass");
                let _ = tx.try_send(());
            }
        })
        .map_err(ArchiveError::Watcher)?;
    for dir in log_dirs {
        if let Err(e) = watcher.watch(dir, RecursiveMode::Recursive) {
            // Watch limits (fs.inotify.max_user_watches) and the like: the periodic rescan
            // still archives everything, only later.
            tracing::warn!(log_dir = %dir.display(), error = %e, "cannot watch; relying on the periodic rescan");
        }
    }
    Ok((watcher, events, checkpoints))
}

/// Whether the high watermarks now in any log dir's `replication-offset-checkpoint` commit
/// a segment that was waiting for them (or cannot be read: then a pass says why).
fn commits_something(log_dirs: &[PathBuf], memory: &pass::Memory) -> bool {
    log_dirs.iter().any(|dir| {
        let path = dir.join("replication-offset-checkpoint");
        match crate::logdir::read_checkpoint(&path) {
            Ok(Some(Ok(hws))) => {
                let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.clone());
                memory.commits_something(&dir, &hws)
            }
            _ => true,
        }
    })
}

/// Counts and logs every range the moment it is published.
fn publish_hook(metrics: Arc<Metrics>) -> pass::PublishHook {
    pass::PublishHook(Arc::new(move |r: &pass::Published| {
        metrics.published(r.bytes);
        tracing::info!(
            renamed = r.renamed,
            log_dir = %r.log_dir.display(),
            topic = r.topic,
            partition = r.partition,
            start = r.start,
            next = r.next,
            bytes = r.bytes,
            slice_position = r.slice_position,
            "archived segment"
        );
    }))
}

/// What a file system event calls for.
#[derive(Debug, PartialEq, Eq)]
enum Trigger {
    /// It can change what is archivable: a pass.
    Pass,
    /// A root checkpoint was rewritten: a pass if a high watermark commits something new.
    Checkpoint,
    Nothing,
}

/// The root checkpoints a broker rewrites periodically (temp file, then rename).
const ROOT_CHECKPOINTS: [&str; 4] = [
    "replication-offset-checkpoint",
    "recovery-point-offset-checkpoint",
    "log-start-offset-checkpoint",
    "cleaner-offset-checkpoint",
];

fn trigger(ev: &notify::Event) -> Trigger {
    use notify::event::ModifyKind;
    match &ev.kind {
        // Opens and closes, ours included: reading never changes anything.
        EventKind::Access(_) => return Trigger::Nothing,
        // Appends and attribute changes: a segment is closed by a new segment being created,
        // and committed by a checkpoint being replaced (write a temp file, rename).
        EventKind::Modify(ModifyKind::Data(_)) | EventKind::Modify(ModifyKind::Metadata(_)) => {
            return Trigger::Nothing
        }
        _ => {}
    }
    let names: Vec<&str> = ev
        .paths
        .iter()
        .map(|p| p.file_name().and_then(|n| n.to_str()).unwrap_or(""))
        .collect();
    if names.is_empty() {
        return Trigger::Pass;
    }
    let bare = |n: &str| n.strip_suffix(".tmp").unwrap_or(n).to_string();
    if names
        .iter()
        .all(|n| ROOT_CHECKPOINTS.contains(&bare(n).as_str()))
    {
        return Trigger::Checkpoint;
    }
    if names.iter().all(|n| inert(&bare(n))) {
        return Trigger::Nothing;
    }
    Trigger::Pass
}

/// Files whose creation, rename or removal changes nothing a pass does: a segment's indexes
/// and its producer snapshot (written with its `.log`, which triggers the pass), and the
/// partition's epoch and quorum state. Their transient names (`.swap`, `.deleted`,
/// `.cleaned`) do not count: compaction and retention rename the `.log` too.
fn inert(name: &str) -> bool {
    matches!(name, "leader-epoch-checkpoint" | "quorum-state")
        || [".index", ".timeindex", ".txnindex", ".snapshot"]
            .iter()
            .any(|ext| name.ends_with(ext))
}

/// What was already reported, so that a corrupt segment or a divergence that every pass sees
/// again is logged and counted once per agent run.
#[derive(Default)]
struct Seen {
    keys: HashSet<(String, String, i32, i64, &'static str)>,
    /// Where each partition's chain was last seen to end: (log dir, topic, partition).
    ends: std::collections::HashMap<(String, String, i32), i64>,
}

/// The lag the log dirs show now, for a pass that failed: closed segments past where each
/// partition's chain was last seen to end (all closed segments of a partition never seen),
/// and the oldest `.log` mtime among them. `None` if no log dir could be listed.
fn lag_from_listing(log_dirs: &[PathBuf], seen: &Seen) -> Option<(u64, Option<i64>)> {
    let (mut n, mut oldest, mut listed) = (0u64, None::<i64>, false);
    for dir in log_dirs {
        let Ok(listing) = crate::logdir::scan(dir) else {
            continue;
        };
        listed = true;
        let d = listing.path.display().to_string();
        for p in &listing.partitions {
            let end = seen.ends.get(&(d.clone(), p.topic.clone(), p.partition));
            let (k, _, o) = pass::unarchived(p, end.copied(), None);
            n += k as u64;
            oldest = match (oldest, o) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
    }
    listed.then_some((n, oldest))
}

impl Seen {
    fn first(
        &mut self,
        log_dir: &str,
        topic: &str,
        partition: i32,
        at: i64,
        what: &'static str,
    ) -> bool {
        self.keys
            .insert((log_dir.to_string(), topic.to_string(), partition, at, what))
    }
}

fn finish_pass(
    res: Result<Report, ArchiveError>,
    started: Instant,
    metrics: &Metrics,
    seen: &mut Seen,
    log_dirs: &[PathBuf],
) {
    let ms = started.elapsed().as_millis() as u64;
    let report = match res {
        Ok(r) => r,
        Err(e) => {
            metrics.pass_failed(lag_from_listing(log_dirs, seen));
            tracing::error!(error = %e, duration_ms = ms, "pass failed; retrying at the next trigger");
            return;
        }
    };
    for p in &report.partitions {
        partition_seen(p, metrics, seen);
    }
    if !report.failures.is_empty() {
        // What the other partitions archived is counted; the pass failed.
        metrics.gaps.fetch_add(report.gaps, Relaxed);
        metrics.pass_failed(lag_from_listing(log_dirs, seen));
        for f in &report.failures {
            tracing::error!(log_dir = %f.log_dir, partition = %f.partition, error = %f.error, "partition not archived in this pass; retrying at the next trigger");
        }
        tracing::error!(
            duration_ms = ms,
            failures = report.failures.len(),
            uploaded_segments = report.uploaded_segments,
            "pass failed for some partitions; the others were archived"
        );
        return;
    }
    metrics.pass_succeeded(&report);
    let level_info = report.uploaded_segments > 0 || report.gaps > 0;
    macro_rules! summary {
        ($lvl:ident) => {
            tracing::$lvl!(
                duration_ms = ms,
                uploaded_segments = report.uploaded_segments,
                uploaded_bytes = report.uploaded_bytes,
                unarchived_segments = report.unarchived_segments,
                unarchived_committed_segments = report.unarchived_committed_segments,
                "pass finished"
            )
        };
    }
    if level_info {
        summary!(info);
    } else {
        summary!(debug);
    }
}

/// Logs and counts what the pass did with one partition, each thing once per agent run.
fn partition_seen(p: &ArchivedPartition, metrics: &Metrics, seen: &mut Seen) {
    let (dir, topic, part) = (p.log_dir.as_str(), p.topic.as_str(), p.partition);
    if let Some(end) = p.archived_until {
        seen.ends
            .insert((dir.to_string(), topic.to_string(), part), end);
    }
    for o in &p.outcomes {
        outcome_seen(o, (dir, topic, part), metrics, seen);
    }
    if let Some(reason) = &p.skipped {
        if seen.first(dir, topic, part, -1, "skipped") {
            tracing::warn!(log_dir = dir, topic, partition = part, reason = %reason, "partition skipped");
        }
    }
}

/// Logs and counts one outcome (a corrupt segment or a divergence once per agent run).
fn outcome_seen(o: &Outcome, at: (&str, &str, i32), metrics: &Metrics, seen: &mut Seen) {
    let (dir, topic, part) = at;
    let meaning = o.meaning();
    match o {
        // Counted and logged when published (see `on_published`).
        Outcome::Uploaded { .. } => {}
        Outcome::ClaimedByOther {
            start,
            next,
            divergent,
        } => {
            if *divergent {
                if seen.first(dir, topic, part, *start, "divergence") {
                    metrics.divergences.fetch_add(1, Relaxed);
                    tracing::warn!(
                        log_dir = dir,
                        topic,
                        partition = part,
                        start,
                        next,
                        "divergence: archived by another broker with other batches"
                    );
                }
            } else {
                tracing::info!(
                    log_dir = dir,
                    topic,
                    partition = part,
                    start,
                    next,
                    "{meaning}; copies match"
                );
            }
        }
        Outcome::Gap { start, next } => {
            tracing::warn!(
                log_dir = dir,
                topic,
                partition = part,
                start,
                next,
                "gap recorded: {meaning}"
            );
        }
        Outcome::Corrupt {
            base,
            position,
            offset,
            message,
        } => {
            if seen.first(dir, topic, part, *base, "corrupt") {
                metrics.corrupt_segments.fetch_add(1, Relaxed);
                tracing::error!(log_dir = dir, topic, partition = part, segment = base, position, offset, message = %message, "corrupt segment: {meaning}");
            }
        }
        Outcome::Divergent { start, message } => {
            if seen.first(dir, topic, part, *start, "divergence") {
                metrics.divergences.fetch_add(1, Relaxed);
                tracing::warn!(log_dir = dir, topic, partition = part, start, message = %message, "{meaning}");
            }
        }
        Outcome::Changed { base, message } => {
            tracing::info!(log_dir = dir, topic, partition = part, segment = base, message = %message, "segment {meaning}; next pass");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, ModifyKind, RenameMode};

    fn ev(kind: EventKind, paths: &[&str]) -> notify::Event {
        let mut e = notify::Event::new(kind);
        for p in paths {
            e = e.add_path(PathBuf::from(p));
        }
        e
    }

    #[test]
    fn what_each_file_event_calls_for() {
        let rename = EventKind::Modify(ModifyKind::Name(RenameMode::Both));
        let create = EventKind::Create(CreateKind::File);
        // The broker's checkpoint rewrite: temp file created, renamed over the old one.
        for e in [
            ev(create, &["/d/replication-offset-checkpoint.tmp"]),
            ev(
                rename,
                &[
                    "/d/replication-offset-checkpoint.tmp",
                    "/d/replication-offset-checkpoint",
                ],
            ),
            ev(rename, &["/d/recovery-point-offset-checkpoint"]),
        ] {
            assert_eq!(trigger(&e), Trigger::Checkpoint, "{e:?}");
        }
        // A roll, compaction, retention, a new partition: a pass.
        for e in [
            ev(create, &["/d/t-0/00000000000000000100.log"]),
            ev(
                rename,
                &[
                    "/d/t-0/00000000000000000000.log.swap",
                    "/d/t-0/00000000000000000000.log",
                ],
            ),
            ev(
                rename,
                &[
                    "/d/t-0/00000000000000000000.log",
                    "/d/t-0/00000000000000000000.log.deleted",
                ],
            ),
            ev(EventKind::Create(CreateKind::Folder), &["/d/t-1"]),
            ev(
                create,
                &["/d/__cluster_metadata-0/00000000000000000100-0000000001.checkpoint"],
            ),
            ev(EventKind::Any, &[]),
        ] {
            assert_eq!(trigger(&e), Trigger::Pass, "{e:?}");
        }
        // What changes nothing a pass does.
        for e in [
            ev(create, &["/d/t-0/00000000000000000100.index"]),
            ev(create, &["/d/t-0/00000000000000000100.snapshot"]),
            ev(
                rename,
                &[
                    "/d/t-0/leader-epoch-checkpoint.tmp",
                    "/d/t-0/leader-epoch-checkpoint",
                ],
            ),
            ev(
                rename,
                &[
                    "/d/__cluster_metadata-0/quorum-state.tmp",
                    "/d/__cluster_metadata-0/quorum-state",
                ],
            ),
            ev(
                EventKind::Modify(ModifyKind::Data(notify::event::DataChange::Any)),
                &["/d/t-0/00000000000000000100.log"],
            ),
            ev(
                EventKind::Access(notify::event::AccessKind::Any),
                &["/d/t-0/00000000000000000000.log"],
            ),
        ] {
            assert_eq!(trigger(&e), Trigger::Nothing, "{e:?}");
        }
    }
}
