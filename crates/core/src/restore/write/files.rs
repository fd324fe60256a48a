//! Writing files durably: atomically into place (a temporary copy, fsync, rename, fsync of
//! the directory), or into the staging dir, to be fsynced with the rest of a partition.

use crate::restore::error::{io, RestoreError};
use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` atomically: a temp file beside it, fsync, rename, fsync the dir.
pub(super) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), RestoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.segvault-tmp",
        path.file_name().unwrap_or_default().to_string_lossy()
    ));
    // Errors name the file being written (its temporary copy is an implementation detail).
    let tmp_ref = &tmp;
    let failed = |what: &'static str| {
        move |source: std::io::Error| {
            let _ = fs::remove_file(tmp_ref);
            RestoreError::IoStep {
                path: path.to_path_buf(),
                step: what,
                source,
            }
        }
    };
    let mut f = File::create(&tmp).map_err(failed("creating its temporary copy"))?;
    f.write_all(bytes).map_err(failed("writing"))?;
    f.sync_all().map_err(failed("fsync"))?;
    fs::rename(&tmp, path).map_err(failed("renaming into place"))?;
    sync_dir(dir)
}

/// [`crate::sys::sync_dir`], its error naming the directory.
pub(super) fn sync_dir(dir: &Path) -> Result<(), RestoreError> {
    crate::sys::sync_dir(dir).map_err(io(dir))
}

/// Writes a file in the staging dir; the partition's build fsyncs it before placement.
pub(super) fn write_unsynced(path: &Path, bytes: &[u8]) -> Result<(), RestoreError> {
    let mut f = File::create(path).map_err(io(path))?;
    f.write_all(bytes).map_err(io(path))
}

/// Writes a file and fsyncs it (its directory is the caller's to sync).
pub(super) fn write_file(path: &Path, bytes: &[u8]) -> Result<(), RestoreError> {
    let mut f = File::create(path).map_err(io(path))?;
    f.write_all(bytes).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}
