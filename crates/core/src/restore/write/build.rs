//! Building one partition in its staging dir: each segment range fetched and verified (see
//! `fetch`), the last one cut where the plan says, its indexes the archived ones or rebuilt,
//! then the small files a broker reads beside the log (producer snapshot, leader-epoch
//! checkpoint, `partition.metadata`), and every file fsynced before it is placed.

use super::files::{sync_dir, write_unsynced};
use super::{BuildResult, OpenTransactionsCut, RestoredPartition};
use crate::archive::layout::PartitionKey;
use crate::archive::manifest::{Manifest, ObjectRef, RangeKind};
use crate::archive::store::Store;
use crate::archive::summary::Summary;
use crate::restore::error::{io, RestoreError};
use crate::restore::fetch::{fetch_log, fetch_small, LogCheck};
use crate::restore::plan::{Mode, PartitionPlan, Plan};
use crate::sys::blocking;
use segvault_format::index::AbortedTxn;
use segvault_format::index_build::{self, TxnIndexBuilder};
use segvault_format::segment::log_entries;
use segvault_format::text::{self, EpochEntry, Uuid};
use std::fs::{self, File};
use std::path::{Path, PathBuf};

/// Builds one partition in `stage`. Returns its report and the stored bytes fetched. Every
/// file is fsynced (the `.log`s last, their writeback started while they were verified),
/// then the directory, before the caller renames it into place.
pub(super) async fn build_partition(
    store: &Store,
    plan: &Plan,
    p: &PartitionPlan,
    stage: &Path,
    topic_id: &str,
    progress: &(dyn Fn(u64) + Sync),
) -> BuildResult {
    let mut b = Build {
        stage,
        fetched: 0,
        rebuilt: 0,
        cut_at: None,
        end: p.ranges.first().map_or(0, |m| m.start_offset),
        snapshot: None,
        bases: Vec::new(),
        log_bytes: 0,
        empty_at: None,
        to_sync: Vec::new(),
    };
    let segs: Vec<&Manifest> = p
        .ranges
        .iter()
        .filter(|m| m.kind == RangeKind::Segment)
        .collect();
    // Open transactions carried from segment to segment, for rebuilt `.txnindex` files. (A
    // chain that starts after offset 0 starts with none known.)
    let mut txns = TxnIndexBuilder::new();
    for (i, m) in segs.iter().enumerate() {
        let Some(lo) = &m.objects.log else { continue };
        let trim = i + 1 == segs.len() && p.trim_last;
        let range = Range { m, lo, trim };
        if b.segment(store, plan, p, range, &mut txns, progress)
            .await?
            == Kept::Cut
        {
            break;
        }
    }
    // Without the archived producer state (a new cluster starts with none) the broker cannot
    // know which transactions are open: their records would be served to read_committed
    // consumers as committed. The log ends where none was open instead.
    let open_cut = match (plan.mode, txns.stable_end()) {
        (Mode::NewCluster, Some(at)) => {
            let archived_end = b.end;
            let at = b.end_before_open_transactions(at)?;
            Some(OpenTransactionsCut {
                at,
                archived_end,
                transactions: txns
                    .open_transactions()
                    .iter()
                    .map(|(&p, &f)| (p, f))
                    .collect(),
            })
        }
        _ => None,
    };
    let snapshot = b.producer_snapshot(store, plan).await?;
    let first = b.small_files(plan, p, topic_id, snapshot)?;
    b.sync()?;
    let open_transactions = match open_cut {
        Some(_) => vec![],
        None => txns
            .open_transactions()
            .iter()
            .map(|(&pid, &first)| (pid, first))
            .collect(),
    };
    Ok((
        RestoredPartition {
            topic: p.topic.clone(),
            partition: p.partition,
            dir: stage.to_path_buf(),
            topic_id: topic_id.to_string(),
            segments: b.bases.len().max(1),
            log_bytes: b.log_bytes,
            log_start_offset: first,
            log_end_offset: b.end,
            cut_at: b.cut_at,
            rebuilt_indexes: b.rebuilt,
            resumed: false,
            open_transactions,
            open_transactions_cut: open_cut,
        },
        b.fetched,
    ))
}

/// One segment range of the plan, with its `.log` object.
#[derive(Clone, Copy)]
struct Range<'p> {
    m: &'p Manifest,
    lo: &'p ObjectRef,
    /// The range is the last of a cut partition: it is cut where the plan's cut falls.
    trim: bool,
}

/// Whether the ranges after a segment are still wanted.
#[derive(PartialEq, Eq)]
enum Kept {
    /// The segment was kept whole: go on.
    Whole,
    /// The segment was cut (or dropped at the cut): nothing after it is kept.
    Cut,
}

/// A partition's build so far.
struct Build<'s> {
    stage: &'s Path,
    /// Stored bytes fetched.
    fetched: u64,
    /// Segments whose indexes were rebuilt.
    rebuilt: usize,
    cut_at: Option<i64>,
    /// The log end so far.
    end: i64,
    /// The producer snapshot at the end of the last whole range: (its offset, its object).
    /// Only this one is fetched, once the partition's segments are in (see
    /// `producer_snapshot`): the earlier ranges' snapshots are never placed.
    snapshot: Option<(i64, ObjectRef)>,
    /// Base offsets of the segments kept.
    bases: Vec<i64>,
    log_bytes: u64,
    /// Where the log restarts, empty, when the cut keeps nothing of the first segment.
    empty_at: Option<i64>,
    /// Files written here, fsynced together at the end.
    to_sync: Vec<PathBuf>,
}

/// A segment's three indexes, as they are written beside its `.log`.
struct Indexes {
    index: Vec<u8>,
    timeindex: Vec<u8>,
    txnindex: Option<Vec<u8>>,
}

impl Build<'_> {
    /// Fetches and verifies one segment range, cuts it if it is the cut one, and writes its
    /// indexes.
    async fn segment(
        &mut self,
        store: &Store,
        plan: &Plan,
        p: &PartitionPlan,
        Range { m, lo, trim }: Range<'_>,
        txns: &mut TxnIndexBuilder,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<Kept, RestoreError> {
        let base = m.start_offset;
        let log_path = self.stage.join(format!("{base:020}.log"));
        // Fetch, and verify every batch and the digest of the whole range, in one pass.
        let check = fetch_log(
            store,
            lo,
            &log_path,
            base,
            m.next_offset,
            trim.then_some(plan.cut),
            txns,
            progress,
        )
        .await?;
        self.fetched += check.fetched;
        let s = &check.summary;
        check_fits(plan, p, m, lo, s)?;
        // The offset after the range's last batch, from the verifying walk.
        let walked_end = s.stats.last_batch_offset.map_or(base, |l| l + 1);
        // (byte position, base offset of the first batch not kept) when this range is cut.
        let trim_to: Option<(u64, Option<i64>)> = trim.then_some(match check.cut {
            Some((pos, b)) => (pos, Some(b)),
            None => (lo.size, None),
        });
        let whole = trim_to.is_none();
        if let Some((pos, cut_base)) = trim_to {
            if !self.cut(&log_path, base, pos, cut_base)? {
                return Ok(Kept::Cut);
            }
        }
        self.to_sync.push(log_path.clone());
        if plan.mode == Mode::NewCluster {
            reset_leader_epochs(&log_path)?;
        }
        self.log_bytes += trim_to.map_or(lo.size, |(pos, _)| pos);
        // A cut log ends where the first batch not kept began.
        let seg_end = match trim_to {
            Some((_, cut_base)) => {
                let e = cut_base.unwrap_or(walked_end);
                self.cut_at = Some(e);
                e
            }
            None => walked_end,
        };
        let indexes = self.indexes(store, m, lo, &check, &log_path, whole).await?;
        for (ext, bytes) in [
            ("index", Some(&indexes.index)),
            ("timeindex", Some(&indexes.timeindex)),
        ]
        .into_iter()
        .chain(std::iter::once(("txnindex", indexes.txnindex.as_ref())))
        {
            if let Some(b) = bytes {
                self.small(self.stage.join(format!("{base:020}.{ext}")), b)?;
            }
        }
        self.bases.push(base);
        self.end = seg_end.max(if whole { m.next_offset } else { seg_end });
        // Producer state: the snapshot at this range's end, if it is whole; else keep the
        // previous one (at this segment's base) and let the broker replay the cut segment.
        if !whole {
            return Ok(Kept::Cut);
        }
        if let Some(s) = &m.objects.producer_snapshot {
            self.snapshot = Some((m.next_offset, s.clone()));
        }
        Ok(Kept::Whole)
    }

    /// Cuts the fetched `.log` at byte `pos`. Returns whether anything of it is kept: if
    /// not, it is removed, and the log ends (or, with nothing before it, restarts) at the
    /// cut.
    fn cut(
        &mut self,
        log_path: &Path,
        base: i64,
        pos: u64,
        cut_base: Option<i64>,
    ) -> Result<bool, RestoreError> {
        let f = fs::OpenOptions::new()
            .write(true)
            .open(log_path)
            .map_err(io(log_path))?;
        f.set_len(pos).map_err(io(log_path))?;
        if pos == 0 {
            // Nothing of this range is kept.
            fs::remove_file(log_path).map_err(io(log_path))?;
            self.cut_at = Some(cut_base.unwrap_or(base));
            if self.bases.is_empty() {
                // The log restarts empty where the cut is, so the offsets already used
                // (the cleaner may have left none of them a record) are not reused.
                self.empty_at = self.cut_at;
            }
            return Ok(false);
        }
        Ok(true)
    }

    /// Ends the log built so far at `at` (a batch's base offset, or below the first segment):
    /// the segments from `at` on are removed, the one holding `at` is cut before that batch
    /// and its indexes rebuilt (its aborted transactions are those whose marker is kept).
    /// Returns where the log now ends.
    fn end_before_open_transactions(&mut self, at: i64) -> Result<i64, RestoreError> {
        self.snapshot = None;
        self.cut_at = Some(at);
        self.end = at;
        loop {
            let Some(&base) = self.bases.last() else {
                // Nothing before the first open transaction: the log restarts empty there.
                self.empty_at = Some(at);
                return Ok(at);
            };
            let log_path = self.stage.join(format!("{base:020}.log"));
            let pos = if base >= at {
                Some(0)
            } else {
                let log = crate::sys::map(&log_path).map_err(io(&log_path))?;
                log_entries(log.bytes())
                    .find(|b| b.base_offset() >= at)
                    .map(|b| b.position())
            };
            match pos {
                // Nothing of this segment is below `at`.
                Some(0) => self.drop_segment(base)?,
                // `at` is past this segment's last batch: it is kept whole.
                None => return Ok(at),
                Some(pos) => return self.cut_segment(base, pos, at),
            }
        }
    }

    /// Removes the last segment kept, `base`, with its indexes.
    fn drop_segment(&mut self, base: i64) -> Result<(), RestoreError> {
        self.bases.pop();
        for ext in ["log", "index", "timeindex", "txnindex"] {
            let f = self.stage.join(format!("{base:020}.{ext}"));
            if ext == "log" {
                self.log_bytes -= fs::metadata(&f).map_err(io(&f))?.len();
            }
            if f.exists() {
                fs::remove_file(&f).map_err(io(&f))?;
            }
            self.to_sync.retain(|p| p != &f);
        }
        Ok(())
    }

    /// Cuts segment `base` at byte `pos` (the batch at `at`) and rebuilds its indexes.
    fn cut_segment(&mut self, base: i64, pos: u64, at: i64) -> Result<i64, RestoreError> {
        let log_path = self.stage.join(format!("{base:020}.log"));
        let f = fs::OpenOptions::new()
            .write(true)
            .open(&log_path)
            .map_err(io(&log_path))?;
        let len = f.metadata().map_err(io(&log_path))?.len();
        f.set_len(pos).map_err(io(&log_path))?;
        self.log_bytes -= len - pos;
        let log = crate::sys::map(&log_path).map_err(io(&log_path))?;
        let built = rebuild(log.bytes(), base, || log_path.display().to_string())?;
        let txn_path = self.stage.join(format!("{base:020}.txnindex"));
        let kept: Vec<AbortedTxn> = match fs::read(&txn_path) {
            Ok(bytes) => segvault_format::index::parse_txn_index(&bytes)
                .map_err(|source| RestoreError::Corrupt {
                    key: txn_path.display().to_string(),
                    source,
                })?
                .into_iter()
                .filter(|t| t.last_offset < at)
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => vec![],
            Err(e) => return Err(io(&txn_path)(e)),
        };
        if txn_path.exists() {
            fs::remove_file(&txn_path).map_err(io(&txn_path))?;
            self.to_sync.retain(|p| p != &txn_path);
        }
        self.small(
            self.stage.join(format!("{base:020}.index")),
            &built.offset_index,
        )?;
        self.small(
            self.stage.join(format!("{base:020}.timeindex")),
            &built.time_index,
        )?;
        if !kept.is_empty() {
            self.small(txn_path, &index_build::encode_txn_index(&kept))?;
        }
        self.rebuilt += 1;
        self.end = at;
        Ok(at)
    }

    /// Indexes: the broker's own for a whole segment archived whole, else rebuilt.
    async fn indexes(
        &mut self,
        store: &Store,
        m: &Manifest,
        lo: &ObjectRef,
        check: &LogCheck,
        log_path: &Path,
        whole: bool,
    ) -> Result<Indexes, RestoreError> {
        let archived = whole && m.slice_position == 0 && m.objects.index.is_some();
        if archived {
            let index = fetch_small(store, m.objects.index.as_ref().unwrap()).await?;
            let timeindex = match &m.objects.timeindex {
                Some(t) => fetch_small(store, t).await?,
                None => vec![],
            };
            let txnindex = match &m.objects.txnindex {
                Some(t) => Some(fetch_small(store, t).await?),
                None => None,
            };
            if check.txn_failed_from.is_some() {
                let log = crate::sys::map(log_path).map_err(io(log_path))?;
                txn_state(lo, check, log.bytes())?;
            }
            return Ok(Indexes {
                index,
                timeindex,
                txnindex,
            });
        }
        self.rebuilt += 1;
        let log = crate::sys::map(log_path).map_err(io(log_path))?;
        let data = log.bytes();
        let built = rebuild(data, m.start_offset, || lo.key.clone())?;
        let aborted = txn_state(lo, check, data)?;
        let txn = index_build::encode_txn_index(&aborted);
        Ok(Indexes {
            index: built.offset_index,
            timeindex: built.time_index,
            txnindex: (!txn.is_empty()).then_some(txn),
        })
    }

    /// The producer snapshot placed (bare-metal only: a new cluster starts with none), as
    /// `(its offset, its bytes)`: the one at the end of the last whole range, if the log
    /// reaches it. The only snapshot object a restore fetches.
    async fn producer_snapshot(
        &mut self,
        store: &Store,
        plan: &Plan,
    ) -> Result<Option<(i64, Vec<u8>)>, RestoreError> {
        match self.snapshot.take() {
            Some((at, r)) if plan.mode == Mode::BareMetal && at <= self.end => {
                Ok(Some((at, fetch_small(store, &r).await?)))
            }
            _ => Ok(None),
        }
    }

    /// The small files beside the log: the producer snapshot, the leader-epoch checkpoint,
    /// `partition.metadata`, and an empty `.log` when nothing before the cut is kept.
    /// Returns the log start offset.
    fn small_files(
        &mut self,
        plan: &Plan,
        p: &PartitionPlan,
        topic_id: &str,
        snapshot: Option<(i64, Vec<u8>)>,
    ) -> Result<i64, RestoreError> {
        match plan.mode {
            Mode::BareMetal => match snapshot {
                Some((at, bytes)) => {
                    self.small(self.stage.join(format!("{at:020}.snapshot")), &bytes)?;
                }
                None if !self.bases.is_empty() => {
                    // No archived snapshot reaches the log (the cut fell in its first range):
                    // an empty one at the log start makes the broker rebuild producer state
                    // from the batches. With no snapshot at all, a broker that finds a clean
                    // shutdown skips that (the upgrade case of `rebuildProducerState`) and
                    // would not know the transactions open in the log.
                    let at = p.ranges.first().map_or(0, |m| m.start_offset);
                    self.small(
                        self.stage.join(format!("{at:020}.snapshot")),
                        &segvault_format::snapshot::write_producer_snapshot(&[]),
                    )?;
                }
                None => {}
            },
            Mode::NewCluster => {
                // A new cluster hands out producer ids from 0 again: restored producer state
                // would collide with its new producers. Start with none at the log end.
                let end = self.end;
                self.small(
                    self.stage.join(format!("{end:020}.snapshot")),
                    &segvault_format::snapshot::write_producer_snapshot(&[]),
                )?;
            }
        }
        let first = p.ranges.first().map_or(0, |m| m.start_offset);
        let epochs = leader_epochs(plan, p, first, self.end);
        self.small(
            self.stage.join("leader-epoch-checkpoint"),
            text::write_leader_epoch_checkpoint(&epochs).as_bytes(),
        )?;
        let uuid = Uuid::parse(topic_id).map_err(|source| RestoreError::BadTopicId {
            topic_id: topic_id.to_string(),
            source,
        })?;
        self.small(
            self.stage.join("partition.metadata"),
            text::write_partition_metadata(&uuid).as_bytes(),
        )?;
        if !self.bases.is_empty() {
            return Ok(first);
        }
        // Nothing before the cut: an empty log starting at the cut (or where the archive
        // starts), with its (empty) indexes: a broker that finds a segment without its offset
        // index logs an ERROR and recovers it.
        let at = self.empty_at.unwrap_or(first);
        for ext in ["log", "index", "timeindex"] {
            self.small(self.stage.join(format!("{at:020}.{ext}")), b"")?;
        }
        self.end = at;
        Ok(at)
    }

    /// Writes a file of the partition, to be fsynced with the rest.
    fn small(&mut self, path: PathBuf, bytes: &[u8]) -> Result<(), RestoreError> {
        write_unsynced(&path, bytes)?;
        self.to_sync.push(path);
        Ok(())
    }

    /// Durable before it is renamed into place: the small files first, then the `.log`s,
    /// whose writeback has been under way since they were verified.
    fn sync(&mut self) -> Result<(), RestoreError> {
        self.to_sync
            .sort_by_key(|p| p.extension().is_some_and(|e| e == "log"));
        blocking(|| {
            for path in &self.to_sync {
                File::open(path)
                    .and_then(|f| f.sync_all())
                    .map_err(io(path))?;
            }
            sync_dir(self.stage)
        })
    }
}

/// The `.index` and `.timeindex` of a segment's bytes `data` (base `base`), as the broker
/// builds them; an error names `key()` (the object or file the bytes came from).
fn rebuild(
    data: &[u8],
    base: i64,
    key: impl FnOnce() -> String,
) -> Result<index_build::SegmentIndexes, RestoreError> {
    blocking(|| index_build::build_indexes(data, base, index_build::DEFAULT_INDEX_INTERVAL_BYTES))
        .map_err(|source| RestoreError::Corrupt { key: key(), source })
}

/// The batches must be those the manifest records (its batch digest), and the range's
/// bounds what its batches allow.
fn check_fits(
    plan: &Plan,
    p: &PartitionPlan,
    m: &Manifest,
    lo: &ObjectRef,
    s: &Summary,
) -> Result<(), RestoreError> {
    let base = m.start_offset;
    if s.stats.batch_digest != m.stats.batch_digest || s.slice_position != 0 {
        return Err(RestoreError::Integrity {
            key: lo.key.clone(),
            message: format!(
                "the batches differ from what the manifest records (digest {} vs {})",
                s.stats.batch_digest, m.stats.batch_digest
            ),
        });
    }
    // The range's bounds must be what its batches allow: the offsets of [start, next)
    // that hold no batch are the manifest's `empty_offsets` (a raised `next_offset` would
    // become the restored log end, the high watermark and a snapshot's name).
    let (head, tail) = match (s.stats.first_batch_offset, s.stats.last_batch_offset) {
        (Some(f), Some(l)) => ((f - base).max(0), (m.next_offset - 1 - l).max(0)),
        _ => (m.next_offset - base, 0),
    };
    let empty = s
        .stats
        .empty_offsets
        .saturating_add(head as u64)
        .saturating_add(tail as u64);
    if empty != m.stats.empty_offsets {
        return Err(RestoreError::Integrity {
            key: PartitionKey {
                cluster_id: plan.cluster_id.clone(),
                topic: p.topic.clone(),
                topic_id: p.archived_topic_id.clone(),
                partition: p.partition,
            }
            .manifest(base)
            .to_string(),
            message: format!(
                "range [{base}, {}) does not fit its batches: they span {}..={}, which leaves {empty} offsets without a batch, but the manifest records {} (a next_offset or empty_offsets that was changed)",
                m.next_offset,
                s.stats.first_batch_offset.map_or("-".into(), |o| o.to_string()),
                s.stats.last_batch_offset.map_or("-".into(), |o| o.to_string()),
                m.stats.empty_offsets
            ),
        });
    }
    Ok(())
}

/// The transaction state over the batches kept, from the verifying walk; where the walk
/// found it inconsistent, a walk from the state before this range reports why.
fn txn_state(
    lo: &ObjectRef,
    check: &LogCheck,
    data: &[u8],
) -> Result<Vec<AbortedTxn>, RestoreError> {
    match &check.txn_failed_from {
        None => Ok(check.aborted.clone()),
        Some(before) => match before.clone().add_segment(data) {
            Err(source) => Err(RestoreError::Corrupt {
                key: lo.key.clone(),
                source,
            }),
            Ok(_) => Err(RestoreError::Integrity {
                key: lo.key.clone(),
                message: "the transaction markers do not match the batches before them".into(),
            }),
        },
    }
}

/// The leader-epoch checkpoint of a partition restored from `first` to `end`: the archived
/// epochs below the end (bare-metal), or epoch 0 from the start (new cluster).
fn leader_epochs(plan: &Plan, p: &PartitionPlan, first: i64, end: i64) -> Vec<EpochEntry> {
    match plan.mode {
        Mode::BareMetal => p
            .epochs
            .iter()
            .filter(|(_, o)| *o < end)
            .map(|&(epoch, start_offset)| EpochEntry {
                epoch,
                start_offset,
            })
            .collect(),
        Mode::NewCluster => vec![EpochEntry {
            epoch: 0,
            start_offset: first,
        }],
    }
}

/// Sets PartitionLeaderEpoch (bytes 12..16, outside the CRC) of every v2 batch to 0, so a
/// new cluster's leader-epoch cache, which starts at epoch 0, is consistent with the log.
fn reset_leader_epochs(path: &Path) -> Result<(), RestoreError> {
    use std::os::unix::fs::FileExt;
    let positions: Vec<u64> = {
        let log = crate::sys::map(path).map_err(io(path))?;
        log_entries(log.bytes())
            .filter(|b| b.magic() == 2 && b.partition_leader_epoch() != Some(0))
            .map(|b| b.position())
            .collect()
    };
    let f = fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io(path))?;
    for pos in positions {
        f.write_all_at(&0i32.to_be_bytes(), pos + 12)
            .map_err(io(path))?;
    }
    f.sync_all().map_err(io(path))
}
