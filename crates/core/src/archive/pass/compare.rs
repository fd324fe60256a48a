//! Comparison of this replica's batches with the archived copy of the same range, once per
//! range and node: a match or a reason not to compare is marked under `verified/`, a
//! difference recorded under `divergence/`.

use super::chain::{create, drop_unnamed, just_before, read_json};
use super::context::PartitionPass;
use super::evidence::record_divergence;
use super::relist::{changed_since_listing, gone, open_listed};
use super::report::Outcome;
use crate::archive::error::ArchiveError;
use crate::archive::layout::{self, PartitionKey};
use crate::archive::manifest::{Manifest, RangeKind, RangeStats};
use crate::archive::store::Store;
use crate::archive::summary::summarize_blocking;
use crate::archive::summary::{Refusal, Summary};
use crate::logdir::SegmentFiles;
use futures::TryStreamExt;
use object_store::ObjectStore;
use std::collections::BTreeSet;

/// The marker of a replica's range that was not compared because one copy was compacted:
/// replicas clean their logs independently, so their batches legitimately differ.
const COMPACTED: &[u8] = b"compacted; not compared";

/// The marker of a replica's range whose segment boundaries differ from the archived range's:
/// the digests cover different batches, so they are not compared range by range.
const BOUNDARIES_DIFFER: &[u8] = b"boundaries differ; not compared";

/// The marker of a replica's range whose batches are the archived copy's.
const MATCH: &[u8] = b"match";

/// The ranges from `from` on that node `node` has compared already (a marker or a
/// divergence of its own): the markers of ranges below the oldest segment on disk are not
/// listed.
pub(super) async fn compared_ranges(
    store: &Store,
    key: &PartitionKey,
    node: i32,
    from: i64,
) -> Result<BTreeSet<i64>, ArchiveError> {
    let mut out = BTreeSet::new();
    for prefix in key.compared_prefixes() {
        let after = just_before(&prefix, &format!("{:020}", from.max(0)));
        let metas: Vec<_> = store
            .inner
            .list_with_offset(Some(&prefix), &after)
            .try_collect()
            .await
            .map_err(store.err(&prefix))?;
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

/// Whether the batches summarised for `[start, next)` leave offsets without a record: the log
/// cleaner has been there.
fn compacted(s: &RangeStats, start: i64, next: i64) -> bool {
    s.empty_offsets > 0
        || s.first_batch_offset != Some(start)
        || s.last_batch_offset != Some(next - 1)
}

/// The message of a replica whose batches differ from the archived copy's.
fn other_batches(node: i32, archived_from: i32, start: i64, next: i64) -> String {
    format!(
        "replica on node {node} holds other batches than the archived copy from node {archived_from} for offsets [{start}, {next})"
    )
}

/// Compares this broker's segment with the archived range that starts at the same offset,
/// when another broker archived it with the same end. Records a divergence or a match.
pub(super) async fn compare_with_archive(
    pass: &PartitionPass<'_>,
    seg: &SegmentFiles,
    next_base: i64,
) -> Result<Option<Outcome>, ArchiveError> {
    let (store, key, b) = (pass.store, &pass.key, pass.b);
    let start = seg.base_offset;
    let Some(m) = read_json::<Manifest>(store, &key.manifest(start)).await? else {
        return Ok(None);
    };
    if m.source.node_id == b.node_id || m.kind != RangeKind::Segment {
        return Ok(None);
    }
    let marker = key.verified(start, b.node_id);
    if m.next_offset != next_base {
        // Different segment boundaries: the digests cover different batches. Not comparable
        // range by range; say so once instead of guessing.
        create(store, &marker, BOUNDARIES_DIFFER.to_vec()).await?;
        return Ok(None);
    }
    let Some(log) = open_listed(seg)? else {
        return Ok(Some(gone(seg)));
    };
    let ours = summarize_blocking(&log, start..next_base, u64::MAX);
    let outcome = match ours {
        Err(r @ Refusal::Beyond { .. }) if changed_since_listing(pass.p, seg, next_base, &log) => {
            Outcome::Changed {
                base: start,
                message: format!(
                    "{}: {r}: the broker replaced the segment since the listing (log cleaner); compared by a later pass",
                    seg.log.display()
                ),
            }
        }
        Ok(s) if s.stats.batch_digest == m.stats.batch_digest => {
            create(store, &marker, MATCH.to_vec()).await?;
            return Ok(None);
        }
        Ok(s) if compacted(&s.stats, start, next_base) || m.stats.empty_offsets > 0 => {
            create(store, &marker, COMPACTED.to_vec()).await?;
            return Ok(None);
        }
        Ok(s) => {
            let msg = other_batches(b.node_id, m.source.node_id, start, next_base);
            record_divergence(pass, start, &msg, Some(&s)).await?;
            Outcome::Divergent {
                start,
                message: msg,
            }
        }
        Err(r) => {
            let msg = format!("this replica's copy of an archived range cannot be read: {r}");
            record_divergence(pass, start, &msg, None).await?;
            Outcome::Divergent {
                start,
                message: msg,
            }
        }
    };
    Ok(Some(outcome))
}

impl PartitionPass<'_> {
    /// Another archiver (a replica's agent, or another process on this log dir) claimed
    /// `[start, next)` first: what the winner does not name is dropped, and our batches
    /// (`summary`) are compared with the winner's.
    pub(super) async fn lost(
        &self,
        start: i64,
        next: i64,
        summary: &Summary,
    ) -> Result<Outcome, ArchiveError> {
        let (store, key, b) = (self.store, &self.key, self.b);
        let winner: Option<Manifest> = read_json(store, &key.manifest(start)).await?;
        if let Some(w) = &winner {
            drop_unnamed(store, key, start, next, &w.objects).await;
        }
        let mut divergent = false;
        let marker: &[u8] = match &winner {
            Some(w) if w.next_offset != next || w.kind != RangeKind::Segment => BOUNDARIES_DIFFER,
            Some(w) if w.stats.batch_digest == summary.stats.batch_digest => MATCH,
            Some(w) if compacted(&summary.stats, start, next) || w.stats.empty_offsets > 0 => {
                COMPACTED
            }
            Some(w) => {
                divergent = true;
                let msg = other_batches(b.node_id, w.source.node_id, start, next);
                record_divergence(self, start, &msg, Some(summary)).await?;
                b""
            }
            None => b"winner's manifest unreadable; not compared",
        };
        if !divergent {
            create(store, &key.verified(start, b.node_id), marker.to_vec()).await?;
        }
        Ok(Outcome::ClaimedByOther {
            start,
            next,
            divergent,
        })
    }
}
