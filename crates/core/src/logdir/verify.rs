//! Verifying a whole log directory: every segment with its indexes, producer and KRaft
//! snapshots, and the metadata files, in parallel over the cores (rayon), then the checks
//! that span files: offset order across segments, checkpoints against the log end.
//!
//! Offset gaps (a batch starting above the previous batch's last offset + 1) are counted,
//! not reported as problems: compaction and transaction markers create them legitimately.
//! Overlapping or decreasing offsets are corruption.

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Serialize;

use super::check::{
    check_file, check_segment, file_kind, DataCounts, Decoder, Event, FileKind, Problem,
    RecordMode, SegmentInput, SegmentStats, Severity, WalkOptions,
};
use super::{LogDirListing, PartitionDir, Skipped};

/// Options of [`verify_listing`].
#[derive(Debug, Clone, Copy)]
pub struct VerifyOptions {
    /// Record depth: `Count` (default) decompresses and validates every record.
    pub records: RecordMode,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            records: RecordMode::Count,
        }
    }
}

/// Totals over segments (per partition, per log dir, overall).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    /// Partitions.
    pub partitions: u64,
    /// Segments (`.log` files).
    pub segments: u64,
    /// What the segments held (offset gaps also count those between consecutive segments).
    #[serde(flatten)]
    pub data: DataCounts,
    /// Problems of severity corrupt.
    pub corrupt: u64,
    /// Problems of severity partial.
    pub partial: u64,
    /// Notes.
    pub notes: u64,
    /// Skipped entries.
    pub skipped: u64,
}

impl Totals {
    /// Adds another total.
    pub fn add(&mut self, o: &Totals) {
        self.partitions += o.partitions;
        self.segments += o.segments;
        self.data.add(&o.data);
        self.corrupt += o.corrupt;
        self.partial += o.partial;
        self.notes += o.notes;
        self.skipped += o.skipped;
    }
    fn count(&mut self, p: &Problem) {
        match p.severity {
            Severity::Corrupt => self.corrupt += 1,
            Severity::Partial => self.partial += 1,
            Severity::Note => self.notes += 1,
        }
    }
    /// True if any problem makes the exit code 1.
    pub fn failed(&self) -> bool {
        self.corrupt + self.partial > 0
    }
}

/// The verdict on one partition directory.
#[derive(Debug, Clone, Serialize)]
pub struct VerifiedPartition {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Directory.
    pub path: PathBuf,
    /// Topic id from `partition.metadata`.
    pub topic_id: Option<String>,
    /// First offset held (first batch of the first segment).
    pub first_offset: Option<i64>,
    /// Last offset held.
    pub last_offset: Option<i64>,
    /// Counts.
    #[serde(flatten)]
    pub totals: Totals,
    /// Producer snapshots checked.
    pub producer_snapshots: u64,
    /// KRaft snapshots checked.
    pub kraft_snapshots: u64,
    /// Problems (every severity), in file order.
    #[serde(skip)]
    pub problems: Vec<Problem>,
}

/// The verdict on one log directory.
#[derive(Debug, Clone)]
pub struct LogDirReport {
    /// The directory.
    pub path: PathBuf,
    /// Partitions, sorted.
    pub partitions: Vec<VerifiedPartition>,
    /// Problems of root files (meta.properties, checkpoints).
    pub problems: Vec<Problem>,
    /// What was skipped.
    pub skipped: Vec<Skipped>,
    /// Totals over the partitions and root problems.
    pub totals: Totals,
}

enum Job<'a> {
    Segment {
        part: usize,
        seg: usize,
        input: SegmentInput,
    },
    File {
        part: Option<usize>,
        path: &'a Path,
        kind: FileKind,
        decoder: Decoder,
    },
}

struct JobResult {
    part: Option<usize>,
    seg: Option<usize>,
    stats: SegmentStats,
    problems: Vec<Problem>,
    kind: FileKind,
}

fn run_job(job: &Job<'_>, opts: VerifyOptions) -> JobResult {
    let mut problems = Vec::new();
    let mut sink = |e: Event<'_>| {
        if let Event::Problem(p) = e {
            problems.push(p.clone());
        }
    };
    let (part, seg, kind, res) = match job {
        Job::Segment { part, seg, input } => {
            let wo = WalkOptions {
                records: opts.records,
                decoder: Decoder::None,
                ..WalkOptions::default()
            };
            (
                Some(*part),
                Some(*seg),
                FileKind::Log,
                check_segment(input, &wo, &mut sink),
            )
        }
        Job::File {
            part,
            path,
            kind,
            decoder,
        } => {
            let res = if *kind == FileKind::BatchCheckpoint {
                let input = SegmentInput {
                    log: path.to_path_buf(),
                    base_offset: None,
                    index: None,
                    timeindex: None,
                    txnindex: None,
                    active: false,
                };
                let wo = WalkOptions {
                    records: opts.records,
                    decoder: *decoder,
                    ..WalkOptions::default()
                };
                check_segment(&input, &wo, &mut sink)
            } else {
                check_file(path, *kind, false, &mut sink)
            };
            (*part, None, *kind, res)
        }
    };
    let stats = match res {
        Ok(s) => s,
        // Listed by the scan, gone now: a live broker's retention or log cleaner renamed it
        // (to .deleted) in between. Not a fault of the log: said, not counted as corrupt.
        Err(e) if e.vanished() => {
            problems.push(Problem {
                file: e.path().to_path_buf(),
                position: None,
                offset: None,
                severity: Severity::Note,
                kind: "vanished",
                message: format!("{}: listed, then removed or renamed before it was read (a running broker's retention or log cleaner); not verified", e.detail()),
            });
            SegmentStats::default()
        }
        // Listed by the scan but unreadable now: no permission, or not a regular file.
        Err(e) => {
            problems.push(Problem {
                file: e.path().to_path_buf(),
                position: None,
                offset: None,
                severity: Severity::Corrupt,
                kind: "unreadable",
                message: e.detail().to_string(),
            });
            SegmentStats::default()
        }
    };
    JobResult {
        part,
        seg,
        stats,
        problems,
        kind,
    }
}

/// The files of a listing to check, each a job for the thread pool: every segment, producer
/// and KRaft snapshot, `quorum-state`, and the root files read as batches or text.
fn jobs(listing: &LogDirListing) -> Vec<Job<'_>> {
    let mut jobs: Vec<Job<'_>> = Vec::new();
    for (pi, p) in listing.partitions.iter().enumerate() {
        let n = p.segments.len();
        for (si, s) in p.segments.iter().enumerate() {
            jobs.push(Job::Segment {
                part: pi,
                seg: si,
                input: SegmentInput {
                    log: s.log.clone(),
                    base_offset: Some(s.base_offset),
                    index: s.index.clone(),
                    timeindex: s.timeindex.clone(),
                    txnindex: s.txnindex.clone(),
                    active: si + 1 == n,
                },
            });
        }
        for (_, path) in &p.snapshots {
            jobs.push(Job::File {
                part: Some(pi),
                path,
                kind: FileKind::ProducerSnapshot,
                decoder: Decoder::None,
            });
        }
        for (_, _, path) in &p.kraft_snapshots {
            jobs.push(Job::File {
                part: Some(pi),
                path,
                kind: FileKind::BatchCheckpoint,
                decoder: Decoder::ClusterMetadata,
            });
        }
        for path in &p.other {
            if file_kind(path) == FileKind::QuorumState {
                jobs.push(Job::File {
                    part: Some(pi),
                    path,
                    kind: FileKind::QuorumState,
                    decoder: Decoder::None,
                });
            }
        }
    }
    for path in &listing.other {
        let kind = file_kind(path);
        if matches!(
            kind,
            FileKind::BatchCheckpoint | FileKind::QuorumState | FileKind::CleanShutdown
        ) {
            jobs.push(Job::File {
                part: None,
                path,
                kind,
                decoder: Decoder::ClusterMetadata,
            });
        }
    }
    jobs
}

/// Verifies a scanned log directory. `progress` is called with the bytes of each file as
/// it is done (from worker threads).
pub fn verify_listing(
    listing: &LogDirListing,
    opts: VerifyOptions,
    progress: &(dyn Fn(u64) + Sync),
) -> LogDirReport {
    let jobs = jobs(listing);
    let results: Vec<JobResult> = jobs
        .par_iter()
        .map(|j| {
            let r = run_job(j, opts);
            progress(r.stats.data.bytes + r.stats.data.partial_tail_bytes);
            r
        })
        .collect();

    // Per partition: segment results in base-offset order.
    let mut reports: Vec<VerifiedPartition> = listing
        .partitions
        .iter()
        .map(|p| VerifiedPartition {
            topic: p.topic.clone(),
            partition: p.partition,
            path: p.path.clone(),
            topic_id: p.topic_id.map(|u| u.to_string()),
            first_offset: None,
            last_offset: None,
            totals: Totals {
                partitions: 1,
                ..Totals::default()
            },
            producer_snapshots: 0,
            kraft_snapshots: 0,
            problems: Vec::new(),
        })
        .collect();
    let mut seg_stats: Vec<Vec<Option<SegmentStats>>> = listing
        .partitions
        .iter()
        .map(|p| vec![None; p.segments.len()])
        .collect();
    let mut root_problems = Vec::new();
    for r in results {
        match r.part {
            Some(pi) => {
                let rep = &mut reports[pi];
                rep.problems.extend(r.problems);
                match (r.seg, r.kind) {
                    (Some(si), _) => {
                        rep.totals.segments += 1;
                        rep.totals.data.add(&r.stats.data);
                        if let Some(slot) = seg_stats.get_mut(pi).and_then(|v| v.get_mut(si)) {
                            *slot = Some(r.stats);
                        }
                    }
                    (None, FileKind::ProducerSnapshot) => rep.producer_snapshots += 1,
                    (None, FileKind::BatchCheckpoint) => rep.kraft_snapshots += 1,
                    _ => {}
                }
            }
            None => root_problems.extend(r.problems),
        }
    }
    for (pi, (p, rep)) in listing
        .partitions
        .iter()
        .zip(reports.iter_mut())
        .enumerate()
    {
        partition_checks(p, &seg_stats[pi], rep);
        for pr in &rep.problems {
            rep.totals.count(pr);
        }
        rep.totals.skipped = (p.transient.len() + p.orphans.len()) as u64;
    }
    root_problems.extend(root_checks(listing, &reports));
    let mut totals = Totals::default();
    for rep in &reports {
        totals.add(&rep.totals);
    }
    for p in &root_problems {
        totals.count(p);
    }
    totals.skipped += listing.skipped.len() as u64;
    LogDirReport {
        path: listing.path.clone(),
        partitions: reports,
        problems: root_problems,
        skipped: listing.all_skipped().cloned().collect(),
        totals,
    }
}

/// Checks that span the segments of a partition, and its metadata files.
fn partition_checks(p: &PartitionDir, segs: &[Option<SegmentStats>], rep: &mut VerifiedPartition) {
    let mut extra = Vec::new();
    let mut prev: Option<(i64, &Path)> = None;
    for (s, st) in p.segments.iter().zip(segs) {
        let Some(st) = st else { continue };
        if rep.first_offset.is_none() {
            rep.first_offset = st.first_offset;
        }
        if let Some((prev_last, prev_path)) = prev {
            if s.base_offset <= prev_last {
                extra.push(Problem {
                    offset: Some(prev_last),
                    ..Problem::new(&s.log, Severity::Corrupt, "segment_overlap", format!(
                        "expected this segment's base offset {} to be above the last offset {prev_last} of the previous segment {}",
                        s.base_offset, prev_path.display()
                    ))
                });
            } else if st
                .first_offset
                .is_some_and(|f| f > prev_last.saturating_add(1))
            {
                rep.totals.data.offset_gaps += 1;
            }
        }
        if let Some(l) = st.last_offset {
            prev = Some((l, &s.log));
            rep.last_offset = Some(l);
        }
    }
    // Missing indexes of closed segments: the broker rebuilds them (recovering the segment),
    // so this is information.
    for s in p.closed_segments() {
        if s.index.is_none() {
            extra.push(Problem::new(&s.log, Severity::Note, "index_missing", "no .index next to this closed segment; a broker recovers the segment (re-reading every batch) to rebuild it".into()));
        }
    }
    for o in &p.other {
        if o.is_dir() {
            extra.push(Problem::new(o, Severity::Corrupt, "unexpected_directory", "expected only files inside a partition directory, found a directory (a broker fails to load a log whose segment or index name is a directory)".into()));
        } else if file_kind(o) == FileKind::Unknown {
            extra.push(Problem::new(
                o,
                Severity::Note,
                "unknown_file",
                "not a file the broker writes in a partition directory; the broker ignores it"
                    .into(),
            ));
        }
    }
    if p.segments.is_empty() {
        extra.push(Problem::new(&p.path, Severity::Note, "no_segments", "no .log files in this partition directory; a broker creates an empty segment at the log start offset".into()));
    }
    let pm = p.path.join("partition.metadata");
    match &p.partition_metadata_error {
        Some(e) => extra.push(Problem::from_format(&pm, Severity::Corrupt, e)),
        None if p.topic_id.is_none() => extra.push(Problem::new(&pm, Severity::Note, "partition_metadata_missing", "no partition.metadata: a KRaft broker 3.7.1+ treats this log as stray (ZooKeeper-era log dirs may lack it)".into())),
        None => {}
    }
    if let Some(e) = &p.leader_epoch_error {
        extra.push(Problem::from_format(
            &p.path.join("leader-epoch-checkpoint"),
            Severity::Corrupt,
            e,
        ));
    }
    if let (Some(epochs), Some(last)) = (&p.leader_epochs, rep.last_offset) {
        let path = p.path.join("leader-epoch-checkpoint");
        let mut prev: Option<(i32, i64)> = None;
        for &(e, o) in epochs {
            if let Some((pe, po)) = prev {
                if e <= pe || o < po {
                    extra.push(Problem::new(&path, Severity::Corrupt, "leader_epoch_order", format!(
                        "expected epochs and start offsets increasing, found ({e}, {o}) after ({pe}, {po})"
                    )));
                }
            }
            prev = Some((e, o));
        }
        if let Some((e, o)) = prev {
            if o > last.saturating_add(1) {
                extra.push(Problem::new(&path, Severity::Note, "leader_epoch_beyond_log", format!(
                    "the latest epoch {e} starts at offset {o}, after the log end offset {}; the broker trims such entries at startup", last.saturating_add(1)
                )));
            }
        }
    }
    rep.problems.extend(extra);
}

fn root_checks(listing: &LogDirListing, reports: &[VerifiedPartition]) -> Vec<Problem> {
    let mut out = Vec::new();
    for u in &listing.unreadable {
        out.push(Problem::new(
            &u.path,
            Severity::Corrupt,
            "unreadable",
            format!(
                "expected a readable partition directory: {}; not verified",
                u.reason
            ),
        ));
    }
    for s in &listing.skipped {
        let name = s
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if s.path.is_dir()
            && segvault_format::names::parse_partition_dir(&name).is_none()
            && name != "remote-log-index-cache"
        {
            out.push(Problem::new(&s.path, Severity::Corrupt, "unparsable_directory", format!(
                "expected only <topic>-<partition> directories in a log dir, found {name:?}: a broker aborts loading this log dir"
            )));
        }
    }
    let mp = listing.path.join("meta.properties");
    match &listing.meta_properties {
        Some(Err(e)) => out.push(Problem::from_format(&mp, Severity::Corrupt, e)),
        None if !listing.partitions.is_empty() => out.push(Problem::new(&mp, Severity::Note, "meta_properties_missing", "no meta.properties: a broker would write a new one (and a KRaft broker would refuse to start without a formatted directory)".into())),
        _ => {}
    }
    for (name, cp) in listing.checkpoints.named() {
        let path = listing.path.join(name);
        match cp {
            Some(Err(e)) => out.push(Problem::from_format(&path, Severity::Corrupt, e)),
            Some(Ok(map)) => {
                for rep in reports {
                    let Some(&o) = map.get(&(rep.topic.clone(), rep.partition)) else {
                        continue;
                    };
                    let leo = rep.last_offset.map_or(0, |l| l.saturating_add(1));
                    if o > leo && rep.totals.segments > 0 {
                        // After a clean shutdown every checkpoint is at or below the log
                        // end: a checkpoint beyond it means data is missing.
                        let (sev, why) = if listing.clean_shutdown {
                            (Severity::Corrupt, "the clean-shutdown marker says the broker wrote these checkpoints at the log end, so data is missing")
                        } else {
                            (Severity::Note, "normal for a copy of a running broker; after a clean shutdown it would mean data is missing")
                        };
                        out.push(Problem {
                            offset: Some(o),
                            ..Problem::new(&path, sev, "checkpoint_beyond_log", format!(
                                "{}-{}: expected a checkpointed offset at most the log end offset {leo} found on disk, found {o} ({why})",
                                rep.topic, rep.partition
                            ))
                        });
                    }
                }
            }
            None => {}
        }
    }
    out
}
