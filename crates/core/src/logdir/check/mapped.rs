//! Mapping the files a check reads, and confirming afterwards that what was read was the
//! file (a broker may truncate it meanwhile).

use std::path::{Path, PathBuf};

use segvault_format::mapped::MappedFile;

/// Error opening a file: the path and what went wrong (exit code 2 territory).
#[derive(Debug)]
pub struct OpenError {
    /// The file.
    pub path: PathBuf,
    /// Description, with the OS error.
    pub message: String,
    /// The file does not exist (any more): on a live broker, retention or the log cleaner
    /// renamed it after it was listed.
    pub vanished: bool,
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.message)
    }
}

impl std::error::Error for OpenError {}

/// Maps a file; only a regular file (`MappedFile::open` checks the opened file).
pub fn open(path: &Path) -> Result<MappedFile, OpenError> {
    crate::sys::map(&path).map_err(|e| OpenError {
        path: path.to_path_buf(),
        message: format!("cannot read: {e}"),
        vanished: e.kind() == std::io::ErrorKind::NotFound,
    })
}

/// An [`OpenError`] if `map` was truncated while read: what was checked was not the file.
pub(super) fn intact(path: &Path, map: &MappedFile) -> Result<(), OpenError> {
    map.check_intact().map_err(|e| OpenError {
        path: path.to_path_buf(),
        message: e.to_string(),
        vanished: false,
    })
}
