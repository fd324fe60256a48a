//! One archive pass over broker log dirs: every closed, committed segment not yet in the
//! archive is verified, uploaded, and claimed with a conditional create of its manifest.
//!
//! **The chain.** A partition's archive is a chain of ranges `[start, next)` with no hole and
//! no overlap. `start.json` fixes where it begins (created once, by whichever agent comes
//! first). A range can only be claimed at the chain's current end, by creating
//! `chain/<end>.json` if absent; the store lets exactly one writer create a key, so replicas
//! racing for the same offsets store them once, with no coordinator. Data objects are written
//! under keys unique to the attempt (see [`layout`]), so a loser's objects are never the
//! winner's. A create whose reply was lost and whose retry found the key taken is recognised
//! as our own win when the stored manifest is byte for byte the one we sent. The loser
//! removes what lies under the range's `data/` that the winning manifest does not name (its
//! own objects and those of interrupted attempts), never anything the manifest names,
//! compares its batches with the winner's, and records a divergence if they differ. A replica whose segment started earlier than the chain's end archives only the part
//! after it (a batch-aligned slice; its indexes are then left to be rebuilt on restore).
//!
//! **Closed and committed.** A segment is closed when a later segment exists, and committed
//! when that later segment's base offset is at or below the partition's high watermark in
//! `replication-offset-checkpoint`: a follower's truncation can then never change it.
//!
//! **State** lives in the store only: a restarted agent lists `chain/`, reads the last
//! manifest, and continues. Nothing is uploaded twice and nothing is missed.

use super::layout::{self, PartitionKey};
use super::manifest::{
    Manifest, ObjectRef, Objects, RangeKind, Source, StartRecord, FORMAT, START_FORMAT,
};
use super::store::Store;
use super::summary::{summarize_releasing, Refusal, Summary};
use super::upload::{put_bytes, put_log_verified, Encoding, LogUploadError, RateLimit};
use segvault_format::mapped::{file_id, MappedFile};
use segvault_format::text::Uuid;
use crate::logdir::{self, LogDirListing, PartitionDir, SegmentFiles};
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Options {
    /// zstd level for `.log` data, or none.
    pub zstd_level: Option<i32>,
    /// Target uncompressed size of one zstd frame.
    pub frame_bytes: u64,
    /// Partitions archived at once.
    pub concurrency: usize,
    /// Upload rate limit in bytes per second.
    pub rate_limit: Option<u64>,
    /// How long the chain must have stood still at offsets this broker no longer has before
    /// they are recorded as a gap (other replicas get that long to archive them).
    pub gap_after: Duration,
    /// Called the moment a range's manifest is created (or found to be our own), before the
    /// pass goes on: what is published is counted and logged even if the pass later fails
    /// or is abandoned.
    pub on_published: Option<PublishHook>,
}

/// A range this pass has just published (see [`Options::on_published`]).
#[derive(Debug, Clone, Copy)]
pub struct Published<'a> {
    pub log_dir: &'a std::path::Path,
    pub topic: &'a str,
    pub partition: i32,
    pub start: i64,
    pub next: i64,
    /// Bytes stored for the range's objects.
    pub bytes: u64,
    pub slice_position: u64,
    pub renamed: bool,
}

/// See [`Options::on_published`].
#[derive(Clone)]
pub struct PublishHook(pub Arc<dyn Fn(&Published) + Send + Sync>);

impl std::fmt::Debug for PublishHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PublishHook")
    }
}

impl Default for Options {
    fn default() -> Options {
        Options {
            zstd_level: None,
            frame_bytes: 4 << 20,
            concurrency: 4,
            rate_limit: None,
            gap_after: Duration::from_secs(600),
            on_published: None,
        }
    }
}

/// What happened to one segment or range, for the report and the logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    Uploaded {
        start: i64,
        next: i64,
        bytes: u64,
        slice_position: u64,
        /// The broker had renamed the segment away (retention, the log cleaner) by the time
        /// it was read: archived from its `.deleted` name, or with its indexes left out
        /// because their names may already have held a replacement's.
        renamed: bool,
    },
    /// Another agent claimed this range first; our copy matched (or could not be compared).
    ClaimedByOther {
        start: i64,
        next: i64,
        divergent: bool,
    },
    Gap {
        start: i64,
        next: i64,
    },
    Corrupt {
        base: i64,
        position: u64,
        offset: Option<i64>,
        message: String,
    },
    Divergent {
        start: i64,
        message: String,
    },
    /// The broker removed or replaced this segment since the pass listed the partition
    /// (retention, the log cleaner): nothing was published for it; the next pass, listing
    /// again, takes the partition up where the archive ends.
    Changed {
        base: i64,
        message: String,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct PartitionReport {
    pub log_dir: String,
    pub topic: String,
    pub partition: i32,
    pub outcomes: Vec<Outcome>,
    /// Closed segments not archived yet because their end is above the high watermark.
    pub uncommitted_segments: usize,
    /// Where the archive's chain ends after this pass.
    pub archived_until: Option<i64>,
    /// Closed segments (committed or not) whose range the archive does not cover after this
    /// pass, and how many of them are committed.
    pub unarchived_segments: usize,
    pub unarchived_committed_segments: usize,
    /// The oldest `.log` modification time among those, ms since the epoch.
    pub oldest_unarchived_mtime_ms: Option<i64>,
    /// Why the partition was skipped, if it was.
    pub skipped: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub partitions: Vec<PartitionReport>,
    pub uploaded_segments: u64,
    pub uploaded_bytes: u64,
    pub gaps: u64,
    pub corrupt: u64,
    pub divergences: u64,
    /// Uploaded segments the broker had renamed away when they were read (see
    /// [`Outcome::Uploaded`]).
    pub renamed_segments: u64,
    /// Partitions whose segments the broker changed during the pass (see
    /// [`Outcome::Changed`]): left for the next pass.
    pub changed: u64,
    /// Partitions the pass could not archive (an unreadable file or directory, a store
    /// error): the others were archived and are counted; the pass as a whole failed.
    pub failures: Vec<Failure>,
    /// Sums over the partitions (see [`PartitionReport`]); the oldest is the minimum.
    pub unarchived_segments: u64,
    pub unarchived_committed_segments: u64,
    pub oldest_unarchived_mtime_ms: Option<i64>,
}

/// A partition (or partition directory) a pass could not archive, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub log_dir: String,
    /// The partition directory, or the partition's `topic-partition`.
    pub partition: String,
    pub error: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{0}")]
    LogDir(#[from] logdir::Error),
    #[error("{path}: {message}")]
    NotABrokerDir { path: PathBuf, message: String },
    #[error("store {url}, key {key}: {source}")]
    Store {
        url: String,
        key: String,
        #[source]
        source: object_store::Error,
    },
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
}

/// The identity of the broker whose log dir this is.
#[derive(Debug, Clone)]
struct Broker {
    cluster_id: String,
    node_id: i32,
    log_dir: PathBuf,
    log_dir_id: String,
}

fn broker_of(listing: &LogDirListing) -> Result<Broker, ArchiveError> {
    let not = |message: String| ArchiveError::NotABrokerDir {
        path: listing.path.clone(),
        message,
    };
    let meta = match &listing.meta_properties {
        None => {
            return Err(not(
                "expected meta.properties (a broker log dir); found none".into(),
            ))
        }
        Some(Err(e)) => return Err(not(format!("meta.properties: {e}"))),
        Some(Ok(m)) => m,
    };
    let cluster_id = meta
        .cluster_id
        .clone()
        .ok_or_else(|| not("meta.properties has no cluster.id".into()))?;
    let node_id = meta
        .node_id
        .ok_or_else(|| not("meta.properties has no node.id or broker.id".into()))?;
    layout::validate_name("cluster.id", &cluster_id).map_err(not)?;
    let log_dir_id = match &meta.directory_id {
        Some(u) => u.to_string(),
        // No directory.id (older brokers): name the dir by a hash of its path.
        None => hex::encode(&Sha256::digest(listing.path.to_string_lossy().as_bytes())[..8]),
    };
    let log_dir = std::fs::canonicalize(&listing.path).unwrap_or_else(|_| listing.path.clone());
    Ok(Broker {
        cluster_id,
        node_id,
        log_dir,
        log_dir_id,
    })
}

/// Checks that `dir` is a readable broker log dir (a directory with a valid
/// `meta.properties` naming the cluster and node), as a pass needs it.
pub fn check_log_dir(dir: &std::path::Path) -> Result<(), ArchiveError> {
    broker_of(&logdir::scan(dir)?).map(|_| ())
}

/// Archives every log dir once.
pub async fn archive_once(
    store: &Store,
    log_dirs: &[PathBuf],
    opts: &Options,
) -> Result<Report, ArchiveError> {
    let rate = opts.rate_limit.map(RateLimit::new).map(Arc::new);
    let mut report = Report::default();
    for dir in log_dirs {
        let listing = logdir::scan(dir)?;
        archive_dir(store, &listing, opts, &rate, &mut report).await?;
    }
    Ok(report)
}

/// Archives what `listing` names. The listing may be stale by the time a partition's turn
/// comes, as every listing of a live broker is: segments the broker has since removed or
/// replaced are read from their `.deleted` name while it lasts, or left for the next pass
/// ([`Outcome::Changed`]); nothing read from a replacement is published under the listed
/// segment's range.
pub async fn archive_listing(
    store: &Store,
    listing: &LogDirListing,
    opts: &Options,
) -> Result<Report, ArchiveError> {
    let rate = opts.rate_limit.map(RateLimit::new).map(Arc::new);
    let mut report = Report::default();
    archive_dir(store, listing, opts, &rate, &mut report).await?;
    Ok(report)
}

async fn archive_dir(
    store: &Store,
    listing: &LogDirListing,
    opts: &Options,
    rate: &Option<Arc<RateLimit>>,
    report: &mut Report,
) -> Result<(), ArchiveError> {
    {
        let broker = broker_of(listing)?;
        upload_broker_files(store, &broker, listing).await?;
        upload_kraft_snapshots(store, &broker, listing).await?;
        // Partitions run as tasks of their own, `concurrency` at a time, so that their
        // blocking work (the verifying walk, hashing, writes, fsync) runs on several cores.
        // The set aborts them if the pass is dropped (the agent's shutdown).
        let mut tasks = tokio::task::JoinSet::new();
        let mut results: Vec<Done> = Vec::new();
        let width = opts.concurrency.max(1);
        for (n, p) in listing.partitions.iter().enumerate() {
            // The metadata log has no high watermark in the checkpoint: its closed segments
            // are committed by the Raft quorum before they roll.
            let high_watermark = if p.is_metadata_log() {
                Some(i64::MAX)
            } else {
                hw_lookup(&p.topic_partition(), listing)
            };
            if tasks.len() >= width {
                if let Some(done) = tasks.join_next().await {
                    results.push(joined(done, &listing.path));
                }
            }
            let (store, broker, p, opts, rate) = (
                store.clone(),
                broker.clone(),
                p.clone(),
                opts.clone(),
                rate.clone(),
            );
            tasks.spawn(async move {
                let r = archive_partition(&store, &broker, &p, high_watermark, &opts, rate).await;
                (n, r)
            });
        }
        while let Some(done) = tasks.join_next().await {
            results.push(joined(done, &listing.path));
        }
        // Without the high watermarks nothing can be known committed: never a silent
        // "0 segments".
        let has_closed = listing
            .partitions
            .iter()
            .any(|p| !p.is_metadata_log() && !p.closed_segments().is_empty());
        let cp = listing.path.join("replication-offset-checkpoint");
        let hw_problem = match &listing.checkpoints.replication_offset {
            Some(Ok(_)) => None,
            None if has_closed => Some(format!(
                "{} is missing: no segment can be known committed, so none was archived (a broker writes it every replica.high.watermark.checkpoint.interval.ms)",
                cp.display()
            )),
            None => None,
            Some(Err(e)) => Some(format!(
                "{}: expected an offset checkpoint: {e}; no segment can be known committed, so none was archived",
                cp.display()
            )),
        };
        if let Some(error) = hw_problem {
            tracing::error!(log_dir = %listing.path.display(), %error, "high watermarks unknown");
            report.failures.push(Failure {
                log_dir: listing.path.display().to_string(),
                partition: "(every partition)".into(),
                error,
            });
        }
        for u in &listing.unreadable {
            tracing::error!(log_dir = %listing.path.display(), partition = %u.path.display(), error = %u.reason, "partition directory unreadable: not archived");
            report.failures.push(Failure {
                log_dir: listing.path.display().to_string(),
                partition: u.path.display().to_string(),
                error: u.reason.clone(),
            });
        }
        results.sort_by_key(|(n, _)| *n);
        for (n, r) in results {
            // One partition's failure must not lose the others' work: what they archived
            // is counted; the failure is reported and fails the pass.
            let (r, err) = match r {
                Ok((r, err)) => (Some(r), err),
                Err(e) => (None, Some(e)),
            };
            if let Some(e) = err {
                let name = listing
                    .partitions
                    .get(n)
                    .map_or_else(|| "(unknown)".to_string(), |p| p.name());
                tracing::error!(log_dir = %listing.path.display(), partition = %name, error = %e, "partition not archived");
                report.failures.push(Failure {
                    log_dir: listing.path.display().to_string(),
                    partition: name,
                    error: e.to_string(),
                });
            }
            let Some(r) = r else { continue };
            for o in &r.outcomes {
                match o {
                    Outcome::Uploaded { bytes, renamed, .. } => {
                        report.uploaded_segments += 1;
                        report.uploaded_bytes += bytes;
                        report.renamed_segments += *renamed as u64;
                    }
                    Outcome::Gap { .. } => report.gaps += 1,
                    Outcome::Corrupt { .. } => report.corrupt += 1,
                    Outcome::Divergent { .. }
                    | Outcome::ClaimedByOther {
                        divergent: true, ..
                    } => report.divergences += 1,
                    Outcome::ClaimedByOther { .. } => {}
                    Outcome::Changed { .. } => report.changed += 1,
                }
            }
            report.unarchived_segments += r.unarchived_segments as u64;
            report.unarchived_committed_segments += r.unarchived_committed_segments as u64;
            report.oldest_unarchived_mtime_ms = match (
                report.oldest_unarchived_mtime_ms,
                r.oldest_unarchived_mtime_ms,
            ) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            report.partitions.push(r);
        }
    }
    Ok(())
}

/// A partition task's result, in listing order (`usize`); a task that panicked or was
/// cancelled is an error of the log dir.
type Done = (
    usize,
    Result<(PartitionReport, Option<ArchiveError>), ArchiveError>,
);

fn joined(
    done: Result<(usize, (PartitionReport, Option<ArchiveError>)), tokio::task::JoinError>,
    log_dir: &std::path::Path,
) -> Done {
    match done {
        Ok((n, r)) => (n, Ok(r)),
        Err(e) => (
            usize::MAX,
            Err(ArchiveError::File {
                path: log_dir.to_path_buf(),
                message: format!("a partition's archive task stopped: {e}"),
            }),
        ),
    }
}

fn hw_lookup(tp: &(String, i32), listing: &LogDirListing) -> Option<i64> {
    match &listing.checkpoints.replication_offset {
        Some(Ok(m)) => m.get(tp).copied(),
        _ => None,
    }
}

fn store_err(store: &Store, key: &Path) -> impl FnOnce(object_store::Error) -> ArchiveError {
    let url = store.url.clone();
    let key = key.to_string();
    move |source| ArchiveError::Store { url, key, source }
}

async fn upload_broker_files(
    store: &Store,
    b: &Broker,
    listing: &LogDirListing,
) -> Result<(), ArchiveError> {
    let mut files: Vec<String> = vec!["meta.properties".into()];
    files.extend(
        listing
            .checkpoints
            .named()
            .iter()
            .filter(|(_, c)| c.is_some())
            .map(|(n, _)| n.to_string()),
    );
    for name in files {
        let path = listing.path.join(&name);
        // A checkpoint may be replaced (tmp + rename) while we read it: read it whole, once.
        let Ok(bytes) = segvault_format::mapped::read_regular(&path, 1 << 20) else {
            continue;
        };
        let key = layout::broker_file(&b.cluster_id, b.node_id, &b.log_dir_id, &name);
        store
            .inner
            .put(&key, PutPayload::from(bytes))
            .await
            .map_err(store_err(store, &key))?;
    }
    Ok(())
}

/// KRaft snapshots (`__cluster_metadata-0/<offset>-<epoch>.checkpoint`) are immutable once
/// written: each is stored once per node, with a conditional create.
async fn upload_kraft_snapshots(
    store: &Store,
    b: &Broker,
    listing: &LogDirListing,
) -> Result<(), ArchiveError> {
    let Some(meta) = listing.partitions.iter().find(|p| p.is_metadata_log()) else {
        return Ok(());
    };
    for (_, _, path) in &meta.kraft_snapshots {
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let key = layout::metadata_snapshot(&b.cluster_id, b.node_id, name);
        if store.inner.head(&key).await.is_ok() {
            continue;
        }
        // The controller deletes old snapshots: one that vanished meanwhile is skipped.
        let Ok(bytes) = segvault_format::mapped::read_regular(path, 1 << 30) else {
            continue;
        };
        create(store, &key, bytes).await?;
    }
    Ok(())
}

/// The chain's state for one partition, as the store says.
struct Chain {
    /// Offset the next range must start at; `None` if the chain has not started.
    next: Option<i64>,
    /// Start offsets of every range.
    starts: std::collections::BTreeSet<i64>,
    /// When the last range (or the start) was written, ms since the epoch.
    last_written_ms: i64,
}

async fn read_json<T: serde::de::DeserializeOwned>(
    store: &Store,
    key: &Path,
) -> Result<Option<T>, ArchiveError> {
    match store.inner.get(key).await {
        Ok(r) => {
            let bytes = r.bytes().await.map_err(store_err(store, key))?;
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| ArchiveError::Store {
                    url: store.url.clone(),
                    key: key.to_string(),
                    source: object_store::Error::Generic {
                        store: "manifest",
                        source: format!("expected a segvault manifest: {e}").into(),
                    },
                })
        }
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(store_err(store, key)(e)),
    }
}

async fn load_chain(store: &Store, key: &PartitionKey) -> Result<Chain, ArchiveError> {
    let dir = key.chain_dir();
    let metas: Vec<_> = store
        .inner
        .list(Some(&dir))
        .try_collect()
        .await
        .map_err(store_err(store, &dir))?;
    let starts: std::collections::BTreeSet<i64> = metas
        .iter()
        .filter_map(|m| layout::manifest_start(&m.location))
        .collect();
    if let Some(&last) = starts.last() {
        let loc = key.manifest(last);
        let m: Manifest = read_json(store, &loc)
            .await?
            .ok_or_else(|| ArchiveError::Store {
                url: store.url.clone(),
                key: loc.to_string(),
                source: object_store::Error::NotFound {
                    path: loc.to_string(),
                    source: "listed but gone".into(),
                },
            })?;
        return Ok(Chain {
            next: Some(m.next_offset),
            starts,
            last_written_ms: m.source.archived_at_ms,
        });
    }
    let start: Option<StartRecord> = read_json(store, &key.start()).await?;
    Ok(match start {
        Some(s) => Chain {
            next: Some(s.start_offset),
            starts,
            last_written_ms: s.created_at_ms,
        },
        None => Chain {
            next: None,
            starts,
            last_written_ms: now_ms(),
        },
    })
}

use crate::sys::now_ms;

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

async fn create(store: &Store, key: &Path, bytes: Vec<u8>) -> Result<bool, ArchiveError> {
    let opts = PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    match store
        .inner
        .put_opts(key, PutPayload::from(bytes), opts)
        .await
    {
        Ok(_) => Ok(true),
        Err(object_store::Error::AlreadyExists { .. })
        | Err(object_store::Error::Precondition { .. }) => Ok(false),
        Err(e) => Err(store_err(store, key)(e)),
    }
}

/// Archives one partition. On an error, the report still holds what was published before
/// it (those ranges are archived for good and must be counted).
async fn archive_partition(
    store: &Store,
    b: &Broker,
    p: &PartitionDir,
    high_watermark: Option<i64>,
    opts: &Options,
    rate: Option<Arc<RateLimit>>,
) -> (PartitionReport, Option<ArchiveError>) {
    let mut report = PartitionReport {
        log_dir: b.log_dir.display().to_string(),
        topic: p.topic.clone(),
        partition: p.partition,
        outcomes: vec![],
        uncommitted_segments: 0,
        archived_until: None,
        unarchived_segments: 0,
        unarchived_committed_segments: 0,
        oldest_unarchived_mtime_ms: None,
        skipped: None,
    };
    let err = archive_partition_into(&mut report, store, b, p, high_watermark, opts, rate)
        .await
        .err();
    if err.is_some() {
        // The lag still counts: closed segments past where the chain was last seen to end
        // (all of them if it was never read).
        let until = report.archived_until;
        count_unarchived(&mut report, p, until, high_watermark);
    }
    (report, err)
}

async fn archive_partition_into(
    report: &mut PartitionReport,
    store: &Store,
    b: &Broker,
    p: &PartitionDir,
    high_watermark: Option<i64>,
    opts: &Options,
    rate: Option<Arc<RateLimit>>,
) -> Result<(), ArchiveError> {
    let topic_id = match (p.topic_id, p.is_metadata_log()) {
        (Some(id), _) => id.to_string(),
        (None, true) => Uuid::METADATA_TOPIC_ID.to_string(),
        (None, false) => {
            report.skipped = Some("no valid partition.metadata: the topic id is unknown".into());
            return Ok(());
        }
    };
    if let Err(e) = layout::validate_topic(&p.topic) {
        report.skipped = Some(e);
        return Ok(());
    }
    let key = PartitionKey {
        cluster_id: b.cluster_id.clone(),
        topic: p.topic.clone(),
        topic_id,
        partition: p.partition,
    };
    let closed = p.closed_segments();
    // Segments whose successor starts at or below the high watermark.
    let committed: Vec<(usize, i64)> = closed
        .iter()
        .enumerate()
        .map(|(i, _)| (i, p.segments[i + 1].base_offset))
        .take_while(|&(_, next)| high_watermark.is_some_and(|hw| next <= hw))
        .collect();
    report.uncommitted_segments = closed.len() - committed.len();
    if committed.is_empty() {
        count_unarchived(report, p, None, high_watermark);
        return Ok(());
    }
    let mut chain = load_chain(store, &key).await?;
    report.archived_until = chain.next;
    if chain.next.is_none() {
        let first = p.segments[0].base_offset;
        // The start is fixed for good: never from a listing that missed earlier segments.
        if !listing_confirmed(p, i64::MIN, first) {
            report.outcomes.push(unconfirmed(p, first));
            count_unarchived(report, p, None, high_watermark);
            return Ok(());
        }
        let start = StartRecord {
            format: START_FORMAT.into(),
            start_offset: first,
            created_at_ms: now_ms(),
            node_id: b.node_id,
        };
        create(
            store,
            &key.start(),
            serde_json::to_vec(&start).unwrap_or_default(),
        )
        .await?;
        chain = load_chain(store, &key).await?;
        report.archived_until = chain.next;
    }
    let mut compared = compared_ranges(store, &key, b.node_id).await?;
    let mut idx = 0;
    while idx < committed.len() {
        let (i, next_base) = committed[idx];
        let seg = &p.segments[i];
        let chain_next = chain.next.unwrap_or(seg.base_offset);
        if next_base <= chain_next {
            // Already archived, by us or from a replica. A replica compares its own batches
            // with the archived copy once per range (the marker keeps that state in the store).
            if chain.starts.contains(&seg.base_offset) && !compared.contains(&seg.base_offset) {
                let o = compare_with_archive(store, &key, b, p, seg, next_base).await?;
                if let Some(o @ Outcome::Changed { .. }) = o {
                    report.outcomes.push(o); // compared by a later pass
                    break;
                }
                report.outcomes.extend(o);
                compared.insert(seg.base_offset);
            }
            idx += 1;
            continue;
        }
        if seg.base_offset > chain_next {
            // Offsets [chain_next, base) are not on this broker any more.
            if now_ms() - chain.last_written_ms < opts.gap_after.as_millis() as i64 {
                break; // give the other replicas time to archive them
            }
            // A gap is for good: never from a listing that missed the segments holding them.
            if !listing_confirmed(p, i64::MIN, seg.base_offset) {
                report.outcomes.push(unconfirmed(p, seg.base_offset));
                break;
            }
            let m = range_manifest(
                &key,
                b,
                RangeKind::Gap,
                chain_next,
                seg.base_offset,
                seg.base_offset,
                None,
                Objects::default(),
                p,
            );
            let (gkey, sent) = (
                key.manifest(chain_next),
                serde_json::to_vec_pretty(&m).unwrap_or_default(),
            );
            if claim(store, &gkey, sent).await? != Claim::Lost {
                report.outcomes.push(Outcome::Gap {
                    start: chain_next,
                    next: seg.base_offset,
                });
            }
            chain = load_chain(store, &key).await?;
            report.archived_until = chain.next;
            continue;
        }
        // seg.base <= chain_next < next_base: archive [chain_next, next_base) from this segment.
        let Some(log) = open_listed(seg)? else {
            report.outcomes.push(gone(seg));
            break;
        };
        let frame_bytes = opts.frame_bytes;
        let attempt = layout::attempt_id();
        // Identity: verified and uploaded in one pass, published only if the whole segment
        // walks clean. zstd: verified first (the walk places the frames), then compressed.
        let verified = match opts.zstd_level {
            None => {
                let lk = key.data(chain_next, next_base, b.node_id, &attempt, "log");
                let up = put_log_verified(
                    store,
                    &lk,
                    &log,
                    chain_next..next_base,
                    frame_bytes,
                    rate.as_deref(),
                    &|done| log.release(0..done),
                )
                .await;
                log.release(0..log.len());
                match up {
                    Ok((o, s)) => Ok((Some(o), s)),
                    Err(LogUploadError::Refused(r)) => Err(r),
                    Err(LogUploadError::Store(e)) => return Err(store_err(store, &lk)(e)),
                }
            }
            Some(_) => {
                summarize_blocking(&log, chain_next..next_base, frame_bytes).map(|s| (None, s))
            }
        };
        // Truncated while read: what the walk saw past the new end was zeros, not the
        // segment. Neither a result nor corruption: an I/O error naming the file.
        intact(&log, &seg.log)?;
        let verified = match verified {
            Err(r @ Refusal::Beyond { .. }) if changed_since_listing(p, seg, next_base, &log) => {
                report.outcomes.push(Outcome::Changed {
                    base: seg.base_offset,
                    message: format!(
                        "{}: {r}: the broker replaced the segment since the listing (log cleaner); nothing published, left for the next pass",
                        seg.log.display()
                    ),
                });
                break;
            }
            // The listing still holds: the log itself overlaps its successor.
            Err(Refusal::Beyond {
                position,
                batch_base,
                batch_last,
                next,
            }) => Err(Refusal::Corrupt {
                position,
                offset: Some(batch_base),
                message: format!("expected offsets below {next}, where the next segment begins; this batch spans {batch_base}..={batch_last}"),
            }),
            v => v,
        };
        let (log_object, summary) = match verified {
            Ok(v) => v,
            Err(Refusal::Corrupt {
                position,
                offset,
                message,
            }) => {
                let evidence = serde_json::json!({
                    "format": "segvault.corrupt.v1", "file": seg.log.display().to_string(), "node_id": b.node_id,
                    "segment_base_offset": seg.base_offset, "position": position, "offset": offset, "message": message,
                    "detected_at_ms": now_ms(),
                });
                let ek = key.corrupt(seg.base_offset, b.node_id);
                store
                    .inner
                    .put(
                        &ek,
                        PutPayload::from(serde_json::to_vec_pretty(&evidence).unwrap_or_default()),
                    )
                    .await
                    .map_err(store_err(store, &ek))?;
                tracing::error!(file = %seg.log.display(), position, ?offset, %message, "corrupt segment: not archived");
                report.outcomes.push(Outcome::Corrupt {
                    base: seg.base_offset,
                    position,
                    offset,
                    message,
                });
                break;
            }
            Err(r) => {
                // Misaligned (Beyond became Corrupt or Changed above).
                record_divergence(store, &key, b, chain_next, &r.to_string(), None).await?;
                report.outcomes.push(Outcome::Divergent {
                    start: chain_next,
                    message: r.to_string(),
                });
                break;
            }
        };
        let (objects, renamed) = upload_objects(
            store,
            &key,
            b,
            p,
            i,
            chain_next,
            next_base,
            &attempt,
            &log,
            &summary,
            log_object,
            opts,
            rate.as_deref(),
        )
        .await?;
        // The zstd path reads the log again while compressing: still the file?
        intact(&log, &seg.log)?;
        // The range ends where the listing's next segment begins: publish it only if no
        // segment between them has shown up since (a listing torn by the broker's renames).
        if !listing_confirmed(p, seg.base_offset + 1, next_base) {
            delete_objects(store, &objects).await;
            report.outcomes.push(unconfirmed(p, seg.base_offset));
            break;
        }
        let bytes: u64 = objects.iter().map(|o| o.stored_size).sum();
        let m = range_manifest(
            &key,
            b,
            RangeKind::Segment,
            chain_next,
            next_base,
            seg.base_offset,
            Some(&summary),
            objects.clone(),
            p,
        );
        let mkey = key.manifest(chain_next);
        let sent = serde_json::to_vec_pretty(&m).unwrap_or_default();
        let claimed = claim(store, &mkey, sent.clone()).await?;
        if claimed != Claim::Lost {
            // Objects of interrupted attempts at this range can never be published now. Only
            // once the stored manifest has been read back as ours: a store that did not honour
            // the conditional create could hold another archiver's manifest there by now.
            if claimed == Claim::ReadBack || is_ours(store, &mkey, &sent).await? {
                drop_unnamed(store, &key, chain_next, next_base, &m.objects).await;
            }
            tracing::info!(topic = %p.topic, partition = p.partition, start = chain_next, next = next_base, bytes, "archived");
            if let Some(h) = &opts.on_published {
                (h.0)(&Published {
                    log_dir: &b.log_dir,
                    topic: &p.topic,
                    partition: p.partition,
                    start: chain_next,
                    next: next_base,
                    bytes,
                    slice_position: summary.slice_position,
                    renamed,
                });
            }
            report.outcomes.push(Outcome::Uploaded {
                start: chain_next,
                next: next_base,
                bytes,
                slice_position: summary.slice_position,
                renamed,
            });
            chain.next = Some(next_base);
            report.archived_until = chain.next;
            chain.starts.insert(chain_next);
            chain.last_written_ms = m.source.archived_at_ms;
            idx += 1;
        } else {
            // Another archiver (a replica's agent, or another process on this log dir)
            // claimed this range first: drop what the winner does not name, compare.
            let winner: Option<Manifest> = read_json(store, &mkey).await?;
            if let Some(w) = &winner {
                drop_unnamed(store, &key, chain_next, next_base, &w.objects).await;
            }
            let mut divergent = false;
            let marker: &[u8] = match &winner {
                Some(w) if w.next_offset != next_base || w.kind != RangeKind::Segment => {
                    BOUNDARIES_DIFFER
                }
                Some(w) if w.stats.batch_digest == summary.stats.batch_digest => b"match",
                Some(w)
                    if compacted(&summary.stats, chain_next, next_base)
                        || w.stats.empty_offsets > 0 =>
                {
                    COMPACTED
                }
                Some(w) => {
                    divergent = true;
                    let msg = format!(
                        "replica on node {} holds other batches than the archived copy from node {} for offsets [{chain_next}, {next_base})",
                        b.node_id, w.source.node_id
                    );
                    record_divergence(store, &key, b, chain_next, &msg, Some(&summary)).await?;
                    b""
                }
                None => b"winner's manifest unreadable; not compared",
            };
            if !divergent {
                create(store, &key.verified(chain_next, b.node_id), marker.to_vec()).await?;
            }
            compared.insert(chain_next);
            report.outcomes.push(Outcome::ClaimedByOther {
                start: chain_next,
                next: next_base,
                divergent,
            });
            chain = load_chain(store, &key).await?;
            report.archived_until = chain.next;
        }
    }
    report.archived_until = chain.next;
    count_unarchived(report, p, chain.next, high_watermark);
    Ok(())
}

/// Closed segments of `p` whose end is beyond `archived_until` (all of them if `None`):
/// `(count, how many of them are committed, the oldest `.log` mtime among them)`. The lag
/// the pass reports and the agent reads off the log dir after a failed pass.
pub fn unarchived(
    p: &PartitionDir,
    archived_until: Option<i64>,
    high_watermark: Option<i64>,
) -> (usize, usize, Option<i64>) {
    let (mut n, mut committed, mut oldest) = (0, 0, None::<i64>);
    for (i, seg) in p.closed_segments().iter().enumerate() {
        let next = p.segments[i + 1].base_offset;
        if archived_until.is_some_and(|until| next <= until) {
            continue;
        }
        n += 1;
        if high_watermark.is_some_and(|hw| next <= hw) {
            committed += 1;
        }
        let mtime = std::fs::metadata(&seg.log).and_then(|m| m.modified()).ok();
        if let Some(ms) = mtime
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_millis() as i64)
        {
            oldest = Some(oldest.map_or(ms, |o| o.min(ms)));
        }
    }
    (n, committed, oldest)
}

/// [`unarchived`] into the report.
fn count_unarchived(
    report: &mut PartitionReport,
    p: &PartitionDir,
    archived_until: Option<i64>,
    high_watermark: Option<i64>,
) {
    let (n, committed, oldest) = unarchived(p, archived_until, high_watermark);
    report.unarchived_segments = n;
    report.unarchived_committed_segments = committed;
    report.oldest_unarchived_mtime_ms = oldest;
}

/// [`summarize`](super::summary::summarize) is CPU work over a whole segment: on a
/// multi-threaded runtime it runs with `block_in_place`, so the other partitions' uploads keep
/// their worker threads. The pages the walk has passed are released as it goes, so the
/// mapping's resident pages stay at a window, not the segment.
fn summarize_blocking(
    log: &MappedFile,
    range: std::ops::Range<i64>,
    frame_bytes: u64,
) -> Result<Summary, Refusal> {
    let run = || {
        let s = summarize_releasing(log, range, frame_bytes, |done| log.release(0..done));
        log.release(0..log.len());
        s
    };
    crate::sys::blocking(run)
}

async fn compared_ranges(
    store: &Store,
    key: &PartitionKey,
    node: i32,
) -> Result<std::collections::BTreeSet<i64>, ArchiveError> {
    let mut out = std::collections::BTreeSet::new();
    for prefix in key.compared_prefixes() {
        let metas: Vec<_> = store
            .inner
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(store_err(store, &prefix))?;
        out.extend(
            metas
                .iter()
                .filter_map(|m| layout::compared_range(&m.location))
                .filter(|&(_, n)| n == node)
                .map(|(s, _)| s),
        );
    }
    Ok(out)
}

/// The marker of a replica's range that was not compared because one copy was compacted:
/// replicas clean their logs independently, so their batches legitimately differ.
const COMPACTED: &[u8] = b"compacted; not compared";

/// The marker of a replica's range whose segment boundaries differ from the archived range's:
/// the digests cover different batches, so they are not compared range by range.
const BOUNDARIES_DIFFER: &[u8] = b"boundaries differ; not compared";

/// Whether the batches summarised for `[start, next)` leave offsets without a record: the log
/// cleaner has been there.
fn compacted(s: &super::manifest::RangeStats, start: i64, next: i64) -> bool {
    s.empty_offsets > 0
        || s.first_batch_offset != Some(start)
        || s.last_batch_offset != Some(next - 1)
}

/// Compares this broker's segment with the archived range that starts at the same offset,
/// when another broker archived it with the same end. Records a divergence or a match.
async fn compare_with_archive(
    store: &Store,
    key: &PartitionKey,
    b: &Broker,
    p: &PartitionDir,
    seg: &SegmentFiles,
    next_base: i64,
) -> Result<Option<Outcome>, ArchiveError> {
    let start = seg.base_offset;
    let Some(m) = read_json::<Manifest>(store, &key.manifest(start)).await? else {
        return Ok(None);
    };
    if m.source.node_id == b.node_id || m.kind != RangeKind::Segment {
        return Ok(None);
    }
    if m.next_offset != next_base {
        // Different segment boundaries: the digests cover different batches. Not comparable
        // range by range; say so once instead of guessing.
        create(
            store,
            &key.verified(start, b.node_id),
            BOUNDARIES_DIFFER.to_vec(),
        )
        .await?;
        return Ok(None);
    }
    let Some(log) = open_listed(seg)? else {
        return Ok(Some(gone(seg)));
    };
    let ours = summarize_blocking(&log, start..next_base, u64::MAX);
    let outcome = match ours {
        Err(r @ Refusal::Beyond { .. }) if changed_since_listing(p, seg, next_base, &log) => {
            Outcome::Changed {
                base: start,
                message: format!(
                    "{}: {r}: the broker replaced the segment since the listing (log cleaner); compared by a later pass",
                    seg.log.display()
                ),
            }
        }
        Ok(s) if s.stats.batch_digest == m.stats.batch_digest => {
            create(store, &key.verified(start, b.node_id), b"match".to_vec()).await?;
            return Ok(None);
        }
        Ok(s) if compacted(&s.stats, start, next_base) || m.stats.empty_offsets > 0 => {
            create(store, &key.verified(start, b.node_id), COMPACTED.to_vec()).await?;
            return Ok(None);
        }
        Ok(s) => {
            let msg = format!(
                "replica on node {} holds other batches than the archived copy from node {} for offsets [{start}, {next_base})",
                b.node_id, m.source.node_id
            );
            record_divergence(store, key, b, start, &msg, Some(&s)).await?;
            Outcome::Divergent {
                start,
                message: msg,
            }
        }
        Err(r) => {
            let msg = format!("this replica's copy of an archived range cannot be read: {r}");
            record_divergence(store, key, b, start, &msg, None).await?;
            Outcome::Divergent {
                start,
                message: msg,
            }
        }
    };
    Ok(Some(outcome))
}

/// Maps the `.log` of a listed segment. The listing may be stale: retention or the log
/// cleaner may have renamed the file to `.deleted` since (its bytes are still the listed
/// segment's until the broker deletes it, `file.delete.delay.ms` later), or deleted it.
/// `None`: gone under both names.
fn open_listed(seg: &SegmentFiles) -> Result<Option<MappedFile>, ArchiveError> {
    let mut deleted = seg.log.clone().into_os_string();
    deleted.push(".deleted");
    for path in [seg.log.clone(), PathBuf::from(deleted)] {
        match crate::sys::map(&path) {
            Ok(f) => return Ok(Some(f)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(ArchiveError::File {
                    path,
                    message: e.to_string(),
                })
            }
        }
    }
    Ok(None)
}

fn gone(seg: &SegmentFiles) -> Outcome {
    Outcome::Changed {
        base: seg.base_offset,
        message: format!(
            "{}: gone since the listing, also as .deleted (retention or the log cleaner removed it); left for the next pass",
            seg.log.display()
        ),
    }
}

/// Whether the broker has changed what the listing said about `seg` and its successor (at
/// `next`): the `.log` name no longer names the mapped file, or the segments from `seg` up to
/// its successor are not the listed ones any more. Segments rolled after them, or removed
/// before, do not count: they do not change what `seg` should hold.
fn changed_since_listing(
    p: &PartitionDir,
    seg: &SegmentFiles,
    next: i64,
    log: &MappedFile,
) -> bool {
    if renamed(seg, log) {
        return true;
    }
    let within = |s: &&SegmentFiles| s.base_offset >= seg.base_offset && s.base_offset <= next;
    match logdir::scan_partition(&p.path, &p.topic, p.partition) {
        Ok(now) => now
            .segments
            .iter()
            .filter(within)
            .map(|s| s.base_offset)
            .ne(p.segments.iter().filter(within).map(|s| s.base_offset)),
        Err(_) => true,
    }
}

/// Whether a fresh look at the partition confirms that the listing missed no segment with a
/// base offset in `[lo, hi)`: none there that the listing lacks, and no `.log.swap` there.
/// The log cleaner renames the segments it merged to `.deleted` before it moves the merged
/// `.swap` into place, so a listing taken in between (or a directory read torn by those
/// renames) lacks segments that hold data; a range, gap or start built on it would lose
/// them for good. (`.deleted` files do not count: they are gone from the log.)
fn listing_confirmed(p: &PartitionDir, lo: i64, hi: i64) -> bool {
    use segvault_format::names::{parse_file_name, FileName, SegmentFileKind, TransientSuffix};
    let Ok(now) = logdir::scan_partition(&p.path, &p.topic, p.partition) else {
        return false;
    };
    let within = |b: i64| b >= lo && b < hi;
    let listed: std::collections::BTreeSet<i64> =
        p.segments.iter().map(|s| s.base_offset).collect();
    let unlisted = now
        .segments
        .iter()
        .any(|s| within(s.base_offset) && !listed.contains(&s.base_offset));
    let swapping = now.transient.iter().any(|t| {
        let name = t.path.file_name().map(|n| n.to_string_lossy().into_owned());
        matches!(
            name.as_deref().map(parse_file_name),
            Some(FileName::Segment(s)) if s.kind == SegmentFileKind::Log
                && s.suffix == Some(TransientSuffix::Swap)
                && within(s.offset)
        )
    });
    !(unlisted || swapping)
}

fn unconfirmed(p: &PartitionDir, at: i64) -> Outcome {
    Outcome::Changed {
        base: at,
        message: format!(
            "{}: the listing may have missed segments the broker was replacing (a .log.swap or an unlisted segment appeared); nothing published from offset {at}, left for the next pass",
            p.path.display()
        ),
    }
}

#[allow(clippy::too_many_arguments)]
fn range_manifest(
    key: &PartitionKey,
    b: &Broker,
    kind: RangeKind,
    start: i64,
    next: i64,
    segment_base: i64,
    s: Option<&Summary>,
    objects: Objects,
    p: &PartitionDir,
) -> Manifest {
    let epochs = p
        .leader_epochs
        .as_ref()
        .map(|es| {
            // The entry in force at `start`, and every later one that begins before `next`.
            let first = es.iter().rposition(|&(_, o)| o <= start).unwrap_or(0);
            es[first..]
                .iter()
                .filter(|&&(_, o)| o < next)
                .copied()
                .collect()
        })
        .unwrap_or_default();
    Manifest {
        format: FORMAT.into(),
        kind,
        cluster_id: key.cluster_id.clone(),
        topic: key.topic.clone(),
        topic_id: key.topic_id.clone(),
        partition: key.partition,
        start_offset: start,
        next_offset: next,
        segment_base_offset: segment_base,
        slice_position: s.map_or(0, |s| s.slice_position),
        stats: s.map_or_else(Default::default, |s| {
            let mut st = s.stats.clone();
            // Offsets before the first and after the last archived batch hold no record.
            st.empty_offsets += match (st.first_batch_offset, st.last_batch_offset) {
                (Some(f), Some(l)) => (f - start).max(0) as u64 + (next - 1 - l).max(0) as u64,
                _ => (next - start).max(0) as u64,
            };
            st
        }),
        leader_epochs: epochs,
        objects,
        source: Source {
            node_id: b.node_id,
            log_dir: b.log_dir.display().to_string(),
            host: hostname(),
            segvault_version: env!("CARGO_PKG_VERSION").into(),
            archived_at_ms: now_ms(),
        },
    }
}

#[allow(clippy::too_many_arguments)]
async fn upload_objects(
    store: &Store,
    key: &PartitionKey,
    b: &Broker,
    p: &PartitionDir,
    i: usize,
    start: i64,
    next: i64,
    attempt: &str,
    log: &MappedFile,
    s: &Summary,
    uploaded_log: Option<ObjectRef>,
    opts: &Options,
    rate: Option<&RateLimit>,
) -> Result<(Objects, bool), ArchiveError> {
    let seg = &p.segments[i];
    let slice = &log[s.slice_position as usize..];
    let frames: Vec<(u64, i64)> = s
        .frame_starts
        .iter()
        .map(|&(pos, off)| (pos - s.slice_position, off))
        .collect();
    let (encoding, name) = match opts.zstd_level {
        Some(l) => (Encoding::Zstd(l), "log.zst"),
        None => (Encoding::Identity, "log"),
    };
    let mut objects = Objects::default();
    let lk = key.data(start, next, b.node_id, attempt, name);
    objects.log = match uploaded_log {
        Some(o) => Some(o),
        None => Some(
            put_bytes(&store.inner, &lk, slice, encoding, &frames, rate, &|done| {
                let at = s.slice_position as usize;
                log.release(at..at + done)
            })
            .await
            .map_err(store_err(store, &lk))?,
        ),
    };
    // Indexes describe the whole segment: only meaningful for a whole-segment range.
    if s.slice_position == 0 {
        for (file, path) in [
            ("index", &seg.index),
            ("timeindex", &seg.timeindex),
            ("txnindex", &seg.txnindex),
        ] {
            if let Some(path) = path {
                let r = put_file(
                    store,
                    &key.data(start, next, b.node_id, attempt, file),
                    path,
                    rate,
                )
                .await?;
                match file {
                    "index" => objects.index = r,
                    "timeindex" => objects.timeindex = r,
                    _ => objects.txnindex = r,
                }
            }
        }
    }
    // The index files were read after the `.log` was mapped. The broker renames a segment's
    // `.log` before its indexes (LogSegment.changeFileSuffixes), so if the `.log` name still
    // names the mapped file, the indexes read were this segment's. If not (it was renamed,
    // or read as `.deleted`), they may be a replacement's: leave them out; a restore
    // rebuilds missing indexes from the log.
    let renamed = renamed(seg, log);
    if renamed {
        for o in [
            objects.index.take(),
            objects.timeindex.take(),
            objects.txnindex.take(),
        ]
        .into_iter()
        .flatten()
        {
            let _ = store.inner.delete(&Path::from(o.key.as_str())).await;
        }
        tracing::info!(file = %seg.log.display(), "segment renamed while archived: its indexes are left to be rebuilt on restore");
    }
    if let Some((_, snap)) = p.snapshots.iter().find(|(o, _)| *o == next) {
        objects.producer_snapshot = put_file(
            store,
            &key.data(start, next, b.node_id, attempt, "snapshot"),
            snap,
            rate,
        )
        .await?;
    }
    Ok((objects, renamed))
}

/// Whether the `.log` name of `seg` no longer names the mapped file (see [`FileId`](segvault_format::mapped::FileId)).
fn renamed(seg: &SegmentFiles, log: &MappedFile) -> bool {
    file_id(&seg.log).ok() != Some(log.id())
}

/// Uploads a whole small file, or nothing if it vanished meanwhile (the broker may delete a
/// snapshot or rename an index while we work).
async fn put_file(
    store: &Store,
    key: &Path,
    path: &std::path::Path,
    rate: Option<&RateLimit>,
) -> Result<Option<ObjectRef>, ArchiveError> {
    let f = match crate::sys::map(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(ArchiveError::File {
                path: path.to_path_buf(),
                message: e.to_string(),
            })
        }
    };
    let r = put_bytes(
        &store.inner,
        key,
        &f,
        Encoding::Identity,
        &[],
        rate,
        &|done| f.release(0..done),
    )
    .await
    .map_err(store_err(store, key))?;
    intact(&f, path)?;
    Ok(Some(r))
}

/// An I/O error naming `path` if `map` was truncated while read (see
/// [`MappedFile::truncated`]).
fn intact(map: &MappedFile, path: &std::path::Path) -> Result<(), ArchiveError> {
    map.check_intact().map_err(|e| ArchiveError::File {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// How a conditional create of a manifest ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Claim {
    /// The create succeeded.
    Created,
    /// The store said "exists", and what it holds is the manifest we sent (read back): our
    /// own earlier try was applied.
    ReadBack,
    /// Another archiver's manifest is there.
    Lost,
}

/// Creates `key` with `bytes` if absent, telling our own applied retry from a loss (see
/// [`is_ours`]).
async fn claim(store: &Store, key: &Path, bytes: Vec<u8>) -> Result<Claim, ArchiveError> {
    if create(store, key, bytes.clone()).await? {
        Ok(Claim::Created)
    } else if is_ours(store, key, &bytes).await? {
        Ok(Claim::ReadBack)
    } else {
        Ok(Claim::Lost)
    }
}

/// Whether the manifest stored at `key` is the one we sent: a conditional create whose first
/// try was applied but whose reply was lost (a 503, a reset) is retried by the client and
/// answered "already exists". The manifest carries this attempt's unique data keys, so equal
/// bytes mean our own write.
async fn is_ours(store: &Store, key: &Path, sent: &[u8]) -> Result<bool, ArchiveError> {
    match store.inner.get(key).await {
        Ok(r) => {
            let stored = r.bytes().await.map_err(store_err(store, key))?;
            Ok(stored.as_ref() == sent)
        }
        Err(object_store::Error::NotFound { .. }) => Ok(false),
        Err(e) => Err(store_err(store, key)(e)),
    }
}

/// Deletes every object under `[start, next)`'s `data/` that `named` (the objects of the
/// published manifest `chain/<start>.json`) does not name: once that manifest exists, no
/// other attempt at `start` can be published, and no other manifest may name keys there.
/// Best effort: what is left is garbage, never data.
async fn drop_unnamed(store: &Store, key: &PartitionKey, start: i64, next: i64, named: &Objects) {
    let dir = key.range_data(start, next);
    let listed: Vec<object_store::ObjectMeta> = match store
        .inner
        .list(Some(&dir))
        .try_collect()
        .await
    {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(prefix = %dir, error = %e, "could not list a range's data objects to drop those no manifest names; left in place");
            return;
        }
    };
    for o in listed {
        if !named.iter().any(|r| r.key == o.location.as_ref()) {
            let _ = store.inner.delete(&o.location).await;
        }
    }
}

async fn delete_objects(store: &Store, o: &Objects) {
    for r in o.iter() {
        let _ = store.inner.delete(&Path::from(r.key.as_str())).await;
    }
}

async fn record_divergence(
    store: &Store,
    key: &PartitionKey,
    b: &Broker,
    start: i64,
    message: &str,
    s: Option<&Summary>,
) -> Result<(), ArchiveError> {
    tracing::warn!(topic = %key.topic, partition = key.partition, start, %message, "divergence");
    let evidence = serde_json::json!({
        "format": "segvault.divergence.v1", "node_id": b.node_id, "log_dir": b.log_dir.display().to_string(),
        "start_offset": start, "message": message, "batch_digest": s.map(|s| s.stats.batch_digest.clone()),
        "first_batch_offset": s.and_then(|s| s.stats.first_batch_offset), "last_batch_offset": s.and_then(|s| s.stats.last_batch_offset),
        "detected_at_ms": now_ms(),
    });
    let k = key.divergence(start, b.node_id);
    store
        .inner
        .put(
            &k,
            PutPayload::from(serde_json::to_vec_pretty(&evidence).unwrap_or_default()),
        )
        .await
        .map_err(store_err(store, &k))?;
    Ok(())
}
