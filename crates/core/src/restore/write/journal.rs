//! The restore journal (`.segvault-restore/journal.json`): which partitions are in place, and
//! which is being renamed into place (written ahead of the rename), so that a restore killed
//! at any moment resumes where it stopped.

use super::files::write_atomic;
use super::STAGING;
use crate::restore::error::RestoreError;
use serde::Serialize;
use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

/// The journal's name in the staging dir.
pub(super) const JOURNAL: &str = "journal.json";

#[derive(Debug, Default, Serialize, serde::Deserialize)]
pub(super) struct Journal {
    pub(super) cluster_id: String,
    /// Partitions in place.
    pub(super) done: BTreeSet<String>,
    /// Partitions about to be renamed into place (written ahead of the rename): after a
    /// kill, one whose built dir has left the staging dir is in place.
    #[serde(default)]
    pub(super) placing: BTreeSet<String>,
}

impl Journal {
    /// The journal at `path`, or a new one for `cluster_id` if there is none.
    pub(super) fn load(path: &Path, cluster_id: &str) -> Result<Journal, RestoreError> {
        match fs::read(path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|source| RestoreError::Journal {
                path: path.to_path_buf(),
                staging: STAGING,
                source,
            }),
            Err(_) => Ok(Journal {
                cluster_id: cluster_id.to_string(),
                ..Journal::default()
            }),
        }
    }

    /// Writes the journal to `path` atomically.
    pub(super) fn save(&self, path: &Path) -> Result<(), RestoreError> {
        write_atomic(path, &serde_json::to_vec(self).unwrap_or_default())
    }
}
