//! What an agent remembers between passes, so that a pass over partitions with nothing new
//! makes no store request: each partition's chain as last seen (its end, the starts of the
//! ranges from its oldest segment on disk, where the last chain index ends), the ranges this
//! node has already compared, the broker files and KRaft snapshots already stored, and the
//! high watermark at which each partition's next closed segment becomes committed.
//!
//! Memory is an optimisation, never the truth: the store is. It is rebuilt from the store
//! the first time a partition is seen, and corrected when the store disagrees (a conditional
//! create refused, a range found published by another archiver); a partition whose pass
//! failed is forgotten and read again. `archive --once` runs without it and reads the store
//! every time.

use super::chain::Chain;
use crate::archive::layout::PartitionKey;
use crate::logdir::OffsetMap;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Total bytes of manifests held for the next chain index, over every partition. Past it,
/// the index is built from the store instead (one GET per manifest not held).
const HELD_BYTES_CAP: usize = 16 << 20;

/// Ranges after the chain's end (as first read) under which an archiver that won them looks
/// for leftovers of interrupted attempts (a GET reading its manifest back, a LIST of the
/// range's data). An interrupted archiver (a crash, a kill) had uploaded at most one batch
/// of ranges (`MAX_BATCH`) past the end it had read; its successor on the same log dir reads
/// the same end, so the leftovers lie within this many ranges of it. Past them, a range's
/// objects are this process's own and it deletes those itself: no more requests per range.
/// Leftovers an archiver elsewhere left further on stay until `check` finds them as orphans.
pub(super) const SWEPT_RANGES: usize = 256;

/// What the agent remembers (shared by the passes it runs; cheap to clone).
#[derive(Clone, Default)]
pub struct Memory(Arc<Mutex<Known>>);

impl std::fmt::Debug for Memory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Memory")
    }
}

#[derive(Default)]
struct Known {
    partitions: HashMap<(PathBuf, PartitionKey), PartitionMemory>,
    /// SHA-256 of each broker file as last stored, by key.
    broker_files: HashMap<String, [u8; 32]>,
    /// KRaft snapshot keys known stored.
    snapshots: HashSet<String>,
    /// Log dir -> (topic, partition) -> the high watermark at which its first closed,
    /// uncommitted segment becomes committed.
    waiting: HashMap<PathBuf, OffsetMap>,
    held_bytes: usize,
}

/// One partition's remembered state (see the module doc).
#[derive(Debug, Clone)]
pub(super) struct PartitionMemory {
    pub(super) chain: Chain,
    /// Base offsets of segments on disk already dealt with: compared with the archived
    /// range, archived by this node, or not the start of an archived range.
    pub(super) compared: BTreeSet<i64>,
    /// Whether this node published the chain's last range: it then claims the next range
    /// without looking first (a replica that lost looks whether the range is taken before
    /// uploading it).
    pub(super) won_last: bool,
    /// How many more ranges this process publishes in this partition before it stops
    /// looking for leftovers of interrupted attempts under each range it wins (see
    /// [`SWEPT_RANGES`]).
    pub(super) sweeps_left: usize,
    /// Manifest bytes this node published or read, by start offset, for the next index.
    pub(super) held: HashMap<i64, Arc<Vec<u8>>>,
}

impl PartitionMemory {
    pub(super) fn new(chain: Chain) -> PartitionMemory {
        PartitionMemory {
            chain,
            compared: BTreeSet::new(),
            won_last: false,
            sweeps_left: SWEPT_RANGES,
            held: HashMap::new(),
        }
    }
}

impl Memory {
    fn known(&self) -> std::sync::MutexGuard<'_, Known> {
        // A panic while holding the lock leaves plain data: still usable.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The remembered state of a partition, taken out while its pass runs.
    pub(super) fn take(
        &self,
        log_dir: &std::path::Path,
        key: &PartitionKey,
    ) -> Option<PartitionMemory> {
        let mut k = self.known();
        let m = k.partitions.remove(&(log_dir.to_path_buf(), key.clone()))?;
        k.held_bytes -= held_size(&m);
        Some(m)
    }

    /// Puts a partition's state back after its pass; past the cap, the held manifests are
    /// dropped (the index is then built from the store).
    pub(super) fn put(
        &self,
        log_dir: &std::path::Path,
        key: &PartitionKey,
        mut m: PartitionMemory,
    ) {
        let mut k = self.known();
        if k.held_bytes + held_size(&m) > HELD_BYTES_CAP {
            m.held.clear();
        }
        k.held_bytes += held_size(&m);
        k.partitions.insert((log_dir.to_path_buf(), key.clone()), m);
    }

    /// Forgets the partitions of `log_dir` that `present` (its listing's (topic, partition)
    /// pairs) no longer holds: deleted topics, moved replicas.
    pub(super) fn retain(
        &self,
        log_dir: &std::path::Path,
        present: &std::collections::BTreeSet<(String, i32)>,
    ) {
        let mut k = self.known();
        let mut freed = 0;
        k.partitions.retain(|(dir, key), m| {
            let keep = dir != log_dir || present.contains(&(key.topic.clone(), key.partition));
            if !keep {
                freed += held_size(m);
            }
            keep
        });
        k.held_bytes -= freed;
    }

    /// Whether the broker file at `key` was last stored with digest `d`.
    pub(super) fn broker_file_is(&self, key: &str, d: &[u8; 32]) -> bool {
        self.known().broker_files.get(key) == Some(d)
    }

    pub(super) fn broker_file_stored(&self, key: &str, d: [u8; 32]) {
        self.known().broker_files.insert(key.to_string(), d);
    }

    pub(super) fn snapshot_known(&self, key: &str) -> bool {
        self.known().snapshots.contains(key)
    }

    pub(super) fn snapshot_stored(&self, key: &str) {
        self.known().snapshots.insert(key.to_string());
    }

    /// Records, for the log dir's partitions just passed, the high watermark at which each
    /// one's next closed segment becomes committed (none: nothing is waiting).
    pub(super) fn set_waiting(&self, log_dir: &std::path::Path, waiting: OffsetMap) {
        self.known().waiting.insert(log_dir.to_path_buf(), waiting);
    }

    /// Whether `high_watermarks` (a log dir's `replication-offset-checkpoint`, just read)
    /// commits a closed segment that was waiting for it: then a pass has work. A log dir
    /// never passed has everything to do.
    pub fn commits_something(
        &self,
        log_dir: &std::path::Path,
        high_watermarks: &OffsetMap,
    ) -> bool {
        let k = self.known();
        let Some(waiting) = k.waiting.get(log_dir) else {
            return true;
        };
        waiting
            .iter()
            .any(|(tp, need)| high_watermarks.get(tp).is_some_and(|hw| hw >= need))
    }
}

fn held_size(m: &PartitionMemory) -> usize {
    m.held.values().map(|b| b.len()).sum()
}
