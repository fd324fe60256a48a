//! Streams one file (or the tail of one) into the store with bounded memory: chunks are
//! copied out of the mmap into a multipart writer (object_store's `BufWriter`, which uses a
//! single PUT for small objects and multipart above its capacity), hashed on the way.
//! With zstd, the data is cut at batch boundaries into independently decompressible frames,
//! so a reader can fetch one offset range with a ranged GET.

use super::manifest::ObjectRef;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::ObjectStore;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

/// Bytes copied per write: small enough to keep memory flat, large enough to be cheap.
const CHUNK: usize = 1 << 20;
/// Multipart part size / single-PUT threshold.
pub const PART_BYTES: usize = 8 << 20;

/// A token bucket on bytes per second, shared by every upload of a pass.
#[derive(Debug)]
pub struct RateLimit {
    bytes_per_sec: u64,
    state: tokio::sync::Mutex<(Instant, f64)>,
}

impl RateLimit {
    pub fn new(bytes_per_sec: u64) -> RateLimit {
        RateLimit {
            bytes_per_sec,
            state: tokio::sync::Mutex::new((Instant::now(), 0.0)),
        }
    }

    /// Waits until `n` more bytes fit under the rate. (Pacing, not synchronisation.)
    async fn take(&self, n: usize) {
        let wait = {
            let mut s = self.state.lock().await;
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
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
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
    let mut w =
        BufWriter::with_capacity(store.clone(), key.clone(), PART_BYTES).with_max_concurrency(2);
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
                    w.write_all(chunk).await?;
                    stored += chunk.len() as u64;
                    done(stored as usize);
                }
            }
            Encoding::Zstd(level) => {
                let mut starts: Vec<(u64, i64)> = frame_starts.to_vec();
                if starts.first().map(|s| s.0) != Some(0) {
                    starts.insert(0, (0, starts.first().map_or(-1, |s| s.1)));
                }
                for (i, &(from, first_offset)) in starts.iter().enumerate() {
                    let to = starts.get(i + 1).map_or(data.len() as u64, |s| s.0);
                    let raw = &data[from as usize..to as usize];
                    sha.update(raw);
                    let frame = zstd::bulk::compress(raw, level)?;
                    done(to as usize);
                    if let Some(r) = rate {
                        r.take(frame.len()).await;
                    }
                    frames.push((from, stored, first_offset));
                    w.write_all(&frame).await?;
                    stored += frame.len() as u64;
                }
            }
        }
        Ok::<(), std::io::Error>(())
    }
    .await;
    let result = match result {
        Ok(()) => w.shutdown().await,
        Err(e) => {
            // Abort the multipart upload so no part lingers; the key was never completed.
            // (Only before shutdown: a BufWriter whose shutdown failed cannot be aborted. Its
            // parts then linger until the bucket's AbortIncompleteMultipartUpload rule.)
            let _ = w.abort().await;
            Err(e)
        }
    };
    if let Err(e) = result {
        return Err(object_store::Error::Generic {
            store: "upload",
            source: Box::new(e),
        });
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
