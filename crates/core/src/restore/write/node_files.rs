//! Bare-metal: the node's own files besides its partitions, `meta.properties` and the
//! metadata log (from its newest KRaft snapshot).

use super::files::{sync_dir, write_atomic, write_file};
use super::{WriteOptions, STAGING};
use crate::archive::layout;
use crate::archive::store::Store;
use crate::restore::error::{io, RestoreError};
use crate::restore::fetch::get_all;
use crate::restore::plan::Plan;
use segvault_format::segment::log_entries;
use segvault_format::text;
use std::fs;
use std::path::Path;

/// Bare-metal: the node's own archived `meta.properties` (same cluster, node and directory
/// ids), checked against its key and against the target's: `Some(bytes)` to write, `None`
/// when there is nothing to write (another mode, or the target has the same file). Writes
/// nothing.
pub(super) async fn check_meta_properties(
    store: &Store,
    plan: &Plan,
    to: &Path,
    opts: &WriteOptions,
) -> Result<Option<Vec<u8>>, RestoreError> {
    let (Some(node), Some(dir_id)) = (plan.node_id, &plan.log_dir_id) else {
        return Ok(None);
    };
    let key = layout::broker_file(&plan.cluster_id, node, dir_id, "meta.properties");
    let bytes = get_all(store, &key).await?;
    let meta = text::parse_meta_properties(&bytes).map_err(|source| RestoreError::Corrupt {
        key: key.to_string(),
        source,
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
            return Ok(None);
        }
        if !opts.force {
            return Err(RestoreError::Refused(format!(
                "{}: exists and differs from node {node}'s archived meta.properties (another node or cluster formatted this dir?); use --force to replace it",
                path.display()
            )));
        }
    }
    Ok(Some(bytes.to_vec()))
}

/// Writes the `meta.properties` [`check_meta_properties`] gave.
pub(super) fn write_meta_properties(to: &Path, bytes: &[u8]) -> Result<(), RestoreError> {
    write_atomic(&to.join("meta.properties"), bytes)
}

/// Bare-metal: the node's newest archived KRaft snapshot, fetched and every batch CRC
/// verified, as `(its name, its bytes)`: `None` when there is none, or the target already has
/// a metadata log (kept unless `--force`). Writes nothing.
pub(super) async fn check_metadata_snapshot(
    store: &Store,
    plan: &Plan,
    to: &Path,
    opts: &WriteOptions,
) -> Result<Option<(String, Vec<u8>)>, RestoreError> {
    let (Some(node), Some(name)) = (plan.node_id, plan.metadata_snapshot.as_ref()) else {
        return Ok(None);
    };
    if to.join("__cluster_metadata-0").exists() && !opts.force {
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
            return Err(RestoreError::Corrupt {
                key: key.to_string(),
                source: e,
            })
        }
        segvault_format::segment::SegmentEnd::PartialTail { position, bytes } => {
            return Err(RestoreError::Integrity {
                key: key.to_string(),
                message: format!("a partial batch of {bytes} bytes at byte {position}"),
            })
        }
    }
    Ok(Some((name.clone(), bytes.to_vec())))
}

/// Places the snapshot [`check_metadata_snapshot`] gave as the whole of
/// `__cluster_metadata-0`. The broker starts from it (its log is empty, so the snapshot is
/// ahead of it) and fetches everything later from the quorum.
pub(super) fn place_metadata_snapshot(
    to: &Path,
    name: &str,
    bytes: &[u8],
) -> Result<(), RestoreError> {
    let dir = to.join("__cluster_metadata-0");
    let stage = to.join(STAGING).join("__cluster_metadata-0");
    if stage.exists() {
        fs::remove_dir_all(&stage).map_err(io(&stage))?;
    }
    fs::create_dir_all(&stage).map_err(io(&stage))?;
    write_file(&stage.join(name), bytes)?;
    sync_dir(&stage)?;
    if dir.exists() {
        fs::remove_dir_all(&dir).map_err(io(&dir))?;
    }
    fs::rename(&stage, &dir).map_err(io(&dir))?;
    sync_dir(to)
}
