//! `segvault ls` and `segvault restore` over archives of the real fixture log dirs: what comes
//! back is byte for byte what the broker wrote, cuts land on batch boundaries with indexes
//! rebuilt as the broker builds them, and bad archives, locked or occupied targets and
//! interruptions are handled without placing anything unverified.
//!
//! Over 800 lines on purpose: the tests of one concern and the helpers that build their state
//! are kept in one file, read together.

use crate::common::logdir::{self, checkpoint, partition_dirs, segments};
use crate::common::paths::fixture;
use crate::common::run::{assert_exit, output};
use segvault_format::index_build;
use segvault_harness::fixtures::copy_dir;
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn segvault(args: &[&str]) -> Output {
    output(crate::common::run::segvault().args(args))
}

fn json_lines(out: &Output) -> Vec<Value> {
    crate::common::run::json_lines(&out.stdout)
}

/// Archives a copy of the fixture of `version`; returns (the copy, the store URL).
fn archived(tmp: &Path, version: &str) -> (PathBuf, String) {
    let src = tmp.join("src");
    copy_dir(&fixture(version), &src, &[]).unwrap();
    let url = format!("file://{}", tmp.join("store").display());
    let out = segvault(&[
        "archive",
        "--once",
        "--store",
        &url,
        "--log-dir",
        src.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    (src, url)
}

#[test]
fn ls_shows_clusters_brokers_partitions_and_ranges() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, url) = archived(tmp.path(), "4.3.1");
    let out = segvault(&["ls", &url, "--format", "json"]);
    assert_eq!(out.status.code(), Some(0));
    let lines = json_lines(&out);
    let meta = fs::read_to_string(src.join("meta.properties")).unwrap();
    let cluster = lines.iter().find(|l| l["type"] == "cluster").unwrap();
    assert!(meta.contains(&format!(
        "cluster.id={}",
        cluster["cluster_id"].as_str().unwrap()
    )));
    let broker = lines.iter().find(|l| l["type"] == "broker").unwrap();
    assert_eq!(broker["node_id"], 1);
    assert!(!broker["metadata_snapshots"].as_array().unwrap().is_empty());
    // Every partition with closed segments, with the offsets of its closed segments.
    let parts: Vec<&Value> = lines.iter().filter(|l| l["type"] == "partition").collect();
    assert!(parts.len() >= 10);
    for p in parts {
        let name = format!("{}-{}", p["topic"].as_str().unwrap(), p["partition"]);
        let bases = segments(&src.join(&name));
        assert_eq!(p["start_offset"].as_i64(), Some(bases[0]), "{name}");
        assert_eq!(
            p["end_offset"].as_i64(),
            bases.last().copied(),
            "{name}: up to the active segment"
        );
        let pm = fs::read_to_string(src.join(&name).join("partition.metadata")).unwrap();
        assert!(pm.ends_with(p["topic_id"].as_str().unwrap()), "{name}");
        assert_eq!(p["gaps"], serde_json::json!([]));
    }
    let text = String::from_utf8(segvault(&["ls", &url]).stdout).unwrap();
    assert!(
        text.contains("codec-zstd-0 (topic id") && text.contains("offsets [0, "),
        "{text}"
    );
}

/// Bare-metal restore of both versions' fixtures: meta.properties, every archived partition
/// with byte-identical segments and indexes, partition.metadata and the leader epochs, the
/// producer snapshot at the log end, and checkpoints at the restored log ends.
#[test]
fn bare_metal_restores_the_archived_segments_byte_for_byte() {
    for v in ["3.9.2", "4.3.1"] {
        let tmp = tempfile::tempdir().unwrap();
        let (src, url) = archived(tmp.path(), v);
        let dst = tmp.path().join("dst");
        let dry = segvault(&[
            "restore",
            &url,
            "--to",
            dst.to_str().unwrap(),
            "--dry-run",
            "--format",
            "json",
        ]);
        assert_exit(&dry, 0);
        assert!(!dst.exists(), "{v}: --dry-run wrote {}", dst.display());
        let plan = json_lines(&dry);
        let total = plan.iter().find(|l| l["type"] == "plan").unwrap();
        assert!(total["objects"].as_u64() > Some(20));

        let out = segvault(&[
            "restore",
            &url,
            "--to",
            dst.to_str().unwrap(),
            "--format",
            "json",
        ]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{v}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            fs::read(dst.join("meta.properties")).unwrap(),
            fs::read(src.join("meta.properties")).unwrap()
        );
        assert!(!dst.join(".segvault-restore").exists());
        let restored: Vec<Value> = json_lines(&out)
            .into_iter()
            .filter(|l| l["type"] == "partition")
            .map(|l| l["report"].clone())
            .collect();
        assert!(restored.len() >= 10, "{v}");
        let rp = checkpoint(&dst.join("recovery-point-offset-checkpoint"));
        let hw = checkpoint(&dst.join("replication-offset-checkpoint"));
        for r in &restored {
            let name = format!("{}-{}", r["topic"].as_str().unwrap(), r["partition"]);
            let (s, d) = (src.join(&name), dst.join(&name));
            let closed: Vec<i64> = {
                let b = segments(&s);
                b[..b.len() - 1].to_vec()
            };
            assert_eq!(segments(&d), closed, "{v} {name}");
            for base in &closed {
                for ext in ["log", "index", "timeindex", "txnindex"] {
                    let f = format!("{base:020}.{ext}");
                    let want = fs::read(s.join(&f)).ok();
                    assert_eq!(fs::read(d.join(&f)).ok(), want, "{v} {name}/{f}");
                }
            }
            let end = *segments(&s).last().unwrap();
            assert_eq!(r["log_end_offset"].as_i64(), Some(end), "{v} {name}");
            assert_eq!(
                rp[&(
                    r["topic"].as_str().unwrap().to_string(),
                    r["partition"].as_i64().unwrap() as i32
                )],
                end
            );
            assert_eq!(
                hw[&(
                    r["topic"].as_str().unwrap().to_string(),
                    r["partition"].as_i64().unwrap() as i32
                )],
                end
            );
            assert_eq!(
                fs::read(d.join("partition.metadata")).unwrap(),
                fs::read(s.join("partition.metadata")).unwrap(),
                "{v} {name}"
            );
            // The snapshot the broker wrote at the roll that closed the last restored segment.
            let snap = format!("{end:020}.snapshot");
            assert_eq!(
                fs::read(d.join(&snap)).ok(),
                fs::read(s.join(&snap)).ok(),
                "{v} {name}/{snap}"
            );
            // Leader epochs: the broker's entries that start below the restored end.
            let epochs = |p: &Path| -> Vec<String> {
                fs::read_to_string(p.join("leader-epoch-checkpoint"))
                    .unwrap()
                    .lines()
                    .skip(2)
                    .filter(|l| l.split(' ').nth(1).unwrap().parse::<i64>().unwrap() < end)
                    .map(String::from)
                    .collect()
            };
            assert_eq!(epochs(&d), epochs(&s), "{v} {name}");
        }
        // Again into the same dir: refused, data is present; --force replaces it.
        let again = segvault(&["restore", &url, "--to", dst.to_str().unwrap()]);
        assert_eq!(again.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
        let forced = segvault(&["restore", &url, "--to", dst.to_str().unwrap(), "--force"]);
        assert_exit(&forced, 0);
    }
}

/// A cut by offset keeps the batches below it: the last segment is the broker's bytes up to
/// the batch boundary, and its indexes are rebuilt exactly as the broker builds them for
/// those bytes.
#[test]
fn until_offset_cuts_at_a_batch_boundary_and_rebuilds_indexes() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, url) = archived(tmp.path(), "4.3.1");
    let dst = tmp.path().join("dst");
    let name = "codec-none-0";
    let cut = 33; // inside the second closed segment ([25, 40))
    let out = segvault(&[
        "restore",
        &url,
        "--to",
        dst.to_str().unwrap(),
        "--topic",
        "^codec-none$",
        "--partition",
        "0",
        "--until-offset",
        &cut.to_string(),
        "--format",
        "json",
    ]);
    assert_exit(&out, 0);
    let d = dst.join(name);
    let bases = segments(&d);
    let last = *bases.last().unwrap();
    let restored = fs::read(d.join(format!("{last:020}.log"))).unwrap();
    let original = fs::read(src.join(name).join(format!("{last:020}.log"))).unwrap();
    assert!(restored.len() < original.len() && original.starts_with(&restored));
    // Every batch kept ends below the cut; the next one in the original does not.
    let mut pos = 0;
    let mut end = last;
    while pos < restored.len() {
        let base = i64::from_be_bytes(restored[pos..pos + 8].try_into().unwrap());
        let len = i32::from_be_bytes(restored[pos + 8..pos + 12].try_into().unwrap()) as usize;
        let delta = i32::from_be_bytes(restored[pos + 23..pos + 27].try_into().unwrap()) as i64;
        assert!(base + delta < cut);
        end = base + delta + 1;
        pos += 12 + len;
    }
    let next_base = i64::from_be_bytes(original[pos..pos + 8].try_into().unwrap());
    let next_delta = i32::from_be_bytes(original[pos + 23..pos + 27].try_into().unwrap()) as i64;
    assert!(next_base + next_delta >= cut);
    let built = index_build::build_indexes(&restored, last, 4096).unwrap();
    assert_eq!(
        fs::read(d.join(format!("{last:020}.index"))).unwrap(),
        built.offset_index
    );
    assert_eq!(
        fs::read(d.join(format!("{last:020}.timeindex"))).unwrap(),
        built.time_index
    );
    let rp = checkpoint(&dst.join("recovery-point-offset-checkpoint"));
    assert_eq!(rp[&("codec-none".to_string(), 0)], end);
    // Only the selected partition was restored.
    assert!(!dst.join("codec-none-1").exists() && !dst.join("codec-zstd-0").exists());
}

/// A cut before a partition's first record keeps nothing of it: the partition is placed as
/// one empty segment starting at its first archived offset, with its (empty) `.index` and
/// `.timeindex`, never a bare `.log` (a broker recovers a segment without its offset index,
/// and logs an ERROR).
#[test]
fn a_cut_before_every_record_places_empty_segments_with_their_indexes() {
    let tmp = tempfile::tempdir().unwrap();
    let (_src, url) = archived(tmp.path(), "4.3.1");
    let dst = tmp.path().join("dst");
    let out = segvault(&[
        "restore",
        &url,
        "--to",
        dst.to_str().unwrap(),
        "--until-time",
        "1",
        "--format",
        "json",
    ]);
    assert_exit(&out, 0);
    let parts: Vec<Value> = json_lines(&out)
        .into_iter()
        .filter(|l| l["type"] == "partition")
        .collect();
    assert!(parts.len() >= 10, "{parts:?}");
    for p in &parts {
        let r = &p["report"];
        let name = format!("{}-{}", r["topic"].as_str().unwrap(), r["partition"]);
        let start = r["log_start_offset"].as_i64().unwrap();
        assert_eq!(r["log_end_offset"].as_i64(), Some(start), "{name}: {r}");
        let d = dst.join(&name);
        assert_eq!(segments(&d), vec![start], "{name}");
        for ext in ["log", "index", "timeindex"] {
            let f = d.join(format!("{start:020}.{ext}"));
            assert_eq!(
                fs::metadata(&f).map(|m| m.len()).ok(),
                Some(0),
                "{}",
                f.display()
            );
        }
    }
    assert_eq!(logdir::assert_every_segment_indexed(&dst), parts.len());
}

/// A new-cluster restore into a log dir that lacks some partitions (no `partition.metadata`,
/// so no topic id) or holds data in one: `--dry-run` fails as the real run does, naming every
/// partition that cannot be restored, and the real run fails before it places anything.
/// Narrowed to the partitions that are there, both pass.
#[test]
fn a_new_cluster_restore_that_cannot_place_every_partition_places_none() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, url) = archived(tmp.path(), "4.3.1");
    let dst = tmp.path().join("dst");
    // The new cluster made codec-none-0 and -1 (empty) and codec-zstd-0 (with a record).
    for name in ["codec-none-0", "codec-none-1", "codec-zstd-0"] {
        fs::create_dir_all(dst.join(name)).unwrap();
        fs::copy(
            src.join(name).join("partition.metadata"),
            dst.join(name).join("partition.metadata"),
        )
        .unwrap();
    }
    let zstd = dst.join("codec-zstd-0").join("00000000000000000000.log");
    fs::copy(
        src.join("codec-zstd-0").join("00000000000000000000.log"),
        &zstd,
    )
    .unwrap();
    let before = walk(&dst);
    let run = |extra: &[&str]| {
        let mut args = vec![
            "restore",
            &url,
            "--to",
            dst.to_str().unwrap(),
            "--mode",
            "new-cluster",
        ];
        args.extend_from_slice(extra);
        segvault(&args)
    };
    for extra in [&["--dry-run"][..], &[]] {
        let out = run(extra);
        assert_exit(&out, 2);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("11 of 13 partitions cannot be restored here, so nothing was written"),
            "{extra:?}: {err}"
        );
        // The hint for the 10 without a topic id is said once.
        assert_eq!(
            err.matches("or give --topic-id").count(),
            1,
            "{extra:?}: {err}"
        );
        // Every partition without a topic id is named, and the one holding data.
        for missing in ["compacted-0", "txn-1", "codec-gzip-0", "codec-zstd-1"] {
            assert!(
                err.contains(&format!("{missing}/partition.metadata")),
                "{extra:?}: {missing} not named: {err}"
            );
        }
        assert!(
            err.contains("codec-zstd-0: the partition already holds data"),
            "{extra:?}: {err}"
        );
        assert!(!err.contains("codec-none-0"), "{extra:?}: {err}");
        assert_eq!(walk(&dst), before, "{extra:?}: the target changed");
    }
    for extra in [
        &["--topic", "^codec-none$", "--dry-run"][..],
        &["--topic", "^codec-none$"],
    ] {
        assert_exit(&run(extra), 0);
    }
    assert!(segments(&dst.join("codec-none-1")).len() > 1);
}

/// A damaged archived KRaft snapshot fails a bare-metal restore before anything is written
/// (not after `meta.properties` is in place), and `--dry-run` fails the same way.
#[test]
fn a_damaged_metadata_snapshot_fails_the_restore_before_any_write() {
    let tmp = tempfile::tempdir().unwrap();
    let (_src, url) = archived(tmp.path(), "4.3.1");
    let store = tmp.path().join("store");
    let newest = logdir::walk(&store)
        .into_iter()
        .filter(|p| {
            p.to_string_lossy().contains("/metadata/")
                && p.to_string_lossy().ends_with(".checkpoint")
        })
        .max()
        .expect("an archived KRaft snapshot");
    let mut bytes = fs::read(&newest).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::write(&newest, &bytes).unwrap();
    let dst = tmp.path().join("dst");
    for extra in [&["--dry-run"][..], &[]] {
        let mut args = vec!["restore", &url, "--to", dst.to_str().unwrap()];
        args.extend_from_slice(extra);
        let out = segvault(&args);
        assert_exit(&out, 1);
        let err = String::from_utf8_lossy(&out.stderr);
        let name = newest.file_name().unwrap().to_string_lossy().into_owned();
        assert!(err.contains(&name), "{extra:?}: {err}");
        let written: Vec<String> = if dst.exists() { walk(&dst) } else { vec![] };
        assert!(written.is_empty(), "{extra:?}: wrote {written:?}");
    }
}

/// An archived object whose bytes were changed: the restore exits 1 naming the key, and the
/// partition is not placed; once the object is repaired, running the restore again resumes:
/// partitions already in place are kept, the rest are restored.
#[test]
fn a_tampered_object_is_refused_and_the_restore_resumes_after_repair() {
    let tmp = tempfile::tempdir().unwrap();
    let (_src, url) = archived(tmp.path(), "4.3.1");
    let store = tmp.path().join("store");
    let dst = tmp.path().join("dst");
    // The first range of codec-zstd-1 (partitions are restored in name order; it is not first).
    let key = walk(&store)
        .into_iter()
        .find(|k| {
            k.contains("/topics/codec-zstd/")
                && k.contains("/1/data/00000000000000000000-")
                && k.ends_with("/log")
        })
        .unwrap();
    let original = fs::read(&key).unwrap();
    let mut bad = original.clone();
    let at = bad.len() - 5;
    bad[at] ^= 0x40;
    fs::write(&key, &bad).unwrap();
    let out = segvault(&["restore", &url, "--to", dst.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("codec-zstd") && err.contains("SHA-256"),
        "{err}"
    );
    assert!(!dst.join("codec-zstd-1").exists());
    assert!(
        dst.join("codec-gzip-0").is_dir(),
        "partitions before it are placed"
    );
    fs::write(&key, &original).unwrap();
    let out = segvault(&[
        "restore",
        &url,
        "--to",
        dst.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_exit(&out, 0);
    let reports: Vec<Value> = json_lines(&out)
        .into_iter()
        .filter(|l| l["type"] == "partition")
        .map(|l| l["report"].clone())
        .collect();
    let resumed = |n: &str| {
        reports
            .iter()
            .find(|r| format!("{}-{}", r["topic"].as_str().unwrap(), r["partition"]) == n)
            .unwrap()["resumed"]
            .clone()
    };
    assert_eq!(resumed("codec-gzip-0"), true);
    assert_eq!(resumed("codec-zstd-1"), false);
    assert!(dst.join("codec-zstd-1").is_dir());
    assert!(!dst.join(".segvault-restore").exists());
}

/// Keys and names read from the store are input: a manifest pointing outside its partition,
/// or one that disagrees with its key, stops the restore of that partition (exit 2, named)
/// and shows in `ls` (exit 1). Nothing is written outside --to.
#[test]
fn a_manifest_pointing_outside_its_partition_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (_src, url) = archived(tmp.path(), "4.3.1");
    let store = tmp.path().join("store");
    let manifest = walk(&store)
        .into_iter()
        .find(|k| k.contains("/topics/txn/") && k.contains("/chain/"))
        .unwrap();
    let mut m: Value = serde_json::from_slice(&fs::read(&manifest).unwrap()).unwrap();
    m["objects"]["log"]["key"] = "segvault/v1/../../../../etc/passwd".into();
    fs::write(&manifest, serde_json::to_vec(&m).unwrap()).unwrap();
    let ls = segvault(&["ls", &url]);
    assert_eq!(ls.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&ls.stdout).contains("PROBLEM"));
    let dst = tmp.path().join("dst");
    let out = segvault(&[
        "restore",
        &url,
        "--to",
        dst.to_str().unwrap(),
        "--topic",
        "^txn$",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    // A damaged archive is an integrity problem (exit 1), as for `ls`.
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("txn-") && err.contains("outside"), "{err}");
    assert!(!dst.join("txn-0").exists() && !dst.join("txn-1").exists());
}

/// A restore refuses a log dir whose .lock another process holds with an fcntl lock, as a
/// running broker does.
#[test]
fn a_locked_log_dir_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (_src, url) = archived(tmp.path(), "4.3.1");
    let dst = tmp.path().join("dst");
    fs::create_dir_all(&dst).unwrap();
    // Another process (flock(1) takes flock locks, not fcntl ones; python's fcntl.lockf takes
    // the POSIX lock Java's FileChannel.tryLock takes) holds the lock while the restore runs.
    let mut holder = Command::new("python3")
        .args([
            "-c",
            "import fcntl,sys,time; f=open(sys.argv[1],'a+'); fcntl.lockf(f, fcntl.LOCK_EX); print('locked', flush=True); sys.stdin.read()",
        ])
        .arg(dst.join(".lock"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "locked");
    let out = segvault(&["restore", &url, "--to", dst.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(".lock"), "{err}");
    assert!(!dst.join("meta.properties").exists());
    drop(holder.stdin.take());
    holder.wait().unwrap();
    let out = segvault(&["restore", &url, "--to", dst.to_str().unwrap()]);
    assert_exit(&out, 0);
}

/// Every file under `d` (see [`logdir::walk`]), as strings.
fn walk(d: &Path) -> Vec<String> {
    logdir::walk(d)
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect()
}

/// Readers check the chain against `start.json` and the listing: a deleted first manifest (a
/// hole at the start), a manifest naming an object that is gone, and one naming an object
/// of another size are each a PROBLEM for `ls` (exit 1), and restore refuses the damaged
/// partition (exit 1) while the undamaged ones still restore.
#[test]
fn a_lost_first_manifest_or_object_is_found_by_ls_and_refused_by_restore() {
    let tmp = tempfile::tempdir().unwrap();
    let (_src, url) = archived(tmp.path(), "4.3.1");
    let store = tmp.path().join("store");
    assert_eq!(segvault(&["ls", &url]).status.code(), Some(0));
    let find = |part: &str, tail: &str| {
        walk(&store)
            .into_iter()
            .find(|k| k.contains(part) && k.ends_with(tail))
            .unwrap_or_else(|| panic!("no {part} ...{tail}"))
    };
    let first = find("/topics/codec-none/", "/0/chain/00000000000000000000.json");
    fs::remove_file(&first).unwrap();
    let gone = find("/topics/codec-lz4/", "/log");
    fs::remove_file(&gone).unwrap();
    let short = find("/topics/codec-gzip/", "/timeindex");
    let bytes = fs::read(&short).unwrap();
    fs::write(&short, &bytes[..bytes.len() - 1]).unwrap();

    let out = segvault(&["ls", &url]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{text}");
    for want in [
        "start.json says the archive begins at offset 0, but its first range begins at 20: offsets [0, 20) are missing",
        "which is not in the store",
        &format!("of {} bytes, but the store holds {} bytes", bytes.len(), bytes.len() - 1),
    ] {
        assert!(
            text.lines().any(|l| l.contains("PROBLEM") && l.contains(want)),
            "no PROBLEM line with {want:?}:\n{text}"
        );
    }
    let json = json_lines(&segvault(&["ls", &url, "--format", "json"]));
    let damaged: Vec<String> = json
        .iter()
        .filter(|l| l["type"] == "partition" && !l["problems"].as_array().unwrap().is_empty())
        .map(|l| format!("{}-{}", l["topic"].as_str().unwrap(), l["partition"]))
        .collect();
    assert_eq!(damaged.len(), 3, "{damaged:?}");
    assert!(damaged.contains(&"codec-none-0".to_string()), "{damaged:?}");

    // Restore refuses a damaged partition, naming it and the missing offsets.
    let dst = tmp.path().join("dst");
    let out = segvault(&[
        "restore",
        &url,
        "--to",
        dst.to_str().unwrap(),
        "--topic",
        "^codec-none$",
    ]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("codec-none-0") && err.contains("[0, 20)"),
        "{err}"
    );
    assert!(!dst.join("codec-none-0").exists());
    // What is whole still restores.
    let out = segvault(&[
        "restore",
        &url,
        "--to",
        dst.to_str().unwrap(),
        "--topic",
        "^codec-snappy$",
    ]);
    assert_exit(&out, 0);
    assert!(dst.join("codec-snappy-0").is_dir());
}

/// A bare-metal restore learns which partitions the node held from its archived
/// `replication-offset-checkpoint`. If that cannot be read, the restore fails naming the key;
/// it never widens to every partition of the cluster.
#[test]
fn a_bare_metal_restore_without_the_nodes_checkpoint_restores_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (_src, url) = archived(tmp.path(), "4.3.1");
    let store = tmp.path().join("store");
    let cp = walk(&store)
        .into_iter()
        .find(|k| {
            k.contains("/brokers/1/log-dirs/") && k.ends_with("/replication-offset-checkpoint")
        })
        .unwrap();
    fs::remove_file(&cp).unwrap();
    let dst = tmp.path().join("dst");
    let out = segvault(&["restore", &url, "--to", dst.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("replication-offset-checkpoint") && err.contains("nothing was restored"),
        "{err}"
    );
    let placed: Vec<_> = fs::read_dir(&dst)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        placed
            .iter()
            .all(|n| !n.to_string_lossy().contains('-') || n == ".segvault-restore"),
        "{placed:?}"
    );
}

/// Rewrites the last manifest of `topic-partition` so that it claims `[start, next)` with its
/// objects moved to that range's keys: a manifest consistent with the layout but lying about
/// its bounds.
fn move_last_range(store: &Path, topic: &str, partition: i32, next: i64) -> String {
    let mut chain: Vec<String> = walk(store)
        .into_iter()
        .filter(|k| {
            k.contains(&format!("/topics/{topic}/")) && k.contains(&format!("/{partition}/chain/"))
        })
        .collect();
    chain.sort();
    let path = chain.pop().unwrap();
    let mut m: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    let (start, old_next) = (
        m["start_offset"].as_i64().unwrap(),
        m["next_offset"].as_i64().unwrap(),
    );
    let (from, to) = (
        format!("/data/{start:020}-{old_next:020}/"),
        format!("/data/{start:020}-{next:020}/"),
    );
    let root = store.to_str().unwrap().to_string() + "/";
    for o in ["log", "index", "timeindex", "txnindex", "producer_snapshot"] {
        if let Some(k) = m["objects"][o]["key"].as_str().map(String::from) {
            let nk = k.replace(&from, &to);
            let dst = PathBuf::from(&root).join(&nk);
            fs::create_dir_all(dst.parent().unwrap()).unwrap();
            fs::rename(PathBuf::from(&root).join(&k), &dst).unwrap();
            m["objects"][o]["key"] = nk.into();
        }
    }
    m["next_offset"] = next.into();
    fs::write(&path, serde_json::to_vec(&m).unwrap()).unwrap();
    format!("{start}")
}

/// Restore bounds every range by its batches: a `next_offset` raised to 2^63-1 (it would
/// become the log end, the high watermark and a snapshot's name) or lowered below the last
/// batch is refused naming the manifest and the numbers, and nothing of it is placed.
#[test]
fn a_range_whose_bounds_do_not_fit_its_batches_is_refused() {
    for (topic, next) in [("codec-lz4", i64::MAX), ("codec-zstd", 45)] {
        let tmp = tempfile::tempdir().unwrap();
        let (_src, url) = archived(tmp.path(), "4.3.1");
        let store = tmp.path().join("store");
        let start = move_last_range(&store, topic, 0, next);
        let dst = tmp.path().join("dst");
        let out = segvault(&[
            "restore",
            &url,
            "--to",
            dst.to_str().unwrap(),
            "--topic",
            &format!("^{topic}$"),
        ]);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "{topic}: {err}");
        assert!(
            err.contains(&format!("{start:0>20}")) || err.contains(&format!("/data/{start:0>20}-")),
            "{topic}: {err}"
        );
        assert!(
            err.contains("does not fit its batches")
                || err.contains(&format!("next segment begins at offset {next}")),
            "{topic}: {err}"
        );
        assert!(!dst.join(format!("{topic}-0")).exists(), "{topic}: placed");
    }
}

/// A small object (an index) stored as a zstd frame that decompresses to far more than the
/// manifest says is refused before it grows in memory.
#[test]
fn a_small_object_that_decompresses_past_its_size_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (_src, url) = archived(tmp.path(), "4.3.1");
    let store = tmp.path().join("store");
    let path = walk(&store)
        .into_iter()
        .find(|k| k.contains("/topics/codec-none/") && k.contains("/0/chain/"))
        .unwrap();
    let mut m: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    let key = m["objects"]["index"]["key"].as_str().unwrap().to_string();
    // 1 GiB of zeros in one frame: about 40 KB stored.
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..1024 {
        std::io::Write::write_all(&mut enc, &zeros).unwrap();
    }
    let bomb = enc.finish().unwrap();
    fs::write(store.join(&key), &bomb).unwrap();
    m["objects"]["index"]["encoding"] = "zstd-frames".into();
    m["objects"]["index"]["stored_size"] = (bomb.len() as u64).into();
    fs::write(&path, serde_json::to_vec(&m).unwrap()).unwrap();
    let dst = tmp.path().join("dst");
    let out = segvault(&[
        "restore",
        &url,
        "--to",
        dst.to_str().unwrap(),
        "--topic",
        "^codec-none$",
    ]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&key) && err.contains("decompresses to more than"),
        "{err}"
    );
}

/// A restore killed after renaming a partition into place but before its journal entry (or
/// out of space writing it) resumes: the journal was written ahead of the rename, so the
/// placed partition is recognised, nothing is refused, nothing placed twice. And a restore
/// that is refused leaves no `.segvault-restore/` behind in an otherwise complete log dir.
#[test]
fn a_restore_killed_between_placing_and_journaling_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let (_src, url) = archived(tmp.path(), "4.3.1");
    let dst = tmp.path().join("dst");
    let out = segvault(&["restore", &url, "--to", dst.to_str().unwrap()]);
    assert_exit(&out, 0);
    let cluster = fs::read_to_string(dst.join("meta.properties"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("cluster.id=").map(String::from))
        .unwrap();
    let parts = partition_dirs(&dst);
    let before = fs::read(dst.join("codec-lz4-0/00000000000000000000.log")).unwrap();
    // Refused (the dir already holds data): no staging dir is left behind.
    let again = segvault(&["restore", &url, "--to", dst.to_str().unwrap()]);
    assert_ne!(again.status.code(), Some(0));
    assert!(
        !dst.join(".segvault-restore").exists(),
        "a refused restore left .segvault-restore"
    );
    // The state a kill between the rename of codec-lz4-0 and its journal entry leaves.
    let done: Vec<&String> = parts.iter().filter(|p| *p != "codec-lz4-0").collect();
    fs::create_dir_all(dst.join(".segvault-restore")).unwrap();
    fs::write(
        dst.join(".segvault-restore/journal.json"),
        serde_json::json!({"cluster_id": cluster, "done": done, "placing": ["codec-lz4-0"]})
            .to_string(),
    )
    .unwrap();
    fs::remove_file(dst.join(".kafka_cleanshutdown")).unwrap();
    let out = segvault(&["restore", &url, "--to", dst.to_str().unwrap()]);
    assert_exit(&out, 0);
    assert!(!dst.join(".segvault-restore").exists());
    assert!(dst.join(".kafka_cleanshutdown").exists());
    assert_eq!(partition_dirs(&dst), parts);
    assert!(fs::read(dst.join("codec-lz4-0/00000000000000000000.log")).unwrap() == before);
}

/// The restore holds the target's `.lock` (fcntl, as a broker takes it) from start to end: a
/// process trying to take it mid-restore (a broker starting) fails. The restore runs slowly
/// here, from S3 through Toxiproxy's latency, so that "mid-restore" lasts.
#[test]
fn a_restore_holds_the_targets_lock_until_it_ends() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    copy_dir(&fixture("4.3.1"), &src, &[]).unwrap();
    let s3 = segvault_harness::S3Server::start(&["archive"]).unwrap();
    let url = "s3://archive/kafka";
    let envs = |cmd: &mut Command, endpoint: &str| {
        cmd.envs(s3.env_via(endpoint));
    };
    let mut a = crate::common::run::segvault();
    a.args([
        "archive",
        "--once",
        "--store",
        url,
        "--log-dir",
        src.to_str().unwrap(),
    ]);
    envs(&mut a, &s3.endpoint);
    assert_eq!(a.output().unwrap().status.code(), Some(0));
    let slow = segvault_harness::Toxiproxy::start(&s3.endpoint).unwrap();
    slow.add(
        "latency",
        "latency",
        "downstream",
        1.0,
        r#"{"latency":150,"jitter":0}"#,
    )
    .unwrap();
    let dst = tmp.path().join("dst");
    let mut r = crate::common::run::segvault();
    r.args(["restore", url, "--to", dst.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    envs(&mut r, &slow.endpoint);
    let mut child = r.spawn().unwrap();
    let start = std::time::Instant::now();
    while !dst.join(".segvault-restore").exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the restore ended before its staging dir was seen"
        );
        assert!(
            start.elapsed() < std::time::Duration::from_secs(120),
            "no staging dir"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let try_lock = Command::new("python3")
        .args([
            "-c",
            "import fcntl,sys; f=open(sys.argv[1],'a+'); fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)",
        ])
        .arg(dst.join(".lock"))
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(
        child.try_wait().unwrap().is_none(),
        "the restore ended during the check: make it slower"
    );
    assert!(
        !try_lock.success(),
        "another process took the target's .lock mid-restore"
    );
    let out = child.wait_with_output().unwrap();
    assert_exit(&out, 0);
    assert!(
        !dst.join(".lock").exists(),
        "the restore left the .lock it created"
    );
}

/// A file under a local store's root whose name is not UTF-8 is an unknown key, not a reason
/// for `ls` or a restore to read nothing.
#[test]
fn a_non_utf8_key_in_a_local_store_does_not_hide_the_archive() {
    use std::os::unix::ffi::OsStrExt;
    let tmp = tempfile::tempdir().unwrap();
    let (_src, url) = archived(tmp.path(), "4.3.1");
    let store = tmp.path().join("store");
    let odd = store
        .join("segvault/v1")
        .join(std::ffi::OsStr::from_bytes(b"stray-\xff\xfe"));
    fs::write(&odd, b"x").unwrap();
    let out = segvault(&["ls", &url, "--format", "json"]);
    assert_exit(&out, 0);
    let parts = json_lines(&out)
        .iter()
        .filter(|l| l["type"] == "partition")
        .count();
    assert!(parts >= 10, "{parts} partitions listed");
    let dst = tmp.path().join("dst");
    let out = segvault(&[
        "restore",
        &url,
        "--to",
        dst.to_str().unwrap(),
        "--topic",
        "^codec-none$",
    ]);
    assert_exit(&out, 0);
}

/// A tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs(PathBuf);
impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        fs::create_dir_all(at).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .unwrap();
        assert!(
            st.success(),
            "mount -t tmpfs {} (the test needs root)",
            at.display()
        );
        Tmpfs(at.to_path_buf())
    }
    fn resize(&self, size: &str) {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(st.success());
    }
}
impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// A restore into a file system that fills up fails naming a file it was writing, and once
/// there is room again the same command resumes and completes: every partition in place,
/// byte for byte what a restore with room to spare places. Tried with the disk full at
/// many points of the restore (sizes from 96 to 512 KiB), so that some fill it while a
/// partition is built, others while the journal or a checkpoint is written.
#[test]
fn a_restore_that_runs_out_of_space_resumes_when_there_is_room() {
    let tmp = tempfile::tempdir().unwrap();
    let (_src, url) = archived(tmp.path(), "4.3.1");
    let full = tmp.path().join("reference");
    let out = segvault(&["restore", &url, "--to", full.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let rel = |root: &Path| -> Vec<(String, Vec<u8>)> {
        walk(root)
            .into_iter()
            .map(|p| {
                let bytes = fs::read(&p).unwrap();
                (
                    p.strip_prefix(root.to_str().unwrap()).unwrap().to_string(),
                    bytes,
                )
            })
            .collect()
    };
    let want = rel(&full);
    let disk = Tmpfs::mount(&tmp.path().join("small"), "64m");
    let dst = disk.0.join("logs");
    let mut failed = 0;
    for kib in (96..=512).step_by(16) {
        let _ = fs::remove_dir_all(&dst);
        disk.resize(&format!("{kib}k"));
        let out = segvault(&["restore", &url, "--to", dst.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        if out.status.code() != Some(0) {
            failed += 1;
            assert_eq!(out.status.code(), Some(2), "{kib} KiB: {err}");
            assert!(
                err.contains(&dst.display().to_string()) && err.contains("No space left"),
                "{kib} KiB: {err}"
            );
        }
        disk.resize("64m");
        if out.status.code() != Some(0) {
            let out = segvault(&["restore", &url, "--to", dst.to_str().unwrap()]);
            assert_eq!(
                out.status.code(),
                Some(0),
                "{kib} KiB, resumed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert!(!dst.join(".segvault-restore").exists(), "{kib} KiB");
        let got = rel(&dst);
        assert_eq!(
            got.iter().map(|(p, _)| p).collect::<Vec<_>>(),
            want.iter().map(|(p, _)| p).collect::<Vec<_>>(),
            "{kib} KiB: other files"
        );
        for ((p, a), (_, b)) in got.iter().zip(&want) {
            assert!(a == b, "{kib} KiB: {p} differs");
        }
    }
    assert!(failed >= 5, "the disk was full in only {failed} runs");
}
