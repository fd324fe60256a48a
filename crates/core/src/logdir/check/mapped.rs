//! Mapping the files a check reads, and confirming afterwards that what was read was the
//! file (a broker may truncate it meanwhile).

use std::path::Path;

use segvault_format::mapped::MappedFile;

use crate::logdir::Error;

/// Maps a file; only a regular file (`MappedFile::open` checks the opened file).
pub(super) fn open(path: &Path) -> Result<MappedFile, Error> {
    crate::sys::map(path).map_err(|source| Error::Unreadable {
        path: path.to_path_buf(),
        source,
    })
}

/// An [`Error::Changed`] if `map` was truncated while read: what was checked was not the
/// file.
pub(super) fn intact(path: &Path, map: &MappedFile) -> Result<(), Error> {
    map.check_intact().map_err(|source| Error::Changed {
        path: path.to_path_buf(),
        source,
    })
}
