//! Carries out a restore plan: fetches each range, verifies it, and places each partition
//! into the target log dir atomically, resumably, and only where no broker is running.
//!
//! **Safety, in order.**
//! 1. The target's `.lock` must not be held: a broker holds it (a POSIX `fcntl` lock, which
//!    is what Java's `FileChannel.tryLock` takes) for as long as it runs. The restore takes
//!    it the same way and holds it to the end, so a broker starting meanwhile fails.
//! 2. Each partition is built in `<to>/.segvault-restore/<topic>-<p>`: every `.log` copied
//!    (a local store's file in the kernel) or streamed to disk, never held in memory, and
//!    verified in the same pass over the written file: its size and SHA-256 against the
//!    manifest, every batch CRC, the batch digest against the manifest's (see `fetch`);
//!    indexes are the archived ones when the range is a whole, untrimmed segment, else
//!    rebuilt. Every file is fsynced, then the directory, then it is renamed into place.
//!    Partitions are built concurrently, one per core, and placed one at a time.
//! 3. A partition that exists and holds data is refused without `--force`.
//! 4. A journal (`.segvault-restore/journal.json`) lists the partitions in place, and is
//!    written ahead of each rename into place, so a restore killed or out of space at any
//!    moment resumes where it stopped. The staging dir is removed at the end, and on a failure
//!    that leaves nothing to resume: a broker refuses to start beside a directory whose name
//!    is not `<topic>-<partition>`.
//!
//! Checkpoints are merged into the target's: recovery point and high watermark at each
//! restored partition's log end (every CRC was verified, so the broker need not scan again),
//! log start at its first offset. No `.kafka_cleanshutdown` is written: with the recovery
//! point at the log end the broker recovers nothing anyway, and the marker is the broker's
//! own statement.

mod build;
mod files;
mod journal;
mod lock;
mod node_files;
mod place;
mod root_files;
mod targets;

use super::error::{io, RestoreError};
use super::plan::Plan;
use crate::archive::store::Store;
use crate::sys::blocking;
use build::build_partition;
use files::sync_dir;
use journal::{Journal, JOURNAL};
use lock::TargetLock;
use node_files::{place_metadata_snapshot, write_meta_properties};
use place::place;
use root_files::{mark_clean_shutdown, write_checkpoints};
use segvault_format::text::Uuid;
use serde::Serialize;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
pub use targets::check;
use targets::{check_targets, Target};

/// The staging dir in the target, where partitions are built and the journal kept.
const STAGING: &str = ".segvault-restore";

/// How a restore writes.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    pub force: bool,
    /// New-cluster mode: the topic id to write instead of the one in the target's
    /// `partition.metadata` (only with a single topic selected).
    pub topic_id: Option<Uuid>,
}

/// One partition a restore placed (or found in place from an interrupted run).
#[derive(Debug, Clone, Serialize)]
pub struct RestoredPartition {
    pub topic: String,
    pub partition: i32,
    #[serde(serialize_with = "crate::logdir::check::lossy_path")]
    pub dir: PathBuf,
    pub topic_id: String,
    pub segments: usize,
    pub log_bytes: u64,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    /// Where the last segment was cut, if it was.
    pub cut_at: Option<i64>,
    /// Segments whose indexes were rebuilt locally (slices, trimmed, or missing indexes).
    pub rebuilt_indexes: usize,
    /// Already in place from an interrupted run.
    pub resumed: bool,
    /// Transactions begun and neither committed nor aborted below the restored end
    /// `(producer id, first offset)`: they pin the last stable offset (read_committed
    /// consumers stop at the earliest) until aborted, e.g. with `kafka-transactions.sh abort`.
    pub open_transactions: Vec<(i64, i64)>,
    /// New-cluster mode: the log was ended before transactions open at the archived end,
    /// whose outcome the archive does not hold (see [`OpenTransactionsCut`]).
    pub open_transactions_cut: Option<OpenTransactionsCut>,
}

/// Where a partition was ended because transactions were open at its archived end and its
/// producer state is not restored (new-cluster mode): a broker without it would serve
/// their records to read_committed consumers as committed, aborted or not. The log ends at
/// `at`, the latest offset before which every transaction was complete.
#[derive(Debug, Clone, Serialize)]
pub struct OpenTransactionsCut {
    pub at: i64,
    /// Where the log would have ended.
    pub archived_end: i64,
    /// The transactions open at the archived end: (producer id, first offset).
    pub transactions: Vec<(i64, i64)>,
}

/// What a restore did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub partitions: Vec<RestoredPartition>,
    pub fetched_bytes: u64,
    pub wrote_meta_properties: bool,
    /// The KRaft snapshot placed in `__cluster_metadata-0`, if any.
    pub metadata_snapshot: Option<String>,
    /// What the broker will find about its last shutdown: `written` (every partition in the
    /// dir was verified by this restore, so segvault wrote `.kafka_cleanshutdown` and the
    /// broker starts without recovering any segment), `kept` (the target already had one),
    /// or `absent` (the dir holds partitions this restore did not verify: the broker
    /// recovers from their recovery points, as after a crash).
    pub clean_shutdown: &'static str,
}

/// Restores `plan` into the log dir `to`. `progress` is told the stored bytes fetched.
///
/// Partitions are built concurrently, as many at once as there are cores (each build is one
/// pass of copy, verification and hashing over its data, then an fsync of every file), and
/// placed one at a time as each is ready: renamed into place, then recorded in the journal.
/// They are started in plan order; the first failure stops any further start, lets the builds
/// already under way finish (each is placed if it verifies), and is returned.
pub async fn restore(
    store: &Store,
    plan: &Plan,
    to: &Path,
    opts: &WriteOptions,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Report, RestoreError> {
    fs::create_dir_all(to).map_err(io(to))?;
    let _lock = TargetLock::take(to)?;
    let staging = to.join(STAGING);
    let journal_path = staging.join(JOURNAL);
    let mut journal = Journal::load(&journal_path, &plan.cluster_id)?;
    let result = restore_locked(
        store,
        plan,
        to,
        opts,
        progress,
        &staging,
        &journal_path,
        &mut journal,
    )
    .await;
    if result.is_err() && journal.done.is_empty() && journal.placing.is_empty() {
        // Nothing to resume: leave no staging dir behind (partial builds are redone).
        let _ = fs::remove_dir_all(&staging);
    } else if result.is_err() {
        // Keep the journal; drop partial builds.
        if let Ok(rd) = fs::read_dir(&staging) {
            for e in rd.flatten() {
                if e.path().is_dir() {
                    let _ = fs::remove_dir_all(e.path());
                }
            }
        }
    }
    result
}

#[allow(clippy::too_many_arguments)]
async fn restore_locked(
    store: &Store,
    plan: &Plan,
    to: &Path,
    opts: &WriteOptions,
    progress: &(dyn Fn(u64) + Sync),
    staging: &Path,
    journal_path: &Path,
    journal: &mut Journal,
) -> Result<Report, RestoreError> {
    let (staging, journal_path) = (staging.to_path_buf(), journal_path.to_path_buf());
    // Everything that can refuse the restore is checked before anything is written.
    let checked = check_targets(store, plan, to, opts, journal).await?;
    let mut targets: Vec<Option<Target>> = checked.targets.into_iter().map(Some).collect();
    let mut report = Report::default();
    if let Some(bytes) = &checked.meta_properties {
        write_meta_properties(to, bytes)?;
        report.wrote_meta_properties = true;
    }
    if let Some((name, bytes)) = &checked.metadata_snapshot {
        place_metadata_snapshot(to, name, bytes)?;
        report.metadata_snapshot = Some(name.clone());
    }
    let shared = Arc::new(plan.clone());
    let width = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .max(1);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
    let mut running: tokio::task::JoinSet<(usize, String, BuildResult)> =
        tokio::task::JoinSet::new();
    let mut placed: Vec<(usize, RestoredPartition)> = Vec::new();
    let mut failure: Option<RestoreError> = None;
    let mut next = 0;
    loop {
        while failure.is_none() && running.len() < width && next < plan.partitions.len() {
            let i = next;
            next += 1;
            fs::create_dir_all(&staging).map_err(io(&staging))?;
            match targets[i].take().map(|t| stage(t, &staging)) {
                None => {}
                Some(Ok(Staged::Resumed(r))) => placed.push((i, r)),
                Some(Ok(Staged::Build {
                    name,
                    stage,
                    topic_id,
                })) => {
                    let (store, plan, tx) = (store.clone(), shared.clone(), tx.clone());
                    running.spawn(async move {
                        let progress = move |n: u64| {
                            let _ = tx.send(n);
                        };
                        let p = &plan.partitions[i];
                        let r =
                            build_partition(&store, &plan, p, &stage, &topic_id, &progress).await;
                        (i, name, r)
                    });
                }
                Some(Err(e)) => failure = Some(e),
            }
        }
        if running.is_empty() {
            break;
        }
        tokio::select! {
            Some(n) = rx.recv() => progress(n),
            Some(done) = running.join_next() => {
                let outcome = match done {
                    Ok((i, name, Ok((r, fetched)))) => {
                        report.fetched_bytes += fetched;
                        blocking(|| place(to, &staging, &name, &journal_path, journal))
                            .map(|dir| placed.push((i, RestoredPartition { dir, ..r })))
                    }
                    Ok((_, _, Err(e))) => Err(e),
                    Err(source) => Err(RestoreError::Stopped {
                        path: staging.clone(),
                        source,
                    }),
                };
                if let Err(e) = outcome {
                    failure.get_or_insert(e);
                }
            }
        }
    }
    while let Ok(n) = rx.try_recv() {
        progress(n);
    }
    if let Some(e) = failure {
        return Err(e);
    }
    placed.sort_by_key(|(i, _)| *i);
    report.partitions = placed.into_iter().map(|(_, r)| r).collect();
    write_checkpoints(to, &report.partitions)?;
    fs::remove_dir_all(&staging).map_err(io(&staging))?;
    report.clean_shutdown = mark_clean_shutdown(to, &report.partitions)?;
    sync_dir(to)?;
    Ok(report)
}

/// A partition's build: its report and the stored bytes fetched.
type BuildResult = Result<(RestoredPartition, u64), RestoreError>;

/// A partition ready to build: its staging dir made (empty), or in place already.
enum Staged {
    Resumed(RestoredPartition),
    Build {
        name: String,
        stage: PathBuf,
        topic_id: String,
    },
}

/// Makes the staging dir of a partition to build (emptied if an earlier run left one).
fn stage(t: Target, staging: &Path) -> Result<Staged, RestoreError> {
    match t {
        Target::Resumed(r) => Ok(Staged::Resumed(r)),
        Target::Build { name, topic_id } => {
            let stage = staging.join(&name);
            if stage.exists() {
                fs::remove_dir_all(&stage).map_err(io(&stage))?;
            }
            fs::create_dir_all(&stage).map_err(io(&stage))?;
            Ok(Staged::Build {
                name,
                stage,
                topic_id,
            })
        }
    }
}
