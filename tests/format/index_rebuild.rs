//! Rebuilt indexes against the broker's own files.
//!
//! Requirement (restore): rebuilt `.index`, `.timeindex` and `.txnindex` are byte-identical to
//! what the broker writes for the same log. Checked here against:
//! - every segment of both fixture trees' `clean/` copies (Kafka 3.9.2 and 4.3.1, single
//!   node, trimmed indexes), including the pre-compaction segments the cleaner left as
//!   `*.deleted`, and the cleaner's own output segment;
//! - every `.txnindex` there, walking each partition from its first segment, and again from
//!   every producer snapshot at a segment base (the seeded start a partial restore uses);
//! - every corpus segment with index files beside it, where each mismatch is classified and
//!   the classes are asserted (see `corpus_segments`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::common::paths;
use proptest::prelude::*;
use segvault_format::encode::{encode_batch, encode_legacy, BatchSpec, LegacySpec, RecordSpec};
use segvault_format::index::{parse_txn_index, OffsetIndex, TimeIndex};
use segvault_format::index_build::{
    build_indexes, build_indexes_in_appends, build_txn_indexes, encode_txn_index, IndexBuilder,
    SegmentIndexes, TxnIndexBuilder, DEFAULT_INDEX_INTERVAL_BYTES,
};
use segvault_format::mapped::MappedFile;
use segvault_format::snapshot::parse_producer_snapshot;
use segvault_format::{log_entries, ErrorKind};

const INTERVAL: u32 = DEFAULT_INDEX_INTERVAL_BYTES;

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Reads `p`, or empty if it does not exist (the broker writes no `.txnindex` without
/// aborted transactions).
fn read_or_empty(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_default()
}

/// Segments of a partition dir whose `.log` name ends in `log_suffix` (`.log` or
/// `.log.deleted`), by base offset: base → path of the `.log` without the suffix.
fn segments(dir: &Path, log_suffix: &str) -> BTreeMap<i64, PathBuf> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        if let Some(stem) = name.strip_suffix(log_suffix) {
            if stem.len() == 20 {
                if let Ok(base) = stem.parse::<i64>() {
                    out.insert(base, dir.join(stem));
                }
            }
        }
    }
    out
}

fn with_ext(stem: &Path, ext: &str) -> PathBuf {
    let mut s = stem.as_os_str().to_owned();
    s.push(ext);
    PathBuf::from(s)
}

/// Partition directories (those holding a `.log`) under `root`, recursively.
fn partition_dirs(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let mut has_log = false;
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else if e.file_name().to_string_lossy().ends_with(".log") {
                has_log = true;
            }
        }
        if has_log {
            out.push(d);
        }
    }
    out.sort();
    out
}

/// Both fixture versions' directories: exactly two.
fn fixture_versions() -> Vec<PathBuf> {
    let v = paths::fixture_versions();
    assert_eq!(v.len(), 2, "{v:?}");
    v
}

/// Rebuilds one segment's indexes and compares them with the files beside it
/// (`ext_suffix` is appended to each index extension: "" or ".deleted").
fn compare_segment(stem: &Path, base: i64, suffix: &str) -> Result<SegmentIndexes, String> {
    // SAFETY: a fixture copy of this test's own; nothing modifies it while mapped.
    let log = unsafe { MappedFile::open(with_ext(stem, &format!(".log{suffix}"))) }.unwrap();
    let built =
        build_indexes(&log, base, INTERVAL).map_err(|e| format!("{}: {e}", stem.display()))?;
    let idx = read(&with_ext(stem, &format!(".index{suffix}")));
    let tidx = read(&with_ext(stem, &format!(".timeindex{suffix}")));
    if built.offset_index != idx || built.time_index != tidx {
        return Err(format!(
            "{}{suffix}: offset index {} bytes (broker {}), time index {} bytes (broker {})",
            stem.display(),
            built.offset_index.len(),
            idx.len(),
            built.time_index.len(),
            tidx.len()
        ));
    }
    Ok(built)
}

/// Every segment of both fixture trees, live and `.deleted`: byte-identical.
#[test]
fn fixture_offset_and_time_indexes_are_byte_identical() {
    for v in fixture_versions() {
        let clean = v.join("clean");
        let (mut segs, mut nonempty_idx, mut nonempty_tidx) = (0, 0, 0);
        let mut problems = Vec::new();
        for dir in partition_dirs(&clean) {
            for suffix in ["", ".deleted"] {
                for (base, stem) in segments(&dir, &format!(".log{suffix}")) {
                    match compare_segment(&stem, base, suffix) {
                        Ok(b) => {
                            segs += 1;
                            nonempty_idx += usize::from(!b.offset_index.is_empty());
                            nonempty_tidx += usize::from(!b.time_index.is_empty());
                        }
                        Err(e) => problems.push(e),
                    }
                }
            }
        }
        assert!(problems.is_empty(), "{}: {problems:#?}", v.display());
        eprintln!(
            "{}: {segs} segments byte-identical ({nonempty_idx} non-empty .index, \
             {nonempty_tidx} non-empty .timeindex)",
            v.display()
        );
        // 43 (3.9.2) or 42 (4.3.1) live segments, plus the compacted partition's 14 or 13
        // `.deleted` sources.
        assert!(segs >= 50, "{segs}");
        assert_eq!(
            nonempty_idx, 2,
            "__cluster_metadata-0 and __transaction_state-0"
        );
    }
}

/// The cleaner writes its output segment in appends of whole filtered buffers (at least
/// one per source segment), not per batch. The fixture's cleaned segments are smaller than
/// `index.interval.bytes`, so no append crosses the interval and per batch matches anyway;
/// grouping by source segment (the `.deleted` files) matches too, as it must.
#[test]
fn fixture_cleaned_segment_matches_per_batch_and_per_source_segment() {
    for v in fixture_versions() {
        let dir = v.join("clean/compacted-0");
        let sources = segments(&dir, ".log.deleted");
        assert!(sources.len() > 5, "{}", dir.display());
        let cleaned = segments(&dir, ".log");
        let (&base, stem) = cleaned.iter().next().unwrap();
        let log = read(&with_ext(stem, ".log"));
        // Position where the first retained batch of each source segment lands.
        let bounds: Vec<i64> = sources.keys().copied().collect();
        let mut starts = Vec::new();
        let mut seen_source = None;
        for b in log_entries(&log) {
            let src = bounds.iter().rposition(|&s| s <= b.base_offset());
            if src != seen_source {
                starts.push(b.position());
                seen_source = src;
            }
        }
        let grouped = build_indexes_in_appends(&log, base, INTERVAL, &starts).unwrap();
        let per_batch = build_indexes(&log, base, INTERVAL).unwrap();
        assert_eq!(grouped, per_batch);
        assert_eq!(
            per_batch.time_index,
            read(&with_ext(stem, ".timeindex")),
            "{}",
            stem.display()
        );
        assert!(per_batch.offset_index.is_empty());
        assert!(log.len() < INTERVAL as usize);
    }
}

/// Every partition's `.txnindex` files, walking from the first segment with no open
/// transactions; then again from every producer snapshot at a segment base.
#[test]
fn fixture_txn_indexes_are_byte_identical() {
    for v in fixture_versions() {
        let clean = v.join("clean");
        let (mut files, mut entries, mut seeded) = (0, 0, 0);
        for dir in partition_dirs(&clean) {
            let segs = segments(&dir, ".log");
            let logs: Vec<Vec<u8>> = segs.values().map(|s| read(&with_ext(s, ".log"))).collect();
            let bases: Vec<i64> = segs.keys().copied().collect();
            let stems: Vec<&PathBuf> = segs.values().collect();
            assert_eq!(bases[0], 0, "{}: the log starts at 0", dir.display());
            let built = build_txn_indexes(logs.iter().map(Vec::as_slice), TxnIndexBuilder::new())
                .unwrap_or_else(|(i, e)| panic!("{}: {e}", stems[i].display()));
            for (i, b) in built.iter().enumerate() {
                let want = read_or_empty(&with_ext(stems[i], ".txnindex"));
                assert_eq!(b, &want, "{}", stems[i].display());
                files += 1;
                entries += parse_txn_index(&want).unwrap().len();
            }
            // Seeded from the snapshot at each later segment base.
            for k in 1..bases.len() {
                let snap = with_ext(stems[k], ".snapshot");
                let Ok(data) = std::fs::read(&snap) else {
                    continue;
                };
                let snapshot = parse_producer_snapshot(&data).unwrap();
                let state = TxnIndexBuilder::from_snapshot(&snapshot.entries);
                let rebuilt = build_txn_indexes(logs[k..].iter().map(Vec::as_slice), state)
                    .unwrap_or_else(|(i, e)| panic!("{}: {e}", stems[k + i].display()));
                assert_eq!(rebuilt, built[k..].to_vec(), "{}", snap.display());
                seeded += 1;
            }
        }
        eprintln!(
            "{}: {files} segments' .txnindex byte-identical ({entries} aborted txns), \
             {seeded} seeded walks",
            v.display()
        );
        // txn-0 and txn-1: 4 aborted transactions each (every third of 12).
        assert_eq!(entries, 8, "{}", v.display());
    }
}

/// The snapshot seed matters: txn-0's second segment commits a transaction that began in
/// the first, and the aborts after it must not see it as still open.
#[test]
fn fixture_txn_seed_carries_open_transactions() {
    for v in fixture_versions() {
        let dir = v.join("clean/txn-0");
        let segs = segments(&dir, ".log");
        let (&base, stem) = segs.iter().nth(1).unwrap();
        let snap = parse_producer_snapshot(&read(&with_ext(stem, ".snapshot"))).unwrap();
        let state = TxnIndexBuilder::from_snapshot(&snap.entries);
        assert!(
            state.open_transactions().values().any(|&f| f < base),
            "{}: a transaction open across the roll",
            v.display()
        );
        let mut s = state.clone();
        let got = s.add_segment(&read(&with_ext(stem, ".log"))).unwrap();
        assert_eq!(encode_txn_index(&got), read(&with_ext(stem, ".txnindex")));
        assert!(s.open_transactions().is_empty());
    }
}

/// Fixture `live/` copies (taken file by file while the broker ran): closed segments are
/// byte-identical; each active segment's `.index`/`.timeindex` are preallocated (8192/8184
/// bytes) and hold the rebuilt entries, minus the roll/close time entry not yet written,
/// followed by zeros.
#[test]
fn fixture_live_copies_closed_identical_active_preallocated() {
    for v in fixture_versions() {
        let live = v.join("live");
        let (mut closed, mut active) = (0, 0);
        for dir in partition_dirs(&live) {
            let segs = segments(&dir, ".log");
            let last = *segs.keys().next_back().unwrap();
            for (base, stem) in segs {
                let idx = read(&with_ext(&stem, ".index"));
                let tidx = read(&with_ext(&stem, ".timeindex"));
                let log = read(&with_ext(&stem, ".log"));
                let b = build_indexes(&log, base, INTERVAL).unwrap();
                let name = stem.display();
                if base != last {
                    assert_eq!((&b.offset_index, &b.time_index), (&idx, &tidx), "{name}");
                    closed += 1;
                    continue;
                }
                assert_eq!((idx.len(), tidx.len()), (8192, 8184), "{name}");
                let mut want_t = b.time_index.clone();
                if b.close_time_entry {
                    want_t.truncate(want_t.len() - 12);
                }
                assert!(idx.starts_with(&b.offset_index), "{name}");
                assert!(
                    idx[b.offset_index.len()..].iter().all(|&x| x == 0),
                    "{name}"
                );
                assert!(tidx.starts_with(&want_t), "{name}");
                assert!(tidx[want_t.len()..].iter().all(|&x| x == 0), "{name}");
                active += 1;
            }
        }
        eprintln!(
            "{}: live copy: {closed} closed segments identical, {active} active preallocated",
            v.display()
        );
        assert!(closed > 20 && active > 15, "{closed} {active}");
    }
}

/// What a corpus segment's indexes are expected to be, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Per batch, byte-identical: a leader appending one batch per produce request.
    Identical,
    /// A single-node broker (cp-kafka, KRaft) stopped while this was its active segment and
    /// restarted between record times `RESTART_AFTER` and `RESTART_BEFORE`: the close (or
    /// recovery) time entry sits mid-file and the byte count restarted from 0 there.
    /// Byte-identical with [`IndexBuilder::reopen`] before the first batch after the restart.
    Reopened,
    /// `invoice-0` on `kafka-logs-1` (broker.id=1 of a multi-broker cluster): a follower,
    /// appending each replica fetch (many batches) at once; index entries pair an offset with
    /// the position of an earlier batch. Byte-identical when grouped into the appends the
    /// broker's own entries imply.
    FollowerAppends,
}

/// Bounds of the Itumeleng broker restart, from the record timestamps around the mid-file
/// time entries of its four segments: the last record before any of them, and the first
/// after.
const RESTART_AFTER: i64 = 1_728_589_170_952;
const RESTART_BEFORE: i64 = 1_728_590_357_628;

fn expect(name: &str) -> Expect {
    const REOPENED: [&str; 4] = [
        "__consumer_offsets-29/",
        "__consumer_offsets-37/",
        "/_schemas-0/",
        "docker-connect-configs-0/",
    ];
    if name.contains("invoice-0/") {
        Expect::FollowerAppends
    } else if name.starts_with("ItumelengMogase") && REOPENED.iter().any(|r| name.contains(r)) {
        Expect::Reopened
    } else {
        Expect::Identical
    }
}

/// Per batch, with a broker restart before the first batch whose max timestamp is at or
/// after `restart_before`.
fn build_with_restart(log: &[u8], base: i64, restart_before: i64) -> SegmentIndexes {
    let mut b = IndexBuilder::new(base, INTERVAL);
    let mut reopened = false;
    for batch in log_entries(log) {
        if !reopened && batch.max_timestamp().unwrap() >= restart_before {
            if b.log_bytes() > 0 {
                b.reopen().unwrap();
            }
            reopened = true;
        }
        b.append(std::slice::from_ref(&batch)).unwrap();
    }
    b.finish().unwrap()
}

/// The appends a broker index implies: each entry (offset O, position P) is an append
/// starting at P and ending with the batch whose last offset is O, so the next batch starts
/// another. Appends between those that got no entry are merged into one, which does not
/// change the result: none of them crossed the interval, and the max timestamp's offset is
/// the first batch to reach it either way.
fn appends_implied_by(log: &[u8], base: i64, idx: &[u8]) -> Vec<u64> {
    let batches: Vec<(u64, i64)> = log_entries(log)
        .map(|b| (b.position(), b.last_offset().unwrap()))
        .collect();
    let mut starts = Vec::new();
    for (rel, pos) in entries8(idx) {
        starts.push(pos as u64);
        let end = batches
            .iter()
            .position(|b| b.1 == base + i64::from(rel))
            .unwrap();
        if let Some(next) = batches.get(end + 1) {
            starts.push(next.0);
        }
    }
    starts.sort_unstable();
    starts.dedup();
    starts
}

/// Every corpus segment with `.index` and `.timeindex` beside it: each is byte-identical
/// per batch, or differs for the reason [`expect`] gives, and is byte-identical once that
/// reason is modelled.
#[test]
fn corpus_segments() {
    let root = paths::corpus();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut report = Vec::new();
    let mut problems = Vec::new();
    for dir in partition_dirs(&root) {
        for (base, stem) in segments(&dir, ".log") {
            let (i, t) = (with_ext(&stem, ".index"), with_ext(&stem, ".timeindex"));
            if !i.exists() || !t.exists() {
                continue;
            }
            // SAFETY: a fixture copy of this test's own; nothing modifies it while mapped.
            let log = unsafe { MappedFile::open(with_ext(&stem, ".log")) }.unwrap();
            let (idx, tidx) = (read(&i), read(&t));
            let name = stem
                .strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let per_batch = build_indexes(&log, base, INTERVAL).unwrap();
            let identical = per_batch.offset_index == idx && per_batch.time_index == tidx;
            let e = expect(&name);
            let modelled = match e {
                Expect::Identical => {
                    if name.starts_with("ItumelengMogase") {
                        // The same restart, applied to this broker's other segments,
                        // changes nothing: they were not appended to on both sides of it.
                        let r = build_with_restart(&log, base, RESTART_BEFORE);
                        assert_eq!(r, per_batch, "{name}");
                    }
                    per_batch.clone()
                }
                Expect::Reopened => {
                    // The restart lies between the two bounds: either gives the same files.
                    let a = build_with_restart(&log, base, RESTART_AFTER + 1);
                    let b = build_with_restart(&log, base, RESTART_BEFORE);
                    assert_eq!(a, b, "{name}");
                    a
                }
                Expect::FollowerAppends => {
                    let starts = appends_implied_by(&log, base, &idx);
                    build_indexes_in_appends(&log, base, INTERVAL, &starts).unwrap()
                }
            };
            let ok = modelled.offset_index == idx
                && modelled.time_index == tidx
                && (e == Expect::Identical) == identical;
            report.push(format!(
                "{name}: {e:?} {}; log {} bytes {} batches; .index {} bytes (per batch {}), \
                 .timeindex {} (per batch {})",
                if ok { "ok" } else { "MISMATCH" },
                per_batch.log_bytes,
                per_batch.batches,
                idx.len(),
                per_batch.offset_index.len(),
                tidx.len(),
                per_batch.time_index.len()
            ));
            if !ok {
                problems.push(name);
            }
            *counts.entry(format!("{e:?}")).or_default() += 1;
        }
    }
    eprintln!("{}\ncorpus: {counts:?}", report.join("\n"));
    assert!(problems.is_empty(), "{problems:#?}\n{report:#?}");
    let c = |k: &str| counts.get(k).copied().unwrap_or(0);
    assert_eq!(
        (c("Identical"), c("Reopened"), c("FollowerAppends")),
        (12, 4, 3),
        "{report:#?}"
    );
}

// ---------------------------------------------------------------------------------------
// Edge cases on synthetic logs.

fn batch(base_offset: i64, n: usize, ts: i64, value_len: usize) -> Vec<u8> {
    encode_batch(&BatchSpec {
        base_offset,
        base_timestamp: ts,
        records: (0..n)
            .map(|_| RecordSpec {
                value: Some(vec![7u8; value_len]),
                ..RecordSpec::default()
            })
            .collect(),
        ..BatchSpec::default()
    })
}

fn entries8(v: &[u8]) -> Vec<(i32, i32)> {
    v.chunks_exact(8)
        .map(|c| {
            (
                i32::from_be_bytes(c[0..4].try_into().unwrap()),
                i32::from_be_bytes(c[4..8].try_into().unwrap()),
            )
        })
        .collect()
}

fn entries12(v: &[u8]) -> Vec<(i64, i32)> {
    v.chunks_exact(12)
        .map(|c| {
            (
                i64::from_be_bytes(c[0..8].try_into().unwrap()),
                i32::from_be_bytes(c[8..12].try_into().unwrap()),
            )
        })
        .collect()
}

#[test]
fn empty_log_has_empty_indexes() {
    let b = build_indexes(&[], 500, INTERVAL).unwrap();
    assert_eq!(b, SegmentIndexes::default());
    assert!(build_txn_indexes([&[][..]], TxnIndexBuilder::new()).unwrap()[0].is_empty());
}

#[test]
fn one_batch_gets_only_the_final_time_entry() {
    let log = batch(100, 3, 1_000, 10_000);
    let b = build_indexes(&log, 100, INTERVAL).unwrap();
    assert!(
        b.offset_index.is_empty(),
        "the first batch is never indexed"
    );
    assert_eq!(entries12(&b.time_index), vec![(1_000, 2)]);
    assert_eq!((b.batches, b.last_offset), (1, Some(102)));
}

/// "More than" the interval: a gap of exactly `interval` bytes gives no entry; one byte more
/// does.
#[test]
fn interval_is_strictly_exceeded() {
    let one = batch(0, 1, 10, 0).len();
    // Batches of exactly `one` bytes; interval = 2 batches.
    let interval = (2 * one) as u32;
    let mut log = Vec::new();
    for i in 0..6 {
        log.extend(batch(i, 1, 10 + i, 0));
    }
    let b = build_indexes(&log, 0, interval).unwrap();
    // Entry before batch 3 (3 batches since the last), then before batch 6 (none).
    assert_eq!(entries8(&b.offset_index), vec![(3, 3 * one as i32)]);
    let b = build_indexes(&log, 0, interval - 1).unwrap();
    assert_eq!(
        entries8(&b.offset_index),
        vec![(2, 2 * one as i32), (4, 4 * one as i32)]
    );
    assert_eq!(
        entries12(&b.time_index),
        vec![(12, 2), (14, 4), (15, 5)],
        "time entries alongside, then the final one"
    );
    // Interval 0: every batch after the first.
    let b = build_indexes(&log, 0, 0).unwrap();
    assert_eq!(entries8(&b.offset_index).len(), 5);
}

#[test]
fn timestamps_going_down_keep_the_max() {
    let mut log = Vec::new();
    for (i, ts) in [500i64, 900, 300, 200, 900, 100].iter().enumerate() {
        log.extend(batch(i as i64 * 2, 2, *ts, 0));
    }
    let b = build_indexes(&log, 0, 0).unwrap();
    // Max 900 reached by the batch ending at 3 (offsets 2-3); a later equal max does not
    // move it, and the time index writes it once.
    assert_eq!(entries12(&b.time_index), vec![(900, 3)]);
    assert_eq!(
        entries8(&b.offset_index)
            .iter()
            .map(|e| e.0)
            .collect::<Vec<_>>(),
        vec![3, 5, 7, 9, 11]
    );
    // NO_TIMESTAMP batches never enter the time index.
    let log = [batch(0, 1, -1, 0), batch(1, 1, -1, 0)].concat();
    assert!(build_indexes(&log, 0, 0).unwrap().time_index.is_empty());
}

#[test]
fn legacy_magic_0_has_no_time_index_and_magic_1_has() {
    let msg = |offset: i64, magic: u8, timestamp: i64| {
        encode_legacy(&LegacySpec {
            offset,
            magic,
            timestamp,
            value: Some(vec![1u8; 3000]),
            ..LegacySpec::default()
        })
    };
    let v0: Vec<u8> = (0..4).flat_map(|o| msg(o, 0, 0)).collect();
    let b = build_indexes(&v0, 0, INTERVAL).unwrap();
    assert!(b.time_index.is_empty());
    let one = msg(0, 0, 0).len() as i32;
    assert_eq!(entries8(&b.offset_index), vec![(2, 2 * one)]);
    let v1: Vec<u8> = (0..4).flat_map(|o| msg(o, 1, 1000 + o)).collect();
    let b = build_indexes(&v1, 0, INTERVAL).unwrap();
    let one = msg(0, 1, 0).len() as i32;
    assert_eq!(entries8(&b.offset_index), vec![(2, 2 * one)]);
    assert_eq!(entries12(&b.time_index), vec![(1002, 2), (1003, 3)]);
}

/// Grouped appends (a follower or the cleaner): one entry check per append, the entry
/// pairing the append's last offset with its first position.
#[test]
fn grouped_appends_differ_from_per_batch() {
    let mut log = Vec::new();
    for i in 0..8 {
        log.extend(batch(i * 10, 10, 1000 + i * 10, 200));
    }
    let per_batch = build_indexes(&log, 0, INTERVAL).unwrap();
    let positions: Vec<u64> = log_entries(&log).map(|b| b.position()).collect();
    assert!(per_batch.offset_index.len() > 8);
    // Two appends of 4 batches: one check, at the second, indexed with its last offset 79
    // and its first position.
    let grouped = build_indexes_in_appends(&log, 0, INTERVAL, &[positions[4]]).unwrap();
    assert_eq!(
        entries8(&grouped.offset_index),
        vec![(79, positions[4] as i32)]
    );
    assert_eq!(entries12(&grouped.time_index), vec![(1070, 79)]);
    // Every position an append start: per batch.
    assert_eq!(
        build_indexes_in_appends(&log, 0, INTERVAL, &positions).unwrap(),
        per_batch
    );
    // A start inside a batch is an error.
    let e = build_indexes_in_appends(&log, 0, INTERVAL, &[positions[1] + 1]).unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadValue);
}

#[test]
fn bad_input_is_an_error_with_position_and_offset() {
    let mut log = batch(0, 2, 10, 5000);
    let second = log.len();
    log.extend(batch(2, 2, 20, 5000));
    // Partial tail.
    let e = build_indexes(&log[..log.len() - 3], 0, INTERVAL).unwrap_err();
    assert_eq!(
        (e.kind, e.position(), e.offset),
        (ErrorKind::Truncated, second as u64, Some(2))
    );
    // CRC.
    let mut bad = log.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    let e = build_indexes(&bad, 0, INTERVAL).unwrap_err();
    assert_eq!((e.kind, e.offset), (ErrorKind::Crc, Some(2)));
    // Offset below the base, and beyond base + i32::MAX.
    let e = build_indexes(&log, 2, INTERVAL).unwrap_err();
    assert_eq!((e.position(), e.offset), (0, Some(1)));
    let far = batch(i64::from(i32::MAX) + 1, 1, 0, 0);
    let e = build_indexes(&far, 0, INTERVAL).unwrap_err();
    assert_eq!(e.offset, Some(i64::from(i32::MAX) + 1));
    // Offsets going backwards where an entry is due.
    let back = [
        batch(10, 1, 0, 5000),
        batch(11, 1, 0, 10),
        batch(5, 1, 0, 10),
    ]
    .concat();
    let e = build_indexes(&back, 0, 0).unwrap_err();
    assert_eq!(e.offset, Some(5));
    // Appends must be contiguous.
    let mut b = IndexBuilder::new(0, INTERVAL);
    let batches: Vec<_> = log_entries(&log).collect();
    let e = b.append(&batches[1..]).unwrap_err();
    assert_eq!((e.position(), e.offset), (second as u64, Some(2)));
}

fn txn_batch(base: i64, pid: i64, n: usize) -> Vec<u8> {
    encode_batch(&BatchSpec {
        base_offset: base,
        producer_id: pid,
        attribute_flags: 1 << 4,
        records: (0..n).map(|_| RecordSpec::kv(b"k", b"v")).collect(),
        ..BatchSpec::default()
    })
}

fn marker(offset: i64, pid: i64, abort: bool) -> Vec<u8> {
    encode_batch(&BatchSpec {
        base_offset: offset,
        producer_id: pid,
        attribute_flags: (1 << 4) | (1 << 5),
        records: vec![RecordSpec {
            key: Some(vec![0, 0, 0, u8::from(!abort)]),
            value: Some(vec![0, 0, 0, 0, 0, 3]),
            ..RecordSpec::default()
        }],
        ..BatchSpec::default()
    })
}

#[test]
fn txn_index_last_stable_offset_and_carry_over() {
    // Segment 1: A opens at 0, B opens at 2, A aborts at 4 (LSO = B's start, 2).
    let s1 = [txn_batch(0, 7, 2), txn_batch(2, 8, 2), marker(4, 7, true)].concat();
    // Segment 2: C opens at 5, B aborts at 7 (LSO = C's 5); C commits at 8; A aborts an
    // empty transaction at 9 (no entry); C opens at 10 and aborts at 12 (LSO 13).
    let s2 = [
        txn_batch(5, 9, 2),
        marker(7, 8, true),
        marker(8, 9, false),
        marker(9, 7, true),
        txn_batch(10, 9, 2),
        marker(12, 9, true),
    ]
    .concat();
    let out = build_txn_indexes([&s1[..], &s2[..]], TxnIndexBuilder::new()).unwrap();
    let p = |v: &[u8]| {
        parse_txn_index(v)
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a.producer_id,
                    a.first_offset,
                    a.last_offset,
                    a.last_stable_offset,
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(p(&out[0]), vec![(7, 0, 4, 2)]);
    assert_eq!(p(&out[1]), vec![(8, 2, 7, 5), (9, 10, 12, 13)]);
    // Seeded with B open at 2 (as the snapshot at 5 says), segment 2 alone is the same.
    let mut seed = TxnIndexBuilder::new();
    seed.add_segment(&s1).unwrap();
    assert_eq!(
        seed.open_transactions().iter().collect::<Vec<_>>(),
        vec![(&8, &2)]
    );
    assert_eq!(build_txn_indexes([&s2[..]], seed).unwrap()[0], out[1]);
    // Without the seed B's abort is an empty transaction: no entry (why the seed matters).
    assert_eq!(
        p(&build_txn_indexes([&s2[..]], TxnIndexBuilder::new()).unwrap()[0]),
        vec![(9, 10, 12, 13)]
    );
    // A non-transactional batch from a producer with a transaction open.
    let bad = [txn_batch(0, 7, 1), batch(1, 1, 0, 0)].concat();
    let nontxn = BatchSpec {
        base_offset: 1,
        producer_id: 7,
        records: vec![RecordSpec::kv(b"k", b"v")],
        ..BatchSpec::default()
    };
    assert!(
        TxnIndexBuilder::new().add_segment(&bad).is_ok(),
        "no producer id"
    );
    let bad = [txn_batch(0, 7, 1), encode_batch(&nontxn)].concat();
    let (i, e) = build_txn_indexes([&bad[..]], TxnIndexBuilder::new()).unwrap_err();
    assert_eq!((i, e.offset), (0, Some(1)));
}

proptest! {
    /// For random batch sizes, timestamps and intervals, the built indexes satisfy Kafka's
    /// invariants and agree with an independent statement of the rules.
    #[test]
    fn random_logs_follow_the_rules(
        sizes in prop::collection::vec((1usize..5, 0usize..3000, -1i64..50), 0..40),
        interval in 0u32..10_000,
    ) {
        let mut log = Vec::new();
        let mut next = 1000i64;
        for (n, len, ts) in &sizes {
            log.extend(batch(next, *n, *ts, *len));
            next += *n as i64;
        }
        let built = build_indexes(&log, 1000, interval).unwrap();
        // Independent model.
        let (mut since, mut max, mut oi, mut ti) = (0u64, (-1i64, 1000i64), vec![], vec![]);
        let mut last_t = -1i64;
        for b in log_entries(&log) {
            let (lo, ts) = (b.last_offset().unwrap(), b.max_timestamp().unwrap());
            if ts > max.0 { max = (ts, lo); }
            if since > u64::from(interval) {
                oi.push(((lo - 1000) as i32, b.position() as i32));
                if max.0 > last_t { ti.push((max.0, (max.1 - 1000) as i32)); last_t = max.0; }
                since = 0;
            }
            since += b.size() as u64;
        }
        if max.0 > last_t { ti.push((max.0, (max.1 - 1000) as i32)); }
        prop_assert_eq!(entries8(&built.offset_index), oi);
        prop_assert_eq!(entries12(&built.time_index), ti);
        let oidx = OffsetIndex::parse(&built.offset_index, 1000);
        prop_assert!(oidx.check().is_ok());
        prop_assert!(TimeIndex::parse(&built.time_index, 1000).check().is_ok());
        // One append holding everything: never an offset entry.
        let all = build_indexes_in_appends(&log, 1000, interval, &[]).unwrap();
        prop_assert!(all.offset_index.is_empty());
        prop_assert_eq!(all.time_index.len(), if max.0 >= 0 { 12 } else { 0 });
    }

    /// Random garbage never panics.
    #[test]
    fn garbage_never_panics(data in prop::collection::vec(any::<u8>(), 0..400), base in any::<i64>()) {
        let _ = build_indexes(&data, base, INTERVAL);
        let _ = TxnIndexBuilder::new().add_segment(&data);
    }
}

#[test]
fn stable_end_is_where_no_transaction_was_open() {
    let state = |segs: &[&[u8]]| {
        let mut b = TxnIndexBuilder::new();
        for s in segs {
            b.add_segment(s).unwrap();
        }
        b
    };
    // Nothing open: the whole log is stable.
    let done = [txn_batch(0, 7, 2), marker(2, 7, false)].concat();
    assert_eq!(state(&[&done]).stable_end(), None);
    // A opens at 3 and commits at 9 after B opened at 5; B is open at the end. Cutting at
    // B's first offset (5) would leave A open without its marker: the stable end is 3.
    let s = [
        txn_batch(3, 7, 1),
        batch(4, 1, 0, 0),
        txn_batch(5, 8, 2),
        marker(9, 7, false),
        txn_batch(10, 8, 1),
    ]
    .concat();
    let b = state(&[&done, &s]);
    assert_eq!(
        b.open_transactions().iter().collect::<Vec<_>>(),
        vec![(&8, &5)]
    );
    assert_eq!(b.stable_end(), Some(3));
    // Once B completes and C opens with nothing else open, C's first offset is the end,
    // also across segments.
    let later = [marker(11, 8, true), batch(12, 1, 0, 0), txn_batch(13, 9, 1)].concat();
    assert_eq!(state(&[&done, &s, &later]).stable_end(), Some(13));
    // Seeded from a snapshot with transactions open: at most the earliest of them.
    let mut seed = TxnIndexBuilder::new();
    seed.add_segment(&txn_batch(20, 4, 1)).unwrap();
    seed.add_segment(&txn_batch(21, 5, 1)).unwrap();
    assert_eq!(seed.stable_end(), Some(20));
}
