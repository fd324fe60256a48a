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
        match rustix::fs::fcntl_lock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(TargetLock {
                file,
                path,
                created,
            }),
            Err(e) if e == rustix::io::Errno::AGAIN || e == rustix::io::Errno::ACCESS => {
                Err(RestoreError::Refused(format!(
                    "{}: a running broker holds its .lock; stop the broker before restoring into it",
                    dir.display()
                )))
            }
            Err(e) => Err(io(&path)(e.into())),
        }
    }
}

impl Drop for TargetLock {
    fn drop(&mut self) {
        if self.created {
            let _ = fs::remove_file(&self.path);
        }
        let _ = rustix::fs::fcntl_lock(&self.file, rustix::fs::FlockOperation::NonBlockingUnlock);
    }
}
