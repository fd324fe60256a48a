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

use super::error::{io, RestoreError};
use super::fetch::{fetch_log, fetch_small, get_all};
use super::plan::{Mode, PartitionPlan, Plan};
use crate::archive::layout;
use crate::archive::manifest::{Manifest, RangeKind};
use crate::archive::store::Store;
use crate::sys::blocking;
use segvault_format::index::AbortedTxn;
use segvault_format::index_build;
use segvault_format::segment::log_entries;
use segvault_format::text::{self, EpochEntry, OffsetCheckpointEntry, Uuid};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub const STAGING: &str = ".segvault-restore";
const JOURNAL: &str = "journal.json";

#[derive(Debug, Clone)]
pub struct WriteOptions {
    pub force: bool,
    /// New-cluster mode: the topic id to write instead of the one in the target's
    /// `partition.metadata` (only with a single topic selected).
    pub topic_id: Option<Uuid>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PartitionReport {
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
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub partitions: Vec<PartitionReport>,
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

/// Writes `bytes` to `path` atomically: a temp file beside it, fsync, rename, fsync the dir.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), RestoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.segvault-tmp",
        path.file_name().unwrap_or_default().to_string_lossy()
    ));
    // Errors name the file being written (its temporary copy is an implementation detail).
    let tmp_ref = &tmp;
    let failed = |what: &'static str| {
        move |e: std::io::Error| {
            let _ = fs::remove_file(tmp_ref);
            RestoreError::Io {
                path: path.to_path_buf(),
                message: format!("{what}: {e}"),
            }
        }
    };
    let mut f = File::create(&tmp).map_err(failed("creating its temporary copy"))?;
    f.write_all(bytes).map_err(failed("writing"))?;
    f.sync_all().map_err(failed("fsync"))?;
    fs::rename(&tmp, path).map_err(failed("renaming into place"))?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<(), RestoreError> {
    crate::sys::sync_dir(dir).map_err(io(dir))
}

/// A partition dir holds data if any `.log` in it is not empty.
fn holds_data(dir: &Path) -> bool {
    fs::read_dir(dir).is_ok_and(|rd| {
        rd.flatten().any(|e| {
            e.file_name().to_string_lossy().ends_with(".log")
                && e.metadata().is_ok_and(|m| m.len() > 0)
        })
    })
}

#[derive(Debug, Default, Serialize, serde::Deserialize)]
struct Journal {
    cluster_id: String,
    /// Partitions in place.
    done: BTreeSet<String>,
    /// Partitions about to be renamed into place (written ahead of the rename): after a
    /// kill, one whose built dir has left the staging dir is in place.
    #[serde(default)]
    placing: BTreeSet<String>,
}

/// Holds the target's `.lock` (an fcntl lock, as a broker takes it) for the whole restore, so
/// that a broker starting meanwhile fails to take it instead of loading a half-restored dir.
/// A `.lock` this restore created is removed when it ends.
struct TargetLock {
    file: File,
    path: PathBuf,
    created: bool,
}

impl TargetLock {
    fn take(dir: &Path) -> Result<TargetLock, RestoreError> {
        let path = dir.join(".lock");
        let created = !path.exists();
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io(&path))?;
        match rustix::fs::fcntl_lock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(TargetLock {
                file,
                path,
                created,
            }),
            Err(e) if e == rustix::io::Errno::AGAIN || e == rustix::io::Errno::ACCESS => {
                Err(RestoreError::Refused(format!(
                    "{}: a running broker holds its .lock; stop the broker before restoring into it",
                    dir.display()
                )))
            }
            Err(e) => Err(io(&path)(e.into())),
        }
    }
}

impl Drop for TargetLock {
    fn drop(&mut self) {
        if self.created {
            let _ = fs::remove_file(&self.path);
        }
        let _ = rustix::fs::fcntl_lock(&self.file, rustix::fs::FlockOperation::NonBlockingUnlock);
    }
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
    let mut journal: Journal = match fs::read(&journal_path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| RestoreError::Io {
            path: journal_path.clone(),
            message: format!("unreadable restore journal ({e}); remove {STAGING} to start over"),
        })?,
        Err(_) => Journal {
            cluster_id: plan.cluster_id.clone(),
            ..Journal::default()
        },
    };
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
    if journal.cluster_id != plan.cluster_id {
        return Err(RestoreError::Refused(format!(
            "{}: an interrupted restore of cluster {} is in progress here; finish it or remove {STAGING}",
            to.display(),
            journal.cluster_id
        )));
    }
    let mut report = Report::default();
    if plan.mode == Mode::BareMetal {
        report.wrote_meta_properties = restore_meta_properties(store, plan, to, opts).await?;
        report.metadata_snapshot = restore_metadata_snapshot(store, plan, to, opts).await?;
    }
    let shared = Arc::new(plan.clone());
    let width = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .max(1);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
    let mut running: tokio::task::JoinSet<(usize, String, BuildResult)> =
        tokio::task::JoinSet::new();
    let mut placed: Vec<(usize, PartitionReport)> = Vec::new();
    let mut failure: Option<RestoreError> = None;
    let mut next = 0;
    loop {
        while failure.is_none() && running.len() < width && next < plan.partitions.len() {
            let i = next;
            next += 1;
            fs::create_dir_all(&staging).map_err(io(&staging))?;
            match prepare(plan, i, to, &staging, journal, opts) {
                Ok(Prepared::Resumed(r)) => placed.push((i, r)),
                Ok(Prepared::Build {
                    name,
                    stage,
                    topic_id,
                }) => {
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
                Err(e) => failure = Some(e),
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
                            .map(|dir| placed.push((i, PartitionReport { dir, ..r })))
                    }
                    Ok((_, _, Err(e))) => Err(e),
                    Err(e) => Err(RestoreError::Io {
                        path: staging.clone(),
                        message: format!("a partition's restore stopped: {e}"),
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

/// The broker's clean-shutdown marker (`CleanShutdownFileHandler`).
const CLEAN_SHUTDOWN: &str = ".kafka_cleanshutdown";

/// Writes the clean-shutdown marker when every partition dir under `to` is one this restore
/// placed. Without it the broker treats the dir as crashed and re-reads the segment holding
/// each recovery point, i.e. the last segment of every partition, although segvault verified
/// every batch CRC, placed the broker's own indexes (SHA-256 checked) or rebuilt them, and
/// wrote the recovery points at the log ends (`kafka-format.md` §6 (a) 3). Partitions it did
/// not place may need that recovery, so then no marker is written. The broker epoch is -1: it
/// matches no registration, so the controller still treats the restart as unclean for
/// KIP-966's eligible leader replicas (the restored data may be older than the controller
/// remembers); only the log recovery is skipped. Brokers before 3.7 only test that the file
/// exists.
fn mark_clean_shutdown(to: &Path, parts: &[PartitionReport]) -> Result<&'static str, RestoreError> {
    let marker = to.join(CLEAN_SHUTDOWN);
    if marker.exists() {
        return Ok("kept");
    }
    let placed: BTreeSet<String> = parts
        .iter()
        .map(|p| format!("{}-{}", p.topic, p.partition))
        .collect();
    for e in fs::read_dir(to).map_err(io(to))? {
        let e = e.map_err(io(to))?;
        let name = e.file_name().to_string_lossy().into_owned();
        // The metadata log belongs to the Raft layer, which ignores the marker.
        if e.path().is_dir() && name != "__cluster_metadata-0" && !placed.contains(&name) {
            return Ok("absent");
        }
    }
    write_atomic(&marker, br#"{"version":"0","broker_epoch":"-1"}"#)?;
    Ok("written")
}

type BuildResult = Result<(PartitionReport, u64), RestoreError>;

enum Prepared {
    /// In place from an interrupted run.
    Resumed(PartitionReport),
    /// To build in `stage` (created empty), then place as `name`.
    Build {
        name: String,
        stage: PathBuf,
        topic_id: String,
    },
}

/// The checks before partition `i` is built: the journal (already in place?), the topic id
/// to write, data already there (refused without `--force`); then its staging dir, empty.
fn prepare(
    plan: &Plan,
    i: usize,
    to: &Path,
    staging: &Path,
    journal: &Journal,
    opts: &WriteOptions,
) -> Result<Prepared, RestoreError> {
    let p = &plan.partitions[i];
    let name = format!("{}-{}", p.topic, p.partition);
    let dir = to.join(&name);
    // In place: recorded as done, or written ahead as being placed and gone from the
    // staging dir (killed between the rename and the journal's next write).
    let placed = journal.done.contains(&name)
        || (journal.placing.contains(&name) && !staging.join(&name).exists());
    if placed && dir.is_dir() {
        return Ok(Prepared::Resumed(resumed_report(p, &dir)?));
    }
    let topic_id = match plan.mode {
        Mode::BareMetal => p.archived_topic_id.clone(),
        Mode::NewCluster => match opts.topic_id {
            Some(id) => id.to_string(),
            None => {
                let pm = dir.join("partition.metadata");
                let bytes = fs::read(&pm).map_err(|e| {
                    RestoreError::Refused(format!(
                        "{}: {e}; new-cluster mode restores into partitions created in the new cluster first (create topic {} there, stop the broker, then restore), or give --topic-id",
                        pm.display(),
                        p.topic
                    ))
                })?;
                text::parse_partition_metadata(&bytes)
                    .map_err(|e| RestoreError::Io {
                        path: pm.clone(),
                        message: e.to_string(),
                    })?
                    .to_string()
            }
        },
    };
    if holds_data(&dir) && !opts.force {
        return Err(RestoreError::Refused(format!(
            "{}: the partition already holds data; use --force to replace it",
            dir.display()
        )));
    }
    let stage = staging.join(&name);
    if stage.exists() {
        fs::remove_dir_all(&stage).map_err(io(&stage))?;
    }
    fs::create_dir_all(&stage).map_err(io(&stage))?;
    Ok(Prepared::Build {
        name,
        stage,
        topic_id,
    })
}

/// Renames the built partition `name` from the staging dir into place (the old dir, if any,
/// aside first), then records it in the journal. Returns where it now is.
fn place(
    to: &Path,
    staging: &Path,
    name: &str,
    journal_path: &Path,
    journal: &mut Journal,
) -> Result<PathBuf, RestoreError> {
    let dir = to.join(name);
    let stage = staging.join(name);
    let aside = staging.join(format!("replaced-{name}"));
    // Written ahead: a kill from here on leaves a journal that recognises the placed dir.
    journal.placing.insert(name.to_string());
    write_atomic(
        journal_path,
        &serde_json::to_vec(&journal).unwrap_or_default(),
    )?;
    if dir.exists() {
        if aside.exists() {
            fs::remove_dir_all(&aside).map_err(io(&aside))?;
        }
        fs::rename(&dir, &aside).map_err(io(&dir))?;
    }
    fs::rename(&stage, &dir).map_err(io(&dir))?;
    sync_dir(to)?;
    if aside.exists() {
        fs::remove_dir_all(&aside).map_err(io(&aside))?;
    }
    journal.done.insert(name.to_string());
    journal.placing.remove(name);
    write_atomic(
        journal_path,
        &serde_json::to_vec(&journal).unwrap_or_default(),
    )?;
    Ok(dir)
}

fn resumed_report(p: &PartitionPlan, dir: &Path) -> Result<PartitionReport, RestoreError> {
    let mut listing: Vec<i64> = fs::read_dir(dir)
        .map_err(io(dir))?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".log")?.parse().ok())
        .collect();
    listing.sort();
    let first = listing.first().copied().unwrap_or(0);
    let end = end_offset_of(dir, listing.last().copied())?;
    let topic_id = fs::read(dir.join("partition.metadata"))
        .ok()
        .and_then(|b| text::parse_partition_metadata(&b).ok())
        .map(|u| u.to_string())
        .unwrap_or_default();
    Ok(PartitionReport {
        topic: p.topic.clone(),
        partition: p.partition,
        dir: dir.to_path_buf(),
        topic_id,
        segments: listing.len(),
        log_bytes: 0,
        log_start_offset: first,
        log_end_offset: end,
        cut_at: None,
        rebuilt_indexes: 0,
        resumed: true,
        open_transactions: vec![],
    })
}

/// The offset after the last batch of the segment with base `last_base` in `dir`.
fn end_offset_of(dir: &Path, last_base: Option<i64>) -> Result<i64, RestoreError> {
    let Some(base) = last_base else { return Ok(0) };
    let path = dir.join(format!("{base:020}.log"));
    let log = crate::sys::map(&path).map_err(io(&path))?;
    let mut end = base;
    for b in log_entries(log.bytes()) {
        if let Some(l) = b.last_offset() {
            end = l + 1;
        }
    }
    Ok(end)
}

/// Builds one partition in `stage`. Returns its report and the stored bytes fetched. Every
/// file is fsynced (the `.log`s last, their writeback started while they were verified),
/// then the directory, before the caller renames it into place.
async fn build_partition(
    store: &Store,
    plan: &Plan,
    p: &PartitionPlan,
    stage: &Path,
    topic_id: &str,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(PartitionReport, u64), RestoreError> {
    let mut fetched = 0u64;
    let mut rebuilt = 0usize;
    let mut cut_at = None;
    let mut end = p.ranges.first().map_or(0, |m| m.start_offset);
    let mut snapshot: Option<(i64, Vec<u8>)> = None;
    let mut bases = Vec::new();
    let mut log_bytes = 0u64;
    let mut empty_at: Option<i64> = None;
    // Files written here, fsynced together at the end.
    let mut to_sync: Vec<PathBuf> = Vec::new();
    let segs: Vec<&Manifest> = p
        .ranges
        .iter()
        .filter(|m| m.kind == RangeKind::Segment)
        .collect();
    // Open transactions carried from segment to segment, for rebuilt `.txnindex` files. (A
    // chain that starts after offset 0 starts with none known.)
    let mut txns = index_build::TxnIndexBuilder::new();
    for (i, m) in segs.iter().enumerate() {
        let is_last = i + 1 == segs.len();
        let base = m.start_offset;
        let log_path = stage.join(format!("{base:020}.log"));
        let Some(lo) = &m.objects.log else { continue };
        let trim = is_last && p.trim_last;
        // Fetch, and verify every batch and the digest of the whole range, in one pass.
        let check = fetch_log(
            store,
            lo,
            &log_path,
            base,
            m.next_offset,
            trim.then_some(plan.cut),
            &mut txns,
            progress,
        )
        .await?;
        fetched += check.fetched;
        let s = &check.summary;
        if s.stats.batch_digest != m.stats.batch_digest || s.slice_position != 0 {
            return Err(RestoreError::Integrity {
                key: lo.key.clone(),
                message: format!(
                    "the batches differ from what the manifest records (digest {} vs {})",
                    s.stats.batch_digest, m.stats.batch_digest
                ),
            });
        }
        // The range's bounds must be what its batches allow: the offsets of [start, next)
        // that hold no batch are the manifest's `empty_offsets` (a raised `next_offset` would
        // become the restored log end, the high watermark and a snapshot's name).
        let (head, tail) = match (s.stats.first_batch_offset, s.stats.last_batch_offset) {
            (Some(f), Some(l)) => ((f - base).max(0), (m.next_offset - 1 - l).max(0)),
            _ => (m.next_offset - base, 0),
        };
        let empty = s
            .stats
            .empty_offsets
            .saturating_add(head as u64)
            .saturating_add(tail as u64);
        if empty != m.stats.empty_offsets {
            return Err(RestoreError::Integrity {
                key: crate::archive::layout::PartitionKey {
                    cluster_id: plan.cluster_id.clone(),
                    topic: p.topic.clone(),
                    topic_id: p.archived_topic_id.clone(),
                    partition: p.partition,
                }
                .manifest(base)
                .to_string(),
                message: format!(
                    "range [{base}, {}) does not fit its batches: they span {}..={}, which leaves {empty} offsets without a batch, but the manifest records {} (a next_offset or empty_offsets that was changed)",
                    m.next_offset,
                    s.stats.first_batch_offset.map_or("-".into(), |o| o.to_string()),
                    s.stats.last_batch_offset.map_or("-".into(), |o| o.to_string()),
                    m.stats.empty_offsets
                ),
            });
        }
        // The offset after the range's last batch, from the verifying walk.
        let walked_end = s.stats.last_batch_offset.map_or(base, |l| l + 1);
        // (byte position, base offset of the first batch not kept) when this range is cut.
        let trim_to: Option<(u64, Option<i64>)> = trim.then_some(match check.cut {
            Some((pos, b)) => (pos, Some(b)),
            None => (lo.size, None),
        });
        let whole = trim_to.is_none();
        if let Some((pos, cut_base)) = trim_to {
            let f = fs::OpenOptions::new()
                .write(true)
                .open(&log_path)
                .map_err(io(&log_path))?;
            f.set_len(pos).map_err(io(&log_path))?;
            if pos == 0 {
                // Nothing of this range is kept.
                fs::remove_file(&log_path).map_err(io(&log_path))?;
                cut_at = Some(cut_base.unwrap_or(base));
                if bases.is_empty() {
                    // The log restarts empty where the cut is, so the offsets already used
                    // (the cleaner may have left none of them a record) are not reused.
                    empty_at = cut_at;
                }
                break;
            }
        }
        to_sync.push(log_path.clone());
        if plan.mode == Mode::NewCluster {
            reset_leader_epochs(&log_path)?;
        }
        log_bytes += trim_to.map_or(lo.size, |(pos, _)| pos);
        // A cut log ends where the first batch not kept began.
        let seg_end = match trim_to {
            Some((_, cut_base)) => {
                let e = cut_base.unwrap_or(walked_end);
                cut_at = Some(e);
                e
            }
            None => walked_end,
        };
        // The transaction state over the batches kept, from the verifying walk; where the
        // walk found it inconsistent, a walk from the state before this range reports why.
        let txn_result = |data: &[u8]| -> Result<Vec<AbortedTxn>, RestoreError> {
            let integrity = |e: segvault_format::error::FormatError| RestoreError::Integrity {
                key: lo.key.clone(),
                message: e.to_string(),
            };
            match &check.txn_failed_from {
                None => Ok(check.aborted.clone()),
                Some(before) => match before.clone().add_segment(data) {
                    Err(e) => Err(integrity(e)),
                    Ok(_) => Err(RestoreError::Integrity {
                        key: lo.key.clone(),
                        message: "the transaction markers do not match the batches before them"
                            .into(),
                    }),
                },
            }
        };
        // Indexes: the broker's own for a whole segment archived whole, else rebuilt.
        let archived = whole && m.slice_position == 0 && m.objects.index.is_some();
        let (index, timeindex, txnindex) = if archived {
            let index = fetch_small(store, m.objects.index.as_ref().unwrap()).await?;
            let timeindex = match &m.objects.timeindex {
                Some(t) => fetch_small(store, t).await?,
                None => vec![],
            };
            let txnindex = match &m.objects.txnindex {
                Some(t) => Some(fetch_small(store, t).await?),
                None => None,
            };
            if check.txn_failed_from.is_some() {
                let log = crate::sys::map(&log_path).map_err(io(&log_path))?;
                txn_result(log.bytes())?;
            }
            (index, timeindex, txnindex)
        } else {
            rebuilt += 1;
            let integrity = |e: segvault_format::error::FormatError| RestoreError::Integrity {
                key: lo.key.clone(),
                message: e.to_string(),
            };
            let log = crate::sys::map(&log_path).map_err(io(&log_path))?;
            let data = log.bytes();
            let built = blocking(|| {
                index_build::build_indexes(data, base, index_build::DEFAULT_INDEX_INTERVAL_BYTES)
            })
            .map_err(integrity)?;
            let aborted = txn_result(data)?;
            let txn = index_build::encode_txn_index(&aborted);
            (
                built.offset_index,
                built.time_index,
                (!txn.is_empty()).then_some(txn),
            )
        };
        for (ext, bytes) in [("index", Some(&index)), ("timeindex", Some(&timeindex))]
            .into_iter()
            .chain(std::iter::once(("txnindex", txnindex.as_ref())))
        {
            if let Some(b) = bytes {
                let path = stage.join(format!("{base:020}.{ext}"));
                write_unsynced(&path, b)?;
                to_sync.push(path);
            }
        }
        bases.push(base);
        end = seg_end.max(if whole { m.next_offset } else { seg_end });
        // Producer state: the snapshot at this range's end, if it is whole; else keep the
        // previous one (at this segment's base) and let the broker replay the cut segment.
        if whole {
            if let Some(s) = &m.objects.producer_snapshot {
                snapshot = Some((m.next_offset, fetch_small(store, s).await?));
            }
        }
        if !whole {
            break;
        }
    }
    let mut small = |path: PathBuf, bytes: &[u8]| -> Result<(), RestoreError> {
        write_unsynced(&path, bytes)?;
        to_sync.push(path);
        Ok(())
    };
    match plan.mode {
        Mode::BareMetal => {
            if let Some((at, bytes)) = snapshot.filter(|(at, _)| *at <= end) {
                small(stage.join(format!("{at:020}.snapshot")), &bytes)?;
            }
        }
        Mode::NewCluster => {
            // A new cluster hands out producer ids from 0 again: restored producer state
            // would collide with its new producers. Start with none at the log end.
            small(
                stage.join(format!("{end:020}.snapshot")),
                &segvault_format::snapshot::write_producer_snapshot(&[]),
            )?;
        }
    }
    let first = p.ranges.first().map_or(0, |m| m.start_offset);
    let epochs: Vec<EpochEntry> = match plan.mode {
        Mode::BareMetal => p
            .epochs
            .iter()
            .filter(|(_, o)| *o < end)
            .map(|&(epoch, start_offset)| EpochEntry {
                epoch,
                start_offset,
            })
            .collect(),
        Mode::NewCluster => vec![EpochEntry {
            epoch: 0,
            start_offset: first,
        }],
    };
    small(
        stage.join("leader-epoch-checkpoint"),
        text::write_leader_epoch_checkpoint(&epochs).as_bytes(),
    )?;
    let uuid = Uuid::parse(topic_id)
        .map_err(|e| RestoreError::Refused(format!("topic id {topic_id}: {e}")))?;
    small(
        stage.join("partition.metadata"),
        text::write_partition_metadata(&uuid).as_bytes(),
    )?;
    let mut first = first;
    if bases.is_empty() {
        // Nothing before the cut: an empty log starting at the cut (or where the archive
        // starts).
        let at = empty_at.unwrap_or(first);
        small(stage.join(format!("{at:020}.log")), b"")?;
        end = at;
        first = at;
    }
    // Durable before it is renamed into place: the small files first, then the `.log`s,
    // whose writeback has been under way since they were verified.
    to_sync.sort_by_key(|p| p.extension().is_some_and(|e| e == "log"));
    blocking(|| {
        for path in &to_sync {
            File::open(path)
                .and_then(|f| f.sync_all())
                .map_err(io(path))?;
        }
        sync_dir(stage)
    })?;
    Ok((
        PartitionReport {
            topic: p.topic.clone(),
            partition: p.partition,
            dir: stage.to_path_buf(),
            topic_id: topic_id.to_string(),
            segments: bases.len().max(1),
            log_bytes,
            log_start_offset: first,
            log_end_offset: end,
            cut_at,
            rebuilt_indexes: rebuilt,
            resumed: false,
            open_transactions: txns
                .open_transactions()
                .iter()
                .map(|(&pid, &first)| (pid, first))
                .collect(),
        },
        fetched,
    ))
}

/// Writes a file in the staging dir; the partition's build fsyncs it before placement.
fn write_unsynced(path: &Path, bytes: &[u8]) -> Result<(), RestoreError> {
    let mut f = File::create(path).map_err(io(path))?;
    f.write_all(bytes).map_err(io(path))
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), RestoreError> {
    let mut f = File::create(path).map_err(io(path))?;
    f.write_all(bytes).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

/// Sets PartitionLeaderEpoch (bytes 12..16, outside the CRC) of every v2 batch to 0, so a
/// new cluster's leader-epoch cache, which starts at epoch 0, is consistent with the log.
fn reset_leader_epochs(path: &Path) -> Result<(), RestoreError> {
    use std::os::unix::fs::FileExt;
    let positions: Vec<u64> = {
        let log = crate::sys::map(&path).map_err(io(path))?;
        log_entries(log.bytes())
            .filter(|b| b.magic() == 2 && b.partition_leader_epoch() != Some(0))
            .map(|b| b.position())
            .collect()
    };
    let f = fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io(path))?;
    for pos in positions {
        f.write_all_at(&0i32.to_be_bytes(), pos + 12)
            .map_err(io(path))?;
    }
    f.sync_all().map_err(io(path))
}

/// Bare-metal: the node's own `meta.properties` (same cluster, node and directory ids).
async fn restore_meta_properties(
    store: &Store,
    plan: &Plan,
    to: &Path,
    opts: &WriteOptions,
) -> Result<bool, RestoreError> {
    let (Some(node), Some(dir_id)) = (plan.node_id, &plan.log_dir_id) else {
        return Ok(false);
    };
    let key = layout::broker_file(&plan.cluster_id, node, dir_id, "meta.properties");
    let bytes = get_all(store, &key).await?;
    let meta = text::parse_meta_properties(&bytes).map_err(|e| RestoreError::Integrity {
        key: key.to_string(),
        message: e.to_string(),
    })?;
    if meta.cluster_id.as_deref() != Some(plan.cluster_id.as_str()) || meta.node_id != Some(node) {
        return Err(RestoreError::Integrity {
            key: key.to_string(),
            message: format!(
                "names cluster {:?} node {:?}, not the cluster {} node {node} it is archived under",
                meta.cluster_id, meta.node_id, plan.cluster_id
            ),
        });
    }
    let path = to.join("meta.properties");
    if let Ok(existing) = fs::read(&path) {
        if existing == bytes.as_ref() {
            return Ok(false);
        }
        if !opts.force {
            return Err(RestoreError::Refused(format!(
                "{}: exists and differs from node {node}'s archived meta.properties (another node or cluster formatted this dir?); use --force to replace it",
                path.display()
            )));
        }
    }
    write_atomic(&path, &bytes)?;
    Ok(true)
}

/// Bare-metal: the node's newest archived KRaft snapshot, as the whole of
/// `__cluster_metadata-0`. The broker starts from it (its log is empty, so the snapshot is
/// ahead of it) and fetches everything later from the quorum. Skipped if the target already
/// has a metadata log, unless `--force`.
async fn restore_metadata_snapshot(
    store: &Store,
    plan: &Plan,
    to: &Path,
    opts: &WriteOptions,
) -> Result<Option<String>, RestoreError> {
    let (Some(node), Some(name)) = (plan.node_id, plan.metadata_snapshot.as_ref()) else {
        return Ok(None);
    };
    let dir = to.join("__cluster_metadata-0");
    if dir.exists() && !opts.force {
        return Ok(None);
    }
    let key = layout::metadata_snapshot(&plan.cluster_id, node, name);
    let bytes = get_all(store, &key).await?;
    // A snapshot is a log of record batches: verify every CRC before placing it.
    let mut walk = log_entries(&bytes);
    for _ in walk.by_ref() {}
    match walk.finish() {
        segvault_format::segment::SegmentEnd::Clean => {}
        segvault_format::segment::SegmentEnd::Corrupt(e) => {
            return Err(RestoreError::Integrity {
                key: key.to_string(),
                message: e.to_string(),
            })
        }
        segvault_format::segment::SegmentEnd::PartialTail { position, bytes } => {
            return Err(RestoreError::Integrity {
                key: key.to_string(),
                message: format!("a partial batch of {bytes} bytes at byte {position}"),
            })
        }
    }
    let stage = to.join(STAGING).join("__cluster_metadata-0");
    if stage.exists() {
        fs::remove_dir_all(&stage).map_err(io(&stage))?;
    }
    fs::create_dir_all(&stage).map_err(io(&stage))?;
    write_file(&stage.join(name), &bytes)?;
    sync_dir(&stage)?;
    if dir.exists() {
        fs::remove_dir_all(&dir).map_err(io(&dir))?;
    }
    fs::rename(&stage, &dir).map_err(io(&dir))?;
    sync_dir(to)?;
    Ok(Some(name.clone()))
}

/// Merges the restored partitions into the target's offset checkpoints.
fn write_checkpoints(to: &Path, parts: &[PartitionReport]) -> Result<(), RestoreError> {
    type Value = fn(&PartitionReport) -> i64;
    let files: [(&str, Value); 3] = [
        ("recovery-point-offset-checkpoint", |p| p.log_end_offset),
        ("replication-offset-checkpoint", |p| p.log_end_offset),
        ("log-start-offset-checkpoint", |p| p.log_start_offset),
    ];
    for (name, value) in files {
        let path = to.join(name);
        let existing = fs::read(&path).unwrap_or_default();
        let mut merged: BTreeMap<(String, i32), i64> = BTreeMap::new();
        if !existing.is_empty() {
            let entries =
                text::parse_offset_checkpoint(&existing).map_err(|e| RestoreError::Io {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
            for e in entries {
                merged.insert((e.topic.to_string(), e.partition), e.offset);
            }
        }
        for p in parts {
            merged.insert((p.topic.clone(), p.partition), value(p));
        }
        let entries: Vec<OffsetCheckpointEntry> = merged
            .iter()
            .map(|((t, p), o)| OffsetCheckpointEntry {
                topic: t,
                partition: *p,
                offset: *o,
            })
            .collect();
        write_atomic(&path, text::write_offset_checkpoint(&entries).as_bytes())?;
    }
    Ok(())
}
