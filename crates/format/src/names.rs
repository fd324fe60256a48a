//! File and directory names of a log directory, classified without touching the files.
//!
//! Segment files are `<base offset, 20 digits>.<ext>`; KRaft snapshots are
//! `<end offset, 20 digits>-<epoch, 10 digits>.checkpoint`; transient suffixes
//! (`.deleted`, `.cleaned`, `.swap`, `.tmp`, and `.part` for KRaft snapshots being written)
//! are appended to the full name. Partition directories are `<topic>-<partition>`, split at
//! the last `-`, or `<topic>-<partition>.<32 hex><-delete|-stray|-future>`.

/// What a segment-family file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SegmentFileKind {
    /// `.log`: record batches.
    Log,
    /// `.index`: offset index.
    Index,
    /// `.timeindex`: time index.
    TimeIndex,
    /// `.txnindex`: aborted transactions.
    TxnIndex,
    /// `.snapshot`: producer state for offsets below the name's offset.
    ProducerSnapshot,
    /// `<offset>-<epoch>.checkpoint`: KRaft snapshot (record batches).
    KraftSnapshot {
        /// The snapshot's epoch.
        epoch: i32,
    },
}

/// A transient suffix appended to a file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransientSuffix {
    /// Awaiting deletion (`file.delete.delay.ms`).
    Deleted,
    /// Cleaner/split output in progress.
    Cleaned,
    /// Finished replacement awaiting rename.
    Swap,
    /// Atomic write in progress.
    Tmp,
    /// KRaft snapshot being written (`.checkpoint.part`).
    Part,
}

impl TransientSuffix {
    /// The suffix text, dot included.
    pub fn as_str(self) -> &'static str {
        match self {
            TransientSuffix::Deleted => ".deleted",
            TransientSuffix::Cleaned => ".cleaned",
            TransientSuffix::Swap => ".swap",
            TransientSuffix::Tmp => ".tmp",
            TransientSuffix::Part => ".part",
        }
    }
}

/// A parsed segment-family file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SegmentFileName {
    /// The offset in the name (segment base offset, snapshot offset, KRaft end offset).
    pub offset: i64,
    /// File kind.
    pub kind: SegmentFileKind,
    /// Transient suffix, if any.
    pub suffix: Option<TransientSuffix>,
    /// True if the offset has Kafka's 20 digits (and the epoch 10); Kafka itself parses
    /// any digit string.
    pub canonical: bool,
}

/// Other files with a fixed name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KnownFile {
    /// `meta.properties`.
    MetaProperties,
    /// `.lock`.
    Lock,
    /// `.kafka_cleanshutdown`.
    CleanShutdown,
    /// `recovery-point-offset-checkpoint`.
    RecoveryPointCheckpoint,
    /// `log-start-offset-checkpoint`.
    LogStartOffsetCheckpoint,
    /// `replication-offset-checkpoint`.
    ReplicationOffsetCheckpoint,
    /// `cleaner-offset-checkpoint`.
    CleanerOffsetCheckpoint,
    /// `bootstrap.checkpoint` (KRaft bootstrap records, batch format).
    BootstrapCheckpoint,
    /// `leader-epoch-checkpoint`.
    LeaderEpochCheckpoint,
    /// `partition.metadata`.
    PartitionMetadata,
    /// `quorum-state` (KRaft, JSON).
    QuorumState,
}

/// Any file name of a log directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileName {
    /// A segment-family file.
    Segment(SegmentFileName),
    /// A fixed-name file, possibly with a transient suffix (e.g. `partition.metadata.tmp`).
    Known(KnownFile, Option<TransientSuffix>),
    /// Anything else.
    Unknown,
}

fn digits(s: &str) -> Option<i64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<i64>().ok()
}

fn strip_suffix(name: &str) -> (&str, Option<TransientSuffix>) {
    for s in [
        TransientSuffix::Deleted,
        TransientSuffix::Cleaned,
        TransientSuffix::Swap,
        TransientSuffix::Tmp,
        TransientSuffix::Part,
    ] {
        if let Some(stem) = name.strip_suffix(s.as_str()) {
            return (stem, Some(s));
        }
    }
    (name, None)
}

/// Formats a segment base offset as Kafka does (20 digits, zero-padded).
pub fn offset_prefix(offset: i64) -> String {
    format!("{offset:020}")
}

/// The name of a segment-family file.
pub fn segment_file_name(offset: i64, kind: SegmentFileKind) -> String {
    match kind {
        SegmentFileKind::Log => format!("{offset:020}.log"),
        SegmentFileKind::Index => format!("{offset:020}.index"),
        SegmentFileKind::TimeIndex => format!("{offset:020}.timeindex"),
        SegmentFileKind::TxnIndex => format!("{offset:020}.txnindex"),
        SegmentFileKind::ProducerSnapshot => format!("{offset:020}.snapshot"),
        SegmentFileKind::KraftSnapshot { epoch } => format!("{offset:020}-{epoch:010}.checkpoint"),
    }
}

/// Classifies a file name.
pub fn parse_file_name(name: &str) -> FileName {
    let (stem, suffix) = strip_suffix(name);
    let known = match stem {
        "meta.properties" => Some(KnownFile::MetaProperties),
        ".lock" => Some(KnownFile::Lock),
        ".kafka_cleanshutdown" => Some(KnownFile::CleanShutdown),
        "recovery-point-offset-checkpoint" => Some(KnownFile::RecoveryPointCheckpoint),
        "log-start-offset-checkpoint" => Some(KnownFile::LogStartOffsetCheckpoint),
        "replication-offset-checkpoint" => Some(KnownFile::ReplicationOffsetCheckpoint),
        "cleaner-offset-checkpoint" => Some(KnownFile::CleanerOffsetCheckpoint),
        "bootstrap.checkpoint" => Some(KnownFile::BootstrapCheckpoint),
        "leader-epoch-checkpoint" => Some(KnownFile::LeaderEpochCheckpoint),
        "partition.metadata" => Some(KnownFile::PartitionMetadata),
        "quorum-state" => Some(KnownFile::QuorumState),
        _ => None,
    };
    if let Some(k) = known {
        return FileName::Known(k, suffix);
    }
    let Some((prefix, ext)) = stem.split_once('.') else {
        return FileName::Unknown;
    };
    let kind_plain = match ext {
        "log" => Some(SegmentFileKind::Log),
        "index" => Some(SegmentFileKind::Index),
        "timeindex" => Some(SegmentFileKind::TimeIndex),
        "txnindex" => Some(SegmentFileKind::TxnIndex),
        "snapshot" => Some(SegmentFileKind::ProducerSnapshot),
        _ => None,
    };
    if let Some(kind) = kind_plain {
        if let Some(offset) = digits(prefix) {
            return FileName::Segment(SegmentFileName {
                offset,
                kind,
                suffix,
                canonical: prefix.len() == 20,
            });
        }
        return FileName::Unknown;
    }
    if ext == "checkpoint" {
        if let Some((o, e)) = prefix.split_once('-') {
            if let (Some(offset), Some(epoch)) = (digits(o), digits(e)) {
                if let Ok(epoch) = i32::try_from(epoch) {
                    return FileName::Segment(SegmentFileName {
                        offset,
                        kind: SegmentFileKind::KraftSnapshot { epoch },
                        suffix,
                        canonical: o.len() == 20 && e.len() == 10,
                    });
                }
            }
        }
    }
    FileName::Unknown
}

/// What kind of partition directory a name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PartitionDirKind {
    /// A live partition `<topic>-<partition>`.
    Live,
    /// `-delete`: awaiting asynchronous deletion.
    Delete,
    /// `-stray`: not served (KRaft stray detection).
    Stray,
    /// `-future`: intra-broker move target.
    Future,
}

/// A parsed partition directory name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PartitionDirName<'a> {
    /// Topic (possibly truncated for `-delete`/`-stray`).
    pub topic: &'a str,
    /// Partition number.
    pub partition: i32,
    /// Kind.
    pub kind: PartitionDirKind,
}

/// Parses a partition directory name; `None` if it is not one (Kafka aborts log loading
/// on such a directory, except `remote-log-index-cache`).
pub fn parse_partition_dir(name: &str) -> Option<PartitionDirName<'_>> {
    let (base, kind) = [
        ("-delete", PartitionDirKind::Delete),
        ("-stray", PartitionDirKind::Stray),
        ("-future", PartitionDirKind::Future),
    ]
    .iter()
    .find_map(|(s, k)| {
        let stem = name.strip_suffix(s)?;
        let (base, uuid) = stem.rsplit_once('.')?;
        (uuid.len() == 32 && uuid.bytes().all(|b| b.is_ascii_hexdigit())).then_some((base, *k))
    })
    .unwrap_or((name, PartitionDirKind::Live));
    let (topic, partition) = base.rsplit_once('-')?;
    if topic.is_empty() || partition.is_empty() || !partition.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(PartitionDirName {
        topic,
        partition: partition.parse().ok()?,
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names() {
        let n = parse_file_name("00000000000000030626.timeindex");
        assert_eq!(
            n,
            FileName::Segment(SegmentFileName {
                offset: 30626,
                kind: SegmentFileKind::TimeIndex,
                suffix: None,
                canonical: true
            })
        );
        assert_eq!(
            segment_file_name(30626, SegmentFileKind::TimeIndex),
            "00000000000000030626.timeindex"
        );
        match parse_file_name("00000000000000000000.log.swap") {
            FileName::Segment(s) => assert_eq!(s.suffix, Some(TransientSuffix::Swap)),
            o => panic!("{o:?}"),
        }
        match parse_file_name("00000000000000021265-0000000006.checkpoint") {
            FileName::Segment(s) => {
                assert_eq!(s.offset, 21265);
                assert_eq!(s.kind, SegmentFileKind::KraftSnapshot { epoch: 6 });
            }
            o => panic!("{o:?}"),
        }
        assert_eq!(
            segment_file_name(21265, SegmentFileKind::KraftSnapshot { epoch: 6 }),
            "00000000000000021265-0000000006.checkpoint"
        );
        assert_eq!(
            parse_file_name("partition.metadata.tmp"),
            FileName::Known(KnownFile::PartitionMetadata, Some(TransientSuffix::Tmp))
        );
        assert_eq!(
            parse_file_name("bootstrap.checkpoint"),
            FileName::Known(KnownFile::BootstrapCheckpoint, None)
        );
        assert_eq!(parse_file_name("abc.log"), FileName::Unknown);
        assert_eq!(
            parse_file_name("99999999999999999999.log"),
            FileName::Unknown
        );
    }

    #[test]
    fn partition_dirs() {
        assert_eq!(
            parse_partition_dir("__consumer_offsets-13"),
            Some(PartitionDirName {
                topic: "__consumer_offsets",
                partition: 13,
                kind: PartitionDirKind::Live
            })
        );
        assert_eq!(
            parse_partition_dir("my-topic-x-2").unwrap().topic,
            "my-topic-x"
        );
        let d = parse_partition_dir("foo-0.0123456789abcdef0123456789abcdef-delete").unwrap();
        assert_eq!(
            (d.topic, d.partition, d.kind),
            ("foo", 0, PartitionDirKind::Delete)
        );
        assert!(parse_partition_dir("lost+found").is_none());
        assert!(parse_partition_dir("foo-").is_none());
    }
}
