//! segvault reads Apache Kafka log directories directly, verifies them, archives closed
//! segments to object storage and restores them as log directories a broker will serve.
//!
//! The modules follow the flow of data, and data only moves down this list:
//!
//! - [`format`]: parse and verify Kafka's on-disk formats (record batches, indexes, snapshots,
//!   checkpoints). Pure functions over byte slices; no I/O policy.
pub mod format;
