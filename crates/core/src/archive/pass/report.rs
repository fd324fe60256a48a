//! What a pass reports: one [`Outcome`] per segment or range, an [`ArchivedPartition`] per
//! partition, and the pass's [`Report`] summing them.

use crate::logdir::PartitionDir;
use serde::Serialize;

/// What happened to one segment or range, for the report and the logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    Uploaded {
        start: i64,
        next: i64,
        bytes: u64,
        slice_position: u64,
        /// The broker had renamed the segment away (retention, the log cleaner) by the time
        /// it was read: archived from its `.deleted` name, or with its indexes left out
        /// because their names may already have held a replacement's.
        renamed: bool,
    },
    /// Another agent claimed this range first; our copy matched (or could not be compared).
    ClaimedByOther {
        start: i64,
        next: i64,
        divergent: bool,
    },
    Gap {
        start: i64,
        next: i64,
    },
    Corrupt {
        base: i64,
        position: u64,
        offset: Option<i64>,
        message: String,
    },
    Divergent {
        start: i64,
        message: String,
    },
    /// The broker removed or replaced this segment since the pass listed the partition
    /// (retention, the log cleaner): nothing was published for it; the next pass, listing
    /// again, takes the partition up where the archive ends.
    Changed {
        base: i64,
        message: String,
    },
}

impl Outcome {
    /// What happened, in the words every report of the outcome uses: the CLI's line for it
    /// and the agent's log line both render these, around their own fields.
    pub fn meaning(&self) -> &'static str {
        match self {
            Outcome::Uploaded { .. } => "archived",
            Outcome::ClaimedByOther { .. } => "already archived from another broker",
            Outcome::Gap { .. } => "no replica had these offsets",
            Outcome::Corrupt { .. } => "not archived",
            Outcome::Divergent { .. } => "divergence",
            Outcome::Changed { .. } => "changed by the broker during the pass",
        }
    }

    /// For an upload the broker had renamed away meanwhile ([`Outcome::Uploaded`]'s
    /// `renamed`): what that means for the archived copy.
    pub const RENAMED: &'static str =
        "renamed by the broker meanwhile: indexes left to the restore";
}

/// What one pass did with one partition.
#[derive(Debug, Clone, Serialize)]
pub struct ArchivedPartition {
    pub log_dir: String,
    pub topic: String,
    pub partition: i32,
    pub outcomes: Vec<Outcome>,
    /// Closed segments not archived yet because their end is above the high watermark.
    pub uncommitted_segments: usize,
    /// Where the archive's chain ends after this pass.
    pub archived_until: Option<i64>,
    /// Closed segments (committed or not) whose range the archive does not cover after this
    /// pass, and how many of them are committed.
    pub unarchived_segments: usize,
    pub unarchived_committed_segments: usize,
    /// The oldest `.log` modification time among those, ms since the epoch.
    pub oldest_unarchived_mtime_ms: Option<i64>,
    /// Why the partition was skipped, if it was.
    pub skipped: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub partitions: Vec<ArchivedPartition>,
    pub uploaded_segments: u64,
    pub uploaded_bytes: u64,
    pub gaps: u64,
    pub corrupt: u64,
    pub divergences: u64,
    /// Uploaded segments the broker had renamed away when they were read (see
    /// [`Outcome::Uploaded`]).
    pub renamed_segments: u64,
    /// Partitions whose segments the broker changed during the pass (see
    /// [`Outcome::Changed`]): left for the next pass.
    pub changed: u64,
    /// Partitions the pass could not archive (an unreadable file or directory, a store
    /// error): the others were archived and are counted; the pass as a whole failed.
    pub failures: Vec<Failure>,
    /// Sums over the partitions (see [`ArchivedPartition`]); the oldest is the minimum.
    pub unarchived_segments: u64,
    pub unarchived_committed_segments: u64,
    pub oldest_unarchived_mtime_ms: Option<i64>,
}

/// A partition (or partition directory) a pass could not archive, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub log_dir: String,
    /// The partition directory, or the partition's `topic-partition`.
    pub partition: String,
    pub error: String,
}

impl Report {
    /// Counts `r`'s outcomes and lag into the totals, and keeps it.
    pub(super) fn add(&mut self, r: ArchivedPartition) {
        for o in &r.outcomes {
            match o {
                Outcome::Uploaded { bytes, renamed, .. } => {
                    self.uploaded_segments += 1;
                    self.uploaded_bytes += bytes;
                    self.renamed_segments += *renamed as u64;
                }
                Outcome::Gap { .. } => self.gaps += 1,
                Outcome::Corrupt { .. } => self.corrupt += 1,
                Outcome::Divergent { .. }
                | Outcome::ClaimedByOther {
                    divergent: true, ..
                } => self.divergences += 1,
                Outcome::ClaimedByOther { .. } => {}
                Outcome::Changed { .. } => self.changed += 1,
            }
        }
        self.unarchived_segments += r.unarchived_segments as u64;
        self.unarchived_committed_segments += r.unarchived_committed_segments as u64;
        self.oldest_unarchived_mtime_ms = match (
            self.oldest_unarchived_mtime_ms,
            r.oldest_unarchived_mtime_ms,
        ) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.partitions.push(r);
    }
}

/// Closed segments of `p` whose end is beyond `archived_until` (all of them if `None`):
/// `(count, how many of them are committed, the oldest `.log` mtime among them)`. The lag
/// the pass reports and the agent reads off the log dir after a failed pass.
pub(crate) fn unarchived(
    p: &PartitionDir,
    archived_until: Option<i64>,
    high_watermark: Option<i64>,
) -> (usize, usize, Option<i64>) {
    let (mut n, mut committed, mut oldest) = (0, 0, None::<i64>);
    for (i, seg) in p.closed_segments().iter().enumerate() {
        let next = p.segments[i + 1].base_offset;
        if archived_until.is_some_and(|until| next <= until) {
            continue;
        }
        n += 1;
        if high_watermark.is_some_and(|hw| next <= hw) {
            committed += 1;
        }
        let mtime = std::fs::metadata(&seg.log).and_then(|m| m.modified()).ok();
        if let Some(ms) = mtime
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_millis() as i64)
        {
            oldest = Some(oldest.map_or(ms, |o| o.min(ms)));
        }
    }
    (n, committed, oldest)
}

/// [`unarchived`] into the report.
pub(super) fn count_unarchived(
    report: &mut ArchivedPartition,
    p: &PartitionDir,
    archived_until: Option<i64>,
    high_watermark: Option<i64>,
) {
    let (n, committed, oldest) = unarchived(p, archived_until, high_watermark);
    report.unarchived_segments = n;
    report.unarchived_committed_segments = committed;
    report.oldest_unarchived_mtime_ms = oldest;
}
