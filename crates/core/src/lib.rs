//! segvault-core reads Apache Kafka log directories directly, verifies them, archives closed
//! segments to object storage and restores them as log directories a broker will serve.
//!
//! The modules follow the flow of data, and data only moves down this list (the on-disk
//! formats themselves are the `segvault-format` crate, below all of them):
//!
//! - [`logdir`]: what is on disk in a broker log directory (partitions, segments, closed vs
//!   active, transient files) and the checks over files and whole directories.
//! - [`archive`]: ship closed, committed segments to object storage, exactly once: store
//!   URLs, the key layout, manifests, the claim chain.
//! - [`restore`]: read the archive back: what it holds (`ls`), and log dirs rebuilt from it.
//!
//! The `segvault` binary crate is the command line over this library (argument parsing and
//! rendering only).
pub mod archive;
pub mod logdir;
pub mod restore;
pub mod sys;
