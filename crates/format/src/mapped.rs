//! Read-only memory maps of segment and index files, so parsers work zero-copy on the
//! file's bytes without reading them into memory first.

use std::fs::File;
use std::io;
use std::ops::Deref;
use std::path::Path;

use memmap2::{Advice, Mmap, UncheckedAdvice};

/// A file mapped read-only; derefs to its bytes. Empty files have no mapping (mapping zero
/// bytes fails on most platforms) and deref to an empty slice.
///
/// A mapped file truncated by someone else while it is read (a broker truncating a log,
/// trimming an index) would kill the process with SIGBUS at the first access past the new
/// end. Every mapping is registered with a SIGBUS guard instead (see the private `guard` module): a fault
/// inside a registered mapping maps a page of zeros over the missing page and marks the
/// mapping; the reader sees zeros, and [`MappedFile::truncated`] tells it afterwards that
/// what it read is not the file. Readers must check it before they trust or report anything
/// about the bytes.
#[derive(Debug)]
pub struct MappedFile {
    map: Option<Mmap>,
    id: FileId,
    /// The guard's slot for this mapping, if one was free.
    slot: Option<usize>,
}

/// The SIGBUS guard: a fixed table of the live mappings, read by the signal handler without
/// locks or allocation.
mod guard {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
    use std::sync::Once;

    const SLOTS: usize = 4096;
    struct Slot {
        start: AtomicUsize,
        end: AtomicUsize,
        hit: AtomicBool,
    }
    #[allow(clippy::declare_interior_mutable_const)]
    const EMPTY: Slot = Slot {
        start: AtomicUsize::new(0),
        end: AtomicUsize::new(0),
        hit: AtomicBool::new(false),
    };
    static TABLE: [Slot; SLOTS] = [EMPTY; SLOTS];
    static INSTALL: Once = Once::new();

    /// Registers `[start, start + len)`; `None` if the table is full (that mapping is then
    /// unguarded, as every mapping was before).
    pub(super) fn register(start: usize, len: usize) -> Option<usize> {
        INSTALL.call_once(install);
        for (i, s) in TABLE.iter().enumerate() {
            if s.start.compare_exchange(0, start, SeqCst, SeqCst).is_ok() {
                s.hit.store(false, SeqCst);
                s.end.store(start + len, SeqCst);
                return Some(i);
            }
        }
        None
    }

    pub(super) fn unregister(slot: usize) {
        TABLE[slot].end.store(0, SeqCst);
        TABLE[slot].start.store(0, SeqCst);
    }

    pub(super) fn hit(slot: usize) -> bool {
        TABLE[slot].hit.load(SeqCst)
    }

    fn install() {
        // SAFETY: sigaction with a zeroed struct, our handler and SA_SIGINFO is the documented
        // way to install a handler; nothing else in segvault handles SIGBUS.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = handler as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_NODEFER;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(libc::SIGBUS, &sa, std::ptr::null_mut());
        }
    }

    /// Runs in signal context: atomics and two syscalls only.
    extern "C" fn handler(sig: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
        // SAFETY: the kernel passes a valid siginfo_t for a SA_SIGINFO handler; si_addr is
        // the faulting address for SIGBUS.
        let addr = unsafe { (*info).si_addr() } as usize;
        for s in TABLE.iter() {
            let (start, end) = (s.start.load(SeqCst), s.end.load(SeqCst));
            if start != 0 && addr >= start && addr < end {
                let page = addr & !(super::page_size() - 1);
                // SAFETY: the page lies inside a read-only file mapping of ours that the
                // kernel can no longer back (the file shrank). Replacing that page with an
                // anonymous zero page (MAP_FIXED) is what makes the faulting read succeed;
                // the mapping stays ours and is unmapped whole when the MappedFile drops.
                let r = unsafe {
                    libc::mmap(
                        page as *mut libc::c_void,
                        super::page_size(),
                        libc::PROT_READ,
                        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                        -1,
                        0,
                    )
                };
                if r != libc::MAP_FAILED {
                    s.hit.store(true, SeqCst);
                    return;
                }
                break;
            }
        }
        // Not one of ours (or the page could not be replaced): die as SIGBUS would.
        // SAFETY: restoring the default action and re-raising is async-signal-safe.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
            libc::raise(sig);
        }
    }
}

/// Which file a path named when it was opened: `(device, inode)`. A broker replaces segment
/// files by renaming (retention and the log cleaner rename a segment to `.deleted`, then move
/// a `.swap` replacement into its name), so comparing a mapped file's id with the id its path
/// has now tells whether the path still names the bytes that were read.
pub type FileId = (u64, u64);

/// The [`FileId`] of the file `path` names now.
pub fn file_id(path: impl AsRef<Path>) -> io::Result<FileId> {
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(path)?;
    Ok((md.dev(), md.ino()))
}

/// Opens `path` for reading only if it is a regular file. The open never blocks (a FIFO
/// opened for reading waits for a writer; `O_NONBLOCK` makes it return at once), and
/// anything that is not a regular file (FIFO, socket, device) is refused with
/// `InvalidInput`, judged on the opened file itself (no race with a rename).
pub fn open_regular(path: impl AsRef<Path>) -> io::Result<File> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)?;
    let ft = file.metadata()?.file_type();
    if !ft.is_file() {
        let what = if ft.is_fifo() {
            "a FIFO"
        } else if ft.is_socket() {
            "a socket"
        } else if ft.is_char_device() || ft.is_block_device() {
            "a device"
        } else if ft.is_dir() {
            "a directory"
        } else {
            "not a regular file"
        };
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("expected a regular file, found {what}: not read"),
        ));
    }
    Ok(file)
}

/// Reads a regular file of at most `max` bytes whole (see [`open_regular`]).
pub fn read_regular(path: impl AsRef<Path>, max: u64) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut f = open_regular(path)?;
    let len = f.metadata()?.len();
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("expected a small file (at most {max} bytes), found {len} bytes"),
        ));
    }
    let mut v = Vec::with_capacity(len as usize);
    f.by_ref().take(max + 1).read_to_end(&mut v)?;
    if v.len() as u64 > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("expected a small file (at most {max} bytes); it grew while read"),
        ));
    }
    Ok(v)
}

impl MappedFile {
    /// Maps `path` read-only; only a regular file (see [`open_regular`]).
    ///
    /// # Safety
    ///
    /// memmap2's contract is that the file is not modified while mapped; nobody can promise
    /// that of a file a running broker holds (it appends, truncates and rewrites). A caller
    /// may still map such a file if it only ever reads through the mapping, treats every
    /// byte as untrusted input (checked bounds, no invariant assumed between two reads), and
    /// calls [`MappedFile::check_intact`] before it trusts anything it read (a truncation
    /// under the mapping reads as zeros, see the type's doc). Every parser in this crate
    /// meets the second condition.
    pub unsafe fn open(path: impl AsRef<Path>) -> io::Result<MappedFile> {
        use std::os::unix::fs::MetadataExt;
        let file = open_regular(path)?;
        let md = file.metadata()?;
        let (len, id) = (md.len(), (md.dev(), md.ino()));
        if len == 0 {
            return Ok(MappedFile {
                map: None,
                id,
                slot: None,
            });
        }
        // SAFETY: memmap2 requires that the file is not modified while mapped; our caller
        // has taken that on (see `# Safety`): it only reads, treats the bytes as untrusted
        // input, and checks `check_intact` before trusting a result. The one hazard left,
        // SIGBUS if the file is truncated under us, is caught by the guard (see the type's
        // doc): the missing pages read as zeros and `truncated()` says so.
        let map = unsafe { Mmap::map(&file)? };
        let slot = guard::register(map.as_ptr() as usize, map.len());
        // Parsers read front to back: ask for aggressive readahead (a hint; from the page
        // cache it changes little, see README "Benchmarks"). Failure is harmless.
        let _ = map.advise(Advice::Sequential);
        Ok(MappedFile {
            map: Some(map),
            id,
            slot,
        })
    }

    /// Whether the file was truncated while mapped, so that some of what was read through
    /// this mapping was zeros standing in for bytes that no longer exist.
    pub fn truncated(&self) -> bool {
        self.slot.is_some_and(guard::hit)
    }

    /// `Err` if the file was truncated while read: an I/O error (the caller names the
    /// file), never something to report as the file's content.
    pub fn check_intact(&self) -> io::Result<()> {
        if self.truncated() {
            return Err(io::Error::other(
                "truncated while it was read (the broker truncated, trimmed or replaced it); what was read is not the file",
            ));
        }
        Ok(())
    }

    /// The identity of the mapped file (see [`FileId`]).
    pub fn id(&self) -> FileId {
        self.id
    }

    /// Drops the pages of `range` that lie wholly inside it from this process's page tables
    /// (`madvise(MADV_DONTNEED)`), so a walk over a large file keeps its resident set to a
    /// window instead of growing to the whole file: file-backed pages of a mapping count in
    /// RSS (RssFile) for as long as they stay mapped. The page cache keeps the data; reading
    /// the range again faults the same file bytes back in. Callers release ranges they have
    /// finished with (a walk's consumed prefix); a failure only costs memory and is ignored.
    pub fn release(&self, range: std::ops::Range<usize>) {
        let Some(map) = &self.map else { return };
        let page = page_size();
        let start = range.start.div_ceil(page) * page;
        let end = range.end.min(map.len()) / page * page;
        if start >= end {
            return;
        }
        // SAFETY: `map` is a read-only MAP_SHARED file mapping (`Mmap::map`): we never write
        // through it and it has no private (copy-on-write) pages, so MADV_DONTNEED discards no
        // data; it only removes page-table entries, and any later access to the range,
        // through a slice borrowed before or after this call, faults in the same bytes from
        // the page cache (or the file). The memory stays mapped and valid for the lifetime of
        // `self`, so every outstanding `&[u8]` into it remains dereferenceable and reads the
        // same contents, under the same premise as `open` (the file is not modified under
        // us). The range is within bounds.
        let _ =
            unsafe { map.unchecked_advise_range(UncheckedAdvice::DontNeed, start, end - start) };
    }

    /// The mapped bytes.
    pub fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }
}

/// Release granularity: 4 KiB pages (x86-64, most arm64). memmap2 aligns the offset down to
/// the real page size if it is larger, which may release part of a page just before the
/// range: harmless, see `release`.
fn page_size() -> usize {
    4096
}

impl Drop for MappedFile {
    fn drop(&mut self) {
        // The map itself is unmapped after this (field drop order): unregister first, so the
        // guard never claims an address range that is no longer ours.
        if let Some(slot) = self.slot.take() {
            guard::unregister(slot);
        }
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
    // The files mapped here are the tests' own temp files; the truncation test truncates
    // one on purpose and asserts what `truncated` says.
    use super::*;

    #[test]
    fn a_file_truncated_while_mapped_reads_zeros_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("seg");
        std::fs::write(&p, vec![7u8; 5 * 4096]).unwrap();
        let m = unsafe { MappedFile::open(&p) }.unwrap();
        assert_eq!(m[0], 7);
        assert!(!m.truncated());
        m.release(0..m.len());
        std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(4096)
            .unwrap();
        // Past the new end: without the guard, SIGBUS.
        let tail: u32 = m[4096..].iter().map(|&b| b as u32).sum();
        assert_eq!(tail, 0);
        assert!(m.truncated());
        let e = m.check_intact().unwrap_err();
        assert!(e.to_string().contains("truncated while it was read"), "{e}");
        drop(m);
        let again = unsafe { MappedFile::open(&p) }.unwrap();
        assert!(!again.truncated());
    }

    #[test]
    fn empty_and_nonempty() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("empty");
        std::fs::write(&p, b"").unwrap();
        assert!(unsafe { MappedFile::open(&p) }.unwrap().is_empty());
        let p = dir.path().join("data");
        std::fs::write(&p, b"abc").unwrap();
        assert_eq!(&*unsafe { MappedFile::open(&p) }.unwrap(), b"abc");
        assert!(unsafe { MappedFile::open(dir.path().join("missing")) }.is_err());
    }

    #[test]
    fn released_ranges_read_back_the_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("data");
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&p, &data).unwrap();
        let m = unsafe { MappedFile::open(&p) }.unwrap();
        let before = &m[..];
        assert_eq!(before, &data[..]);
        m.release(10..900_000);
        m.release(0..m.len());
        assert_eq!(before, &data[..]);
        m.release(4097..8191); // no whole page inside: nothing to release
        assert_eq!(before, &data[..]);
    }
}
