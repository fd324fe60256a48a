//! segvault-format: Kafka's on-disk formats, parsed (with nom, zero-copy) and verified.
//!
//! Everything here is a pure function over byte slices (callers mmap files, see
//! [`mapped`]); nothing here decides policy or does I/O beyond opening a mapping. Parsers
//! never panic on any input: malformed data is reported as a [`FormatError`] carrying what
//! was expected, the byte position and (when known) the Kafka offset.
//!
//! - [`segment`]: walk a `.log` (v2 batches and legacy messages), classify its end.
//! - [`batch`]: the v2 batch header and its CRC-32C. [`records`]: records, decompressed
//!   incrementally ([`compression`]). [`control`]: control records.
//! - [`legacy`]: magic 0/1 messages and compressed wrappers.
//! - [`index`]: `.index`, `.timeindex`, `.txnindex`. [`snapshot`]: producer `.snapshot`.
//! - [`text`]: checkpoint files, `partition.metadata`, `meta.properties` (readers and
//!   byte-exact writers). [`kraft`]: `quorum-state`, metadata records.
//!   [`names`]: file and directory names. [`internal`]: `__consumer_offsets` and
//!   `__transaction_state` records.
//! - `encode` (feature `test-util`): batch and message encoders for tests, benchmarks and
//!   fixtures.

#![deny(missing_docs)]

pub mod batch;
pub mod compression;
pub mod control;
#[cfg(any(test, feature = "test-util"))]
pub mod encode;
pub mod error;
pub mod index;
pub mod index_build;
pub mod internal;
pub mod kraft;
pub mod legacy;
pub mod mapped;
pub mod names;
pub(crate) mod primitives;
pub mod records;
pub mod segment;
pub mod snapshot;
pub mod text;

#[cfg(test)]
mod props;

pub use batch::{BatchAttributes, BatchHeader, RecordBatch, TimestampType};
pub use compression::Compression;
pub use error::{ErrorKind, FormatError, Location};
pub use legacy::LegacyEntry;
pub use primitives::{encode_unsigned_varint, encode_varint, encode_varlong};
pub use records::{Header, Limits, Record, Records};
pub use segment::{log_entries, Batch, LogEntries, SegmentEnd};
