//! What is on disk in a broker log directory, and what of it is closed.
//!
//! [`scan`] lists a `log.dirs` entry the way the broker's `LogManager` would see it, without
//! reading any segment or index content: partition directories with their segment files
//! grouped by base offset, producer and KRaft snapshots, the root checkpoint files (these
//! small text files *are* read and parsed), and everything the broker would delete or ignore
//! at startup (transient files and directories), listed as [`Skipped`] with the reason.
//!
//! The archive stage builds on this: [`PartitionDir::closed_segments`] are the segments the
//! broker no longer appends to (but see kafka-format.md §4: compaction and retention can
//! still replace or rename them). [`check`] and [`verify`] read the contents.

pub mod check;
mod error;
mod segment_file;
pub mod verify;

pub use error::{Error, Result};
pub use segment_file::{base_offset_of, is_active_segment, log_beside};

use error::io_err;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use segvault_format::names::{
    parse_file_name, parse_partition_dir, FileName, KnownFile, PartitionDirKind, SegmentFileKind,
};
use segvault_format::text::{
    parse_leader_epoch_checkpoint, parse_meta_properties, parse_offset_checkpoint,
    parse_partition_metadata, MetaProperties, Uuid,
};
use segvault_format::FormatError;

/// Root files and partition files are tiny; anything larger than this under a fixed name is
/// not what the broker wrote, and is reported rather than read into memory.
const MAX_TEXT_FILE: u64 = 64 << 20;

/// A topic partition, as named in checkpoints and directory names.
pub type TopicPartition = (String, i32);

/// Offsets per partition from one of the root checkpoint files.
pub type OffsetMap = BTreeMap<TopicPartition, i64>;

/// A root checkpoint: `None` when the file is absent, `Some(Err)` when it does not parse
/// (the broker treats an unreadable recovery checkpoint as all zeros, so this is not fatal).
pub type Checkpoint = Option<std::result::Result<OffsetMap, FormatError>>;

/// The four offset checkpoint files at the root of a log dir.
#[derive(Debug, Clone, Default)]
pub struct Checkpoints {
    /// `recovery-point-offset-checkpoint`: data below is fsynced.
    pub recovery_point: Checkpoint,
    /// `replication-offset-checkpoint`: high watermarks.
    pub replication_offset: Checkpoint,
    /// `log-start-offset-checkpoint`.
    pub log_start_offset: Checkpoint,
    /// `cleaner-offset-checkpoint`: first dirty offset of compacted partitions.
    pub cleaner_offset: Checkpoint,
}

impl Checkpoints {
    /// Each checkpoint with its file name (for reporting).
    pub fn named(&self) -> [(&'static str, &Checkpoint); 4] {
        [
            ("recovery-point-offset-checkpoint", &self.recovery_point),
            ("replication-offset-checkpoint", &self.replication_offset),
            ("log-start-offset-checkpoint", &self.log_start_offset),
            ("cleaner-offset-checkpoint", &self.cleaner_offset),
        ]
    }
}

/// Something the scan saw and deliberately left out, with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The file or directory.
    pub path: PathBuf,
    /// Why the broker (and we) do not treat it as live data.
    pub reason: String,
}

/// The files of one segment, by base offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentFiles {
    /// Base offset (from the file name).
    pub base_offset: i64,
    /// `.log`.
    pub log: PathBuf,
    /// `.index`, if present (the broker rebuilds a missing one by recovering the segment).
    pub index: Option<PathBuf>,
    /// `.timeindex`, if present (the broker creates a missing one empty).
    pub timeindex: Option<PathBuf>,
    /// `.txnindex`, if present (absent = no aborted transactions in this segment).
    pub txnindex: Option<PathBuf>,
}

/// One `<topic>-<partition>` directory.
#[derive(Debug, Clone)]
pub struct PartitionDir {
    /// Topic name.
    pub topic: String,
    /// Partition number.
    pub partition: i32,
    /// The directory.
    pub path: PathBuf,
    /// From `partition.metadata`, if present and valid.
    pub topic_id: Option<Uuid>,
    /// `partition.metadata` present but unreadable: the error (a broker 3.7.1+ would then
    /// treat the log as stray).
    pub partition_metadata_error: Option<FormatError>,
    /// `(epoch, start offset)` from `leader-epoch-checkpoint`, if present and valid.
    pub leader_epochs: Option<Vec<(i32, i64)>>,
    /// `leader-epoch-checkpoint` present but unreadable.
    pub leader_epoch_error: Option<FormatError>,
    /// Segments sorted by base offset (only those with a `.log`).
    pub segments: Vec<SegmentFiles>,
    /// Producer snapshots `(offset, path)`, sorted.
    pub snapshots: Vec<(i64, PathBuf)>,
    /// KRaft snapshots (`__cluster_metadata-0`): `(end offset, epoch, path)`, sorted.
    pub kraft_snapshots: Vec<(i64, i32, PathBuf)>,
    /// `.deleted`, `.cleaned`, `.swap`, `.tmp`, `.part` files: the broker deletes or
    /// renames these at startup; never live data.
    pub transient: Vec<Skipped>,
    /// Index files without a `.log` of the same base offset (the broker deletes them).
    pub orphans: Vec<Skipped>,
    /// Every other file (e.g. `quorum-state`, names we do not know).
    pub other: Vec<PathBuf>,
}

impl PartitionDir {
    /// The segment the broker appends to: the one with the highest base offset.
    pub fn active_segment(&self) -> Option<&SegmentFiles> {
        self.segments.last()
    }

    /// Every segment except the active one.
    pub fn closed_segments(&self) -> &[SegmentFiles] {
        let n = self.segments.len().saturating_sub(1);
        &self.segments[..n]
    }

    /// True for `__cluster_metadata-0`, the KRaft metadata log.
    pub fn is_metadata_log(&self) -> bool {
        self.topic == "__cluster_metadata"
    }

    /// `(topic, partition)`.
    pub fn topic_partition(&self) -> TopicPartition {
        (self.topic.clone(), self.partition)
    }

    /// `topic-partition`, as the directory is named.
    pub fn name(&self) -> String {
        format!("{}-{}", self.topic, self.partition)
    }
}

/// A whole `log.dirs` entry.
#[derive(Debug, Clone)]
pub struct LogDirListing {
    /// The directory.
    pub path: PathBuf,
    /// `meta.properties`: `None` if absent, `Some(Err)` if unreadable.
    pub meta_properties: Option<std::result::Result<MetaProperties, FormatError>>,
    /// Root offset checkpoints.
    pub checkpoints: Checkpoints,
    /// `.kafka_cleanshutdown` exists: the last shutdown was clean (the broker deletes it
    /// at startup, so on a running broker's dir it is absent).
    pub clean_shutdown: bool,
    /// `.lock` exists. A hint only: the broker holds an OS lock on it while running, but the
    /// file itself stays after a crash or a stop, so its existence proves nothing.
    pub locked_hint: bool,
    /// Partition directories, sorted by (topic, partition).
    pub partitions: Vec<PartitionDir>,
    /// Directories and files left out (`-delete`, `-future`, `-stray` directories,
    /// unparsable directory names, transient root files), with the reason.
    pub skipped: Vec<Skipped>,
    /// Partition directories that could not be listed (an I/O error, a file in them that is
    /// not a regular file), with the error. Not in `partitions`: every caller must report
    /// them, never skip them silently.
    pub unreadable: Vec<Skipped>,
    /// Other root files (e.g. `bootstrap.checkpoint`, `quorum-state` in old layouts).
    pub other: Vec<PathBuf>,
}

impl LogDirListing {
    /// Every skipped entry, root-level and inside partitions (transient files, orphans).
    pub(crate) fn all_skipped(&self) -> impl Iterator<Item = &Skipped> {
        self.skipped.iter().chain(
            self.partitions
                .iter()
                .flat_map(|p| p.transient.iter().chain(p.orphans.iter())),
        )
    }
}

fn read_small(path: &Path) -> Result<Vec<u8>> {
    segvault_format::mapped::read_regular(path, MAX_TEXT_FILE).map_err(|e| match e.kind() {
        std::io::ErrorKind::InvalidData => Error::Unexpected {
            path: path.to_path_buf(),
            source: e,
        },
        _ => io_err(path, "a readable regular file")(e),
    })
}

/// Reads one root offset checkpoint file (`None` if absent).
pub fn read_checkpoint(path: &Path) -> Result<Checkpoint> {
    if !path.is_file() {
        return Ok(None);
    }
    let data = read_small(path)?;
    Ok(Some(parse_offset_checkpoint(&data).map(|entries| {
        entries
            .into_iter()
            .map(|e| ((e.topic.to_string(), e.partition), e.offset))
            .collect()
    })))
}

fn sorted_entries(dir: &Path) -> Result<Vec<fs::DirEntry>> {
    let rd = fs::read_dir(dir).map_err(io_err(dir, "a readable directory"))?;
    let mut v = rd
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(io_err(dir, "a readable directory"))?;
    v.sort_by_key(|e| e.file_name());
    Ok(v)
}

/// Lists a broker log directory. Reads only the small metadata files (checkpoints,
/// `meta.properties`, `partition.metadata`, `leader-epoch-checkpoint`); never segment data.
///
/// Fails if `path` is not a readable directory. A directory holding neither partition
/// directories nor any of the broker's root files is still listed (empty), so that callers
/// can decide whether that is an error.
pub fn scan(path: impl AsRef<Path>) -> Result<LogDirListing> {
    let path = path.as_ref();
    let md = fs::metadata(path).map_err(io_err(path, "an existing log directory"))?;
    if !md.is_dir() {
        return Err(Error::NotALogDir {
            path: path.to_path_buf(),
            message: "expected a broker log directory, found a file",
        });
    }
    let mut listing = LogDirListing {
        path: path.to_path_buf(),
        meta_properties: None,
        checkpoints: Checkpoints::default(),
        clean_shutdown: false,
        locked_hint: false,
        partitions: Vec::new(),
        skipped: Vec::new(),
        unreadable: Vec::new(),
        other: Vec::new(),
    };
    for entry in sorted_entries(path)? {
        let p = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let ft = entry.file_type().map_err(io_err(&p, "a file type"))?;
        if ft.is_dir() {
            match parse_partition_dir(&name) {
                Some(d) => {
                    let reason = match d.kind {
                        PartitionDirKind::Live => match scan_partition(&p, d.topic, d.partition) {
                            Ok(part) => {
                                listing.partitions.push(part);
                                continue;
                            }
                            // A running broker renames a partition's directory when the topic
                            // is deleted or the replica moves away: not an error of the scan.
                            Err(_) if !p.exists() => {
                                "a partition directory that vanished during the scan (deleted or moved by the broker)"
                            }
                            // One unreadable partition must not hide the others: it is listed
                            // as unreadable, and every caller reports it.
                            Err(e) => {
                                listing.unreadable.push(Skipped {
                                    path: p,
                                    reason: e.to_string(),
                                });
                                continue;
                            }
                        },
                        PartitionDirKind::Delete => {
                            "a -delete directory: the broker deletes it asynchronously"
                        }
                        PartitionDirKind::Stray => {
                            "a -stray directory: a log the broker set aside (KRaft stray detection), never served"
                        }
                        PartitionDirKind::Future => {
                            "a -future directory: the target of an intra-broker move in progress"
                        }
                    };
                    listing.skipped.push(Skipped {
                        path: p,
                        reason: reason.into(),
                    });
                }
                None => listing.skipped.push(Skipped {
                    path: p,
                    reason: format!(
                        "a directory whose name is not <topic>-<partition> ({name:?}); a broker refuses to load a log dir holding it{}",
                        if name == "remote-log-index-cache" { " (except this one, which it tolerates)" } else { "" }
                    ),
                }),
            }
            continue;
        }
        match parse_file_name(&name) {
            FileName::Known(k, None) => match k {
                KnownFile::MetaProperties => {
                    let data = read_small(&p)?;
                    listing.meta_properties = Some(parse_meta_properties(&data));
                }
                KnownFile::Lock => listing.locked_hint = true,
                KnownFile::CleanShutdown => listing.clean_shutdown = true,
                KnownFile::RecoveryPointCheckpoint => {
                    listing.checkpoints.recovery_point = read_checkpoint(&p)?
                }
                KnownFile::ReplicationOffsetCheckpoint => {
                    listing.checkpoints.replication_offset = read_checkpoint(&p)?
                }
                KnownFile::LogStartOffsetCheckpoint => {
                    listing.checkpoints.log_start_offset = read_checkpoint(&p)?
                }
                KnownFile::CleanerOffsetCheckpoint => {
                    listing.checkpoints.cleaner_offset = read_checkpoint(&p)?
                }
                _ => listing.other.push(p),
            },
            FileName::Known(_, Some(s)) => listing.skipped.push(Skipped {
                path: p,
                reason: format!(
                    "a {} file: an unfinished atomic write the broker discards",
                    s.as_str()
                ),
            }),
            _ => listing.other.push(p),
        }
    }
    listing
        .partitions
        .sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    Ok(listing)
}

/// Lists one partition directory (see [`PartitionDir`]).
pub fn scan_partition(path: &Path, topic: &str, partition: i32) -> Result<PartitionDir> {
    let mut pd = PartitionDir {
        topic: topic.to_string(),
        partition,
        path: path.to_path_buf(),
        topic_id: None,
        partition_metadata_error: None,
        leader_epochs: None,
        leader_epoch_error: None,
        segments: Vec::new(),
        snapshots: Vec::new(),
        kraft_snapshots: Vec::new(),
        transient: Vec::new(),
        orphans: Vec::new(),
        other: Vec::new(),
    };
    // base offset -> (log, index, timeindex, txnindex)
    type Parts = (
        Option<PathBuf>,
        Option<PathBuf>,
        Option<PathBuf>,
        Option<PathBuf>,
    );
    let mut by_base: BTreeMap<i64, Parts> = BTreeMap::new();
    for entry in sorted_entries(path)? {
        let p = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let ft = entry.file_type().map_err(io_err(&p, "a file type"))?;
        if ft.is_dir() {
            pd.other.push(p);
            continue;
        }
        match parse_file_name(&name) {
            FileName::Segment(s) => {
                if let Some(suffix) = s.suffix {
                    pd.transient.push(Skipped {
                        path: p,
                        reason: transient_reason(suffix.as_str()),
                    });
                    continue;
                }
                let slot = by_base.entry(s.offset).or_default();
                match s.kind {
                    SegmentFileKind::Log => slot.0 = Some(p),
                    SegmentFileKind::Index => slot.1 = Some(p),
                    SegmentFileKind::TimeIndex => slot.2 = Some(p),
                    SegmentFileKind::TxnIndex => slot.3 = Some(p),
                    SegmentFileKind::ProducerSnapshot => pd.snapshots.push((s.offset, p)),
                    SegmentFileKind::KraftSnapshot { epoch } => {
                        pd.kraft_snapshots.push((s.offset, epoch, p))
                    }
                }
            }
            FileName::Known(_, Some(suffix)) => pd.transient.push(Skipped {
                path: p,
                reason: transient_reason(suffix.as_str()),
            }),
            FileName::Known(KnownFile::PartitionMetadata, None) => {
                match parse_partition_metadata(&read_small(&p)?) {
                    Ok(id) => pd.topic_id = Some(id),
                    Err(e) => pd.partition_metadata_error = Some(e),
                }
            }
            FileName::Known(KnownFile::LeaderEpochCheckpoint, None) => {
                match parse_leader_epoch_checkpoint(&read_small(&p)?) {
                    Ok(v) => {
                        pd.leader_epochs =
                            Some(v.into_iter().map(|e| (e.epoch, e.start_offset)).collect())
                    }
                    Err(e) => pd.leader_epoch_error = Some(e),
                }
            }
            _ => pd.other.push(p),
        }
    }
    for (base, (log, index, timeindex, txnindex)) in by_base {
        match log {
            Some(log) => pd.segments.push(SegmentFiles {
                base_offset: base,
                log,
                index,
                timeindex,
                txnindex,
            }),
            None => {
                for p in [index, timeindex, txnindex].into_iter().flatten() {
                    pd.orphans.push(Skipped {
                        path: p,
                        reason: "an index without a .log of the same base offset: the broker deletes it at startup".into(),
                    });
                }
            }
        }
    }
    pd.snapshots.sort();
    pd.kraft_snapshots.sort();
    Ok(pd)
}

fn transient_reason(suffix: &str) -> String {
    match suffix {
        ".deleted" => "a .deleted file: retention or compaction removed it; the broker deletes it after file.delete.delay.ms or at startup".into(),
        ".cleaned" => "a .cleaned file: unfinished log-cleaner or split output, deleted at startup".into(),
        ".swap" => "a .swap file: a finished replacement awaiting rename; the broker completes or discards it at startup".into(),
        ".tmp" => "a .tmp file: an unfinished atomic write the broker discards".into(),
        ".part" => "a .part file: a KRaft snapshot still being written".into(),
        other => format!("a {other} file: transient"),
    }
}
