//! Streams one file (or the tail of one) into the store with bounded memory: chunks are
//! copied out of the mmap into a [`PartWriter`] (a single PUT for small objects, multipart
//! above one part, its part buffers drawn from a budget shared by every upload of the
//! process), hashed on the way.
//! With zstd, the data is cut at batch boundaries into independently decompressible frames,
//! so a reader can fetch one offset range with a ranged GET.

use super::manifest::ObjectRef;
use super::store::Store;
use super::summary::{Refusal, Summary, Walker};
use object_store::path::Path;
use object_store::{MultipartUpload, ObjectStore, ObjectStoreExt, PutPayload};
use sha2::{Digest, Sha256};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

/// Bytes copied per write: small enough to keep memory flat, large enough to be cheap.
const CHUNK: usize = 1 << 20;
/// Multipart part size / single-PUT threshold.
pub const PART_BYTES: usize = 8 << 20;
/// Parts in flight per upload.
const PARTS_IN_FLIGHT: usize = 2;
/// Part buffers held at once by all the uploads of the process, filling or in flight: the
/// memory of uploads stays under `PART_BUDGET × PART_BYTES` (48 MiB) whatever `--concurrency`
/// is. (Per-upload buffers, as object_store's `BufWriter` has, cost 24 MiB an upload: four
/// partitions uploading 1 GiB segments to S3 took the agent to 118 MiB.) Six is what two
/// uploads used before, so one or two partitions go as fast as they did.
const PART_BUDGET: usize = 6;
static PARTS: LazyLock<Arc<Semaphore>> = LazyLock::new(|| Arc::new(Semaphore::new(PART_BUDGET)));

/// One object written in parts: a single PUT if it ends within one part, else a multipart
/// upload with up to [`PARTS_IN_FLIGHT`] parts in flight. Each part buffer, while it fills
/// and until its upload finishes, holds a permit of the process-wide budget [`PARTS`]; a
/// writer that needs a buffer waits for one, which every part in flight returns when it ends.
/// Nothing is visible under the key before [`finish`](PartWriter::finish) succeeds;
/// [`abort`](PartWriter::abort) leaves no part behind.
pub struct PartWriter {
    store: Arc<dyn ObjectStore>,
    key: Path,
    buf: PartBuf,
    permit: Option<OwnedSemaphorePermit>,
    upload: Option<Box<dyn MultipartUpload>>,
    in_flight: JoinSet<object_store::Result<()>>,
}

impl PartWriter {
    pub fn new(store: Arc<dyn ObjectStore>, key: Path) -> PartWriter {
        PartWriter {
            store,
            key,
            buf: PartBuf::default(),
            permit: None,
            upload: None,
            in_flight: JoinSet::new(),
        }
    }

    pub async fn write(&mut self, mut data: &[u8]) -> object_store::Result<()> {
        while !data.is_empty() {
            if self.permit.is_none() {
                let permit = PARTS.clone().acquire_owned().await.map_err(generic)?;
                self.permit = Some(permit);
                self.buf = PartBuf::new().map_err(generic)?;
            }
            data = &data[self.buf.fill(data)..];
            if self.buf.len == PART_BYTES {
                self.submit().await?;
            }
        }
        Ok(())
    }

    /// Sends the buffer as the next part; its permit goes with it and returns when it ends.
    async fn submit(&mut self) -> object_store::Result<()> {
        let upload = match &mut self.upload {
            Some(u) => u,
            None => self
                .upload
                .insert(self.store.put_multipart(&self.key).await?),
        };
        while self.in_flight.len() >= PARTS_IN_FLIGHT {
            joined(self.in_flight.join_next().await)?;
        }
        let part = upload.put_part(std::mem::take(&mut self.buf).into_payload());
        let permit = self.permit.take();
        self.in_flight.spawn(async move {
            let r = part.await;
            drop(permit);
            r
        });
        Ok(())
    }

    /// Publishes the object: one PUT, or the last part and the multipart completion.
    pub async fn finish(mut self) -> object_store::Result<()> {
        if self.upload.is_none() {
            let body = std::mem::take(&mut self.buf).into_payload();
            self.store.put(&self.key, body).await?;
            return Ok(());
        }
        let result = async {
            if self.buf.len > 0 {
                self.submit().await?;
            }
            while let Some(r) = self.in_flight.join_next().await {
                joined(Some(r))?;
            }
            match &mut self.upload {
                Some(u) => u.complete().await.map(|_| ()),
                None => Ok(()),
            }
        }
        .await;
        if result.is_err() {
            self.abort().await;
        }
        result
    }

    /// Abandons the object: parts in flight are stopped and the multipart upload aborted.
    pub async fn abort(mut self) {
        self.in_flight.abort_all();
        while self.in_flight.join_next().await.is_some() {}
        if let Some(mut u) = self.upload.take() {
            let _ = u.abort().await;
        }
    }
}

/// One part's buffer: an anonymous memory map, not a heap allocation, so that its pages go
/// back to the system the moment the part's upload drops it. (Freed 8 MiB heap blocks stay
/// resident in glibc's per-thread arenas: four partitions uploading to S3 peaked at 102–118
/// MiB with heap buffers, 72 MiB with the allocator told to map them.)
#[derive(Default)]
struct PartBuf {
    map: Option<memmap2::MmapMut>,
    len: usize,
}

impl PartBuf {
    fn new() -> std::io::Result<PartBuf> {
        Ok(PartBuf {
            map: Some(memmap2::MmapMut::map_anon(PART_BYTES)?),
            len: 0,
        })
    }

    /// Copies as much of `data` as fits; returns how much.
    fn fill(&mut self, data: &[u8]) -> usize {
        let Some(map) = &mut self.map else { return 0 };
        let n = (map.len() - self.len).min(data.len());
        map[self.len..self.len + n].copy_from_slice(&data[..n]);
        self.len += n;
        n
    }

    /// The filled bytes, without a copy; the map is unmapped when the payload is dropped.
    fn into_payload(self) -> PutPayload {
        match self.map {
            Some(map) => PutPayload::from(bytes::Bytes::from_owner(map).slice(..self.len)),
            None => PutPayload::default(),
        }
    }
}

fn generic(e: impl std::error::Error + Send + Sync + 'static) -> object_store::Error {
    object_store::Error::Generic {
        store: "upload",
        source: Box::new(e),
    }
}

fn joined(
    r: Option<Result<object_store::Result<()>, tokio::task::JoinError>>,
) -> object_store::Result<()> {
    match r {
        Some(r) => r.map_err(generic)?,
        None => Ok(()),
    }
}

/// A token bucket on bytes per second, shared by every upload of a pass.
#[derive(Debug)]
pub struct RateLimit {
    bytes_per_sec: u64,
    /// (last refill, tokens). Held only to compute a wait, never across one.
    state: std::sync::Mutex<(Instant, f64)>,
}

impl RateLimit {
    pub fn new(bytes_per_sec: u64) -> RateLimit {
        RateLimit {
            bytes_per_sec,
            state: std::sync::Mutex::new((Instant::now(), 0.0)),
        }
    }

    /// How long to wait before `n` more bytes fit under the rate (and takes them).
    fn reserve(&self, n: usize) -> Duration {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let refill = now.duration_since(s.0).as_secs_f64() * self.bytes_per_sec as f64;
        // At most one second of burst.
        s.1 = (s.1 + refill).min(self.bytes_per_sec as f64) - n as f64;
        s.0 = now;
        if s.1 < 0.0 {
            Duration::from_secs_f64(-s.1 / self.bytes_per_sec as f64)
        } else {
            Duration::ZERO
        }
    }

    /// Waits until `n` more bytes fit under the rate. (Pacing, not synchronisation.)
    async fn take(&self, n: usize) {
        let wait = self.reserve(n);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// [`take`](RateLimit::take) for blocking sections.
    fn take_blocking(&self, n: usize) {
        let wait = self.reserve(n);
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }
}

/// How to encode the `.log` data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Identity,
    /// zstd at this level, one frame per run of batches starting at `frame_starts`.
    Zstd(i32),
}

/// Uploads `data` to `key`. `frame_starts` are (position within `data`, first offset) where
/// zstd frames may start; ignored for identity. `done(n)` is called as the first `n` bytes of
/// `data` have been copied out (into the writer's buffer or a compressed frame) and are not
/// read again, so a caller can release those pages of a mapping.
pub async fn put_bytes(
    store: &Arc<dyn ObjectStore>,
    key: &Path,
    data: &[u8],
    encoding: Encoding,
    frame_starts: &[(u64, i64)],
    rate: Option<&RateLimit>,
    done: &(dyn Fn(usize) + Sync),
) -> object_store::Result<ObjectRef> {
    let mut w = PartWriter::new(store.clone(), key.clone());
    let mut sha = Sha256::new();
    let mut stored = 0u64;
    let mut frames = Vec::new();
    let result = async {
        match encoding {
            Encoding::Identity => {
                for chunk in data.chunks(CHUNK) {
                    if let Some(r) = rate {
                        r.take(chunk.len()).await;
                    }
                    sha.update(chunk);
                    w.write(chunk).await?;
                    stored += chunk.len() as u64;
                    done(stored as usize);
                }
            }
            Encoding::Zstd(level) => {
                // One context and one output buffer for every frame of the object: a fresh
                // context and output per frame leave their freed blocks resident in the
                // allocator's arenas (≈ 20 MiB more at peak with two partitions).
                let mut zstd = zstd::bulk::Compressor::new(level).map_err(generic)?;
                let mut frame = Vec::new();
                let mut starts: Vec<(u64, i64)> = frame_starts.to_vec();
                if starts.first().map(|s| s.0) != Some(0) {
                    starts.insert(0, (0, starts.first().map_or(-1, |s| s.1)));
                }
                for (i, &(from, first_offset)) in starts.iter().enumerate() {
                    let to = starts.get(i + 1).map_or(data.len() as u64, |s| s.0);
                    let raw = &data[from as usize..to as usize];
                    sha.update(raw);
                    frame.clear();
                    frame.reserve(zstd::compress_bound(raw.len()));
                    zstd.compress_to_buffer(raw, &mut frame).map_err(generic)?;
                    done(to as usize);
                    if let Some(r) = rate {
                        r.take(frame.len()).await;
                    }
                    frames.push((from, stored, first_offset));
                    w.write(&frame).await?;
                    stored += frame.len() as u64;
                }
            }
        }
        Ok::<(), object_store::Error>(())
    }
    .await;
    match result {
        Ok(()) => w.finish().await?,
        Err(e) => {
            // Abort the multipart upload so no part lingers; the key was never completed.
            w.abort().await;
            return Err(e);
        }
    }
    Ok(ObjectRef {
        key: key.to_string(),
        stored_size: stored,
        size: data.len() as u64,
        sha256: hex::encode(sha.finalize()),
        encoding: match encoding {
            Encoding::Identity => "identity".into(),
            Encoding::Zstd(_) => "zstd-frames".into(),
        },
        frames,
    })
}

/// Why [`put_log_verified_into`] stopped before it published: a verdict or a store error.
enum Stop {
    /// The walk refused the segment (corrupt, or misaligned with the chain).
    Refused(Refusal),
    /// The store failed.
    Store(object_store::Error),
}

/// A local store's file that could not be written, as the store's error.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
struct LocalWrite {
    path: std::path::PathBuf,
    #[source]
    source: std::io::Error,
}

/// Verifies and uploads the archived slice of a `.log` (identity encoding), the offsets
/// `range` (its end is the next segment's base offset), in one pass over the mapping: the walk of [`summarize`](super::summary::summarize) goes a chunk ahead,
/// and only bytes it has verified (every batch's CRC, framing, offsets) are hashed and
/// written. The object is published only once the whole segment has been walked clean; a
/// refusal abandons it unpublished (a local staged file removed, a multipart upload aborted,
/// a single PUT never sent), so no object of this range exists. Returns the object and the
/// summary, or the refusal; an error only if the store failed.
///
/// A local store's object is written here directly (a staged file beside it, its writeback
/// started as it grows, fsynced, renamed into place, its directory fsynced: durable before
/// this returns, see `store`), as a blocking section; other stores get a multipart upload.
/// `done(p)` is called as the bytes of `data` below `p` are copied out and not read again.
pub async fn put_log_verified(
    store: &Store,
    key: &Path,
    data: &[u8],
    range: std::ops::Range<i64>,
    frame_bytes: u64,
    rate: Option<&RateLimit>,
    done: &(dyn Fn(usize) + Sync),
) -> object_store::Result<Result<(ObjectRef, Summary), Refusal>> {
    match put_log_verified_into(store, key, data, range, frame_bytes, rate, done).await {
        Ok(v) => Ok(Ok(v)),
        Err(Stop::Refused(r)) => Ok(Err(r)),
        Err(Stop::Store(e)) => Err(e),
    }
}

/// [`put_log_verified`], its two ways of stopping as one error.
async fn put_log_verified_into(
    store: &Store,
    key: &Path,
    data: &[u8],
    range: std::ops::Range<i64>,
    frame_bytes: u64,
    rate: Option<&RateLimit>,
    done: &(dyn Fn(usize) + Sync),
) -> Result<(ObjectRef, Summary), Stop> {
    let mut slices = VerifiedSlices {
        data,
        walker: Walker::new(data, range.start, frame_bytes).until(range.end),
        cursor: 0,
    };
    let mut sha = Sha256::new();
    let summary = if let Some(dest) = store.local_path(key) {
        let dest = dest.map_err(Stop::Store)?;
        blocking(|| {
            let local_err = |source: std::io::Error| {
                Stop::Store(object_store::Error::Generic {
                    store: "LocalFileSystem",
                    source: Box::new(LocalWrite {
                        path: dest.clone(),
                        source,
                    }),
                })
            };
            let mut obj = LocalObject::create(&dest).map_err(local_err)?;
            let walked = (|| {
                while let Some(r) = slices.next().map_err(Stop::Refused)? {
                    if let Some(rate) = rate {
                        rate.take_blocking(r.len());
                    }
                    let chunk = &data[r.clone()];
                    sha.update(chunk);
                    obj.write(chunk).map_err(local_err)?;
                    done(r.end);
                }
                slices.finish().map_err(Stop::Refused)
            })();
            match walked {
                Ok(s) => {
                    obj.commit().map_err(local_err)?;
                    Ok(s)
                }
                Err(e) => {
                    obj.abort();
                    Err(e)
                }
            }
        })?
    } else {
        let mut w = PartWriter::new(store.inner.clone(), key.clone());
        let walked = async {
            while let Some(r) = slices.next().map_err(Stop::Refused)? {
                if let Some(rate) = rate {
                    rate.take(r.len()).await;
                }
                let chunk = &data[r.clone()];
                sha.update(chunk);
                w.write(chunk).await.map_err(Stop::Store)?;
                done(r.end);
            }
            slices.finish().map_err(Stop::Refused)
        }
        .await;
        match walked {
            Ok(s) => {
                w.finish().await.map_err(Stop::Store)?;
                s
            }
            Err(e) => {
                w.abort().await;
                return Err(e);
            }
        }
    };
    let size = data.len() as u64 - summary.slice_position;
    Ok((
        ObjectRef {
            key: key.to_string(),
            stored_size: size,
            size,
            sha256: hex::encode(sha.finalize()),
            encoding: "identity".into(),
            frames: Vec::new(),
        },
        summary,
    ))
}

/// The verified bytes of the archived slice, a chunk at a time, the walk going first.
struct VerifiedSlices<'a> {
    data: &'a [u8],
    walker: Walker<'a>,
    /// Bytes below this have been walked and handed out (or were before the slice).
    cursor: usize,
}

impl VerifiedSlices<'_> {
    /// The next range of verified bytes within the slice; `None` once the walk is over.
    fn next(&mut self) -> Result<Option<std::ops::Range<usize>>, Refusal> {
        let len = self.data.len();
        loop {
            let walked = self.walker.advance(self.cursor + CHUNK, len, |_| {}) as usize;
            if let Some(r) = self.walker.failure() {
                return Err(r.clone());
            }
            let from = match self.walker.slice_position() {
                Some(s) => self.cursor.max(s as usize),
                None => walked,
            };
            let to = walked.min(len);
            self.cursor = walked;
            if to > from {
                return Ok(Some(from..to));
            }
            if self.walker.is_over() {
                return Ok(None);
            }
        }
    }

    fn finish(self) -> Result<Summary, Refusal> {
        self.walker.finish()
    }
}

pub use crate::sys::blocking;
use crate::sys::sync_dir;

/// Writeback of a local object is started every this many bytes written.
const WRITEBACK_EVERY: u64 = 16 << 20;

/// An object of a local store written directly, with object_store's `LocalFileSystem`
/// conventions: staged as `<path>#<n>` (which its listings skip), renamed into place when
/// complete. Durable like the store's own puts (`with_fsync`): directories it creates are
/// fsynced, and [`commit`](LocalObject::commit) fsyncs the file, renames it, fsyncs its
/// directory.
pub struct LocalObject {
    dest: std::path::PathBuf,
    staged: std::path::PathBuf,
    file: std::fs::File,
    written: u64,
    flushed: u64,
}

impl LocalObject {
    pub fn create(dest: &std::path::Path) -> std::io::Result<LocalObject> {
        let dir = dest.parent().ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "an object path has a parent",
            )
        })?;
        create_dirs_durably(dir)?;
        let mut n = 1u32;
        loop {
            let mut staged = dest.as_os_str().to_owned();
            staged.push(format!("#{n}"));
            let staged = std::path::PathBuf::from(staged);
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&staged)
            {
                Ok(file) => {
                    return Ok(LocalObject {
                        dest: dest.to_path_buf(),
                        staged,
                        file,
                        written: 0,
                        flushed: 0,
                    })
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 1_000_000 => n += 1,
                Err(e) => return Err(e),
            }
        }
    }

    /// Appends `b`. Every [`WRITEBACK_EVERY`] bytes, writeback of what was written is started
    /// (`POSIX_FADV_DONTNEED` writes dirty pages back without waiting, and drops clean ones:
    /// the archive never reads the object back), so the disk works while the rest is
    /// verified and the final fsync has less to wait for. A failed hint is harmless.
    pub fn write(&mut self, b: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        self.file.write_all(b)?;
        self.written += b.len() as u64;
        if self.written >= self.flushed + WRITEBACK_EVERY {
            let _ = rustix::fs::fadvise(
                &self.file,
                self.flushed,
                std::num::NonZeroU64::new(self.written - self.flushed),
                rustix::fs::Advice::DontNeed,
            );
            self.flushed = self.written;
        }
        Ok(())
    }

    /// Makes the object durable and visible under its key.
    pub fn commit(self) -> std::io::Result<()> {
        let done = (|| {
            self.file.sync_all()?;
            std::fs::rename(&self.staged, &self.dest)?;
            sync_dir(self.dest.parent().unwrap_or(std::path::Path::new(".")))
        })();
        if done.is_err() {
            let _ = std::fs::remove_file(&self.staged);
        }
        done
    }

    /// Drops the staged file: nothing was published.
    pub fn abort(self) {
        let _ = std::fs::remove_file(&self.staged);
    }
}

/// `create_dir_all`, then every directory whose entries changed fsynced (the first existing
/// ancestor and each new directory but the last, whose entries the object's commit syncs).
fn create_dirs_durably(dir: &std::path::Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut existing = dir;
    while !existing.is_dir() {
        existing = match existing.parent() {
            Some(p) => p,
            None => break,
        };
    }
    std::fs::create_dir_all(dir)?;
    let mut d = dir.parent();
    while let Some(p) = d {
        sync_dir(p)?;
        if p == existing {
            break;
        }
        d = p.parent();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::summary::summarize;
    use futures::TryStreamExt;
    use object_store::ObjectStoreExt;
    use segvault_format::encode;

    fn segment(n: i64) -> Vec<u8> {
        encode::test_segment(n, 8, 500)
    }

    fn stores(dir: &std::path::Path) -> Vec<Store> {
        vec![
            crate::archive::store::open(dir.to_str().unwrap()).unwrap(),
            Store {
                inner: Arc::new(object_store::memory::InMemory::new()),
                url: "memory://".into(),
                local: None,
            },
        ]
    }

    async fn listing(store: &Store) -> Vec<String> {
        let mut keys: Vec<String> = store
            .inner
            .list(None)
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await
            .unwrap();
        keys.sort();
        keys
    }

    /// More uploads at once than the part budget has buffers, on both stores: every object
    /// arrives whole (empty, single-PUT and multipart sizes), the writers wait for buffers
    /// rather than fail, and every permit is back once they are done, or abandoned (an
    /// aborted writer leaves no object).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_uploads_share_the_part_budget_and_return_it() {
        let tmp = tempfile::tempdir().unwrap();
        for store in stores(tmp.path()) {
            let sizes = [0, 1000, PART_BYTES, PART_BYTES + 1, 3 * PART_BYTES - 7];
            let mut tasks = JoinSet::new();
            for (i, &n) in sizes.iter().cycle().take(2 * PART_BUDGET).enumerate() {
                let data: Vec<u8> = (0..n).map(|b| (b * 7 + i) as u8).collect();
                let inner = store.inner.clone();
                tasks.spawn(async move {
                    let key = Path::from(format!("p/{i}"));
                    let o = put_bytes(&inner, &key, &data, Encoding::Identity, &[], None, &|_| {})
                        .await
                        .unwrap();
                    let got = inner.get(&key).await.unwrap().bytes().await.unwrap();
                    assert!(got[..] == data[..], "object {i} of {n} bytes");
                    assert_eq!(o.sha256, hex::encode(Sha256::digest(&data)));
                });
            }
            while let Some(r) = tasks.join_next().await {
                r.unwrap();
            }
            let mut w = PartWriter::new(store.inner.clone(), Path::from("p/aborted"));
            w.write(&vec![1u8; 2 * PART_BYTES + 5]).await.unwrap();
            w.abort().await;
            assert!(!listing(&store).await.contains(&"p/aborted".to_string()));
            // (Other tests of this binary may hold permits for a moment: poll.)
            let deadline = Instant::now() + Duration::from_secs(30);
            while PARTS.available_permits() != PART_BUDGET {
                assert!(
                    Instant::now() < deadline,
                    "permits not returned: {}",
                    store.url
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }

    /// One pass: the stored object is the slice from `start`, with its SHA-256, and the
    /// summary is the whole walk's; on the local store no staged file is left.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_verified_upload_stores_the_slice_and_its_summary() {
        let tmp = tempfile::tempdir().unwrap();
        let data = segment(3000); // ≈ 13 MiB: several chunks, a multipart upload
        for store in stores(tmp.path()) {
            for start in [0, 8 * 1000] {
                let key = Path::from(format!("a/{start}/log"));
                let (o, s) =
                    put_log_verified(&store, &key, &data, start..i64::MAX, 1 << 20, None, &|_| {})
                        .await
                        .unwrap()
                        .unwrap();
                assert_eq!(s, summarize(&data, start, 1 << 20).unwrap());
                let slice = &data[s.slice_position as usize..];
                let got = store.inner.get(&key).await.unwrap().bytes().await.unwrap();
                assert_eq!(&got[..], slice, "{}", store.url);
                assert_eq!(o.sha256, hex::encode(Sha256::digest(slice)));
                assert_eq!(
                    (o.size, o.stored_size),
                    (slice.len() as u64, slice.len() as u64)
                );
            }
            assert_eq!(listing(&store).await, ["a/0/log", "a/8000/log"]);
            if store.local.is_some() {
                let dir = store.local_path(&Path::from("a/0/log")).unwrap().unwrap();
                let names: Vec<_> = std::fs::read_dir(dir.parent().unwrap())
                    .unwrap()
                    .flatten()
                    .map(|e| e.file_name())
                    .collect();
                assert_eq!(names, ["log"]);
            }
        }
    }

    /// A corrupt batch anywhere (early, or after several chunks were written), a start
    /// inside a batch or a batch at the next segment's base offset: refused, and nothing is left in the store, staged or published.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refused_upload_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let data = segment(3000);
        for store in stores(tmp.path()) {
            for at in [100, data.len() - 100] {
                let mut bad = data.clone();
                bad[at] ^= 1;
                let key = Path::from(format!("b/{at}/log"));
                let e =
                    put_log_verified(&store, &key, &bad, 0..i64::MAX, 1 << 20, None, &|_| {}).await;
                assert!(matches!(e, Ok(Err(Refusal::Corrupt { .. }))), "{e:?}");
            }
            let key = Path::from("c/log");
            let e =
                put_log_verified(&store, &key, &data, 3..i64::MAX, 1 << 20, None, &|_| {}).await;
            assert!(matches!(e, Ok(Err(Refusal::Misaligned { .. }))));
            // The segment reaches offsets its listed successor begins at (a cleaner merge).
            let e = put_log_verified(
                &store,
                &Path::from("d/log"),
                &data,
                0..8000,
                1 << 20,
                None,
                &|_| {},
            )
            .await;
            assert!(
                matches!(
                    e,
                    Ok(Err(Refusal::Beyond {
                        batch_base: 8000,
                        next: 8000,
                        ..
                    }))
                ),
                "{e:?}"
            );
            assert!(listing(&store).await.is_empty(), "{}", store.url);
            if store.local.is_some() {
                let mut left = vec![];
                for e in walk(tmp.path()) {
                    left.push(e);
                }
                assert!(left.is_empty(), "{left:?}");
            }
        }
    }

    fn walk(d: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut out = vec![];
        for e in std::fs::read_dir(d).unwrap().flatten() {
            if e.path().is_dir() {
                out.extend(walk(&e.path()));
            } else {
                out.push(e.path());
            }
        }
        out
    }
}
