//! Fetches archived objects into the staging directory and verifies them on the way: small
//! objects (indexes, snapshots, broker files) whole, against their size and SHA-256; a
//! `.log` streamed (or, from a local store, copied in the kernel) to disk and verified in the
//! same pass over the written file (see [`Verifier`]): size and SHA-256 against the manifest,
//! every batch CRC, the batch digest, where a point-in-time cut falls, and the transaction
//! state the rebuilt `.txnindex` needs. Memory stays at a chunk and a window of the mapping
//! whatever the size. [`write`](super::write) decides what to fetch and places the result.

use super::error::{io, RestoreError};
use super::plan::Cut;
use crate::archive::manifest::ObjectRef;
use crate::archive::store::Store;
use crate::archive::summary::{Summary, Walker};
use crate::sys::blocking;
use futures::StreamExt;
use object_store::path::Path as StorePath;
use object_store::ObjectStoreExt;
use segvault_format::index::AbortedTxn;
use segvault_format::index_build;
use segvault_format::mapped::MappedFile;
use segvault_format::segment::Batch;
use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::Path;

pub(super) async fn fetch_small(store: &Store, r: &ObjectRef) -> Result<Vec<u8>, RestoreError> {
    let key = StorePath::from(r.key.as_str());
    let bytes = get_all(store, &key).await?;
    let data = decode(r, &bytes)?;
    check_digest(r, &data)?;
    Ok(data)
}

fn decode(r: &ObjectRef, stored: &[u8]) -> Result<Vec<u8>, RestoreError> {
    match r.encoding.as_str() {
        "identity" => Ok(stored.to_vec()),
        // Never more than the manifest's size (plus one byte, to tell): a small object that
        // decompresses to gigabytes is refused before it grows in memory.
        "zstd-frames" => {
            let zstd = |source| RestoreError::Zstd {
                key: r.key.clone(),
                source,
            };
            let dec = zstd::stream::read::Decoder::new(stored).map_err(zstd)?;
            let mut out = Vec::with_capacity(r.size.min(1 << 20) as usize);
            dec.take(r.size.saturating_add(1))
                .read_to_end(&mut out)
                .map_err(zstd)?;
            if out.len() as u64 > r.size {
                return Err(RestoreError::Integrity {
                    key: r.key.clone(),
                    message: format!(
                        "decompresses to more than the {} bytes the manifest records",
                        r.size
                    ),
                });
            }
            Ok(out)
        }
        other => Err(RestoreError::Integrity {
            key: r.key.clone(),
            message: format!("unknown encoding {other:?}; expected identity or zstd-frames"),
        }),
    }
}

fn check_digest(r: &ObjectRef, data: &[u8]) -> Result<(), RestoreError> {
    let sha = hex::encode(Sha256::digest(data));
    if data.len() as u64 != r.size || sha != r.sha256 {
        return Err(RestoreError::Integrity {
            key: r.key.clone(),
            message: format!(
                "expected {} bytes with SHA-256 {}, found {} bytes with {sha}",
                r.size,
                r.sha256,
                data.len()
            ),
        });
    }
    Ok(())
}

/// The whole object at `key` (small objects only: indexes, snapshots, broker files).
pub(super) async fn get_all(store: &Store, key: &StorePath) -> Result<bytes::Bytes, RestoreError> {
    store
        .inner
        .get(key)
        .await
        .map_err(|e| store_err(store, key.as_ref(), e))?
        .bytes()
        .await
        .map_err(|e| store_err(store, key.as_ref(), e))
}

fn store_err(store: &Store, key: &str, source: object_store::Error) -> RestoreError {
    RestoreError::Store {
        url: store.url.clone(),
        key: key.to_string(),
        source,
    }
}

/// Bytes fetched (copied, or decoded) between two steps of the verifying walk.
const FETCH_CHUNK: usize = 8 << 20;
/// The walk and the hash alternate over windows of this size, so the hash reads what the CRC
/// walk has just brought into the cache.
const VERIFY_STEP: usize = 1 << 20;
/// Writeback of the verified part of a `.log` is started (and our mapping of it dropped)
/// every this many bytes, so the disk works while the rest is fetched and verified.
const WRITEBACK_EVERY: usize = 16 << 20;

/// What the verifying walk over one fetched `.log` found.
pub(super) struct LogCheck {
    pub(super) fetched: u64,
    pub(super) summary: Summary,
    /// (byte position, base offset) of the first batch at or after the cut, when this range
    /// may be cut and one is.
    pub(super) cut: Option<(u64, i64)>,
    /// The aborted transactions of the batches before the cut (or of all), in marker order.
    pub(super) aborted: Vec<AbortedTxn>,
    /// The transaction state before this range, when the walk found the batches inconsistent
    /// with it: the error is reported (by a walk from this state) where the index is built.
    pub(super) txn_failed_from: Option<index_build::TxnIndexBuilder>,
}

/// Per-batch work of the verifying walk besides the summary: where a cut falls, and the
/// transaction state (`TxnIndexBuilder`) carried from range to range.
struct Tracker<'t> {
    cut: Option<Option<Cut>>,
    cut_at: Option<(u64, i64)>,
    txns: &'t mut index_build::TxnIndexBuilder,
    saved: Option<index_build::TxnIndexBuilder>,
    aborted: Vec<AbortedTxn>,
}

impl Tracker<'_> {
    fn batch(&mut self, b: &Batch<'_>) {
        if self.cut_at.is_some() {
            return; // batches after the cut are verified, not kept
        }
        if let Some(cut) = self.cut {
            if cut_here(b, cut) {
                self.cut_at = Some((b.position(), b.base_offset()));
                return;
            }
        }
        if self.saved.is_some() {
            return; // the transaction walk has failed; see `LogCheck::txn_failed_from`
        }
        // `TxnIndexBuilder::add_segment` over the whole segment would change its state only
        // for v2 batches with a producer that are transactional, control, or from a producer
        // with a transaction open: feeding it just those (each a one-batch "segment") gives
        // the same state and aborted transactions without another walk.
        let pid = b.producer_id();
        if b.magic() != 2
            || pid < 0
            || !(b.is_transactional()
                || b.is_control()
                || self.txns.open_transactions().contains_key(&pid))
        {
            return;
        }
        let before = self.txns.clone();
        match self.txns.add_segment(b.bytes()) {
            Ok(a) => self.aborted.extend(a),
            Err(_) => self.saved = Some(before),
        }
    }
}

/// Whether a batch is at or past the cut (`cut_position`'s test).
fn cut_here(b: &Batch<'_>, cut: Option<Cut>) -> bool {
    match cut {
        Some(Cut::Offset(o)) => b.last_offset().is_none_or(|l| l >= o),
        Some(Cut::Time(t)) => b.max_timestamp().is_some_and(|ts| ts >= t),
        None => false,
    }
}

/// Verifies a `.log` as it is written: the file is sized to the manifest's size and mapped
/// first; as bytes arrive, the walk verifies every batch whose bytes are all there (CRC,
/// framing, offsets; the summary and batch digest; the cut; the transaction state), the
/// SHA-256 follows the walk over the same bytes while they are in the cache, and the verified
/// part is released from the mapping and its writeback started. One pass over the data, and
/// what is verified is the file that will be placed.
struct Verifier<'a, 't> {
    r: &'a ObjectRef,
    file: &'a File,
    map: &'a MappedFile,
    data: &'a [u8],
    walker: Walker<'a>,
    track: Tracker<'t>,
    sha: Sha256,
    arrived: usize,
    hashed: usize,
    flushed: usize,
}

impl<'a, 't> Verifier<'a, 't> {
    fn integrity(&self, message: String) -> RestoreError {
        RestoreError::Integrity {
            key: self.r.key.clone(),
            message,
        }
    }

    /// `n` more bytes of the file have been written.
    fn arrived(&mut self, n: usize) -> Result<(), RestoreError> {
        self.arrived += n;
        if self.arrived > self.data.len() {
            return Err(self.integrity(format!(
                "expected {} bytes with SHA-256 {}, found more than {} bytes",
                self.r.size, self.r.sha256, self.r.size
            )));
        }
        self.step(self.arrived);
        Ok(())
    }

    /// Walks and hashes what has arrived, in windows; starts writeback behind.
    fn step(&mut self, avail: usize) {
        loop {
            let target = self.hashed + VERIFY_STEP;
            let track = &mut self.track;
            let walked = self.walker.advance(target, avail, |b| track.batch(b)) as usize;
            // The walk stops at the first problem; the hash covers every byte regardless, so
            // that a changed object is reported as such (size and SHA-256 first, as before).
            let upto = if self.walker.failure().is_some() {
                avail
            } else {
                walked.min(avail)
            };
            if upto <= self.hashed {
                break;
            }
            self.sha.update(&self.data[self.hashed..upto]);
            self.hashed = upto;
        }
        if self.hashed >= self.flushed + WRITEBACK_EVERY {
            self.flush_behind(self.hashed);
        }
    }

    /// Drops `[flushed, upto)` from this process's page tables and starts its writeback:
    /// `POSIX_FADV_DONTNEED` writes dirty pages back (without waiting) before it drops the
    /// clean ones, and the walk never reads below `upto` again. The fsync before placement is
    /// what makes the file durable; this only starts the disk earlier. Failure is harmless.
    fn flush_behind(&mut self, upto: usize) {
        if upto <= self.flushed {
            return;
        }
        self.map.release(self.flushed..upto);
        let _ = rustix::fs::fadvise(
            self.file,
            self.flushed as u64,
            std::num::NonZeroU64::new((upto - self.flushed) as u64),
            rustix::fs::Advice::DontNeed,
        );
        self.flushed = upto;
    }

    /// Everything has been written: the size, the SHA-256 and every batch are checked.
    fn finish(mut self, fetched: u64) -> Result<LogCheck, RestoreError> {
        let len = self.data.len();
        if self.arrived == len {
            self.step(len);
        }
        if self.hashed < self.arrived {
            self.sha.update(&self.data[self.hashed..self.arrived]);
            self.hashed = self.arrived;
        }
        self.flush_behind(self.arrived);
        let sha = hex::encode(std::mem::take(&mut self.sha).finalize());
        if self.arrived != len || sha != self.r.sha256 {
            return Err(self.integrity(format!(
                "expected {} bytes with SHA-256 {}, found {} bytes with {sha}",
                self.r.size, self.r.sha256, self.arrived
            )));
        }
        let summary = self.walker.finish().map_err(|refusal| RestoreError::Walk {
            key: self.r.key.clone(),
            refusal,
        })?;
        Ok(LogCheck {
            fetched,
            summary,
            cut: self.track.cut_at,
            aborted: self.track.aborted,
            txn_failed_from: self.track.saved,
        })
    }
}

/// The `.log` of one range into `path` (decompressing zstd frames on the way), verified as it
/// arrives (see [`Verifier`]): its size and SHA-256 against the manifest, every batch, and,
/// for the last range of a cut log (`cut` is `Some`), where the cut falls. `txns` moves on
/// over the batches kept. Memory stays at a chunk and a window of the mapping whatever the
/// size. A local store's file is copied in the kernel; other stores are streamed.
#[allow(clippy::too_many_arguments)]
pub(super) async fn fetch_log(
    store: &Store,
    r: &ObjectRef,
    path: &Path,
    base: i64,
    next: i64,
    cut: Option<Option<Cut>>,
    txns: &mut index_build::TxnIndexBuilder,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<LogCheck, RestoreError> {
    let key = StorePath::from(r.key.as_str());
    let zstd = match r.encoding.as_str() {
        "identity" => false,
        "zstd-frames" => true,
        other => {
            return Err(RestoreError::Integrity {
                key: r.key.clone(),
                message: format!("unknown encoding {other:?}"),
            })
        }
    };
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(io(path))?;
    file.set_len(r.size).map_err(io(path))?;
    let map = crate::sys::map(path).map_err(io(path))?;
    let data = map.bytes();
    if data.len() as u64 != r.size {
        return Err(RestoreError::Mapped {
            path: path.to_path_buf(),
            size: r.size,
            mapped: data.len(),
        });
    }
    let mut v = Verifier {
        r,
        file: &file,
        map: &map,
        data,
        // No batch may reach the range's `next_offset`: what lies beyond is not this range's.
        walker: Walker::new(data, base, u64::MAX).until(next),
        track: Tracker {
            cut,
            cut_at: None,
            txns,
            saved: None,
            aborted: Vec::new(),
        },
        sha: Sha256::new(),
        arrived: 0,
        hashed: 0,
        flushed: 0,
    };
    let fetched = match store.local_path(&key) {
        Some(src) => {
            let src = src.map_err(|e| store_err(store, &r.key, e))?;
            blocking(|| copy_local(store, r, &src, &file, path, zstd, &mut v, progress))?
        }
        None => stream(store, r, &key, &file, path, zstd, &mut v, progress).await?,
    };
    blocking(|| v.finish(fetched))
}

/// A local store's file `src` into `file` (a `copy_file_range` in the kernel, or decoded
/// when `zstd`), each chunk handed to the verifier. Returns the stored bytes read.
#[allow(clippy::too_many_arguments)]
fn copy_local(
    store: &Store,
    r: &ObjectRef,
    src: &Path,
    file: &File,
    path: &Path,
    zstd: bool,
    v: &mut Verifier<'_, '_>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<u64, RestoreError> {
    let write_err = |source| RestoreError::IoStep {
        path: path.to_path_buf(),
        step: "writing",
        source,
    };
    let mut fetched = 0u64;
    let f = File::open(src).map_err(|source| RestoreError::StoreFile {
        url: store.url.clone(),
        key: r.key.clone(),
        file: src.to_path_buf(),
        source,
    })?;
    let read_err = |source| RestoreError::StoreRead {
        url: store.url.clone(),
        key: r.key.clone(),
        file: src.to_path_buf(),
        source,
    };
    let mut out = file;
    if !zstd {
        // `io::copy` between files is a `copy_file_range` in the kernel.
        loop {
            // At most one byte more than the manifest's size: enough to tell.
            let want = (FETCH_CHUNK as u64).min(r.size - v.arrived as u64 + 1);
            let n = std::io::copy(&mut (&f).take(want), &mut out).map_err(write_err)? as usize;
            if n == 0 {
                break;
            }
            fetched += n as u64;
            progress(n as u64);
            v.arrived(n)?;
        }
        return Ok(fetched);
    }
    let counted = Counted {
        inner: &f,
        progress,
        n: &mut fetched,
    };
    let mut dec = zstd::stream::read::Decoder::new(counted).map_err(read_err)?;
    let mut buf = vec![0u8; FETCH_CHUNK];
    loop {
        let n = read_full(&mut dec, &mut buf).map_err(|source| RestoreError::Zstd {
            key: r.key.clone(),
            source,
        })?;
        if n == 0 {
            break;
        }
        let room = (v.data.len() - v.arrived).min(n);
        out.write_all(&buf[..room]).map_err(write_err)?;
        v.arrived(n)?;
    }
    drop(dec);
    Ok(fetched)
}

/// Another store's object at `key`, streamed into `file` chunk by chunk as it arrives
/// (through the zstd decoder when `zstd`), each handed to the verifier. Returns the stored
/// bytes received.
#[allow(clippy::too_many_arguments)]
async fn stream(
    store: &Store,
    r: &ObjectRef,
    key: &StorePath,
    file: &File,
    path: &Path,
    zstd: bool,
    v: &mut Verifier<'_, '_>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<u64, RestoreError> {
    let mut fetched = 0u64;
    let mut stream = store
        .inner
        .get(key)
        .await
        .map_err(|e| store_err(store, &r.key, e))?
        .into_stream();
    let sink = Sink {
        file,
        buf: Vec::with_capacity(1 << 20),
        v,
    };
    let err = |e| sink_error(e, r, path);
    // Every chunk as it arrives, through the zstd decoder when the object is compressed.
    let mut out: Box<dyn Write + Send + '_> = if zstd {
        Box::new(zstd::stream::write::Decoder::new(sink).map_err(io(path))?)
    } else {
        Box::new(sink)
    };
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| store_err(store, &r.key, e))?;
        fetched += chunk.len() as u64;
        progress(chunk.len() as u64);
        out.write_all(&chunk).map_err(err)?;
    }
    // Flushes the decoder's tail and the sink's buffer into the verifier.
    out.flush().map_err(err)?;
    Ok(fetched)
}

/// A stored-bytes counter around a local store's file (for the progress of zstd objects).
struct Counted<'a> {
    inner: &'a File,
    progress: &'a (dyn Fn(u64) + Sync),
    n: &'a mut u64,
}

impl std::io::Read for Counted<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        *self.n += n as u64;
        (self.progress)(n as u64);
        Ok(n)
    }
}

/// Reads until `buf` is full or the input ends.
fn read_full(r: &mut impl std::io::Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Streamed bytes into the file, in blocks of up to 1 MiB, each handed to the verifier.
struct Sink<'s, 'a, 't> {
    file: &'s File,
    buf: Vec<u8>,
    v: &'s mut Verifier<'a, 't>,
}

/// An integrity error from the verifier, carried through `io::Write` (the zstd decoder).
#[derive(Debug)]
struct Rejected(RestoreError);
impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}
impl std::error::Error for Rejected {}

impl Sink<'_, '_, '_> {
    fn flush_buf(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let n = self.buf.len();
        let room = (self.v.data.len() - self.v.arrived).min(n);
        let mut out = self.file;
        out.write_all(&self.buf[..room])?;
        self.buf.clear();
        self.v
            .arrived(n)
            .map_err(|e| std::io::Error::other(Rejected(e)))
    }
}

impl Write for Sink<'_, '_, '_> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        if self.buf.len() >= 1 << 20 {
            self.flush_buf()?;
        }
        Ok(b.len())
    }
    /// Hands everything buffered to the file and the verifier.
    fn flush(&mut self) -> std::io::Result<()> {
        self.flush_buf()
    }
}

/// An error while writing a streamed object: the verifier's own, or one of the file or the
/// zstd decoder.
fn sink_error(e: std::io::Error, r: &ObjectRef, path: &Path) -> RestoreError {
    if e.get_ref().is_some_and(|i| i.is::<Rejected>()) {
        if let Some(inner) = e.into_inner() {
            if let Ok(rej) = inner.downcast::<Rejected>() {
                return rej.0;
            }
        }
        return RestoreError::Integrity {
            key: r.key.clone(),
            message: "rejected".into(),
        };
    }
    RestoreError::Streamed {
        key: r.key.clone(),
        path: path.to_path_buf(),
        source: e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::summary::summarize;
    use crate::archive::upload::{put_bytes, Encoding};
    use segvault_format::encode;
    use segvault_format::segment::log_entries;
    use std::path::PathBuf;
    use std::sync::Arc;

    fn segment(n: i64) -> Vec<u8> {
        encode::test_segment(n, 10, 300)
    }

    fn memory() -> Store {
        Store {
            inner: Arc::new(object_store::memory::InMemory::new()),
            url: "memory://".into(),
            local: None,
        }
    }

    async fn put(store: &Store, key: &str, data: &[u8], zstd: bool) -> ObjectRef {
        let frames = summarize(data, 0, 4096).unwrap().frame_starts;
        let enc = if zstd {
            Encoding::Zstd(3)
        } else {
            Encoding::Identity
        };
        put_bytes(
            &store.inner,
            &StorePath::from(key),
            data,
            enc,
            &frames,
            None,
            &|_| {},
        )
        .await
        .unwrap()
    }

    /// Every way a `.log` arrives (a local store's file copied, or decoded; a stream, plain
    /// or zstd) gives the same file and the summary of a whole walk; a changed, short or long
    /// object is refused naming its SHA-256.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_log_is_fetched_and_verified_in_one_pass_from_every_store() {
        let tmp = tempfile::tempdir().unwrap();
        let local =
            crate::archive::store::open(tmp.path().join("store").to_str().unwrap()).unwrap();
        assert!(local.local.is_some());
        let data = segment(200);
        let want = summarize(&data, 0, u64::MAX).unwrap();
        for store in [local, memory()] {
            for zstd in [false, true] {
                let key = format!("k/{zstd}/log");
                let r = put(&store, &key, &data, zstd).await;
                let path = tmp.path().join("out.log");
                let mut txns = index_build::TxnIndexBuilder::new();
                let got = fetch_log(&store, &r, &path, 0, i64::MAX, None, &mut txns, &|_| {})
                    .await
                    .unwrap();
                assert_eq!(got.summary, want, "{} zstd {zstd}", store.url);
                assert_eq!(got.fetched, r.stored_size);
                assert_eq!(fs::read(&path).unwrap(), data);
                // Wrong sizes or bytes in the manifest's terms.
                for (size, sha) in [
                    (r.size, "0".repeat(64)),
                    (r.size - 1, r.sha256.clone()),
                    (r.size + 1, r.sha256.clone()),
                ] {
                    let bad = ObjectRef {
                        size,
                        sha256: sha,
                        ..r.clone()
                    };
                    let e = fetch_log(&store, &bad, &path, 0, i64::MAX, None, &mut txns, &|_| {})
                        .await
                        .err()
                        .unwrap();
                    assert!(e.is_integrity() && e.to_string().contains("SHA-256"), "{e}");
                }
            }
        }
    }

    /// A flipped bit inside a batch: the SHA-256 is what is reported (as before the walk and
    /// the hash were one pass); and a log whose manifest agrees with the flipped bytes is
    /// refused by the CRC walk, with its position.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_changed_object_is_refused_by_its_digest_then_by_its_crc() {
        let tmp = tempfile::tempdir().unwrap();
        let store =
            crate::archive::store::open(tmp.path().join("store").to_str().unwrap()).unwrap();
        let mut data = segment(50);
        let r = put(&store, "k/log", &data, false).await;
        let at = data.len() / 2;
        data[at] ^= 0x10;
        let src = store
            .local_path(&StorePath::from("k/log"))
            .unwrap()
            .unwrap();
        fs::write(&src, &data).unwrap();
        let path = tmp.path().join("out.log");
        let mut txns = index_build::TxnIndexBuilder::new();
        let e = fetch_log(&store, &r, &path, 0, i64::MAX, None, &mut txns, &|_| {})
            .await
            .err()
            .unwrap();
        assert!(e.to_string().contains("SHA-256"), "{e}");
        let matching = ObjectRef {
            sha256: hex::encode(Sha256::digest(&data)),
            ..r
        };
        let e = fetch_log(
            &store,
            &matching,
            &path,
            0,
            i64::MAX,
            None,
            &mut txns,
            &|_| {},
        )
        .await
        .err()
        .unwrap();
        assert!(
            e.is_integrity() && e.to_string().contains("corrupt at byte"),
            "{e}"
        );
    }

    /// Feeding the transaction state only the batches that can change it, one at a time, as
    /// the verifying walk does, gives what a walk over the whole segment gives, on the real
    /// fixtures' transactional partitions (cut at every batch, too).
    #[test]
    fn the_walk_keeps_the_transaction_state_a_whole_walk_keeps() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures");
        let mut checked = 0;
        for v in ["kafka-3.9.2", "kafka-4.3.1"] {
            for part in ["txn-0", "txn-1", "idempotent-0", "codec-none-0"] {
                let dir = root.join(v).join("clean").join(part);
                let mut logs: Vec<PathBuf> = fs::read_dir(&dir)
                    .unwrap()
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|e| e == "log"))
                    .collect();
                logs.sort();
                let mut whole = index_build::TxnIndexBuilder::new();
                let mut fed = index_build::TxnIndexBuilder::new();
                for log in &logs {
                    let data = fs::read(log).unwrap();
                    // Cut before every batch of this segment, from the state so far.
                    let positions: Vec<(u64, i64)> = log_entries(&data)
                        .map(|b| (b.position(), b.last_offset().unwrap()))
                        .collect();
                    for &(pos, last) in positions.iter().step_by(7) {
                        let mut a = whole.clone();
                        let want = a.add_segment(&data[..pos as usize]).unwrap();
                        let mut b = fed.clone();
                        let mut t = Tracker {
                            cut: Some(Some(Cut::Offset(last))),
                            cut_at: None,
                            txns: &mut b,
                            saved: None,
                            aborted: vec![],
                        };
                        for batch in log_entries(&data) {
                            t.batch(&batch);
                        }
                        assert_eq!(t.cut_at.map(|c| c.0), Some(pos));
                        assert!(t.saved.is_none());
                        assert_eq!(t.aborted, want, "{}", log.display());
                        assert_eq!(b.open_transactions(), a.open_transactions());
                    }
                    let want = whole.add_segment(&data).unwrap();
                    let mut t = Tracker {
                        cut: None,
                        cut_at: None,
                        txns: &mut fed,
                        saved: None,
                        aborted: vec![],
                    };
                    for batch in log_entries(&data) {
                        t.batch(&batch);
                    }
                    assert_eq!(t.aborted, want, "{}", log.display());
                    assert_eq!(fed.open_transactions(), whole.open_transactions());
                    checked += 1;
                }
            }
        }
        assert!(checked >= 8);
    }
}
