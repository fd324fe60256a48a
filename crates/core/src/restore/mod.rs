//! Restore: read what the archive holds and rebuild log directories a broker serves with the
//! same records at the same offsets.
//!
//! - [`catalog`]: what the archive holds, read from the store alone, every name validated.
//! - [`plan`]: what a restore will write (partitions, ranges, cuts, bytes, gaps, epochs),
//!   decided from the catalog without reading data; `--dry-run` prints it.
//! - `fetch`: bring each object into the staging dir, verifying it on the way (digest,
//!   every batch, the cut, the transaction state) in one pass with bounded memory.
//! - [`write`]: carry out the plan: build each partition from fetched, verified objects and
//!   place it atomically, resumably, never into a directory a running broker holds.
//!
//! Every step fails with the layer's one error, [`RestoreError`].

pub mod catalog;
mod error;
mod fetch;
pub mod plan;
pub mod retention;
pub mod write;

pub use error::RestoreError;
