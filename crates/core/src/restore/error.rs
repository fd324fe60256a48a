//! The restore layer's error: what stopped a restore, and how the CLI exits for it.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("{path}: {message}")]
    Io { path: PathBuf, message: String },
    #[error("store {url}, key {key}: {message}")]
    Store {
        url: String,
        key: String,
        message: String,
    },
    #[error("{0}")]
    Refused(String),
    /// The archive's bytes are not what its manifest says: nothing of this partition is placed.
    #[error("{key}: {message}")]
    Integrity { key: String, message: String },
}

impl RestoreError {
    /// Integrity problems exit 1; everything else 2.
    pub fn is_integrity(&self) -> bool {
        matches!(self, RestoreError::Integrity { .. })
    }
}

pub(super) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RestoreError + '_ {
    move |e| RestoreError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}
