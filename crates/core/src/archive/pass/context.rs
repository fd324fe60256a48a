//! What every step of one partition's pass works with (the store, the broker, the
//! partition, its key, the options and the rate limit), shared by the steps in
//! [`partition`](super::partition), [`compare`](super::compare) and
//! [`evidence`](super::evidence).

use super::broker::Broker;
use super::options::PassOptions;
use crate::archive::layout::PartitionKey;
use crate::archive::store::Store;
use crate::archive::upload::RateLimit;
use crate::logdir::PartitionDir;
use std::sync::Arc;

/// What every step of one partition's pass works with.
pub(super) struct PartitionPass<'a> {
    pub(super) store: &'a Store,
    pub(super) b: &'a Broker,
    pub(super) p: &'a PartitionDir,
    pub(super) key: PartitionKey,
    pub(super) opts: &'a PassOptions,
    pub(super) rate: Option<Arc<RateLimit>>,
    /// The pass's `--concurrency`: one permit per range being verified and uploaded.
    pub(super) permits: Arc<tokio::sync::Semaphore>,
}
