//! Evidence records: a corrupt segment (`corrupt/`) and a divergent replica (`divergence/`),
//! written where the archive keeps them so that they outlive the pass and its logs.
//!
//! The records were written with `serde_json::json!`, whose map sorts its keys: the fields
//! are declared in that (alphabetical) order so that the stored bytes stay the same (pinned
//! by the tests below).

use super::context::PartitionPass;
use crate::archive::error::ArchiveError;
use crate::archive::summary::Summary;
use crate::logdir::SegmentFiles;
use crate::sys::now_ms;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

/// `format` of a [`CorruptRecord`].
pub(crate) const CORRUPT_FORMAT: &str = "segvault.corrupt.v1";
/// `format` of a [`DivergenceRecord`].
pub(crate) const DIVERGENCE_FORMAT: &str = "segvault.divergence.v1";

/// `corrupt/<base>-<node>.json`: a segment verification refused, never archived.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CorruptRecord {
    pub(crate) detected_at_ms: i64,
    /// The `.log` file, as this node's path.
    pub(crate) file: String,
    pub(crate) format: String,
    pub(crate) message: String,
    pub(crate) node_id: i32,
    /// The offset of the batch at fault, if known.
    pub(crate) offset: Option<i64>,
    /// Byte position in the `.log` where verification failed.
    pub(crate) position: u64,
    pub(crate) segment_base_offset: i64,
}

/// `divergence/<start>-<node>.json`: this node's copy of the range at `start_offset` differs
/// from the archived one (or cannot be read, or does not line up with the chain).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DivergenceRecord {
    /// This node's batches, when they could be summarised.
    pub(crate) batch_digest: Option<String>,
    pub(crate) detected_at_ms: i64,
    pub(crate) first_batch_offset: Option<i64>,
    pub(crate) format: String,
    pub(crate) last_batch_offset: Option<i64>,
    pub(crate) log_dir: String,
    pub(crate) message: String,
    pub(crate) node_id: i32,
    pub(crate) start_offset: i64,
}

/// Records that `seg` is corrupt at byte `position` (at `offset`, if known).
pub(super) async fn record_corrupt(
    pass: &PartitionPass<'_>,
    seg: &SegmentFiles,
    position: u64,
    offset: Option<i64>,
    message: &str,
) -> Result<(), ArchiveError> {
    let evidence = CorruptRecord {
        detected_at_ms: now_ms(),
        file: seg.log.display().to_string(),
        format: CORRUPT_FORMAT.into(),
        message: message.into(),
        node_id: pass.b.node_id,
        offset,
        position,
        segment_base_offset: seg.base_offset,
    };
    let key = pass.key.corrupt(seg.base_offset, pass.b.node_id);
    put_record(pass, &key, &evidence).await
}

/// Records that this replica's copy of the range at `start` differs from the archive's
/// (its batches summarised in `s`, if they could be read).
pub(super) async fn record_divergence(
    pass: &PartitionPass<'_>,
    start: i64,
    message: &str,
    s: Option<&Summary>,
) -> Result<(), ArchiveError> {
    let (key, b) = (&pass.key, pass.b);
    tracing::warn!(topic = %key.topic, partition = key.partition, start, %message, "divergence");
    let evidence = DivergenceRecord {
        batch_digest: s.map(|s| s.stats.batch_digest.clone()),
        detected_at_ms: now_ms(),
        first_batch_offset: s.and_then(|s| s.stats.first_batch_offset),
        format: DIVERGENCE_FORMAT.into(),
        last_batch_offset: s.and_then(|s| s.stats.last_batch_offset),
        log_dir: b.log_dir.display().to_string(),
        message: message.into(),
        node_id: b.node_id,
        start_offset: start,
    };
    put_record(pass, &key.divergence(start, b.node_id), &evidence).await
}

/// Stores `record` (pretty JSON) at `key`, replacing what was there.
async fn put_record(
    pass: &PartitionPass<'_>,
    key: &Path,
    record: &impl Serialize,
) -> Result<(), ArchiveError> {
    let store = pass.store;
    store
        .inner
        .put(
            key,
            PutPayload::from(serde_json::to_vec_pretty(record).unwrap_or_default()),
        )
        .await
        .map_err(store.err(key))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corrupt(offset: Option<i64>) -> CorruptRecord {
        CorruptRecord {
            detected_at_ms: 1700000000123,
            file: "/data/t-0/00000000000000000000.log".into(),
            format: CORRUPT_FORMAT.into(),
            message: "CRC mismatch".into(),
            node_id: 2,
            offset,
            position: 4096,
            segment_base_offset: 0,
        }
    }

    fn divergence(digest: Option<&str>, first: Option<i64>, last: Option<i64>) -> DivergenceRecord {
        DivergenceRecord {
            batch_digest: digest.map(Into::into),
            detected_at_ms: 1700000000123,
            first_batch_offset: first,
            format: DIVERGENCE_FORMAT.into(),
            last_batch_offset: last,
            log_dir: "/data".into(),
            message: "replica on node 2 holds other batches".into(),
            node_id: 2,
            start_offset: 100,
        }
    }

    /// What the records were written as before they were typed.
    fn corrupt_as_json(r: &CorruptRecord) -> Vec<u8> {
        serde_json::to_vec_pretty(&serde_json::json!({
            "format": "segvault.corrupt.v1", "file": r.file, "node_id": r.node_id,
            "segment_base_offset": r.segment_base_offset, "position": r.position, "offset": r.offset, "message": r.message,
            "detected_at_ms": r.detected_at_ms,
        }))
        .unwrap()
    }

    fn divergence_as_json(r: &DivergenceRecord) -> Vec<u8> {
        serde_json::to_vec_pretty(&serde_json::json!({
            "format": "segvault.divergence.v1", "node_id": r.node_id, "log_dir": r.log_dir,
            "start_offset": r.start_offset, "message": r.message, "batch_digest": r.batch_digest,
            "first_batch_offset": r.first_batch_offset, "last_batch_offset": r.last_batch_offset,
            "detected_at_ms": r.detected_at_ms,
        }))
        .unwrap()
    }

    #[test]
    fn a_corrupt_record_keeps_its_bytes() {
        let r = corrupt(Some(7));
        let bytes = serde_json::to_vec_pretty(&r).unwrap();
        assert_eq!(
            String::from_utf8(bytes.clone()).unwrap(),
            r#"{
  "detected_at_ms": 1700000000123,
  "file": "/data/t-0/00000000000000000000.log",
  "format": "segvault.corrupt.v1",
  "message": "CRC mismatch",
  "node_id": 2,
  "offset": 7,
  "position": 4096,
  "segment_base_offset": 0
}"#
        );
        assert_eq!(bytes, corrupt_as_json(&r));
        let none = corrupt(None);
        assert_eq!(
            serde_json::to_vec_pretty(&none).unwrap(),
            corrupt_as_json(&none)
        );
        assert_eq!(serde_json::from_slice::<CorruptRecord>(&bytes).unwrap(), r);
    }

    #[test]
    fn a_divergence_record_keeps_its_bytes() {
        let r = divergence(Some("ab12"), Some(100), Some(199));
        let bytes = serde_json::to_vec_pretty(&r).unwrap();
        assert_eq!(
            String::from_utf8(bytes.clone()).unwrap(),
            r#"{
  "batch_digest": "ab12",
  "detected_at_ms": 1700000000123,
  "first_batch_offset": 100,
  "format": "segvault.divergence.v1",
  "last_batch_offset": 199,
  "log_dir": "/data",
  "message": "replica on node 2 holds other batches",
  "node_id": 2,
  "start_offset": 100
}"#
        );
        assert_eq!(bytes, divergence_as_json(&r));
        let unread = divergence(None, None, None);
        assert_eq!(
            serde_json::to_vec_pretty(&unread).unwrap(),
            divergence_as_json(&unread)
        );
        assert_eq!(
            serde_json::from_slice::<DivergenceRecord>(&bytes).unwrap(),
            r
        );
    }
}
