//! The target's `.lock`, held for the whole restore as a broker holds it.

use crate::restore::error::{io, RestoreError};
use std::fs::{self, File};
use std::path::{Path, PathBuf};

/// Holds the target's `.lock` (an fcntl lock, as a broker takes it) for the whole restore, so
/// that a broker starting meanwhile fails to take it instead of loading a half-restored dir.
/// A `.lock` this restore created is removed when it ends.
pub(super) struct TargetLock {
    file: File,
    path: PathBuf,
    created: bool,
}

impl TargetLock {
    pub(super) fn take(dir: &Path) -> Result<TargetLock, RestoreError> {
        let path = dir.join(".lock");
        let created = !path.exists();
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io(&path))?;
        TargetLock {
            file,
            path,
            created,
        }
        .try_lock(dir)
    }

    /// Takes the lock, or says that a broker holds it.
    fn try_lock(self, dir: &Path) -> Result<TargetLock, RestoreError> {
        match rustix::fs::fcntl_lock(&self.file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(self),
            Err(e) if e == rustix::io::Errno::AGAIN || e == rustix::io::Errno::ACCESS => {
                Err(RestoreError::Refused(format!(
                    "{}: a running broker holds its .lock; stop the broker before restoring into it",
                    dir.display()
                )))
            }
            Err(e) => Err(io(&self.path)(e.into())),
        }
    }
}

/// `--dry-run`: fails as [`TargetLock::take`] would if a broker holds `dir`'s `.lock`,
/// creating nothing (the lock is taken and released at once).
pub(super) fn check_unlocked(dir: &Path) -> Result<(), RestoreError> {
    let path = dir.join(".lock");
    let file = match fs::OpenOptions::new().read(true).write(true).open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(&path)(e)),
    };
    TargetLock {
        file,
        path,
        created: false,
    }
    .try_lock(dir)
    .map(drop)
}

impl Drop for TargetLock {
    fn drop(&mut self) {
        if self.created {
            let _ = fs::remove_file(&self.path);
        }
        let _ = rustix::fs::fcntl_lock(&self.file, rustix::fs::FlockOperation::NonBlockingUnlock);
    }
}
