//! What a pass is told: compression, concurrency, rate, the gap delay, and the hook called as
//! each range is published.

pub use super::memory::Memory;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct PassOptions {
    /// zstd level for `.log` data, or none.
    pub zstd_level: Option<i32>,
    /// Target uncompressed size of one zstd frame.
    pub frame_bytes: u64,
    /// Partitions archived at once.
    pub concurrency: usize,
    /// Upload rate limit in bytes per second.
    pub rate_limit: Option<u64>,
    /// How long the chain must have stood still at offsets this broker no longer has before
    /// they are recorded as a gap (other replicas get that long to archive them).
    pub gap_after: Duration,
    /// Called the moment a range's manifest is created (or found to be our own), before the
    /// pass goes on: what is published is counted and logged even if the pass later fails
    /// or is abandoned.
    pub on_published: Option<PublishHook>,
    /// What an agent remembers between passes (see [`Memory`]); `None` for a one-off pass,
    /// which reads what it needs from the store.
    pub memory: Option<Memory>,
}

/// A range this pass has just published (see [`PassOptions::on_published`]).
#[derive(Debug, Clone, Copy)]
pub struct Published<'a> {
    pub log_dir: &'a std::path::Path,
    pub topic: &'a str,
    pub partition: i32,
    pub start: i64,
    pub next: i64,
    /// Bytes stored for the range's objects.
    pub bytes: u64,
    pub slice_position: u64,
    pub renamed: bool,
}

/// See [`PassOptions::on_published`].
#[derive(Clone)]
pub struct PublishHook(pub Arc<dyn Fn(&Published) + Send + Sync>);

impl std::fmt::Debug for PublishHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PublishHook")
    }
}

impl Default for PassOptions {
    fn default() -> PassOptions {
        PassOptions {
            zstd_level: None,
            frame_bytes: 4 << 20,
            concurrency: 4,
            rate_limit: None,
            gap_after: Duration::from_secs(600),
            on_published: None,
            memory: None,
        }
    }
}
