//! One archive pass over broker log dirs: every closed, committed segment not yet in the
//! archive is verified, uploaded, and claimed with a conditional create of its manifest.
//!
//! **The chain.** A partition's archive is a chain of ranges `[start, next)` with no hole and
//! no overlap. `start.json` fixes where it begins (created once, by whichever agent comes
//! first). A range can only be claimed at the chain's current end, by creating
//! `chain/<end>.json` if absent; the store lets exactly one writer create a key, so replicas
//! racing for the same offsets store them once, with no coordinator. Data objects are written
//! under keys unique to the attempt (see [`layout`](super::layout)), so a loser's objects are never the
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
//! **State.** The truth is in the store: a restarted agent lists `index/` and `chain/` from
//! the last index (or its oldest segment on disk), reads the last manifest, and continues.
//! Nothing is uploaded twice and nothing is missed. An agent also remembers each partition
//! between passes (`memory`), so a partition with nothing new costs no request; chain
//! indexes (`index`) let readers find ranges without reading every manifest.
//!
//! The pass, by concern: `options` (what it is told), `report` (what it reports),
//! `broker` (the log dir's broker and its own files), `chain` (the claim chain),
//! `partition` (one partition's walk over its committed segments), `publish` (a range's
//! objects and manifest), `compare` (a replica against the archived copy), `evidence`
//! (corrupt and divergence records), `relist` (looking again at what the listing said),
//! `memory` (what an agent keeps between passes), `index` (chain indexes).

mod broker;
mod chain;
mod compare;
mod context;
mod evidence;
pub(super) mod index;
pub(super) mod memory;
mod options;
mod partition;
mod publish;
mod relist;
mod report;

pub use super::error::ArchiveError;
pub(crate) use broker::check_log_dir;
pub use options::{Memory, PassOptions, PublishHook, Published};
pub(crate) use report::unarchived;
pub use report::{ArchivedPartition, Failure, Outcome, Report};

use super::store::Store;
use super::upload::RateLimit;
use crate::logdir::{self, LogDirListing};
use broker::{broker_of, upload_broker_files, upload_kraft_snapshots, Broker};
use partition::archive_partition;
use std::path::PathBuf;
use std::sync::Arc;

/// Archives every log dir once.
pub async fn archive_once(
    store: &Store,
    log_dirs: &[PathBuf],
    opts: &PassOptions,
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
    opts: &PassOptions,
) -> Result<Report, ArchiveError> {
    let rate = opts.rate_limit.map(RateLimit::new).map(Arc::new);
    let mut report = Report::default();
    archive_dir(store, listing, opts, &rate, &mut report).await?;
    Ok(report)
}

async fn archive_dir(
    store: &Store,
    listing: &LogDirListing,
    opts: &PassOptions,
    rate: &Option<Arc<RateLimit>>,
    report: &mut Report,
) -> Result<(), ArchiveError> {
    let broker = broker_of(listing)?;
    let memory = opts.memory.as_ref();
    upload_broker_files(store, &broker, listing, memory).await?;
    upload_kraft_snapshots(store, &broker, listing, memory).await?;
    let mut results = archive_partitions(store, &broker, listing, opts, rate).await;
    if let Some(m) = memory {
        m.set_waiting(&broker.log_dir, waiting(listing));
        let present = listing
            .partitions
            .iter()
            .map(|p| p.topic_partition())
            .collect();
        m.retain(&broker.log_dir, &present);
    }
    let failure = |partition: String, error: String| Failure {
        log_dir: listing.path.display().to_string(),
        partition,
        error,
    };
    if let Some(error) = high_watermarks_unknown(listing) {
        tracing::error!(log_dir = %listing.path.display(), %error, "high watermarks unknown");
        report
            .failures
            .push(failure("(every partition)".into(), error));
    }
    for u in &listing.unreadable {
        tracing::error!(log_dir = %listing.path.display(), partition = %u.path.display(), error = %u.reason, "partition directory unreadable: not archived");
        report
            .failures
            .push(failure(u.path.display().to_string(), u.reason.clone()));
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
            report.failures.push(failure(name, e.to_string()));
        }
        if let Some(r) = r {
            report.add(r);
        }
    }
    Ok(())
}

/// Runs every partition of `listing` as a task of its own, `concurrency` at a time, so that
/// their blocking work (the verifying walk, hashing, writes, fsync) runs on several cores.
/// The set aborts them if the pass is dropped (the agent's shutdown).
async fn archive_partitions(
    store: &Store,
    broker: &Broker,
    listing: &LogDirListing,
    opts: &PassOptions,
    rate: &Option<Arc<RateLimit>>,
) -> Vec<Done> {
    let mut tasks = tokio::task::JoinSet::new();
    let mut results: Vec<Done> = Vec::new();
    let width = opts.concurrency.max(1);
    let permits = Arc::new(tokio::sync::Semaphore::new(width));
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
        let (store, broker, p, opts, rate, permits) = (
            store.clone(),
            broker.clone(),
            p.clone(),
            opts.clone(),
            rate.clone(),
            permits.clone(),
        );
        tasks.spawn(async move {
            let r =
                archive_partition(&store, &broker, &p, high_watermark, &opts, rate, permits).await;
            (n, r)
        });
    }
    while let Some(done) = tasks.join_next().await {
        results.push(joined(done, &listing.path));
    }
    results
}

/// Why no segment of `listing` can be known committed, if none can: without the high
/// watermarks, never a silent "0 segments".
fn high_watermarks_unknown(listing: &LogDirListing) -> Option<String> {
    let has_closed = listing
        .partitions
        .iter()
        .any(|p| !p.is_metadata_log() && !p.closed_segments().is_empty());
    let cp = listing.path.join("replication-offset-checkpoint");
    match &listing.checkpoints.replication_offset {
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
    }
}

/// A partition task's result, in listing order (`usize`); a task that panicked or was
/// cancelled is an error of the log dir.
type Done = (
    usize,
    Result<(ArchivedPartition, Option<ArchiveError>), ArchiveError>,
);

fn joined(
    done: Result<(usize, (ArchivedPartition, Option<ArchiveError>)), tokio::task::JoinError>,
    log_dir: &std::path::Path,
) -> Done {
    match done {
        Ok((n, r)) => (n, Ok(r)),
        Err(e) => (
            usize::MAX,
            Err(ArchiveError::TaskStopped {
                path: log_dir.to_path_buf(),
                source: e,
            }),
        ),
    }
}

/// For each partition, the high watermark at which its first closed segment not yet
/// committed becomes committed (what a checkpoint rewrite must reach to give a pass work).
fn waiting(listing: &LogDirListing) -> logdir::OffsetMap {
    let mut out = logdir::OffsetMap::new();
    for p in &listing.partitions {
        if p.is_metadata_log() {
            continue;
        }
        let tp = p.topic_partition();
        let hw = hw_lookup(&tp, listing);
        let closed = p.closed_segments().len();
        let first_waiting = (1..=closed)
            .map(|i| p.segments[i].base_offset)
            .find(|&next| hw.is_none_or(|hw| next > hw));
        if let Some(next) = first_waiting {
            out.insert(tp, next);
        }
    }
    out
}

fn hw_lookup(tp: &(String, i32), listing: &LogDirListing) -> Option<i64> {
    match &listing.checkpoints.replication_offset {
        Some(Ok(m)) => m.get(tp).copied(),
        _ => None,
    }
}
