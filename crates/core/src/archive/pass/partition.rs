//! One partition's pass: the committed segments, walked against the chain's end. Each
//! segment is already archived (compared once, if a replica archived it), past a gap, or
//! the next range to verify, upload and claim.

use super::broker::Broker;
use super::chain::{
    claim, create, delete_objects, exists, load_chain, refresh_chain, Chain, Claim,
};
use super::compare::{compare_with_archive, compared_ranges};
use super::context::PartitionPass;
use super::evidence::{record_corrupt, record_divergence};
use super::index::write_due_indexes;
use super::memory::PartitionMemory;
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
use futures::StreamExt;
use segvault_format::mapped::MappedFile;
use segvault_format::text::Uuid;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// Archives one partition. On an error, the report still holds what was published before
/// it (those ranges are archived for good and must be counted).
pub(super) async fn archive_partition(
    store: &Store,
    b: &Broker,
    p: &PartitionDir,
    high_watermark: Option<i64>,
    opts: &PassOptions,
    rate: Option<Arc<RateLimit>>,
    permits: Arc<Semaphore>,
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
    let pass = PassOf {
        store,
        b,
        p,
        opts,
        rate,
        permits,
    };
    let err = archive_partition_into(&mut report, pass, high_watermark)
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

/// The most ranges prepared before the listing is confirmed and they are claimed.
pub(super) const MAX_BATCH: usize = super::memory::SWEPT_RANGES;

/// A range verified and its objects uploaded (see [`PartitionPass::prepare`]), not yet
/// published.
struct Prepared {
    /// The segment's index in the listing.
    i: usize,
    start: i64,
    next: i64,
    summary: Summary,
    objects: Objects,
    renamed: bool,
}

/// Why a range was not prepared: its segment is gone, or the walk refused it.
enum Halt {
    Gone(usize),
    Refused {
        i: usize,
        start: i64,
        next: i64,
        log: MappedFile,
        refusal: Refusal,
    },
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

/// What a partition's pass is given.
struct PassOf<'a> {
    store: &'a Store,
    b: &'a Broker,
    p: &'a PartitionDir,
    opts: &'a PassOptions,
    rate: Option<Arc<RateLimit>>,
    permits: Arc<Semaphore>,
}

async fn archive_partition_into(
    report: &mut ArchivedPartition,
    given: PassOf<'_>,
    high_watermark: Option<i64>,
) -> Result<(), ArchiveError> {
    let PassOf {
        store,
        b,
        p,
        opts,
        rate,
        permits,
    } = given;
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
        permits,
    };
    let remembered = opts
        .memory
        .as_ref()
        .and_then(|m| m.take(&b.log_dir, &pass.key));
    let from_memory = remembered.is_some();
    let mut state = match remembered {
        Some(m) => m,
        None => {
            let Some(chain) = pass.started_chain(report).await? else {
                count_unarchived(report, p, None, high_watermark);
                return Ok(());
            };
            let mut m = PartitionMemory::new(chain);
            m.compared =
                compared_ranges(store, &pass.key, b.node_id, p.segments[0].base_offset).await?;
            m
        }
    };
    report.archived_until = state.chain.next;
    // Remembered state may be behind the store (a replica's agent extended the chain): an
    // archiver that did not publish the last range looks before it uploads the next.
    let mut look_first = from_memory && !state.won_last;
    let mut idx = 0;
    while idx < committed.len() {
        let (i, next_base) = committed[idx];
        let seg = &p.segments[i];
        let chain_next = state.chain.next.unwrap_or(seg.base_offset);
        let step = if next_base <= chain_next {
            pass.archived(report, &mut state, seg, next_base).await?
        } else if seg.base_offset > chain_next {
            // Offsets [chain_next, base) are not on this broker any more.
            pass.gap(report, &mut state.chain, seg, chain_next).await?
        } else if look_first {
            look_first = false;
            pass.looked(report, &mut state).await?
        } else {
            // seg.base <= chain_next < next_base: archive [chain_next, next_base) from it,
            // and the segments after it with it.
            let (step, done) = pass
                .ranges(report, &mut state, &committed[idx..], chain_next)
                .await?;
            idx += done;
            match step {
                Step::Next => continue,
                step => step,
            }
        };
        match step {
            Step::Next => idx += 1,
            Step::Again => {}
            Step::Stop => break,
        }
    }
    write_due_indexes(store, &pass.key, &mut state).await?;
    report.archived_until = state.chain.next;
    count_unarchived(report, p, state.chain.next, high_watermark);
    if let Some(m) = &opts.memory {
        forget_below(&mut state, p.segments[0].base_offset);
        m.put(&b.log_dir, &pass.key, state);
    }
    Ok(())
}

/// What no later pass needs: segments below `oldest` (the oldest on disk) are gone from the
/// broker, and starts below both it and the unindexed ranges are never looked up again.
fn forget_below(state: &mut PartitionMemory, oldest: i64) {
    state.compared = state.compared.split_off(&oldest);
    let keep_from = oldest.min(state.chain.indexed_next.unwrap_or(oldest));
    state.chain.starts = state.chain.starts.split_off(&keep_from);
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
        let first = p.segments[0].base_offset;
        let chain = load_chain(store, key, first).await?;
        report.archived_until = chain.next;
        if chain.next.is_some() {
            return Ok(Some(chain));
        }
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
        let bytes = serde_json::to_vec(&start).unwrap_or_default();
        // Created here: the chain is that start and nothing else (no range can be claimed
        // before its start exists). Found there: another archiver's, read it.
        let chain = match create(store, &key.start(), bytes).await? {
            true => Chain {
                next: Some(first),
                starts: Default::default(),
                last_written_ms: start.created_at_ms,
                indexed_next: Some(first),
            },
            false => load_chain(store, key, first).await?,
        };
        report.archived_until = chain.next;
        Ok(Some(chain))
    }

    /// `seg` is already archived, by us or from a replica. A replica compares its own
    /// batches with the archived copy once per range (the marker keeps that state in the
    /// store, and memory keeps it between an agent's passes).
    async fn archived(
        &self,
        report: &mut ArchivedPartition,
        state: &mut PartitionMemory,
        seg: &SegmentFiles,
        next_base: i64,
    ) -> Result<Step, ArchiveError> {
        let base = seg.base_offset;
        if state.compared.contains(&base) {
            return Ok(Step::Next);
        }
        if state.chain.starts.contains(&base) {
            let o = compare_with_archive(self, seg, next_base).await?;
            if let Some(o @ Outcome::Changed { .. }) = o {
                report.outcomes.push(o); // compared by a later pass
                return Ok(Step::Stop);
            }
            report.outcomes.extend(o);
        }
        state.compared.insert(base);
        Ok(Step::Next)
    }

    /// Remembered state said the chain ends at `chain.next`: whether it still does (a HEAD
    /// of the manifest that would start there), the chain read on from there if not.
    async fn looked(
        &self,
        report: &mut ArchivedPartition,
        state: &mut PartitionMemory,
    ) -> Result<Step, ArchiveError> {
        let Some(at) = state.chain.next else {
            return Ok(Step::Again);
        };
        if exists(self.store, &self.key.manifest(at)).await? {
            refresh_chain(self.store, &self.key, &mut state.chain).await?;
            report.archived_until = state.chain.next;
        }
        Ok(Step::Again)
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
        *chain = load_chain(self.store, &self.key, self.p.segments[0].base_offset).await?;
        report.archived_until = chain.next;
        Ok(Step::Again)
    }

    /// Archives the ranges from `chain_next` on: `[chain_next, next_base)` from the first
    /// of `todo` (committed segments, each with its successor's base), and with it the
    /// whole segments after it (a batch of up to [`MAX_BATCH`]). They are verified and their
    /// objects uploaded `--concurrency` at a time, the listing is confirmed once for all of
    /// them, and they are claimed one after another in chain order. Returns how many of `todo` are
    /// done with.
    async fn ranges(
        &self,
        report: &mut ArchivedPartition,
        state: &mut PartitionMemory,
        todo: &[(usize, i64)],
        chain_next: i64,
    ) -> Result<(Step, usize), ArchiveError> {
        let width = self.opts.concurrency.max(1);
        // A backlog is confirmed in batches that grow with it (one look at the partition
        // directory per batch, not per range); a few new segments go one batch each.
        let batch = (todo.len() / 8).clamp(width, MAX_BATCH).min(todo.len());
        let mut starts = vec![chain_next];
        starts.extend(todo[..batch - 1].iter().map(|&(_, next)| next));
        let mut prepared = Vec::with_capacity(batch);
        for (&(i, next), start) in todo[..batch].iter().zip(starts) {
            prepared.push(Box::pin(self.prepare(i, start, next)));
        }
        let mut results = futures::stream::iter(prepared)
            .buffered(width)
            .collect::<Vec<_>>()
            .await
            .into_iter();
        let mut ready = Vec::new();
        let mut halt: Option<Result<Halt, ArchiveError>> = None;
        for r in results.by_ref() {
            match r {
                Ok(Ok(prepared)) => ready.push(prepared),
                Ok(Err(h)) => {
                    halt = Some(Ok(h));
                    break;
                }
                Err(e) => {
                    halt = Some(Err(e));
                    break;
                }
            }
        }
        // What follows the first range that could not be prepared is not published now.
        for r in results.flatten().flatten() {
            delete_objects(self.store, &r.objects).await;
        }
        let mut done = 0;
        let mut step = Step::Next;
        if let (Some(first), Some(last)) = (ready.first(), ready.last()) {
            // The ranges end where the listing's next segments begin: publish them only if
            // no segment between has shown up since (a listing torn by the broker's renames).
            let first_base = self.p.segments[first.i].base_offset;
            if !listing_confirmed(self.p, first_base + 1, last.next) {
                for r in &ready {
                    delete_objects(self.store, &r.objects).await;
                }
                report.outcomes.push(unconfirmed(self.p, first_base));
                return Ok((Step::Stop, 0));
            }
            let mut ready = ready.into_iter();
            for r in ready.by_ref() {
                step = self.publish(report, state, r).await?;
                if !matches!(step, Step::Next) {
                    break;
                }
                done += 1;
            }
            for r in ready {
                delete_objects(self.store, &r.objects).await;
            }
        }
        if !matches!(step, Step::Next) {
            return Ok((step, done));
        }
        match halt {
            None => Ok((Step::Next, done)),
            Some(Err(e)) => Err(e),
            Some(Ok(halted)) => {
                self.halted(report, halted).await?;
                Ok((Step::Stop, done))
            }
        }
    }

    /// Verifies `[start, next)` from segment `i` (and, uncompressed, uploads it in the same
    /// walk) and uploads its other objects, within the pass's concurrency.
    async fn prepare(
        &self,
        i: usize,
        start: i64,
        next: i64,
    ) -> Result<Result<Prepared, Halt>, ArchiveError> {
        let _permit = self.permits.acquire().await.ok();
        let seg = &self.p.segments[i];
        let Some(log) = open_listed(seg)? else {
            return Ok(Err(Halt::Gone(i)));
        };
        let attempt = layout::attempt_id();
        let verified = self.verify(&log, &attempt, start, next).await?;
        // Truncated while read: what the walk saw past the new end was zeros, not the
        // segment. Neither a result nor corruption: an I/O error naming the file.
        intact(&log, &seg.log)?;
        let (log_object, summary) = match verified {
            Ok(v) => v,
            Err(r) => {
                return Ok(Err(Halt::Refused {
                    i,
                    start,
                    next,
                    log,
                    refusal: r,
                }))
            }
        };
        let (objects, renamed) = self
            .upload_objects(i, start, next, &attempt, &log, &summary, log_object)
            .await?;
        // The zstd path reads the log again while compressing: still the file?
        intact(&log, &seg.log)?;
        Ok(Ok(Prepared {
            i,
            start,
            next,
            summary,
            objects,
            renamed,
        }))
    }

    /// Why a range could not be prepared, into the report (and the store's evidence).
    async fn halted(&self, report: &mut ArchivedPartition, h: Halt) -> Result<(), ArchiveError> {
        match h {
            Halt::Gone(i) => report.outcomes.push(gone(&self.p.segments[i])),
            Halt::Refused {
                i,
                start,
                next,
                log,
                refusal,
            } => {
                let seg = &self.p.segments[i];
                self.refused(report, seg, start, next, &log, refusal)
                    .await?
            }
        }
        Ok(())
    }

    /// Claims a prepared range at the chain's end.
    async fn publish(
        &self,
        report: &mut ArchivedPartition,
        state: &mut PartitionMemory,
        r: Prepared,
    ) -> Result<Step, ArchiveError> {
        let (store, p) = (self.store, self.p);
        let (chain_next, next_base) = (r.start, r.next);
        let seg = &p.segments[r.i];
        let m = self.range_manifest(
            RangeKind::Segment,
            chain_next,
            next_base,
            seg.base_offset,
            Some(&r.summary),
            r.objects,
        );
        let mkey = self.key.manifest(chain_next);
        let sent = serde_json::to_vec_pretty(&m).unwrap_or_default();
        let claimed = claim(store, &mkey, sent.clone()).await?;
        if claimed != Claim::Lost {
            // Leftovers of interrupted attempts: looked for under the first ranges after
            // the chain's end as read (see SWEPT_RANGES), and whenever our own retried
            // create was answered "exists".
            let sweep = state.sweeps_left > 0 || claimed == Claim::ReadBack;
            let o = self.won(claimed, &m, &sent, r.renamed, sweep).await?;
            state.sweeps_left = state.sweeps_left.saturating_sub(1);
            report.outcomes.push(o);
            let chain = &mut state.chain;
            chain.next = Some(next_base);
            report.archived_until = chain.next;
            chain.starts.insert(chain_next);
            chain.last_written_ms = m.source.archived_at_ms;
            state.won_last = true;
            state.compared.insert(seg.base_offset);
            state.held.insert(chain_next, Arc::new(sent));
            Ok(Step::Next)
        } else {
            let o = self.lost(chain_next, next_base, &r.summary).await?;
            state.compared.insert(chain_next);
            state.won_last = false;
            report.outcomes.push(o);
            state.chain = load_chain(store, &self.key, p.segments[0].base_offset).await?;
            report.archived_until = state.chain.next;
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
