//! An archive pass works from a listing of the log dir, and a running broker changes the dir
//! under it: retention renames segments to `.deleted` and deletes them later, and the log
//! cleaner replaces segments with a merged, compacted one (LocalLog.replaceSegments: the old
//! segments' files are renamed to `.deleted`, `.log` first, then the replacement's `.swap`
//! files move into place). These tests replay those renames, in Kafka's order, between the
//! listing and the pass, on copies of the real 3.9.2 fixture: the `compacted-0` partition
//! holds a real cleaner's output (the merged `0.log`) beside the segments it replaced (the
//! `.deleted` files), so the pre-clean state is rebuilt from the broker's own files.
//!
//! What must hold: the pass never fails and never publishes bytes of a replacement under the
//! listed segment's range; a segment renamed to `.deleted` is still archived, byte for byte,
//! without indexes that may be a replacement's; the next pass takes up where the chain ends;
//! and what is archived restores to the broker's bytes.

use crate::common::logdir::segments as bases;
use crate::common::paths::fixture;
use crate::common::run::{assert_exit, json_lines, segvault};
use crate::common::store::list_files;
use segvault_core::archive::pass::{archive_listing, archive_once, Outcome, PassOptions, Report};
use segvault_core::archive::{open, Store};
use segvault_core::logdir;
use segvault_harness::fixtures::copy_dir;
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The fixture whose cleaner output the tests replay.
const VERSION: &str = "3.9.2";
const PART: &str = "compacted-0";

/// `base` → the 20-digit file stem.
fn stem(base: i64) -> String {
    format!("{base:020}")
}

/// The segments the cleaner's last round replaced in the fixture, by base. The cleaner ran
/// twice there: the first round merged `[0, 165)` into a new `0.log` (its other inputs' are
/// the `.deleted` files from 15 to 150), the second merged that `0.log` with 165 and 180 into
/// today's `0.log`, renaming the first round's output to `0.log.deleted`. So the second
/// round's inputs are `0.log.deleted` and the `.deleted` segments after its last offset.
fn replaced_bases(dir: &Path) -> Vec<i64> {
    let first = fs::read(dir.join(format!("{}.log.deleted", stem(0)))).unwrap();
    let mut entries = segvault_format::log_entries(&first);
    let last = entries
        .by_ref()
        .filter_map(|b| b.last_offset())
        .last()
        .unwrap();
    let mut v: Vec<i64> = fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_suffix(".log.deleted")?
                .parse()
                .ok()
        })
        .filter(|&b| b == 0 || b > last)
        .collect();
    v.sort();
    v
}

fn rename(dir: &Path, from: &str, to: &str) {
    fs::rename(dir.join(from), dir.join(to)).unwrap_or_else(|e| panic!("{from} -> {to}: {e}"));
}

/// A copy of the fixture log dir with `compacted-0` as it was before the cleaner ran: the
/// replaced segments live again, the merged replacement waits as `.swap` files. Returns the
/// copy and the replaced bases.
fn before_cleaning(tmp: &Path) -> (PathBuf, Vec<i64>) {
    let dir = tmp.join("logs");
    copy_dir(&fixture(VERSION), &dir, &[]).unwrap();
    let p = dir.join(PART);
    let old = replaced_bases(&p);
    assert_eq!(old, [0, 165, 180]);
    for ext in ["log", "index", "timeindex"] {
        rename(
            &p,
            &format!("{}.{ext}", stem(0)),
            &format!("{}.{ext}.swap", stem(0)),
        );
    }
    for &b in &old {
        for ext in ["log", "index", "timeindex"] {
            rename(
                &p,
                &format!("{}.{ext}.deleted", stem(b)),
                &format!("{}.{ext}", stem(b)),
            );
        }
    }
    (dir, old)
}

/// LocalLog.replaceSegments after the `.cleaned` → `.swap` step: each old segment's files are
/// renamed to `.deleted` (`.log` first), then the replacement's `.swap` suffix is removed.
/// `swap_in: false` stops before that last step (the window where only `.deleted` names hold
/// the old segments).
fn replace_segments(p: &Path, old: &[i64], swap_in: bool) {
    for &b in old {
        for ext in ["log", "index", "timeindex"] {
            rename(
                p,
                &format!("{}.{ext}", stem(b)),
                &format!("{}.{ext}.deleted", stem(b)),
            );
        }
    }
    if swap_in {
        self::swap_in(p);
    }
}

/// The last step of the replacement: the merged segment's `.swap` suffix goes (`.log` first).
fn swap_in(p: &Path) {
    for ext in ["log", "index", "timeindex"] {
        rename(
            p,
            &format!("{}.{ext}.swap", stem(0)),
            &format!("{}.{ext}", stem(0)),
        );
    }
}

fn store(tmp: &Path) -> (Store, PathBuf) {
    let root = tmp.join("store");
    (open(&format!("file://{}", root.display())).unwrap(), root)
}

fn run<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn outcomes<'a>(r: &'a Report, part: &str) -> &'a [Outcome] {
    &r.partitions
        .iter()
        .find(|p| format!("{}-{}", p.topic, p.partition) == part)
        .unwrap_or_else(|| panic!("{part} not in the report"))
        .outcomes
}

/// Every manifest of `topic` in the file store: `(start, manifest)`, sorted.
fn chain(root: &Path, topic: &str) -> Vec<(i64, Value)> {
    let mut out = vec![];
    for k in list_files(root, "") {
        let p = root.join(k);
        if p.parent().unwrap().ends_with("chain") {
            let m: Value = serde_json::from_slice(&fs::read(&p).unwrap()).unwrap();
            if m["topic"] == topic {
                out.push((m["start_offset"].as_i64().unwrap(), m));
            }
        }
    }
    out.sort_by_key(|(s, _)| *s);
    out
}

/// The stored bytes of a manifest's object `name` (`log`, `index`, ...), if it has one.
fn object(root: &Path, m: &Value, name: &str) -> Option<Vec<u8>> {
    let key = m["objects"][name]["key"].as_str()?;
    Some(fs::read(root.join(key)).unwrap())
}

/// The cleaner's replacement is in place when the pass opens the listed `0.log`: its batches
/// reach offsets the listed successor holds, so nothing is published for the partition (the
/// other partitions are archived as usual). The next pass, listing again, archives the merged
/// segment whole, with its indexes.
#[test]
fn a_segment_the_cleaner_replaced_after_the_listing_is_left_for_the_next_pass() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, old) = before_cleaning(tmp.path());
    let p = dir.join(PART);
    let listing = logdir::scan(&dir).unwrap();
    replace_segments(&p, &old, true);
    let (store, root) = store(tmp.path());
    let opts = PassOptions::default();

    let r = run(archive_listing(&store, &listing, &opts)).unwrap();
    assert_eq!((r.changed, r.corrupt, r.divergences), (1, 0, 0), "{r:#?}");
    match outcomes(&r, PART) {
        [Outcome::Changed { base: 0, message }] => {
            assert!(
                message.contains("next segment begins at offset 165"),
                "{message}"
            );
            assert!(message.contains(&format!("{}.log", stem(0))), "{message}");
        }
        o => panic!("{o:?}"),
    }
    assert!(chain(&root, "compacted").is_empty());
    // The other partitions were not held up.
    assert!(r.uploaded_segments > 10, "{r:#?}");

    let r = run(archive_once(&store, std::slice::from_ref(&dir), &opts)).unwrap();
    assert_eq!((r.changed, r.corrupt, r.divergences), (0, 0, 0), "{r:#?}");
    let c = chain(&root, "compacted");
    assert_eq!(c.len(), 1, "{c:?}");
    let (start, m) = &c[0];
    assert_eq!((*start, m["next_offset"].as_i64()), (0, Some(195)));
    for (name, ext) in [
        ("log", "log"),
        ("index", "index"),
        ("timeindex", "timeindex"),
    ] {
        assert_eq!(
            object(&root, m, name).as_deref(),
            Some(&fs::read(p.join(format!("{}.{ext}", stem(0)))).unwrap()[..]),
            "{name}"
        );
    }
}

/// The pass runs in the window where the old segments have their `.deleted` names and the
/// replacement is not in place yet: every listed segment is archived from its `.deleted`
/// file, byte for byte, without index objects (their names may already hold a replacement's),
/// and the restore rebuilds the indexes exactly as the broker had written them.
#[test]
fn segments_renamed_to_deleted_after_the_listing_are_archived_from_there() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, old) = before_cleaning(tmp.path());
    let p = dir.join(PART);
    let original = tmp.path().join("original");
    copy_dir(&p, &original, &[]).unwrap();
    let listing = logdir::scan(&dir).unwrap();
    replace_segments(&p, &old, false);
    let (store, root) = store(tmp.path());

    let r = run(archive_listing(&store, &listing, &PassOptions::default())).unwrap();
    assert_eq!((r.changed, r.corrupt, r.divergences), (0, 0, 0), "{r:#?}");
    assert!(outcomes(&r, PART)
        .iter()
        .all(|o| matches!(o, Outcome::Uploaded { renamed: true, .. })));
    assert_eq!(r.renamed_segments, 3);
    let c = chain(&root, "compacted");
    let ranges: Vec<(i64, i64)> = c
        .iter()
        .map(|(s, m)| (*s, m["next_offset"].as_i64().unwrap()))
        .collect();
    let mut want: Vec<(i64, i64)> = old.windows(2).map(|w| (w[0], w[1])).collect();
    want.push((*old.last().unwrap(), 195));
    assert_eq!(ranges, want);
    for (start, m) in &c {
        assert_eq!(
            object(&root, m, "log").unwrap(),
            fs::read(original.join(format!("{}.log", stem(*start)))).unwrap(),
            "range {start}"
        );
        for name in ["index", "timeindex", "txnindex"] {
            assert!(m["objects"][name].is_null(), "{start}: {name} in {m}");
        }
    }
    // The swap completes; the next pass finds the merged segment's range archived already.
    swap_in(&p);
    let r = run(archive_once(
        &store,
        std::slice::from_ref(&dir),
        &PassOptions::default(),
    ))
    .unwrap();
    assert!(outcomes(&r, PART).is_empty(), "{r:#?}");
    assert_eq!(chain(&root, "compacted").len(), c.len());

    // The restore gives back the replaced segments as the broker wrote them, indexes rebuilt.
    let to = tmp.path().join("restored");
    let out = segvault()
        .args(["restore", &format!("file://{}", root.display()), "--to"])
        .arg(&to)
        .args(["--topic", "^compacted$", "--format", "json"])
        .output()
        .unwrap();
    assert_exit(&out, 0);
    let back = to.join(PART);
    assert_eq!(bases(&back), old);
    for &b in &old {
        for ext in ["log", "index", "timeindex"] {
            let name = format!("{}.{ext}", stem(b));
            assert_eq!(
                fs::read(back.join(&name)).unwrap(),
                fs::read(original.join(&name)).unwrap(),
                "{name}"
            );
        }
    }
}

/// Retention removed the listed first segment, under both names, before the pass reached it:
/// nothing is published and the pass does not fail (exit 0 from the CLI). The next pass finds
/// the partition starting later and, once `--gap-after` has passed, records the lost offsets
/// as a gap before archiving on.
#[test]
fn a_segment_deleted_after_the_listing_is_a_change_not_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("logs");
    copy_dir(&fixture(VERSION), &dir, &[]).unwrap();
    let p = dir.join("codec-none-0");
    assert_eq!(bases(&p), [0, 20, 40]);
    let listing = logdir::scan(&dir).unwrap();
    for ext in ["log", "index", "timeindex"] {
        fs::remove_file(p.join(format!("{}.{ext}", stem(0)))).unwrap();
    }
    let (store, root) = store(tmp.path());
    let r = run(archive_listing(&store, &listing, &PassOptions::default())).unwrap();
    assert_eq!((r.changed, r.corrupt), (1, 0), "{r:#?}");
    match outcomes(&r, "codec-none-0") {
        [Outcome::Changed { base: 0, message }] => {
            assert!(message.contains("gone since the listing"), "{message}")
        }
        o => panic!("{o:?}"),
    }
    assert!(chain(&root, "codec-none")
        .iter()
        .all(|(_, m)| m["partition"] != 0));

    let opts = PassOptions {
        gap_after: Duration::ZERO,
        ..PassOptions::default()
    };
    let r = run(archive_once(&store, std::slice::from_ref(&dir), &opts)).unwrap();
    assert_eq!(
        outcomes(&r, "codec-none-0"),
        [
            Outcome::Gap { start: 0, next: 20 },
            Outcome::Uploaded {
                start: 20,
                next: 40,
                bytes: outcomes(&r, "codec-none-0")
                    .iter()
                    .find_map(|o| match o {
                        Outcome::Uploaded { bytes, .. } => Some(*bytes),
                        _ => None,
                    })
                    .unwrap(),
                slice_position: 0,
                renamed: false
            }
        ]
    );
}

/// When the listing still holds, a segment whose batches reach its successor's base offset is
/// a broken log, not a race: refused as corrupt with the file, byte position and offset, and
/// the CLI exits 1.
#[test]
fn a_segment_overlapping_its_successor_is_corrupt() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("logs");
    copy_dir(&fixture(VERSION), &dir, &[]).unwrap();
    let p = dir.join("codec-none-0");
    let first = p.join(format!("{}.log", stem(0)));
    let len = fs::metadata(&first).unwrap().len();
    let mut both = fs::read(&first).unwrap();
    both.extend(fs::read(p.join(format!("{}.log", stem(20)))).unwrap());
    fs::write(&first, both).unwrap();

    let out = segvault()
        .args(["archive", "--once", "--format", "json", "--store"])
        .arg(format!("file://{}", tmp.path().join("store").display()))
        .arg("--log-dir")
        .arg(&dir)
        .output()
        .unwrap();
    assert_exit(&out, 1);
    let report: Value = json_lines(&out.stdout)
        .into_iter()
        .find(|l| l["report"]["topic"] == "codec-none" && l["report"]["partition"] == 0)
        .unwrap();
    let o = &report["report"]["outcomes"][0];
    assert_eq!(o["outcome"], "corrupt", "{o}");
    assert_eq!(
        (
            o["base"].as_i64(),
            o["position"].as_u64(),
            o["offset"].as_i64()
        ),
        (Some(0), Some(len), Some(20))
    );
    assert!(
        o["message"]
            .as_str()
            .unwrap()
            .contains("expected offsets below 20"),
        "{o}"
    );
}

/// A listing taken while the cleaner swaps (the replaced segments already `.deleted`, the
/// merged one still `.swap`) lacks segments that hold data. Nothing permanent is built on it:
/// not the partition's start (here the listing's first segment is 195, the log starts at 0),
/// not a range whose end is the listing's next segment. Once the swap is done, the next pass
/// archives from 0.
#[test]
fn a_listing_taken_mid_swap_fixes_no_start_and_no_range() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, old) = before_cleaning(tmp.path());
    let p = dir.join(PART);
    // The broker has rolled since: 195 is closed (the high watermark is 200).
    fs::write(p.join(format!("{}.log", stem(200))), b"").unwrap();
    replace_segments(&p, &old, false);
    let listing = logdir::scan(&dir).unwrap();
    let (store, root) = store(tmp.path());
    let r = run(archive_listing(&store, &listing, &PassOptions::default())).unwrap();
    match outcomes(&r, PART) {
        [Outcome::Changed { base: 195, message }] => {
            assert!(message.contains("may have missed segments"), "{message}")
        }
        o => panic!("{o:?}"),
    }
    assert!(chain(&root, "compacted").is_empty());
    swap_in(&p);
    let r = run(archive_once(
        &store,
        std::slice::from_ref(&dir),
        &PassOptions::default(),
    ))
    .unwrap();
    assert_eq!(r.changed, 0, "{r:#?}");
    let c = chain(&root, "compacted");
    assert_eq!(
        c.iter()
            .map(|(s, m)| (*s, m["next_offset"].as_i64().unwrap()))
            .collect::<Vec<_>>(),
        [(0, 195), (195, 200)]
    );

    // A segment merged on its own in the middle of a partition (20 of 0, 20, 40): mid-swap,
    // the listing says 0 is followed by 40; [0, 40) from 0.log alone would lose 20..39.
    let q = dir.join("codec-none-0");
    for ext in ["log", "index", "timeindex"] {
        rename(
            &q,
            &format!("{}.{ext}", stem(20)),
            &format!("{}.{ext}.deleted", stem(20)),
        );
    }
    fs::copy(
        q.join(format!("{}.log.deleted", stem(20))),
        q.join(format!("{}.log.swap", stem(20))),
    )
    .unwrap();
    let tmp2 = tempfile::tempdir().unwrap();
    let (store2, root2) = self::store(tmp2.path());
    let r = run(archive_once(
        &store2,
        std::slice::from_ref(&dir),
        &PassOptions::default(),
    ))
    .unwrap();
    match outcomes(&r, "codec-none-0") {
        [Outcome::Changed { base: 0, .. }] => {}
        o => panic!("{o:?}"),
    }
    assert!(chain(&root2, "codec-none")
        .iter()
        .all(|(_, m)| m["partition"] != 0));
}
