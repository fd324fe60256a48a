//! The restore layer's one error type: what stopped reading the catalog, planning or a
//! restore, with the error underneath it kept as its source, and how the CLI exits for it.

use crate::archive::summary::Refusal;
use segvault_format::FormatError;
use std::path::{Path, PathBuf};

/// Why `ls`, a plan or a restore stopped. Each variant's text is the whole message (it names
/// the file or key and includes its source's text), so the CLI prints it as it is.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RestoreError {
    /// A file or directory of the target could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// As [`RestoreError::Io`], naming the step that failed (`writing`, `fsync`, ...).
    #[error("{path}: {step}: {source}")]
    IoStep {
        path: PathBuf,
        step: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// A file of the target is not in the format the broker writes (an offset checkpoint,
    /// `partition.metadata`).
    #[error("{path}: {source}")]
    Unparsable {
        path: PathBuf,
        #[source]
        source: FormatError,
    },
    /// The journal of an interrupted restore cannot be read: removing the staging dir
    /// `staging` starts over.
    #[error("{path}: unreadable restore journal ({source}); remove {staging} to start over")]
    Journal {
        path: PathBuf,
        staging: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// A partition's build ended without a result (its task panicked or was cancelled).
    #[error("{path}: a partition's restore stopped: {source}")]
    Stopped {
        path: PathBuf,
        #[source]
        source: tokio::task::JoinError,
    },
    /// A fetched file, sized to the manifest's size, mapped at another size.
    #[error("{path}: sized to {size} bytes, mapped {mapped}")]
    Mapped {
        path: PathBuf,
        size: u64,
        mapped: usize,
    },
    /// The store failed to list or give an object.
    #[error("store {url}, key {key}: {source}")]
    Store {
        url: String,
        key: String,
        #[source]
        source: object_store::Error,
    },
    /// A local store's file could not be opened.
    #[error("store {url}, key {key}: {file}: {source}")]
    StoreFile {
        url: String,
        key: String,
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A local store's file could not be read.
    #[error("store {url}, key {key}: reading {file}: {source}")]
    StoreRead {
        url: String,
        key: String,
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The selection does not name one restorable thing (usage).
    #[error("{0}")]
    Choose(String),
    /// A selected partition's archive is damaged (a hole, a missing object): refused.
    #[error("{0}")]
    Damaged(String),
    /// The target is not one to restore into as it is (a broker holds it, data is there,
    /// another restore is in progress): nothing is changed.
    #[error("{0}")]
    Refused(String),
    /// Partitions of the plan that cannot be restored into the target as it is (no topic
    /// id, data present): found before anything is written, all of them at once.
    #[error("{}: {unready} of {total} partitions cannot be restored here, so nothing was written:\n  {}", to.display(), problems.join("\n  "))]
    Unready {
        to: PathBuf,
        /// Partitions that cannot be restored, of `total`.
        unready: usize,
        total: usize,
        problems: Vec<String>,
    },
    /// New-cluster mode: the target's `partition.metadata`, which gives the topic id to
    /// write, cannot be read.
    #[error("{path}: {source}; new-cluster mode restores into partitions created in the new cluster first (create topic {topic} there, stop the broker, then restore), or give --topic-id")]
    NoTopicId {
        path: PathBuf,
        topic: String,
        #[source]
        source: std::io::Error,
    },
    /// The topic id to write is not a topic id.
    #[error("topic id {topic_id}: {source}")]
    BadTopicId {
        topic_id: String,
        #[source]
        source: FormatError,
    },
    /// The archive's bytes are not what its manifest says: nothing of this partition is placed.
    #[error("{key}: {message}")]
    Integrity { key: String, message: String },
    /// As [`RestoreError::Integrity`]: the object's bytes are not in Kafka's format.
    #[error("{key}: {source}")]
    Corrupt {
        key: String,
        #[source]
        source: FormatError,
    },
    /// As [`RestoreError::Integrity`]: the object's zstd frames do not decode.
    #[error("{key}: zstd: {source}")]
    Zstd {
        key: String,
        #[source]
        source: std::io::Error,
    },
    /// As [`RestoreError::Integrity`]: the verifying walk over a fetched `.log` stopped.
    #[error("{key}: {refusal}")]
    Walk { key: String, refusal: Refusal },
    /// As [`RestoreError::Integrity`]: a streamed object could not be written (through the
    /// zstd decoder) to its file.
    #[error("{key}: writing {path}: {source}")]
    Streamed {
        key: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl RestoreError {
    /// The archive is damaged or its data failed verification: the CLI exits 1 for these,
    /// 2 for everything else.
    pub fn is_integrity(&self) -> bool {
        matches!(
            self,
            RestoreError::Damaged(_)
                | RestoreError::Integrity { .. }
                | RestoreError::Corrupt { .. }
                | RestoreError::Zstd { .. }
                | RestoreError::Walk { .. }
                | RestoreError::Streamed { .. }
        )
    }
}

/// [`RestoreError::Io`] for `path`, as a `map_err` argument.
pub(super) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RestoreError + '_ {
    move |source| RestoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}
