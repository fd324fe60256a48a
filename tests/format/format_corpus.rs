//! Conformance of the format layer against real broker files (Kafka 0.8 to 3.x) in
//! shared/kafka-corpus: every `.log` must agree with SEGMENTS.tsv, every record must
//! decode, and every other file must parse and agree with its segment.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::common::logdir;
use crate::common::paths::corpus;
use segvault_format::control::{decode_control_record, ControlRecord};
use segvault_format::index::{
    cross_check_offset_index, cross_check_time_index, parse_txn_index, BatchSpan, OffsetIndex,
    TimeIndex,
};
use segvault_format::internal::{
    parse_group_key, parse_offset_commit_value, parse_txn_key, parse_txn_value, GroupKey,
};
use segvault_format::kraft::{decode_metadata_record, parse_quorum_state};
use segvault_format::mapped::MappedFile;
use segvault_format::names::{parse_file_name, FileName, KnownFile, SegmentFileKind};
use segvault_format::snapshot::parse_producer_snapshot;
use segvault_format::text::{
    parse_clean_shutdown, parse_leader_epoch_checkpoint, parse_meta_properties,
    parse_offset_checkpoint, parse_partition_metadata,
};
use segvault_format::{log_entries, Batch, Limits, SegmentEnd};

/// What a walk over a segment found (the columns of SEGMENTS.tsv, plus deep counts).
#[derive(Debug, Default)]
struct Summary {
    magic: Option<u8>,
    first_base: Option<i64>,
    first_len: Option<usize>,
    leader_epoch: Option<Option<i32>>,
    batches: usize,
    codecs: BTreeSet<&'static str>,
    records: i64,
    last_offset: Option<i64>,
    txn: usize,
    ctrl: usize,
    pids: BTreeSet<i64>,
    crc_bad: usize,
    end: Option<SegmentEnd>,
    end_position: u64,
    /// Records counted through decompression (legacy wrappers expanded).
    deep_records: i64,
    deep_first_offset: Option<i64>,
    deep_last_offset: Option<i64>,
    /// Batch start position → (last offset, max timestamp).
    starts: BTreeMap<u64, (i64, Option<i64>)>,
    control_records: Vec<ControlRecord>,
}

/// Walks a segment, decoding every record; panics with context on any problem.
fn walk(name: &str, data: &[u8]) -> Summary {
    let mut s = Summary::default();
    let mut it = log_entries(data).without_crc_check();
    let topic_dir = Path::new(name)
        .parent()
        .and_then(|p| p.file_name())
        .and_then(|f| f.to_str())
        .unwrap_or("")
        .to_string();
    let mut prev_deep: Option<i64> = None;
    for b in it.by_ref() {
        if s.magic.is_none() {
            s.magic = Some(b.magic());
            s.first_base = Some(b.base_offset());
            s.first_len = Some(b.size() - 12);
            s.leader_epoch = Some(b.partition_leader_epoch());
        }
        s.batches += 1;
        s.codecs
            .insert(b.compression().expect("valid codec").name());
        s.records += b.shallow_record_count();
        s.last_offset = b.last_offset();
        s.txn += usize::from(b.is_transactional());
        s.ctrl += usize::from(b.is_control());
        if b.producer_id() >= 0 {
            s.pids.insert(b.producer_id());
        }
        s.crc_bad += usize::from(!b.crc_ok());
        s.starts
            .insert(b.position(), (b.last_offset().unwrap(), b.max_timestamp()));
        let mut deep = |off: i64, what: &str| {
            if let Some(p) = prev_deep {
                assert!(off > p, "{name}: {what} offset {off} after {p}");
            }
            prev_deep = Some(off);
            s.deep_first_offset.get_or_insert(off);
            s.deep_last_offset = Some(off);
            s.deep_records += 1;
        };
        match b {
            Batch::V2(batch) => {
                let mut recs = batch
                    .records_with_limits(Limits::default())
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                let mut n = 0;
                while let Some(r) = recs.next_record() {
                    let r = r.unwrap_or_else(|e| panic!("{name} batch at {}: {e}", batch.position));
                    let off = batch.record_offset(r.offset_delta).unwrap();
                    assert!(
                        off <= batch.last_offset().unwrap(),
                        "{name}: record beyond last offset"
                    );
                    assert!(batch.record_timestamp(r.timestamp_delta).is_some());
                    for h in r.headers() {
                        let _ = (h.key, h.value);
                    }
                    assert_eq!(r.headers().count() as u32, r.header_count());
                    if batch.header.attributes.is_control() {
                        let c = decode_control_record(r.key, r.value)
                            .unwrap_or_else(|e| panic!("{name}: control record: {e}"));
                        s.control_records.push(c);
                    } else {
                        decode_internal(name, &topic_dir, r.key, r.value);
                    }
                    deep(off, "record");
                    n += 1;
                }
                assert_eq!(n, batch.header.record_count, "{name}: records consumed");
            }
            Batch::Legacy(l) => {
                if l.is_compressed() {
                    let inner = l
                        .inner(Limits::default())
                        .unwrap_or_else(|e| panic!("{name} wrapper at {}: {e}", l.position));
                    assert!(!inner.is_empty());
                    let mut last = None;
                    for m in inner.iter() {
                        let m = m.unwrap_or_else(|e| panic!("{name}: inner: {e}"));
                        assert!(!m.entry.is_compressed());
                        deep(m.offset, "inner message");
                        last = Some(m.offset);
                    }
                    assert_eq!(last, Some(l.offset), "{name}: wrapper offset = last inner");
                } else {
                    deep(l.offset, "message");
                    decode_internal(name, &topic_dir, l.key, l.value);
                }
            }
        }
    }
    s.end = Some(it.finish());
    s.end_position = it.position();
    s
}

/// Decodes records of internal topics (by directory name).
fn decode_internal(name: &str, dir: &str, key: Option<&[u8]>, value: Option<&[u8]>) {
    if dir.starts_with("__consumer_offsets-") {
        let key = key.expect("offsets key");
        let k = parse_group_key(key).unwrap_or_else(|e| panic!("{name}: group key: {e}"));
        if let (GroupKey::OffsetCommit { .. }, Some(v)) = (k, value) {
            let c = parse_offset_commit_value(v).unwrap_or_else(|e| panic!("{name}: commit: {e}"));
            assert!(c.offset >= -1, "{name}: {c:?}");
        }
    } else if dir.starts_with("__transaction_state-") {
        let id = parse_txn_key(key.expect("txn key")).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!id.is_empty());
        if let Some(v) = value {
            let t = parse_txn_value(v).unwrap_or_else(|e| panic!("{name}: txn value: {e}"));
            assert!(t.producer_id >= 0, "{name}: {t:?}");
        }
    } else if dir.starts_with("__cluster_metadata-") {
        let r = decode_metadata_record(value.expect("metadata value"))
            .unwrap_or_else(|e| panic!("{name}: metadata record: {e}"));
        assert!(
            r.type_name.is_some(),
            "{name}: unknown metadata record type {}",
            r.api_key
        );
    }
}

#[test]
fn segments_match_segments_tsv() {
    let tsv = std::fs::read_to_string(corpus().join("SEGMENTS.tsv")).unwrap();
    let mut lines = tsv.lines();
    let header: Vec<&str> = lines.next().unwrap().split('\t').collect();
    assert_eq!(header[0], "file");
    let mut rows = 0;
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let c: Vec<&str> = line.split('\t').collect();
        assert_eq!(c.len(), 15, "{line}");
        let name = c[0];
        // SAFETY: the corpus files are read only; nothing modifies them while mapped.
        let data = unsafe { MappedFile::open(corpus().join(name)) }.unwrap();
        assert_eq!(data.len().to_string(), c[1], "{name}: size");
        let s = walk(name, &data);
        let n = |i: usize| c[i].parse::<i64>().unwrap();
        assert_eq!(s.magic.map(i64::from), Some(n(2)), "{name}: magic");
        assert_eq!(s.first_base, Some(n(3)), "{name}: first base offset");
        assert_eq!(
            s.first_len.map(|l| l as i64),
            Some(n(4)),
            "{name}: first batch length"
        );
        let epoch = s
            .leader_epoch
            .unwrap()
            .map_or("None".to_string(), |e| e.to_string());
        assert_eq!(epoch, c[5], "{name}: leader epoch");
        assert_eq!(s.batches as i64, n(6), "{name}: batches");
        assert_eq!(
            s.codecs.iter().copied().collect::<Vec<_>>().join(","),
            c[7],
            "{name}: codecs"
        );
        assert_eq!(s.records, n(8), "{name}: records*");
        assert_eq!(s.last_offset, Some(n(9)), "{name}: last offset");
        assert_eq!(s.txn as i64, n(10), "{name}: transactional batches");
        assert_eq!(s.ctrl as i64, n(11), "{name}: control batches");
        assert_eq!(s.pids.len() as i64, n(12), "{name}: producer ids");
        assert_eq!(s.crc_bad as i64, n(13), "{name}: CRC failures");
        assert_eq!(s.end, Some(SegmentEnd::Clean), "{name}: end");
        assert_eq!(
            data.len() as u64 - s.end_position,
            n(14) as u64,
            "{name}: trailing"
        );
        // The CRC-checking walk agrees.
        let mut strict = log_entries(&data);
        assert_eq!(strict.by_ref().count(), s.batches);
        assert_eq!(strict.finish(), SegmentEnd::Clean);
        // Deep iteration is consistent with the shallow view.
        assert_eq!(
            s.deep_last_offset,
            s.last_offset
                .filter(|_| s.magic != Some(2))
                .or(s.deep_last_offset)
        );
        if s.magic == Some(2) {
            assert_eq!(
                s.deep_records, s.records,
                "{name}: v2 deep count = header counts"
            );
        } else if s.codecs.contains("none") {
            assert_eq!(s.deep_records, s.records, "{name}: uncompressed legacy");
        } else {
            // Compressed legacy: the wrappers hold contiguous offsets from the first.
            let (first, last) = (s.deep_first_offset.unwrap(), s.deep_last_offset.unwrap());
            assert_eq!(
                s.deep_records,
                last - first + 1,
                "{name}: deep offsets contiguous"
            );
            assert!(s.deep_records > s.records);
        }
        if s.ctrl > 0 {
            assert!(!s.control_records.is_empty());
        }
        rows += 1;
    }
    assert!(rows >= 50, "only {rows} rows");
}

#[test]
fn compressed_hamlet_matches_uncompressed() {
    let deep = |dir: &str| {
        let name =
            format!("asayers_kafkalite/tests/test-data/fs-data/{dir}/00000000000000000000.log");
        // SAFETY: the corpus files are read only; nothing modifies them while mapped.
        let data = unsafe { MappedFile::open(corpus().join(&name)) }.unwrap();
        let s = walk(&name, &data);
        (s.deep_records, s.deep_first_offset, s.deep_last_offset)
    };
    let none = deep("hamlet-none-0");
    assert_eq!(none, (5382, Some(0), Some(5381)));
    assert_eq!(deep("hamlet-gzip-0"), none);
    assert_eq!(deep("hamlet-snappy-0"), none);
}

#[test]
fn transactional_batch_and_commit_marker() {
    let name = "ItumelengMogase_Real-Time-Data-Pipeline-for-Patient-Admissions/kafka-data/_confluent-ksql-default__command_topic-0/00000000000000000000.log";
    // SAFETY: the corpus files are read only; nothing modifies them while mapped.
    let data = unsafe { MappedFile::open(corpus().join(name)) }.unwrap();
    let s = walk(name, &data);
    assert_eq!(s.control_records.len(), 1);
    assert!(matches!(
        s.control_records[0],
        ControlRecord::EndTxn {
            commit: true,
            version: 0,
            ..
        }
    ));
}

fn spans(name: &str, log: &[u8]) -> Vec<BatchSpan> {
    let w = walk(name, log);
    w.starts
        .iter()
        .map(|(&position, &(last_offset, max_timestamp))| BatchSpan {
            position,
            last_offset,
            max_timestamp,
        })
        .collect()
}

#[test]
// Over 120 lines on purpose: one walk over every corpus file, a branch per file kind.
fn every_other_file_parses_and_indexes_match_their_logs() {
    let root = corpus();
    let all = logdir::walk(&root);
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut index_entries_checked = 0usize;
    let mut time_entries_checked = 0usize;
    for path in &all {
        let rel = path
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .to_string();
        let fname = path.file_name().unwrap().to_str().unwrap();
        if rel == "README.md" || rel == "MANIFEST.tsv" || rel == "SEGMENTS.tsv" {
            continue;
        }
        // SAFETY: the corpus files are read only; nothing modifies them while mapped.
        let data = unsafe { MappedFile::open(path) }.unwrap();
        let kind = parse_file_name(fname);
        *seen
            .entry(
                format!("{kind:?}").split('(').next().unwrap().to_string()
                    + match kind {
                        FileName::Segment(s) => match s.kind {
                            SegmentFileKind::Log => ":log",
                            SegmentFileKind::Index => ":index",
                            SegmentFileKind::TimeIndex => ":timeindex",
                            SegmentFileKind::TxnIndex => ":txnindex",
                            SegmentFileKind::ProducerSnapshot => ":snapshot",
                            SegmentFileKind::KraftSnapshot { .. } => ":kraft",
                        },
                        _ => "",
                    },
            )
            .or_default() += 1;
        let log_of = |base: i64| {
            let log = path.with_file_name(format!("{base:020}.log"));
            // SAFETY: the corpus files are read only; nothing modifies them while mapped.
            log.exists()
                .then(|| unsafe { MappedFile::open(log) }.unwrap())
        };
        match kind {
            FileName::Segment(s) => {
                assert!(s.canonical && s.suffix.is_none(), "{rel}");
                match s.kind {
                    SegmentFileKind::Log => {
                        let w = walk(&rel, &data);
                        assert_eq!(w.end, Some(SegmentEnd::Clean), "{rel}");
                        assert_eq!(w.crc_bad, 0, "{rel}");
                    }
                    SegmentFileKind::Index => {
                        let idx = OffsetIndex::parse(&data, s.offset);
                        idx.check().unwrap_or_else(|e| panic!("{rel}: {e}"));
                        idx.kafka_sanity_check()
                            .unwrap_or_else(|e| panic!("{rel}: {e}"));
                        assert!(idx.tail_all_zero, "{rel}");
                        if let Some(log) = log_of(s.offset) {
                            let spans = spans(&rel, &log);
                            index_entries_checked += cross_check_offset_index(&idx, &spans)
                                .unwrap_or_else(|e| panic!("{rel}: {e}"));
                        }
                    }
                    SegmentFileKind::TimeIndex => {
                        let ti = TimeIndex::parse(&data, s.offset);
                        ti.check().unwrap_or_else(|e| panic!("{rel}: {e}"));
                        assert!(ti.tail_all_zero, "{rel}");
                        if ti.tail_entries == 0 {
                            ti.kafka_sanity_check()
                                .unwrap_or_else(|e| panic!("{rel}: {e}"));
                        }
                        if let Some(log) = log_of(s.offset) {
                            let spans = spans(&rel, &log);
                            time_entries_checked += cross_check_time_index(&ti, &spans)
                                .unwrap_or_else(|e| panic!("{rel}: {e}"));
                        }
                    }
                    SegmentFileKind::TxnIndex => {
                        parse_txn_index(&data).unwrap_or_else(|e| panic!("{rel}: {e}"));
                    }
                    SegmentFileKind::ProducerSnapshot => {
                        let snap =
                            parse_producer_snapshot(&data).unwrap_or_else(|e| panic!("{rel}: {e}"));
                        for e in &snap.entries {
                            assert!(
                                e.producer_id >= 0 && e.last_offset < s.offset,
                                "{rel}: {e:?}"
                            );
                        }
                    }
                    SegmentFileKind::KraftSnapshot { .. } => {
                        let w = walk(&rel, &data);
                        assert_eq!(w.end, Some(SegmentEnd::Clean), "{rel}");
                        assert_eq!(w.crc_bad, 0, "{rel}");
                        assert!(
                            matches!(
                                w.control_records.first(),
                                Some(ControlRecord::SnapshotHeader { .. })
                            ),
                            "{rel}: {:?}",
                            w.control_records.first()
                        );
                        assert!(
                            matches!(
                                w.control_records.last(),
                                Some(ControlRecord::SnapshotFooter { .. })
                            ),
                            "{rel}"
                        );
                        // A snapshot named N holds offsets below N.
                        assert!(w.last_offset.unwrap() < s.offset, "{rel}");
                    }
                }
            }
            FileName::Known(k, None) => match k {
                KnownFile::MetaProperties => {
                    let m = parse_meta_properties(&data).unwrap_or_else(|e| panic!("{rel}: {e}"));
                    assert!(m.node_id.is_some(), "{rel}");
                    if m.version == 1 {
                        assert!(m.directory_id.is_some(), "{rel}");
                    }
                }
                KnownFile::RecoveryPointCheckpoint
                | KnownFile::LogStartOffsetCheckpoint
                | KnownFile::ReplicationOffsetCheckpoint
                | KnownFile::CleanerOffsetCheckpoint => {
                    parse_offset_checkpoint(&data).unwrap_or_else(|e| panic!("{rel}: {e}"));
                }
                KnownFile::LeaderEpochCheckpoint => {
                    let e = parse_leader_epoch_checkpoint(&data)
                        .unwrap_or_else(|e| panic!("{rel}: {e}"));
                    assert!(
                        e.windows(2)
                            .all(|w| w[0].epoch < w[1].epoch
                                && w[0].start_offset <= w[1].start_offset),
                        "{rel}"
                    );
                }
                KnownFile::PartitionMetadata => {
                    let id =
                        parse_partition_metadata(&data).unwrap_or_else(|e| panic!("{rel}: {e}"));
                    assert_eq!(
                        segvault_format::text::write_partition_metadata(&id).as_bytes(),
                        &data[..],
                        "{rel}"
                    );
                }
                KnownFile::QuorumState => {
                    let q = parse_quorum_state(&data).unwrap_or_else(|e| panic!("{rel}: {e}"));
                    assert!(q.leader_epoch.is_some(), "{rel}");
                }
                KnownFile::CleanShutdown => {
                    parse_clean_shutdown(&data).unwrap_or_else(|e| panic!("{rel}: {e}"));
                }
                KnownFile::BootstrapCheckpoint => {
                    let w = walk(&rel, &data);
                    assert_eq!(w.end, Some(SegmentEnd::Clean), "{rel}");
                    assert_eq!(w.crc_bad, 0, "{rel}");
                    assert!(w.batches > 0, "{rel}");
                }
                KnownFile::Lock => {}
            },
            other => panic!("{rel}: unrecognised file name ({other:?})"),
        }
    }
    eprintln!("{seen:?}; {index_entries_checked} index and {time_entries_checked} time index entries cross-checked");
    for kind in [
        "Segment:index",
        "Segment:timeindex",
        "Segment:snapshot",
        "Segment:kraft",
        "Known",
    ] {
        assert!(
            seen.get(kind).copied().unwrap_or(0) > 0,
            "no {kind} files: {seen:?}"
        );
    }
    assert!(index_entries_checked >= 50, "{index_entries_checked}");
    assert!(time_entries_checked >= 50, "{time_entries_checked}");
}

#[test]
fn checkpoint_writers_reproduce_corpus_files() {
    let root = corpus();
    let all = logdir::walk(&root);
    let mut n = 0;
    for path in all {
        let fname = path.file_name().unwrap().to_str().unwrap().to_string();
        let data = std::fs::read(&path).unwrap();
        if data.is_empty() {
            continue;
        }
        match fname.as_str() {
            "recovery-point-offset-checkpoint"
            | "replication-offset-checkpoint"
            | "log-start-offset-checkpoint"
            | "cleaner-offset-checkpoint" => {
                let e = parse_offset_checkpoint(&data).unwrap();
                assert_eq!(
                    segvault_format::text::write_offset_checkpoint(&e).as_bytes(),
                    &data[..],
                    "{path:?}"
                );
                n += 1;
            }
            "leader-epoch-checkpoint" => {
                let e = parse_leader_epoch_checkpoint(&data).unwrap();
                assert_eq!(
                    segvault_format::text::write_leader_epoch_checkpoint(&e).as_bytes(),
                    &data[..],
                    "{path:?}"
                );
                n += 1;
            }
            _ => {}
        }
    }
    assert!(n > 30, "{n}");
}
