//! The few operating-system and runtime primitives that archive and restore both use, in one
//! place: running blocking work from async code, durable directory entries, the wall clock,
//! and mapping a broker's file.

use std::path::Path;

use segvault_format::mapped::MappedFile;

/// Maps a file of a log dir (or a fetched copy) read-only.
pub fn map(path: &Path) -> std::io::Result<MappedFile> {
    // SAFETY: the file may be one a running broker appends to, truncates or rewrites, so
    // memmap2's "not modified while mapped" cannot be promised; every caller in this crate
    // meets `MappedFile::open`'s conditions instead: it only reads, it hands the bytes to
    // segvault-format's parsers (which treat them as untrusted input), and it checks
    // `check_intact` before it reports or uploads anything it read.
    unsafe { MappedFile::open(path) }
}

/// Runs blocking work (file copies, a verifying walk, fsync) from async code: on a
/// multi-threaded runtime under `block_in_place`, so the runtime keeps its other workers for
/// the other partitions' tasks; inline otherwise (no runtime, or a current-thread one).
pub fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Makes the entries of `dir` durable (a rename or create inside it survives a crash).
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Milliseconds since the Unix epoch by the wall clock (0 if the clock is before it).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
