//! Reading and judging the content of one file: a segment (`.log` with its indexes), a
//! producer snapshot, a KRaft snapshot, or one of the small text files.
//!
//! Both `segvault inspect` (which prints what it reads) and `segvault verify` (which only
//! counts) are thin layers over [`check_segment`] and [`check_file`]: the walk emits
//! [`Event`]s to a callback and returns [`SegmentStats`]. One pass over the mmapped `.log`
//! checks batch CRCs, framing, offset order, records (when asked) and cross-checks the
//! `.index`, `.timeindex` and `.txnindex` as it goes, so memory stays bounded by one batch
//! (plus the small txn index), never by the segment.
//!
//! Severity policy (see [`Severity`]): corruption is anything a broker would reject,
//! truncate or serve wrongly; `partial` is an incomplete write at the end of a segment
//! that is not the active one; `note` is information that needs no action (a live active
//! segment's partial tail, preallocated zero index tails, kafka-dump-log-only index
//! "mismatches" that are valid multi-batch appends).

mod events;
mod file;
mod index;
mod internal;
mod mapped;
mod options;
mod pipeline;
mod problem;
mod raw;
mod records;
mod segment;
mod txn;

pub use events::{
    BatchLine, DataCounts, Event, FileInfo, IndexEntryLine, RecordView, SegmentStats,
};
pub use file::{check_file, file_kind, FileKind};
pub use internal::InternalRecord;
pub use options::{Decoder, RecordMode, SegmentInput, WalkOptions};
pub(crate) use problem::lossy_path;
pub use problem::{Problem, Severity};
pub use segment::check_segment;
