//! Evidence records: a corrupt segment (`corrupt/`) and a divergent replica (`divergence/`),
//! written where the archive keeps them so that they outlive the pass and its logs.

use super::partition::PartitionPass;
use crate::archive::error::{store_err, ArchiveError};
use crate::archive::summary::Summary;
use crate::logdir::SegmentFiles;
use crate::sys::now_ms;
use object_store::{ObjectStoreExt, PutPayload};

/// Records that `seg` is corrupt at byte `position` (at `offset`, if known).
pub(super) async fn record_corrupt(
    pass: &PartitionPass<'_>,
    seg: &SegmentFiles,
    position: u64,
    offset: Option<i64>,
    message: &str,
) -> Result<(), ArchiveError> {
    let (store, b) = (pass.store, pass.b);
    let evidence = serde_json::json!({
        "format": "segvault.corrupt.v1", "file": seg.log.display().to_string(), "node_id": b.node_id,
        "segment_base_offset": seg.base_offset, "position": position, "offset": offset, "message": message,
        "detected_at_ms": now_ms(),
    });
    let ek = pass.key.corrupt(seg.base_offset, b.node_id);
    store
        .inner
        .put(
            &ek,
            PutPayload::from(serde_json::to_vec_pretty(&evidence).unwrap_or_default()),
        )
        .await
        .map_err(store_err(store, &ek))?;
    Ok(())
}

/// Records that this replica's copy of the range at `start` differs from the archive's
/// (its batches summarised in `s`, if they could be read).
pub(super) async fn record_divergence(
    pass: &PartitionPass<'_>,
    start: i64,
    message: &str,
    s: Option<&Summary>,
) -> Result<(), ArchiveError> {
    let (store, key, b) = (pass.store, &pass.key, pass.b);
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
