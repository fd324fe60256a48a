//! Archive: ship closed, committed segments to object storage, exactly once, verified.
//!
//! - [`store`]: object stores from URLs (file, s3, gs, az).
//! - [`layout`]: the versioned key layout, and name validation.
//! - `manifest`: the per-range manifest, the commit point.
//! - `summary`: verify a segment and summarise what is archived.
//! - `upload`: stream bytes into the store with bounded memory.
//! - [`pass`]: one pass over log dirs: the claim chain, gaps, corruption, divergence.
//! - `error`: the archive layer's error.
//! - [`agent`]: the long-running agent: passes on file events and a rescan timer.
//! - `metrics`: the agent's Prometheus metrics and health endpoint.

pub mod agent;
mod error;
pub mod layout;
pub(crate) mod manifest;
mod metrics;
pub mod pass;
pub mod store;
pub(crate) mod summary;
pub(crate) mod upload;

pub use error::ArchiveError;

pub use pass::{archive_listing, archive_once, Outcome, PassOptions, Report};
pub use store::{open, Store};
