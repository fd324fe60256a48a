//! segvault reads Apache Kafka log directories directly, verifies them, archives closed
//! segments to object storage and restores them as log directories a broker will serve.
//!
//! The modules follow the flow of data, and data only moves down this list:
//!
//! - [`format`]: parse and verify Kafka's on-disk formats (record batches, indexes, snapshots,
//!   checkpoints). Pure functions over byte slices; no I/O policy.
//! - [`logdir`]: what is on disk in a broker log directory (partitions, segments, closed vs
//!   active, transient files) and the checks over files and whole directories.
//! - [`archive`]: ship closed, committed segments to object storage, exactly once: store
//!   URLs, the key layout, manifests, the claim chain.
//! - [`restore`]: read the archive back: what it holds (`ls`), and log dirs rebuilt from it.
//! - [`cli`]: the `segvault` command line (argument parsing and rendering only).
pub mod archive;
pub mod cli;
pub mod format;
pub mod logdir;
pub mod restore;
