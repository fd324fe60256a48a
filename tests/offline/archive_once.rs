//! `segvault archive --once` over copies of real broker log dirs (the fixtures), into the
//! local filesystem store: every closed, committed segment is archived exactly once and byte
//! for byte, the active segment never; a second pass uploads nothing; a corrupt segment is
//! refused and recorded; two replicas archiving the same partition store each range once.

use crate::common::logdir::{high_watermarks, segments, walk};
use crate::common::paths::fixture;
use crate::common::run::{code, json_lines, output, segvault, total};
use segvault_harness::fixtures::copy_dir;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

fn archive(log_dirs: &[&Path], store: &Path) -> (i32, Vec<Value>) {
    archive_with(log_dirs, store, &[])
}

fn archive_with(log_dirs: &[&Path], store: &Path, extra: &[&str]) -> (i32, Vec<Value>) {
    let mut cmd = segvault();
    cmd.args(["archive", "--once", "--format", "json", "--store"])
        .arg(store)
        .args(extra);
    for d in log_dirs {
        cmd.arg("--log-dir").arg(d);
    }
    let out = output(&mut cmd);
    (code(&out), json_lines(&out.stdout))
}

/// `(topic, partition) -> [(start, manifest)]` from the store's chain/ directories.
fn manifests(store: &Path) -> BTreeMap<(String, i32), Vec<(i64, Value)>> {
    let mut out: BTreeMap<(String, i32), Vec<(i64, Value)>> = BTreeMap::new();
    for p in walk(store) {
        if p.parent().unwrap().file_name().unwrap() == "chain" {
            let m: Value = serde_json::from_slice(&fs::read(&p).unwrap()).unwrap();
            let key = (
                m["topic"].as_str().unwrap().to_string(),
                i32::try_from(m["partition"].as_i64().unwrap()).unwrap(),
            );
            out.entry(key)
                .or_default()
                .push((m["start_offset"].as_i64().unwrap(), m));
        }
    }
    for v in out.values_mut() {
        v.sort_by_key(|(s, _)| *s);
    }
    out
}

/// Every closed segment below the high watermark is in the store once, byte-identical with
/// its index files (as the broker that won the range has them); nothing else is.
fn assert_archive_matches(log_dir: &Path, store: &Path) {
    assert_archive_matches_replicas(log_dir, &|_| log_dir.to_path_buf(), store)
}

fn assert_archive_matches_replicas(
    log_dir: &Path,
    source_of: &dyn Fn(i64) -> PathBuf,
    store: &Path,
) {
    let chains = manifests(store);
    let hws = high_watermarks(log_dir);
    let mut expected_ranges = 0;
    for ((topic, partition), hw) in &hws {
        let pdir = log_dir.join(format!("{topic}-{partition}"));
        let bases = segments(&pdir);
        let want: Vec<(i64, i64)> = bases
            .windows(2)
            .map(|w| (w[0], w[1]))
            .filter(|&(_, next)| next <= *hw)
            .collect();
        let got: Vec<(i64, i64)> = chains
            .get(&(topic.clone(), *partition))
            .map(|v| {
                v.iter()
                    .map(|(s, m)| (*s, m["next_offset"].as_i64().unwrap()))
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(
            got, want,
            "{topic}-{partition}: archived ranges vs closed committed segments (hw {hw})"
        );
        expected_ranges += want.len();
        for (start, m) in chains
            .get(&(topic.clone(), *partition))
            .into_iter()
            .flatten()
        {
            assert_eq!(m["kind"], "segment");
            let src_dir = source_of(m["source"]["node_id"].as_i64().unwrap())
                .join(format!("{topic}-{partition}"));
            for (obj, suffix) in [
                ("log", "log"),
                ("index", "index"),
                ("timeindex", "timeindex"),
            ] {
                let src = src_dir.join(format!("{start:020}.{suffix}"));
                let stored = store.join(
                    m["objects"][obj]["key"]
                        .as_str()
                        .unwrap_or_else(|| panic!("{topic}-{partition} {start}: no {obj}")),
                );
                assert!(
                    fs::read(&stored).unwrap() == fs::read(&src).unwrap(),
                    "{} differs from {}",
                    stored.display(),
                    src.display()
                );
            }
        }
    }
    assert!(
        expected_ranges >= 20,
        "only {expected_ranges} closed committed segments: the fixture changed?"
    );
}

#[test]
fn archives_every_closed_committed_segment_once_and_byte_identical() {
    for v in ["3.9.2", "4.3.1"] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("logs");
        copy_dir(&fixture(v), &dir, &[]).unwrap();
        let store = tmp.path().join("store");
        let (code, lines) = archive(&[&dir], &store);
        assert_eq!(code, 0, "{lines:?}");
        assert!(total(&lines)["uploaded_segments"].as_u64().unwrap() >= 20);
        assert_archive_matches(&dir, &store);
        // The broker's meta.properties and checkpoints are kept too.
        let found = walk(&store)
            .into_iter()
            .filter(|p| {
                p.ends_with("meta.properties") || p.ends_with("replication-offset-checkpoint")
            })
            .count();
        assert_eq!(found, 2, "{v}");
        // Every KRaft snapshot of the metadata log, byte-identical.
        let snaps: Vec<PathBuf> = fs::read_dir(dir.join("__cluster_metadata-0"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().ends_with(".checkpoint"))
            .collect();
        assert!(!snaps.is_empty());
        for s in &snaps {
            let name = s.file_name().unwrap().to_string_lossy().into_owned();
            let stored: Vec<PathBuf> = walk(&store)
                .into_iter()
                .filter(|p| p.ends_with(&name) && p.to_string_lossy().contains("/metadata/"))
                .collect();
            assert_eq!(stored.len(), 1, "{v}: {name}");
            assert!(
                fs::read(&stored[0]).unwrap() == fs::read(s).unwrap(),
                "{v}: {name} differs"
            );
        }

        // A second pass finds everything archived: nothing uploaded, the same manifests.
        let before = manifests(&store);
        let (code, lines) = archive(&[&dir], &store);
        assert_eq!(code, 0);
        assert_eq!(
            total(&lines)["uploaded_segments"],
            0,
            "{v}: second pass uploaded again"
        );
        assert_eq!(manifests(&store), before);
    }
}

/// With `--zstd`, each `.log` object is a run of zstd frames cut at batch boundaries: the
/// whole object decompresses to the segment's bytes, and each frame, read alone from the
/// stored positions the manifest lists (what a ranged GET fetches), decompresses to exactly
/// its part of the segment, starting with a batch at the offset the manifest names.
#[test]
fn zstd_frames_decompress_alone_at_batch_boundaries() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("logs");
    copy_dir(&fixture("4.3.1"), &dir, &[]).unwrap();
    let store = tmp.path().join("store");
    let (code, lines) = archive_with(
        &[&dir],
        &store,
        &["--zstd", "3", "--zstd-frame-bytes", "256"],
    );
    assert_eq!(code, 0, "{lines:?}");
    let (mut objects, mut frames_read, mut smaller) = (0, 0, 0);
    for ((topic, partition), ranges) in manifests(&store) {
        let pdir = dir.join(format!("{topic}-{partition}"));
        for (start, m) in ranges {
            let o = &m["objects"]["log"];
            assert_eq!(o["encoding"], "zstd-frames", "{topic}-{partition} {start}");
            let seg = m["segment_base_offset"].as_i64().unwrap();
            let src = fs::read(pdir.join(format!("{seg:020}.log"))).unwrap();
            let src = &src[m["slice_position"].as_u64().unwrap() as usize..];
            let stored = fs::read(store.join(o["key"].as_str().unwrap())).unwrap();
            assert_eq!(o["stored_size"].as_u64(), Some(stored.len() as u64));
            assert_eq!(o["size"].as_u64(), Some(src.len() as u64));
            assert!(
                zstd::decode_all(&stored[..]).unwrap() == src,
                "{topic}-{partition} {start}"
            );
            smaller += (stored.len() < src.len()) as usize;
            let frames: Vec<(u64, u64, i64)> = serde_json::from_value(o["frames"].clone()).unwrap();
            assert!(!frames.is_empty());
            assert_eq!((frames[0].0, frames[0].1), (0, 0));
            for (i, &(raw_at, stored_at, first)) in frames.iter().enumerate() {
                let (raw_end, stored_end) = frames
                    .get(i + 1)
                    .map_or((src.len() as u64, stored.len() as u64), |f| (f.0, f.1));
                let part =
                    zstd::decode_all(&stored[stored_at as usize..stored_end as usize]).unwrap();
                assert!(
                    part == src[raw_at as usize..raw_end as usize],
                    "{topic}-{partition} {start}: frame {i} alone"
                );
                let base = i64::from_be_bytes(part[..8].try_into().unwrap());
                assert_eq!(
                    base, first,
                    "{topic}-{partition} {start}: frame {i} starts a batch"
                );
                frames_read += 1;
            }
            objects += 1;
        }
    }
    assert!(
        frames_read > objects,
        "no object was cut into several frames"
    );
    assert!(smaller > 0, "zstd made nothing smaller");
    eprintln!("{objects} objects, {frames_read} frames each decompressed alone");
}

#[test]
fn a_corrupt_segment_is_refused_and_recorded_with_its_position() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("logs");
    copy_dir(&fixture("4.3.1"), &dir, &[]).unwrap();
    // Flip a byte in the last batch of the first closed segment of codec-none-0 (CRC-covered).
    let seg = dir.join("codec-none-0/00000000000000000000.log");
    let mut bytes = fs::read(&seg).unwrap();
    let at = bytes.len() - 5;
    bytes[at] ^= 0x40;
    fs::write(&seg, &bytes).unwrap();
    let store = tmp.path().join("store");
    let (code, lines) = archive(&[&dir], &store);
    assert_eq!(code, 1, "{lines:?}");
    assert_eq!(total(&lines)["corrupt"], 1);
    // Nothing of codec-none-0 is archived past the corrupt segment (the chain cannot skip it).
    let chains = manifests(&store);
    assert!(
        !chains.contains_key(&("codec-none".to_string(), 0)),
        "{:?}",
        chains.get(&("codec-none".to_string(), 0))
    );
    let evidence: Vec<PathBuf> = walk(&store)
        .into_iter()
        .filter(|p| {
            p.to_string_lossy().contains("/codec-none/")
                && p.to_string_lossy().contains("/corrupt/")
        })
        .collect();
    assert_eq!(evidence.len(), 1);
    let e: Value = serde_json::from_slice(&fs::read(&evidence[0]).unwrap()).unwrap();
    assert!(e["position"].as_u64().unwrap() < bytes.len() as u64);
    assert!(e["file"]
        .as_str()
        .unwrap()
        .ends_with("00000000000000000000.log"));
    // Other partitions are archived as usual.
    assert!(chains.contains_key(&("codec-none".to_string(), 1)));
}

fn as_replica(src: &Path, dst: &Path, node: u32) {
    copy_dir(src, dst, &[]).unwrap();
    let meta = dst.join("meta.properties");
    let text = fs::read_to_string(&meta).unwrap();
    let text: String = text
        .lines()
        .map(|l| {
            if l.starts_with("node.id=") {
                format!("node.id={node}")
            } else if l.starts_with("directory.id=") {
                String::new()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    fs::write(&meta, text).unwrap();
}

#[test]
fn two_replicas_store_each_range_once_and_a_divergent_one_is_recorded() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("broker-1"), tmp.path().join("broker-2"));
    as_replica(&fixture("3.9.2"), &a, 1);
    as_replica(&fixture("3.9.2"), &b, 2);
    // Broker 2's copy of codec-lz4-1's first segment holds different bytes with valid CRCs:
    // a replica that diverged. Change one byte of the last batch's payload and recompute its CRC.
    let seg = b.join("codec-lz4-1/00000000000000000000.log");
    let mut bytes = fs::read(&seg).unwrap();
    let mut pos = 0usize;
    let mut last = 0usize;
    while pos + 12 <= bytes.len() {
        last = pos;
        pos += 12 + u32::from_be_bytes(bytes[pos + 8..pos + 12].try_into().unwrap()) as usize;
    }
    let end = pos;
    // Flip the max timestamp's lowest byte (inside the CRC, not the compressed payload).
    bytes[last + 42] ^= 1;
    let crc = crc32c::crc32c(&bytes[last + 21..end]);
    bytes[last + 17..last + 21].copy_from_slice(&crc.to_be_bytes());
    fs::write(&seg, &bytes).unwrap();

    let store = tmp.path().join("store");
    // Both agents at once, as on two brokers.
    let s1 = store.clone();
    let (a1, b1) = (a.clone(), b.clone());
    let t1 = std::thread::spawn(move || archive(&[&a1], &s1));
    let t2 = std::thread::spawn(move || archive(&[&b1], &store));
    let (r1, r2) = (t1.join().unwrap(), t2.join().unwrap());
    let store = tmp.path().join("store");
    // Each range once, byte-identical with the replica that won it.
    let (a2, b2) = (a.clone(), b.clone());
    assert_archive_matches_replicas(
        &a,
        &move |node| if node == 1 { a2.clone() } else { b2.clone() },
        &store,
    );
    let uploaded = total(&r1.1)["uploaded_segments"].as_u64().unwrap()
        + total(&r2.1)["uploaded_segments"].as_u64().unwrap();
    let ranges: usize = manifests(&store).values().map(Vec::len).sum();
    assert_eq!(
        uploaded as usize, ranges,
        "uploads that won a claim == ranges stored"
    );
    // No orphan data objects: every data/ file is referenced by a manifest.
    let referenced: Vec<String> = manifests(&store)
        .values()
        .flatten()
        .flat_map(|(_, m)| {
            m["objects"]
                .as_object()
                .unwrap()
                .values()
                .map(|o| o["key"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    for f in walk(&store)
        .iter()
        .filter(|p| p.to_string_lossy().contains("/data/"))
    {
        let rel = f
            .strip_prefix(&store)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(referenced.contains(&rel), "orphan {rel}");
    }
    // The divergent range: whichever broker lost the race for it recorded the divergence,
    // unless broker 2 won it, in which case broker 1 did. Either way exactly one record, and
    // that agent exits 1.
    let div: Vec<PathBuf> = walk(&store)
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("/divergence/"))
        .collect();
    assert_eq!(div.len(), 1, "{div:?}");
    assert!(div[0].to_string_lossy().contains("/codec-lz4/"), "{div:?}");
    assert!(r1.0 == 1 || r2.0 == 1, "{} {}", r1.0, r2.0);
    assert!(r1.0 != 2 && r2.0 != 2);
}
