//! A range's objects uploaded, its manifest built, and what follows a won claim.

use super::chain::{drop_unnamed, is_ours, Claim};
use super::context::PartitionPass;
use super::options::Published;
use super::relist::{intact, renamed};
use super::report::Outcome;
use crate::archive::error::ArchiveError;
use crate::archive::manifest::{Manifest, ObjectRef, Objects, RangeKind, Source, FORMAT};
use crate::archive::store::Store;
use crate::archive::summary::Summary;
use crate::archive::upload::{put_bytes, Encoding, RateLimit};
use crate::sys::now_ms;
use object_store::path::Path;
use object_store::ObjectStoreExt;
use segvault_format::mapped::MappedFile;

impl PartitionPass<'_> {
    /// The manifest of `[start, next)`, archived from the segment at `segment_base` (with
    /// its summary `s`) or a gap (no summary, no objects).
    pub(super) fn range_manifest(
        &self,
        kind: RangeKind,
        start: i64,
        next: i64,
        segment_base: i64,
        s: Option<&Summary>,
        objects: Objects,
    ) -> Manifest {
        let (key, b) = (&self.key, self.b);
        let epochs = self
            .p
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

    /// Uploads the objects of `[start, next)` from segment `i` under this attempt's keys:
    /// the `.log` slice (unless `uploaded_log` is it already), the indexes of a whole
    /// segment, the producer snapshot at `next`. Also whether the segment was renamed away
    /// meanwhile (its indexes are then left out).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn upload_objects(
        &self,
        i: usize,
        start: i64,
        next: i64,
        attempt: &str,
        log: &MappedFile,
        s: &Summary,
        uploaded_log: Option<ObjectRef>,
    ) -> Result<(Objects, bool), ArchiveError> {
        let (store, key, b, p) = (self.store, &self.key, self.b, self.p);
        let rate = self.rate.as_deref();
        let seg = &p.segments[i];
        let slice = &log[s.slice_position as usize..];
        let frames: Vec<(u64, i64)> = s
            .frame_starts
            .iter()
            .map(|&(pos, off)| (pos - s.slice_position, off))
            .collect();
        let (encoding, name) = match self.opts.zstd_level {
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
                .map_err(store.err(&lk))?,
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
        // The index files were read after the `.log` was mapped. The broker renames a
        // segment's `.log` before its indexes (LogSegment.changeFileSuffixes), so if the
        // `.log` name still names the mapped file, the indexes read were this segment's. If
        // not (it was renamed, or read as `.deleted`), they may be a replacement's: leave them
        // out; a restore rebuilds missing indexes from the log.
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

    /// The claim of `m` (sent as `sent`) was ours: the leftovers of interrupted attempts
    /// dropped if `sweep`, the range logged and handed to the publish hook.
    pub(super) async fn won(
        &self,
        claimed: Claim,
        m: &Manifest,
        sent: &[u8],
        renamed: bool,
        sweep: bool,
    ) -> Result<Outcome, ArchiveError> {
        let (start, next) = (m.start_offset, m.next_offset);
        let mkey = self.key.manifest(start);
        let bytes: u64 = m.objects.iter().map(|o| o.stored_size).sum();
        // Objects of interrupted attempts at this range can never be published now. Only
        // once the stored manifest has been read back as ours: a store that did not honour
        // the conditional create could hold another archiver's manifest there by now.
        if sweep && (claimed == Claim::ReadBack || is_ours(self.store, &mkey, sent).await?) {
            drop_unnamed(self.store, &self.key, start, next, &m.objects).await;
        }
        let p = self.p;
        tracing::info!(topic = %p.topic, partition = p.partition, start, next, bytes, "archived");
        if let Some(h) = &self.opts.on_published {
            (h.0)(&Published {
                log_dir: &self.b.log_dir,
                topic: &p.topic,
                partition: p.partition,
                start,
                next,
                bytes,
                slice_position: m.slice_position,
                renamed,
            });
        }
        Ok(Outcome::Uploaded {
            start,
            next,
            bytes,
            slice_position: m.slice_position,
            renamed,
        })
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
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
                source: e,
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
    .map_err(store.err(key))?;
    intact(&f, path)?;
    Ok(Some(r))
}
