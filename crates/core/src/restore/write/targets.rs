//! The target, checked before anything is written: the journal of an interrupted restore,
//! `meta.properties`, the offset checkpoints that will be merged, and every partition of the
//! plan (in place already, its topic id, data there). A restore that would fail on one of
//! these fails before its first placement, and `--dry-run` runs the same checks.

use super::journal::{Journal, JOURNAL};
use super::lock::check_unlocked;
use super::node_files::{check_meta_properties, check_metadata_snapshot};
use super::place::{holds_data, resumed_report};
use super::{RestoredPartition, WriteOptions, STAGING};
use crate::archive::store::Store;
use crate::restore::error::RestoreError;
use crate::restore::plan::{Mode, Plan};
use segvault_format::text;
use std::fs;
use std::path::Path;

/// What to do with one partition of the plan.
pub(super) enum Target {
    /// In place from an interrupted run.
    Resumed(RestoredPartition),
    /// To build and place as `name`, with the topic id `topic_id`.
    Build { name: String, topic_id: String },
}

/// What the checks found: each partition's target, in plan order, and the
/// `meta.properties` to write (bare-metal, if the target's differs or is missing).
pub(super) struct Checked {
    pub(super) targets: Vec<Target>,
    pub(super) meta_properties: Option<Vec<u8>>,
    /// Bare-metal: the KRaft snapshot to place as the metadata log, verified.
    pub(super) metadata_snapshot: Option<(String, Vec<u8>)>,
}

/// The checkpoint files a restore merges its partitions into.
pub(super) const CHECKPOINTS: [&str; 3] = [
    "recovery-point-offset-checkpoint",
    "replication-offset-checkpoint",
    "log-start-offset-checkpoint",
];

/// Checks the target `to` for `plan`, writing nothing; `journal` is the interrupted run's, or
/// a new one. Every partition is checked and every problem reported at once.
pub(super) async fn check_targets(
    store: &Store,
    plan: &Plan,
    to: &Path,
    opts: &WriteOptions,
    journal: &Journal,
) -> Result<Checked, RestoreError> {
    if journal.cluster_id != plan.cluster_id {
        return Err(RestoreError::Refused(format!(
            "{}: an interrupted restore of cluster {} is in progress here; finish it or remove {STAGING}",
            to.display(),
            journal.cluster_id
        )));
    }
    let (meta_properties, metadata_snapshot) = match plan.mode {
        Mode::BareMetal => (
            check_meta_properties(store, plan, to, opts).await?,
            check_metadata_snapshot(store, plan, to, opts).await?,
        ),
        Mode::NewCluster => (None, None),
    };
    for name in CHECKPOINTS {
        let path = to.join(name);
        if let Ok(bytes) = fs::read(&path) {
            if !bytes.is_empty() {
                text::parse_offset_checkpoint(&bytes).map_err(|source| {
                    RestoreError::Unparsable {
                        path: path.clone(),
                        source,
                    }
                })?;
            }
        }
    }
    let staging = to.join(STAGING);
    let mut targets = Vec::with_capacity(plan.partitions.len());
    let mut problems = Vec::new();
    // Partitions without a topic id share one hint: listed together, it is said once.
    let mut no_topic_id: Vec<String> = Vec::new();
    for i in 0..plan.partitions.len() {
        match check_partition(plan, i, to, &staging, journal, opts) {
            Ok(t) => targets.push(t),
            Err(RestoreError::NoTopicId { path, source, .. }) => {
                no_topic_id.push(format!("{} ({source})", path.display()))
            }
            Err(e) => problems.push(e.to_string()),
        }
    }
    if !no_topic_id.is_empty() {
        problems.insert(
            0,
            format!(
                "{} partitions have no topic id to write (their partition.metadata): {}; new-cluster mode restores into partitions created in the new cluster first (create the topics there with at least as many partitions, stop its broker, then restore), or give --topic-id for a single topic",
                no_topic_id.len(),
                no_topic_id.join(", ")
            ),
        );
    }
    if !problems.is_empty() {
        return Err(RestoreError::Unready {
            to: to.to_path_buf(),
            total: plan.partitions.len(),
            unready: no_topic_id.len() + problems.len() - usize::from(!no_topic_id.is_empty()),
            problems,
        });
    }
    Ok(Checked {
        targets,
        meta_properties,
        metadata_snapshot,
    })
}

/// `--dry-run`: every check the restore makes before it writes (the target's lock is not
/// held, the journal, `meta.properties`, checkpoints, every partition), writing nothing.
pub async fn check(
    store: &Store,
    plan: &Plan,
    to: &Path,
    opts: &WriteOptions,
) -> Result<(), RestoreError> {
    if to.exists() {
        check_unlocked(to)?;
    }
    let journal = Journal::load(&to.join(STAGING).join(JOURNAL), &plan.cluster_id)?;
    check_targets(store, plan, to, opts, &journal)
        .await
        .map(|_| ())
}

/// Partition `i`: in place from an interrupted run, or the topic id to write and whether data
/// is there (refused without `--force`).
fn check_partition(
    plan: &Plan,
    i: usize,
    to: &Path,
    staging: &Path,
    journal: &Journal,
    opts: &WriteOptions,
) -> Result<Target, RestoreError> {
    let p = &plan.partitions[i];
    let name = format!("{}-{}", p.topic, p.partition);
    let dir = to.join(&name);
    // In place: recorded as done, or written ahead as being placed and gone from the
    // staging dir (killed between the rename and the journal's next write).
    let placed = journal.done.contains(&name)
        || (journal.placing.contains(&name) && !staging.join(&name).exists());
    if placed && dir.is_dir() {
        return Ok(Target::Resumed(resumed_report(p, &dir)?));
    }
    let topic_id = match plan.mode {
        Mode::BareMetal => p.archived_topic_id.clone(),
        Mode::NewCluster => match opts.topic_id {
            Some(id) => id.to_string(),
            None => {
                let pm = dir.join("partition.metadata");
                let bytes = fs::read(&pm).map_err(|source| RestoreError::NoTopicId {
                    path: pm.clone(),
                    topic: p.topic.clone(),
                    source,
                })?;
                text::parse_partition_metadata(&bytes)
                    .map_err(|source| RestoreError::Unparsable {
                        path: pm.clone(),
                        source,
                    })?
                    .to_string()
            }
        },
    };
    segvault_format::text::Uuid::parse(&topic_id).map_err(|source| RestoreError::BadTopicId {
        topic_id: topic_id.clone(),
        source,
    })?;
    if holds_data(&dir) && !opts.force {
        return Err(RestoreError::Refused(format!(
            "{}: the partition already holds data; use --force to replace it",
            dir.display()
        )));
    }
    Ok(Target::Build { name, topic_id })
}
