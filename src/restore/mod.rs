//! Restore: read what the archive holds and rebuild log directories a broker serves with the
//! same records at the same offsets.
//!
//! - [`catalog`]: what the archive holds, read from the store alone, every name validated.
//! - [`plan`]: what a restore will write (partitions, ranges, cuts, bytes, gaps, epochs),
//!   decided from the catalog without reading data; `--dry-run` prints it.
//! - [`write`]: fetch, verify every object and batch, place each partition atomically,
//!   resumably, never into a directory a running broker holds.

pub mod catalog;
pub mod plan;
pub mod write;
