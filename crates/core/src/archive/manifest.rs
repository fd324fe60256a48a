//! The manifest of one archived offset range (`chain/<start>.json`). It is the commit point:
//! written last, with a conditional create, after every object it names is stored.
//!
//! A range is `[start_offset, next_offset)`: `next_offset` is the base offset of the segment
//! that followed it on the broker, so consecutive manifests tile the offsets with no hole,
//! even where compaction or transaction markers left offsets without records.

use serde::{Deserialize, Serialize};

pub const FORMAT: &str = "segvault.manifest.v1";
pub const START_FORMAT: &str = "segvault.start.v1";
pub const INDEX_FORMAT: &str = "segvault.chain-index.v1";

/// How many consecutive ranges one chain index holds. Index `k` of a partition holds ranges
/// `k * INDEX_SPAN .. (k + 1) * INDEX_SPAN` of its chain, counted from `start.json`: every
/// archiver that builds it builds the same one.
pub const INDEX_SPAN: usize = 64;

/// `index/<first>-<next>.json`: the manifests of [`INDEX_SPAN`] consecutive published ranges,
/// `first` to `next`, exactly as stored under `chain/` (so unknown fields survive), in chain
/// order. Created once (conditionally) after those manifests exist; it never changes and it
/// never replaces them: a reader finds a partition's ranges from its indexes and the
/// manifests after the last one, without listing or reading every manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChainIndex {
    pub format: String,
    pub first_offset: i64,
    pub next_offset: i64,
    pub manifests: Vec<Box<serde_json::value::RawValue>>,
}

/// `start.json`: where a partition's chain begins, created once (conditionally) before its
/// first range. Every reader checks that the chain's first range begins there: a chain that
/// begins later has lost its first ranges.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartRecord {
    pub format: String,
    pub start_offset: i64,
    pub created_at_ms: i64,
    pub node_id: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RangeKind {
    /// Data archived from a segment (or the tail of one, see `slice_position`).
    Segment,
    /// Offsets that no replica had any more when the chain reached them (retention won the
    /// race): recorded so that the gap is visible, never silent.
    Gap,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    /// Key relative to the store root.
    pub key: String,
    /// Bytes as stored.
    pub stored_size: u64,
    /// Bytes of the original file.
    pub size: u64,
    /// SHA-256 (hex) of the original file's bytes.
    pub sha256: String,
    /// `identity`, or `zstd-frames` (independently decompressible frames, see `frames`).
    pub encoding: String,
    /// For `zstd-frames`: (uncompressed position, stored position, first offset) of each frame.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub frames: Vec<(u64, u64, i64)>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Objects {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<ObjectRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<ObjectRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeindex: Option<ObjectRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub txnindex: Option<ObjectRef>,
    /// The producer snapshot named by `next_offset` (producer state for offsets below it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub producer_snapshot: Option<ObjectRef>,
}

impl Objects {
    /// Every object present, in a fixed order (log, index, timeindex, txnindex, snapshot).
    pub fn iter(&self) -> impl Iterator<Item = &ObjectRef> {
        [
            &self.log,
            &self.index,
            &self.timeindex,
            &self.txnindex,
            &self.producer_snapshot,
        ]
        .into_iter()
        .flatten()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    pub node_id: i32,
    pub log_dir: String,
    pub host: String,
    pub segvault_version: String,
    /// Milliseconds since the epoch when the manifest was written.
    pub archived_at_ms: i64,
}

/// Counts and digests of the batches of one archived range, as verification found them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeStats {
    /// First and last offsets of the batches archived, if any.
    pub first_batch_offset: Option<i64>,
    pub last_batch_offset: Option<i64>,
    pub min_timestamp: Option<i64>,
    pub max_timestamp: Option<i64>,
    pub batches: u64,
    pub records: u64,
    pub transactional_batches: u64,
    pub control_batches: u64,
    pub magic: Vec<u8>,
    pub codecs: Vec<String>,
    /// Offsets of the range that hold no record: between batches, inside v2 batches whose
    /// record count is below their offset span, and before the first or after the last batch.
    /// A log that was never compacted has none; a non-zero count means the log cleaner had
    /// already removed records when the range was archived.
    #[serde(default)]
    pub empty_offsets: u64,
    /// SHA-256 over every batch's (base offset, last offset, CRC), in order: equal for
    /// replicas holding the same batches, whatever their segment boundaries.
    pub batch_digest: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub kind: RangeKind,
    pub cluster_id: String,
    pub topic: String,
    pub topic_id: String,
    pub partition: i32,
    /// First offset of the range (inclusive).
    pub start_offset: i64,
    /// First offset after the range (the next segment's base offset).
    pub next_offset: i64,
    /// Base offset of the broker segment the data came from.
    pub segment_base_offset: i64,
    /// Byte position in that segment where the archived data starts (0 unless another
    /// replica's shorter segment already covered the beginning).
    pub slice_position: u64,
    /// What the archived batches hold (flattened: the fields sit at the manifest's top level).
    #[serde(flatten)]
    pub stats: RangeStats,
    /// `(epoch, start offset)` entries of leader-epoch-checkpoint that cover the range.
    pub leader_epochs: Vec<(i32, i64)>,
    pub objects: Objects,
    pub source: Source,
}

/// The bytes of the chain index holding `manifests` (each exactly as stored under
/// `chain/`), the ranges from `first` up to `next`.
pub fn chain_index_bytes<M: AsRef<[u8]>>(
    first: i64,
    next: i64,
    manifests: &[M],
) -> Result<Vec<u8>, serde_json::Error> {
    let manifests = manifests
        .iter()
        .map(|m| {
            let text = String::from_utf8_lossy(m.as_ref()).trim().to_string();
            serde_json::value::RawValue::from_string(text)
        })
        .collect::<Result<Vec<_>, _>>()?;
    serde_json::to_vec(&ChainIndex {
        format: INDEX_FORMAT.into(),
        first_offset: first,
        next_offset: next,
        manifests,
    })
}
