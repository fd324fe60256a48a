//! Read-only memory maps of segment and index files, so parsers work zero-copy on the
//! file's bytes without reading them into memory first.

use std::fs::File;
use std::io;
use std::ops::Deref;
use std::path::Path;

use memmap2::{Advice, Mmap};

/// A file mapped read-only; derefs to its bytes. Empty files have no mapping (mapping zero
/// bytes fails on most platforms) and deref to an empty slice.
#[derive(Debug)]
pub struct MappedFile {
    map: Option<Mmap>,
}

impl MappedFile {
    /// Maps `path` read-only.
    pub fn open(path: impl AsRef<Path>) -> io::Result<MappedFile> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        if len == 0 {
            return Ok(MappedFile { map: None });
        }
        // SAFETY: memmap2 requires that the file is not modified while mapped, which we
        // cannot guarantee: a running broker may append to, truncate or rewrite (compaction,
        // index re-extension) the files we read. We accept this because (1) we only read, never
        // write through the map; (2) every parser treats the bytes as untrusted input (checked
        // bounds and arithmetic, no invariants assumed between reads), so changed contents
        // yield errors, not undefined behaviour in our code; (3) the remaining hazard, SIGBUS
        // if the file is truncated under us, is the documented cost of mmap and callers are
        // expected to read closed segments or stopped brokers.
        let map = unsafe { Mmap::map(&file)? };
        // Parsers read front to back: ask for aggressive readahead (a hint; from the page
        // cache it changes little, see README "Benchmarks"). Failure is harmless.
        let _ = map.advise(Advice::Sequential);
        Ok(MappedFile { map: Some(map) })
    }

    /// The mapped bytes.
    pub fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }
}

impl Deref for MappedFile {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.bytes()
    }
}

impl AsRef<[u8]> for MappedFile {
    fn as_ref(&self) -> &[u8] {
        self.bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_nonempty() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("empty");
        std::fs::write(&p, b"").unwrap();
        assert!(MappedFile::open(&p).unwrap().is_empty());
        let p = dir.path().join("data");
        std::fs::write(&p, b"abc").unwrap();
        assert_eq!(&*MappedFile::open(&p).unwrap(), b"abc");
        assert!(MappedFile::open(dir.path().join("missing")).is_err());
    }
}
