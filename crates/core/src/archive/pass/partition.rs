//! One partition's pass: the committed segments, walked against the chain's end. Each
//! segment is already archived (compared once, if a replica archived it), past a gap, or
//! the next range to verify, upload and claim.

use super::broker::Broker;
use super::chain::{claim, create, delete_objects, load_chain, Chain, Claim};
use super::compare::{compare_with_archive, compared_ranges};
use super::context::PartitionPass;
use super::evidence::{record_corrupt, record_divergence};
use super::options::PassOptions;
use super::relist::{
    changed_since_listing, gone, intact, listing_confirmed, open_listed, unconfirmed,
};
use super::report::{count_unarchived, ArchivedPartition, Outcome};
use crate::archive::error::ArchiveError;
use crate::archive::layout::{self, PartitionKey};
use crate::archive::manifest::{ObjectRef, Objects, RangeKind, StartRecord, START_FORMAT};
use crate::archive::store::Store;
use crate::archive::summary::{summarize_blocking, Refusal, Summary};
use crate::archive::upload::{put_log_verified, RateLimit};
use crate::logdir::{PartitionDir, SegmentFiles};
use crate::sys::now_ms;
use segvault_format::mapped::MappedFile;
use segvault_format::text::Uuid;
use std::collections::BTreeSet;
use std::sync::Arc;

/// Archives one partition. On an error, the report still holds what was published before
/// it (those ranges are archived for good and must be counted).
pub(super) async fn archive_partition(
    store: &Store,
    b: &Broker,
    p: &PartitionDir,
    high_watermark: Option<i64>,
    opts: &PassOptions,
    rate: Option<Arc<RateLimit>>,
) -> (ArchivedPartition, Option<ArchiveError>) {
    let mut report = ArchivedPartition {
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

/// Where the walk over the committed segments goes after a step.
enum Step {
    /// On to the next segment.
    Next,
    /// The chain moved (reloaded from the store): this segment again.
    Again,
    /// Nothing more in this pass.
    Stop,
}

async fn archive_partition_into(
    report: &mut ArchivedPartition,
    store: &Store,
    b: &Broker,
    p: &PartitionDir,
    high_watermark: Option<i64>,
    opts: &PassOptions,
    rate: Option<Arc<RateLimit>>,
) -> Result<(), ArchiveError> {
    let Some(key) = partition_key(report, b, p) else {
        return Ok(());
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
    let pass = PartitionPass {
        store,
        b,
        p,
        key,
        opts,
        rate,
    };
    let Some(mut chain) = pass.started_chain(report).await? else {
        count_unarchived(report, p, None, high_watermark);
        return Ok(());
    };
    let mut compared = compared_ranges(store, &pass.key, b.node_id).await?;
    let mut idx = 0;
    while idx < committed.len() {
        let (i, next_base) = committed[idx];
        let seg = &p.segments[i];
        let chain_next = chain.next.unwrap_or(seg.base_offset);
        let step = if next_base <= chain_next {
            pass.archived(report, &chain, &mut compared, seg, next_base)
                .await?
        } else if seg.base_offset > chain_next {
            // Offsets [chain_next, base) are not on this broker any more.
            pass.gap(report, &mut chain, seg, chain_next).await?
        } else {
            // seg.base <= chain_next < next_base: archive [chain_next, next_base) from it.
            pass.range(report, &mut chain, &mut compared, i, chain_next, next_base)
                .await?
        };
        match step {
            Step::Next => idx += 1,
            Step::Again => {}
            Step::Stop => break,
        }
    }
    report.archived_until = chain.next;
    count_unarchived(report, p, chain.next, high_watermark);
    Ok(())
}

/// Where the partition's archive lives, or `None` (and why, in the report) if it cannot
/// be archived.
fn partition_key(
    report: &mut ArchivedPartition,
    b: &Broker,
    p: &PartitionDir,
) -> Option<PartitionKey> {
    let topic_id = match (p.topic_id, p.is_metadata_log()) {
        (Some(id), _) => id.to_string(),
        (None, true) => Uuid::METADATA_TOPIC_ID.to_string(),
        (None, false) => {
            report.skipped = Some("no valid partition.metadata: the topic id is unknown".into());
            return None;
        }
    };
    if let Err(e) = layout::validate_topic(&p.topic) {
        report.skipped = Some(e);
        return None;
    }
    Some(PartitionKey {
        cluster_id: b.cluster_id.clone(),
        topic: p.topic.clone(),
        topic_id,
        partition: p.partition,
    })
}

impl PartitionPass<'_> {
    /// The chain as the store holds it, started here (`start.json`) if it was not; `None`
    /// if it was not and the listing cannot be trusted to fix its start.
    async fn started_chain(
        &self,
        report: &mut ArchivedPartition,
    ) -> Result<Option<Chain>, ArchiveError> {
        let (store, key, p) = (self.store, &self.key, self.p);
        let chain = load_chain(store, key).await?;
        report.archived_until = chain.next;
        if chain.next.is_some() {
            return Ok(Some(chain));
        }
        let first = p.segments[0].base_offset;
        // The start is fixed for good: never from a listing that missed earlier segments.
        if !listing_confirmed(p, i64::MIN, first) {
            report.outcomes.push(unconfirmed(p, first));
            return Ok(None);
        }
        let start = StartRecord {
            format: START_FORMAT.into(),
            start_offset: first,
            created_at_ms: now_ms(),
            node_id: self.b.node_id,
        };
        create(
            store,
            &key.start(),
            serde_json::to_vec(&start).unwrap_or_default(),
        )
        .await?;
        let chain = load_chain(store, key).await?;
        report.archived_until = chain.next;
        Ok(Some(chain))
    }

    /// `seg` is already archived, by us or from a replica. A replica compares its own
    /// batches with the archived copy once per range (the marker keeps that state in the
    /// store).
    async fn archived(
        &self,
        report: &mut ArchivedPartition,
        chain: &Chain,
        compared: &mut BTreeSet<i64>,
        seg: &SegmentFiles,
        next_base: i64,
    ) -> Result<Step, ArchiveError> {
        if chain.starts.contains(&seg.base_offset) && !compared.contains(&seg.base_offset) {
            let o = compare_with_archive(self, seg, next_base).await?;
            if let Some(o @ Outcome::Changed { .. }) = o {
                report.outcomes.push(o); // compared by a later pass
                return Ok(Step::Stop);
            }
            report.outcomes.extend(o);
            compared.insert(seg.base_offset);
        }
        Ok(Step::Next)
    }

    /// Offsets `[chain_next, seg.base)` are not on this broker any more: recorded as a gap
    /// once the other replicas have had `gap_after` to archive them.
    async fn gap(
        &self,
        report: &mut ArchivedPartition,
        chain: &mut Chain,
        seg: &SegmentFiles,
        chain_next: i64,
    ) -> Result<Step, ArchiveError> {
        if now_ms() - chain.last_written_ms < self.opts.gap_after.as_millis() as i64 {
            return Ok(Step::Stop); // give the other replicas time to archive them
        }
        // A gap is for good: never from a listing that missed the segments holding them.
        if !listing_confirmed(self.p, i64::MIN, seg.base_offset) {
            report.outcomes.push(unconfirmed(self.p, seg.base_offset));
            return Ok(Step::Stop);
        }
        let m = self.range_manifest(
            RangeKind::Gap,
            chain_next,
            seg.base_offset,
            seg.base_offset,
            None,
            Objects::default(),
        );
        let (gkey, sent) = (
            self.key.manifest(chain_next),
            serde_json::to_vec_pretty(&m).unwrap_or_default(),
        );
        if claim(self.store, &gkey, sent).await? != Claim::Lost {
            report.outcomes.push(Outcome::Gap {
                start: chain_next,
                next: seg.base_offset,
            });
        }
        *chain = load_chain(self.store, &self.key).await?;
        report.archived_until = chain.next;
        Ok(Step::Again)
    }

    /// Archives `[chain_next, next_base)` from segment `i`: verified (and, uncompressed,
    /// uploaded in the same walk), its objects uploaded, and claimed.
    async fn range(
        &self,
        report: &mut ArchivedPartition,
        chain: &mut Chain,
        compared: &mut BTreeSet<i64>,
        i: usize,
        chain_next: i64,
        next_base: i64,
    ) -> Result<Step, ArchiveError> {
        let (store, p) = (self.store, self.p);
        let seg = &p.segments[i];
        let Some(log) = open_listed(seg)? else {
            report.outcomes.push(gone(seg));
            return Ok(Step::Stop);
        };
        let attempt = layout::attempt_id();
        let verified = self.verify(&log, &attempt, chain_next, next_base).await?;
        // Truncated while read: what the walk saw past the new end was zeros, not the
        // segment. Neither a result nor corruption: an I/O error naming the file.
        intact(&log, &seg.log)?;
        let (log_object, summary) = match verified {
            Ok(v) => v,
            Err(r) => {
                self.refused(report, seg, chain_next, next_base, &log, r)
                    .await?;
                return Ok(Step::Stop);
            }
        };
        let (objects, renamed) = self
            .upload_objects(
                i, chain_next, next_base, &attempt, &log, &summary, log_object,
            )
            .await?;
        // The zstd path reads the log again while compressing: still the file?
        intact(&log, &seg.log)?;
        // The range ends where the listing's next segment begins: publish it only if no
        // segment between them has shown up since (a listing torn by the broker's renames).
        if !listing_confirmed(p, seg.base_offset + 1, next_base) {
            delete_objects(store, &objects).await;
            report.outcomes.push(unconfirmed(p, seg.base_offset));
            return Ok(Step::Stop);
        }
        let m = self.range_manifest(
            RangeKind::Segment,
            chain_next,
            next_base,
            seg.base_offset,
            Some(&summary),
            objects,
        );
        let mkey = self.key.manifest(chain_next);
        let sent = serde_json::to_vec_pretty(&m).unwrap_or_default();
        let claimed = claim(store, &mkey, sent.clone()).await?;
        if claimed != Claim::Lost {
            let o = self.won(claimed, &m, &sent, renamed).await?;
            report.outcomes.push(o);
            chain.next = Some(next_base);
            report.archived_until = chain.next;
            chain.starts.insert(chain_next);
            chain.last_written_ms = m.source.archived_at_ms;
            Ok(Step::Next)
        } else {
            let o = self.lost(chain_next, next_base, &summary).await?;
            compared.insert(chain_next);
            report.outcomes.push(o);
            *chain = load_chain(store, &self.key).await?;
            report.archived_until = chain.next;
            Ok(Step::Again)
        }
    }

    /// Verifies the range. Identity: verified and uploaded in one pass, published only if
    /// the whole segment walks clean (the `.log` object is returned). zstd: verified first
    /// (the walk places the frames), compressed later.
    async fn verify(
        &self,
        log: &MappedFile,
        attempt: &str,
        chain_next: i64,
        next_base: i64,
    ) -> Result<Result<(Option<ObjectRef>, Summary), Refusal>, ArchiveError> {
        let frame_bytes = self.opts.frame_bytes;
        if self.opts.zstd_level.is_some() {
            return Ok(
                summarize_blocking(log, chain_next..next_base, frame_bytes).map(|s| (None, s))
            );
        }
        let lk = self
            .key
            .data(chain_next, next_base, self.b.node_id, attempt, "log");
        let up = put_log_verified(
            self.store,
            &lk,
            log,
            chain_next..next_base,
            frame_bytes,
            self.rate.as_deref(),
            &|done| log.release(0..done),
        )
        .await;
        log.release(0..log.len());
        Ok(up.map_err(self.store.err(&lk))?.map(|(o, s)| (Some(o), s)))
    }

    /// The walk refused the range: the broker replaced the segment (left for the next
    /// pass), the segment is corrupt (evidence recorded), or it does not line up with the
    /// chain (a divergence recorded). Nothing is published.
    async fn refused(
        &self,
        report: &mut ArchivedPartition,
        seg: &SegmentFiles,
        chain_next: i64,
        next_base: i64,
        log: &MappedFile,
        r: Refusal,
    ) -> Result<(), ArchiveError> {
        let r = match r {
            r @ Refusal::Beyond { .. } if changed_since_listing(self.p, seg, next_base, log) => {
                report.outcomes.push(Outcome::Changed {
                    base: seg.base_offset,
                    message: format!(
                        "{}: {r}: the broker replaced the segment since the listing (log cleaner); nothing published, left for the next pass",
                        seg.log.display()
                    ),
                });
                return Ok(());
            }
            // The listing still holds: the log itself overlaps its successor.
            Refusal::Beyond {
                position,
                batch_base,
                batch_last,
                next,
            } => Refusal::Corrupt {
                position,
                offset: Some(batch_base),
                message: format!("expected offsets below {next}, where the next segment begins; this batch spans {batch_base}..={batch_last}"),
            },
            r => r,
        };
        match r {
            Refusal::Corrupt {
                position,
                offset,
                message,
            } => {
                record_corrupt(self, seg, position, offset, &message).await?;
                let o = Outcome::Corrupt {
                    base: seg.base_offset,
                    position,
                    offset,
                    message: message.clone(),
                };
                tracing::error!(file = %seg.log.display(), position, ?offset, %message, "corrupt segment: {}", o.meaning());
                report.outcomes.push(o);
            }
            r => {
                // Misaligned (Beyond became Corrupt or Changed above).
                record_divergence(self, chain_next, &r.to_string(), None).await?;
                report.outcomes.push(Outcome::Divergent {
                    start: chain_next,
                    message: r.to_string(),
                });
            }
        }
        Ok(())
    }
}
