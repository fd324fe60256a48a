//! What `ls` and `restore` read, and what they make of chain indexes: an archive whose
//! partitions carry `index/` objects (and whose indexed manifests are even gone) reads and
//! restores exactly as the same archive without them; an index that disagrees with its key,
//! its entries or `start.json` is a PROBLEM naming it; a read selected by `--topic` and
//! `--partition` reads nothing of the other partitions (shown by damaging every one of them:
//! the selected read stays clean); a restore fetches only the producer snapshot it places.

use crate::common::logdir::walk;
use crate::common::paths::fixture;
use crate::common::run::{assert_exit, json_lines, output, segvault};
use segvault_format::encode::{encode_batch, BatchSpec, RecordSpec};
use segvault_format::index_build;
use segvault_format::text::OffsetCheckpointEntry;
use segvault_format::text::{parse_offset_checkpoint, write_offset_checkpoint};
use segvault_harness::fixtures::copy_dir;
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

const VERSION: &str = "4.3.1";
/// Ranges per chain index (`manifest::INDEX_SPAN`).
const INDEX_SPAN: usize = 64;
/// Closed one-record segments of `codec-none-0` in the long-chain log dir: two full indexes
/// and a few ranges after them.
const RANGES: i64 = 2 * INDEX_SPAN as i64 + 3;

fn run(args: &[&str]) -> Output {
    output(segvault().args(args))
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every file under `dir`, relative to it: path -> bytes.
fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = walk(dir)
        .into_iter()
        .filter(|p| p.is_file())
        .map(|p| {
            let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
            (rel, fs::read(&p).unwrap())
        })
        .collect();
    files.sort();
    files
}

/// A copy of the fixture whose `codec-none-0` holds [`RANGES`] closed segments of one record
/// each (offsets 0, 1, ...) and an active one, all below the high watermark. Returns the log
/// dir.
fn long_chain_log_dir(tmp: &Path) -> PathBuf {
    let src = tmp.join("src");
    copy_dir(&fixture(VERSION), &src, &[]).unwrap();
    let part = src.join("codec-none-0");
    for e in fs::read_dir(&part).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("000") {
            fs::remove_file(&p).unwrap();
        }
    }
    for base in 0..=RANGES {
        let batch = encode_batch(&BatchSpec {
            base_offset: base,
            base_timestamp: 1_700_000_000_000 + base,
            records: vec![RecordSpec::kv(b"k", format!("v{base}").as_bytes())],
            ..Default::default()
        });
        let built = index_build::build_indexes(&batch, base, 4096).unwrap();
        fs::write(part.join(format!("{base:020}.log")), &batch).unwrap();
        fs::write(part.join(format!("{base:020}.index")), built.offset_index).unwrap();
        fs::write(part.join(format!("{base:020}.timeindex")), built.time_index).unwrap();
    }
    let cp = src.join("replication-offset-checkpoint");
    let bytes = fs::read(&cp).unwrap();
    let mut entries = parse_offset_checkpoint(&bytes).unwrap();
    for e in entries.iter_mut() {
        if e.topic == "codec-none" && e.partition == 0 {
            *e = OffsetCheckpointEntry {
                topic: e.topic,
                partition: 0,
                offset: RANGES + 1,
            };
        }
    }
    fs::write(&cp, write_offset_checkpoint(&entries)).unwrap();
    src
}

/// Archives `src` into `tmp/store`; returns the store URL.
fn archive(tmp: &Path, src: &Path) -> String {
    let url = format!("file://{}", tmp.join("store").display());
    let out = run(&[
        "archive",
        "--once",
        "--store",
        &url,
        "--log-dir",
        src.to_str().unwrap(),
    ]);
    assert_exit(&out, 0);
    url
}

/// The one entry of directory `dir`.
fn only_entry(dir: &Path) -> PathBuf {
    let mut it = fs::read_dir(dir).unwrap();
    let one = it.next().unwrap().unwrap().path();
    assert!(
        it.next().is_none(),
        "{} holds more than one entry",
        dir.display()
    );
    one
}

/// The `topics/` directory of the one cluster in the store at `store`.
fn topics_dir(store: &Path) -> PathBuf {
    only_entry(&store.join("segvault/v1/clusters")).join("topics")
}

/// The directory of `topic-partition` in the store at `store`.
fn partition_dir(store: &Path, topic: &str, partition: i32) -> PathBuf {
    only_entry(&topics_dir(store).join(topic)).join(partition.to_string())
}

/// The manifests of a partition dir's `chain/`, by start offset: (path, bytes).
fn chain(part: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out: Vec<(PathBuf, Vec<u8>)> = fs::read_dir(part.join("chain"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let b = fs::read(&p).unwrap();
            (p, b)
        })
        .collect();
    out.sort();
    out
}

fn offsets(manifest: &[u8]) -> (i64, i64) {
    let v: Value = serde_json::from_slice(manifest).unwrap();
    (
        v["start_offset"].as_i64().unwrap(),
        v["next_offset"].as_i64().unwrap(),
    )
}

/// A chain index as the layout describes it (`segvault.chain-index.v1`): the manifests of
/// consecutive ranges `first` to `next`, each exactly as stored under `chain/`.
fn chain_index(first: i64, next: i64, manifests: &[Vec<u8>]) -> Vec<u8> {
    let stored: Vec<&str> = manifests
        .iter()
        .map(|m| std::str::from_utf8(m).unwrap().trim())
        .collect();
    format!(
        r#"{{"format":"segvault.chain-index.v1","first_offset":{first},"next_offset":{next},"manifests":[{}]}}"#,
        stored.join(",")
    )
    .into_bytes()
}

/// Writes the chain indexes of `part` the archiver would: one per [`INDEX_SPAN`] ranges
/// from the chain's start. Returns their paths.
fn write_indexes(part: &Path) -> Vec<PathBuf> {
    let manifests = chain(part);
    let dir = part.join("index");
    fs::create_dir_all(&dir).unwrap();
    manifests
        .chunks_exact(INDEX_SPAN)
        .map(|span| {
            let bytes: Vec<Vec<u8>> = span.iter().map(|(_, b)| b.clone()).collect();
            let (first, next) = (offsets(&bytes[0]).0, offsets(bytes.last().unwrap()).1);
            let path = dir.join(format!("{first:020}-{next:020}.json"));
            fs::write(&path, chain_index(first, next, &bytes)).unwrap();
            path
        })
        .collect()
}

/// Removes the chain indexes of a partition dir; returns them (path, bytes), in order.
fn take_indexes(part: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out: Vec<(PathBuf, Vec<u8>)> = match fs::read_dir(part.join("index")) {
        Ok(rd) => rd
            .map(|e| e.unwrap().path())
            .map(|p| {
                let b = fs::read(&p).unwrap();
                (p, b)
            })
            .collect(),
        Err(_) => vec![],
    };
    out.sort();
    for (p, _) in &out {
        fs::remove_file(p).unwrap();
    }
    out
}

/// What `ls` (text and JSON), a dry run and a restore of `codec-none` say (the target's path
/// as `DST`), and what the restore writes.
type Reading = (String, String, String, String, Vec<(String, Vec<u8>)>);

fn reading(url: &str, dst: &Path) -> Reading {
    let ls = run(&["ls", url]);
    assert_exit(&ls, 0);
    let json = run(&["ls", url, "--format", "json"]);
    assert_exit(&json, 0);
    let to = dst.to_str().unwrap();
    let dry = run(&[
        "restore",
        url,
        "--to",
        to,
        "--topic",
        "^codec-none$",
        "--dry-run",
        "--format",
        "json",
    ]);
    assert_exit(&dry, 0);
    let out = run(&["restore", url, "--to", to, "--topic", "^codec-none$"]);
    assert_exit(&out, 0);
    let at = |o: &Output| text(o).replace(to, "DST");
    (text(&ls), text(&json), at(&dry), at(&out), tree(dst))
}

/// An archive with chain indexes reads as the same archive without them, even once the
/// manifests the indexes hold are deleted from `chain/`: the same `ls` (text and JSON, byte
/// for byte), the same plan, the same restored bytes.
#[test]
fn an_archive_with_chain_indexes_reads_and_restores_as_without() {
    let tmp = tempfile::tempdir().unwrap();
    let src = long_chain_log_dir(tmp.path());
    let url = archive(tmp.path(), &src);
    let store = tmp.path().join("store");
    let part = partition_dir(&store, "codec-none", 0);
    assert_eq!(
        chain(&part).len() as i64,
        RANGES,
        "one range per closed segment"
    );
    // The archiver stored the chain's indexes itself: set them aside, to read the chain as
    // an archive of layout v1 (no index) holds it.
    let stored = take_indexes(&part);
    let before = reading(&url, &tmp.path().join("dst-before"));
    let json = json_lines(before.1.as_bytes());
    let p = json
        .iter()
        .find(|l| l["type"] == "partition" && l["topic"] == "codec-none" && l["partition"] == 0)
        .unwrap();
    assert_eq!(p["ranges"], RANGES);
    assert_eq!(p["end_offset"], RANGES);

    let indexes = write_indexes(&part);
    assert_eq!(indexes.len(), 2);
    let written: Vec<(PathBuf, Vec<u8>)> = indexes
        .iter()
        .map(|p| (p.clone(), fs::read(p).unwrap()))
        .collect();
    assert_eq!(
        written, stored,
        "the archiver's indexes are the layout's, byte for byte"
    );
    let after = reading(&url, &tmp.path().join("dst-indexed"));
    assert_eq!(before, after, "indexes beside the manifests");

    for (path, bytes) in chain(&part) {
        if offsets(&bytes).0 < 2 * INDEX_SPAN as i64 {
            fs::remove_file(path).unwrap();
        }
    }
    assert_eq!(chain(&part).len(), 3);
    let after = reading(&url, &tmp.path().join("dst-index-only"));
    assert_eq!(before, after, "the indexed manifests gone from chain/");
    // The restored log is the archived one.
    let restored = tmp.path().join("dst-index-only/codec-none-0");
    for base in [0, INDEX_SPAN as i64, RANGES - 1] {
        let name = format!("{base:020}.log");
        assert_eq!(
            fs::read(restored.join(&name)).unwrap(),
            fs::read(src.join("codec-none-0").join(&name)).unwrap(),
            "{name}"
        );
    }
}

/// Rewrites the index at `path` with `edit` applied to its JSON.
fn edit_index(path: &Path, edit: impl FnOnce(&mut Value)) {
    let mut v: Value = serde_json::from_slice(&fs::read(path).unwrap()).unwrap();
    edit(&mut v);
    fs::write(path, serde_json::to_vec(&v).unwrap()).unwrap();
}

/// An index that disagrees with its key, with the ranges it holds, with `start.json` or with
/// the index before it is a PROBLEM naming its key (exit 1), and a restore of the partition
/// is refused (exit 1) naming it too.
#[test]
fn a_chain_index_that_disagrees_is_a_problem_naming_its_key() {
    let tmp = tempfile::tempdir().unwrap();
    let src = long_chain_log_dir(tmp.path());
    archive(tmp.path(), &src);
    let span = INDEX_SPAN as i64;
    type Damage = Box<dyn Fn(&Path, &[PathBuf]) -> PathBuf>;
    let cases: Vec<(&str, Damage, String)> = vec![
        (
            "its offsets are not its key's",
            Box::new(|_, ix| {
                edit_index(&ix[1], |v| {
                    v["next_offset"] = (2 * INDEX_SPAN as i64 + 1).into()
                });
                ix[1].clone()
            }),
            format!(
                "holds the ranges from {span} to {}, but its key names {span} to {}",
                2 * span + 1,
                2 * span
            ),
        ),
        (
            "it does not begin where start.json says",
            Box::new(|part, ix| {
                let start = part.join("start.json");
                let mut v: Value = serde_json::from_slice(&fs::read(&start).unwrap()).unwrap();
                v["start_offset"] = 1.into();
                fs::write(&start, serde_json::to_vec(&v).unwrap()).unwrap();
                ix[0].clone()
            }),
            "begins at offset 0, but ".to_string(),
        ),
        (
            "an entry is another partition's manifest",
            Box::new(|part, ix| {
                let other = chain(&part.parent().unwrap().join("1"));
                let m: Value = serde_json::from_slice(&other[0].1).unwrap();
                edit_index(&ix[0], |v| v["manifests"][0] = m);
                ix[0].clone()
            }),
            "manifest 0 (of the range at 0): describes".into(),
        ),
        (
            "its entries leave a hole",
            Box::new(|_, ix| {
                edit_index(&ix[1], |v| {
                    v["manifests"].as_array_mut().unwrap().remove(3);
                });
                ix[1].clone()
            }),
            format!("manifest 3 (of the range at {}): describes", span + 3),
        ),
        (
            "it does not begin where the index before it ends",
            Box::new(move |_, ix| {
                let moved = ix[1].with_file_name(format!("{:020}-{:020}.json", span + 1, 2 * span));
                let mut v: Value = serde_json::from_slice(&fs::read(&ix[1]).unwrap()).unwrap();
                v["first_offset"] = (span + 1).into();
                v["manifests"].as_array_mut().unwrap().remove(0);
                fs::write(&moved, serde_json::to_vec(&v).unwrap()).unwrap();
                fs::remove_file(&ix[1]).unwrap();
                moved
            }),
            format!(
                "begins at offset {}, but the index before it ends at {span}",
                span + 1
            ),
        ),
        (
            "an object an indexed manifest names is gone",
            Box::new(|part, ix| {
                let range = part.join(format!("data/{:020}-{:020}", 5, 6));
                let log = walk(&range)
                    .into_iter()
                    .find(|p| p.file_name().is_some_and(|n| n == "log"))
                    .unwrap();
                fs::remove_file(log).unwrap();
                ix[0].clone()
            }),
            "the manifest of range [5, 6) in index ".to_string(),
        ),
    ];
    for (what, damage, want) in cases {
        let case = tmp.path().join(what.replace(' ', "-"));
        copy_dir(&tmp.path().join("store"), &case.join("store"), &[]).unwrap();
        let url = format!("file://{}", case.join("store").display());
        let part = partition_dir(&case.join("store"), "codec-none", 0);
        let indexes = write_indexes(&part);
        let key = damage(&part, &indexes);
        let key = key
            .strip_prefix(case.join("store"))
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let out = run(&["ls", &url, "--topic", "^codec-none$", "--partition", "0"]);
        let shown = text(&out);
        assert_exit(&out, 1);
        assert!(
            shown
                .lines()
                .any(|l| l.contains("PROBLEM") && l.contains(&key) && l.contains(&want)),
            "{what}: no PROBLEM naming {key} with {want:?}:\n{shown}"
        );
        let dst = case.join("dst");
        let to = dst.to_str().unwrap();
        let out = run(&["restore", &url, "--to", to, "--topic", "^codec-none$"]);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_exit(&out, 1);
        assert!(
            err.contains("codec-none-0") && err.contains(&key),
            "{what}: {err}"
        );
        assert!(!dst.join("codec-none-0").exists(), "{what}");
    }
}

/// Replaces every manifest, index and start record under `dir` with bytes that are not JSON.
fn spoil(dir: &Path) {
    for p in walk(dir) {
        let s = p.to_string_lossy();
        if p.is_file()
            && (s.contains("/chain/") || s.contains("/index/") || s.ends_with("start.json"))
        {
            fs::write(&p, b"{ not json").unwrap();
        }
    }
}

/// `ls` and `restore` selected by `--topic` and `--partition` read nothing of the other
/// partitions: with the manifests and start records of every other partition spoiled (any
/// read of them is a PROBLEM), the selected reads are clean and the restore succeeds.
#[test]
fn a_selected_read_reads_nothing_of_the_other_partitions() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    copy_dir(&fixture(VERSION), &src, &[]).unwrap();
    let url = archive(tmp.path(), &src);
    let store = tmp.path().join("store");
    let whole = run(&["ls", &url, "--format", "json"]);
    assert_exit(&whole, 0);
    for e in fs::read_dir(topics_dir(&store)).unwrap() {
        let p = e.unwrap().path();
        if p.file_name().unwrap() != "codec-none" {
            spoil(&p);
        }
    }
    spoil(&partition_dir(&store, "codec-none", 1));
    assert_exit(&run(&["ls", &url]), 1);
    assert_exit(&run(&["ls", &url, "--topic", "^codec-none$"]), 1);

    let out = run(&[
        "ls",
        &url,
        "--topic",
        "^codec-none$",
        "--partition",
        "0",
        "--format",
        "json",
    ]);
    assert_exit(&out, 0);
    let lines = json_lines(&out.stdout);
    let parts: Vec<&Value> = lines.iter().filter(|l| l["type"] == "partition").collect();
    assert_eq!(parts.len(), 1, "{lines:?}");
    assert_eq!(parts[0]["topic"], "codec-none");
    assert_eq!(parts[0]["partition"], 0);
    assert_eq!(parts[0]["problems"], serde_json::json!([]));
    let cluster = lines.iter().find(|l| l["type"] == "cluster").unwrap();
    assert_eq!(cluster["partitions"], 1);
    // The same partition line as the whole archive's listing gave before the damage.
    let was = json_lines(&whole.stdout)
        .into_iter()
        .find(|l| l["type"] == "partition" && l["topic"] == "codec-none" && l["partition"] == 0)
        .unwrap();
    assert_eq!(*parts[0], was);

    let dst = tmp.path().join("dst");
    let to = dst.to_str().unwrap();
    let sel = ["--topic", "^codec-none$", "--partition", "0"];
    let dry = run(&[&["restore", &url, "--to", to, "--dry-run"][..], &sel].concat());
    assert_exit(&dry, 0);
    let out = run(&[&["restore", &url, "--to", to][..], &sel].concat());
    assert_exit(&out, 0);
    assert!(dst.join("codec-none-0").is_dir());
    assert!(!dst.join("codec-none-1").exists());
    let name = "00000000000000000000.log";
    assert_eq!(
        fs::read(dst.join("codec-none-0").join(name)).unwrap(),
        fs::read(src.join("codec-none-0").join(name)).unwrap()
    );
}

/// `--topic` is repeatable: a topic matching any of them is selected, by `ls` and `restore`.
#[test]
fn topic_selections_combine() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    copy_dir(&fixture(VERSION), &src, &[]).unwrap();
    let url = archive(tmp.path(), &src);
    let sel = [
        "--topic",
        "^codec-none$",
        "--topic",
        "^txn$",
        "--partition",
        "1",
    ];
    let out = run(&[&["ls", &url, "--format", "json"][..], &sel].concat());
    assert_exit(&out, 0);
    let mut names: Vec<String> = json_lines(&out.stdout)
        .iter()
        .filter(|l| l["type"] == "partition")
        .map(|l| format!("{}-{}", l["topic"].as_str().unwrap(), l["partition"]))
        .collect();
    names.sort();
    assert_eq!(names, ["codec-none-1", "txn-1"]);
    let dst = tmp.path().join("dst");
    let out = run(&[&["restore", &url, "--to", dst.to_str().unwrap()][..], &sel].concat());
    assert_exit(&out, 0);
    let mut placed: Vec<String> = fs::read_dir(&dst)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.') && !n.starts_with("__"))
        .collect();
    placed.sort();
    assert_eq!(placed, ["codec-none-1", "txn-1"]);
}

/// A restore fetches only the producer snapshot it places (the one at the end of the last
/// whole range): a damaged snapshot of an earlier range is never read, so the restore
/// succeeds with the broker's own snapshot; a cut that places that snapshot reads it and
/// refuses it, naming its key.
#[test]
fn a_restore_fetches_only_the_producer_snapshot_it_places() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    copy_dir(&fixture(VERSION), &src, &[]).unwrap();
    let url = archive(tmp.path(), &src);
    let part = partition_dir(&tmp.path().join("store"), "codec-none", 0);
    let range = part.join(format!("data/{:020}-{:020}", 0, 20));
    let snapshot = walk(&range)
        .into_iter()
        .find(|p| p.file_name().is_some_and(|n| n == "snapshot"))
        .expect("range [0, 20) has a producer snapshot");
    let mut bytes = fs::read(&snapshot).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(&snapshot, &bytes).unwrap();

    let dst = tmp.path().join("dst");
    let to = dst.to_str().unwrap();
    let out = run(&[
        "restore",
        &url,
        "--to",
        to,
        "--topic",
        "^codec-none$",
        "--partition",
        "0",
    ]);
    assert_exit(&out, 0);
    let name = format!("{:020}.snapshot", 40);
    assert_eq!(
        fs::read(dst.join("codec-none-0").join(&name)).unwrap(),
        fs::read(src.join("codec-none-0").join(&name)).unwrap()
    );
    assert!(!dst
        .join("codec-none-0")
        .join(format!("{:020}.snapshot", 20))
        .exists());

    let cut = tmp.path().join("cut");
    let out = run(&[
        "restore",
        &url,
        "--to",
        cut.to_str().unwrap(),
        "--topic",
        "^codec-none$",
        "--partition",
        "0",
        "--until-offset",
        "30",
    ]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_exit(&out, 1);
    let key = snapshot
        .strip_prefix(tmp.path().join("store"))
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(err.contains(&key) && err.contains("SHA-256"), "{err}");
    assert!(!cut.join("codec-none-0").exists());
}

/// Files and directories whose names are not UTF-8, at every level the catalog lists
/// (`clusters/`, a cluster, `brokers/`, `topics/`, a topic, a partition, its `chain/`,
/// `index/` and `data/`), are left out of a local store's listings: `ls` says exactly what it
/// said without them and a restore still succeeds.
#[test]
fn names_that_are_not_utf8_hide_nothing_at_any_level() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    copy_dir(&fixture(VERSION), &src, &[]).unwrap();
    let url = archive(tmp.path(), &src);
    let store = tmp.path().join("store");
    let ls = |format: &str| {
        let out = run(&["ls", &url, "--format", format]);
        assert_exit(&out, 0);
        text(&out)
    };
    let before = (ls("text"), ls("json"));
    let topics = topics_dir(&store);
    let part = partition_dir(&store, "codec-none", 0);
    fs::create_dir_all(part.join("index")).unwrap();
    for (i, dir) in [
        store.join("segvault/v1/clusters"),
        topics.parent().unwrap().to_path_buf(),
        topics.parent().unwrap().join("brokers"),
        topics.clone(),
        topics.join("codec-none"),
        part.clone(),
        part.join("chain"),
        part.join("index"),
        part.join("data"),
    ]
    .iter()
    .enumerate()
    {
        let odd = |tail: &[u8]| dir.join(OsStr::from_bytes(&[b"odd-\xff", tail].concat()));
        fs::write(odd(format!("{i}").as_bytes()), b"x").unwrap();
        fs::create_dir_all(odd(format!("{i}-dir").as_bytes())).unwrap();
        fs::write(odd(format!("{i}-dir").as_bytes()).join("f"), b"x").unwrap();
    }
    assert_eq!((ls("text"), ls("json")), before);
    let dst = tmp.path().join("dst");
    let out = run(&[
        "restore",
        &url,
        "--to",
        dst.to_str().unwrap(),
        "--topic",
        "^codec-none$",
    ]);
    assert_exit(&out, 0);
    assert!(dst.join("codec-none-0").is_dir());
}

/// Over S3 (versitygw) too: the chain after the last index is listed from there (StartAfter),
/// topics, topic ids and partitions by delimiter listing, and a long chain read from its
/// indexes (the indexed manifests deleted) lists and restores as the whole chain did.
#[test]
fn over_s3_an_indexed_chain_reads_as_the_whole_chain() {
    let tmp = tempfile::tempdir().unwrap();
    let src = long_chain_log_dir(tmp.path());
    let s3 = segvault_harness::S3Server::start(&["archive"]).unwrap();
    let url = "s3://archive/kafka";
    let on_s3 = |args: &[&str]| output(segvault().args(args).envs(s3.env()));
    let logs = src.to_str().unwrap();
    assert_exit(
        &on_s3(&["archive", "--once", "--store", url, "--log-dir", logs]),
        0,
    );
    let sel = ["--topic", "^codec-none$", "--partition", "0"];
    let read = |dst: &Path| {
        let ls = on_s3(&[&["ls", url, "--format", "json"][..], &sel].concat());
        assert_exit(&ls, 0);
        let to = dst.to_str().unwrap();
        let out = on_s3(&[&["restore", url, "--to", to][..], &sel].concat());
        assert_exit(&out, 0);
        (text(&ls), tree(&dst.join("codec-none-0")))
    };
    // versitygw's posix backend keeps each object as a file named by its key. The
    // archiver's own indexes are set aside first: the chain as layout v1 holds it.
    let part = partition_dir(&s3.root.join("archive/kafka"), "codec-none", 0);
    assert_eq!(take_indexes(&part).len(), 2);
    let before = read(&tmp.path().join("dst-before"));
    let lines = json_lines(before.0.as_bytes());
    let p = lines.iter().find(|l| l["type"] == "partition").unwrap();
    assert_eq!(p["ranges"], RANGES);
    assert_eq!(write_indexes(&part).len(), 2);
    for (path, bytes) in chain(&part) {
        if offsets(&bytes).0 < 2 * INDEX_SPAN as i64 {
            fs::remove_file(path).unwrap();
        }
    }
    assert_eq!(read(&tmp.path().join("dst-after")), before);
}

/// Requests by kind (`LIST`, `GET`, `HEAD`, ...), and the keys of those that name one.
fn requests_since(
    s3: &segvault_harness::S3Server,
    mark: usize,
) -> (std::collections::BTreeMap<String, usize>, Vec<String>) {
    let reqs = s3.requests().unwrap().split_off(mark);
    let mut kinds = std::collections::BTreeMap::new();
    for r in &reqs {
        *kinds.entry(r.kind().to_string()).or_insert(0) += 1;
    }
    let keys = reqs
        .iter()
        .filter(|r| r.key != "-")
        .map(|r| r.key.clone())
        .collect();
    (kinds, keys)
}

/// A wide synthetic log dir of `shape` under `dir`, archived once to a fresh versitygw: the
/// server and the store URL.
fn wide_on_s3(
    dir: &Path,
    shape: segvault_harness::wide::Wide,
) -> (segvault_harness::S3Server, &'static str) {
    let logs = dir.join("logs");
    segvault_harness::wide::write(&logs, &fixture(VERSION), shape).unwrap();
    let s3 = segvault_harness::S3Server::start(&["archive"]).unwrap();
    let url = "s3://archive/kafka";
    let out = output(
        segvault()
            .args(["archive", "--once", "--store", url, "--log-dir"])
            .arg(&logs)
            .envs(s3.env()),
    );
    assert_exit(&out, 0);
    (s3, url)
}

/// Counted by the store itself (versitygw's access log), in an archive of 60 partitions:
/// `ls` of one partition makes 6 LISTs (clusters, brokers, topics, the topic's ids, the
/// topic id's partitions, and the partition: one listing of it all, as it holds fewer than
/// 1,000 objects) and 3 GETs (its `start.json` and its 2 manifests), whatever the other
/// partitions hold; a restore of it
/// adds the node's checkpoint and meta.properties and the objects restored (one producer
/// snapshot of the two), and names no other partition's key.
#[test]
fn ls_and_a_restore_of_one_partition_read_only_that_partition() {
    use segvault_harness::wide::Wide;
    let tmp = tempfile::tempdir().unwrap();
    let shape = Wide {
        topics: 12,
        partitions_per_topic: 5,
        segments: 2,
    };
    let (s3, url) = wide_on_s3(tmp.path(), shape);
    let on_s3 = |args: &[&str]| output(segvault().args(args).envs(s3.env()));
    let topic = Wide::topic(3);
    let sel = [
        "--topic".to_string(),
        format!("^{topic}$"),
        "--partition".into(),
        "2".into(),
    ];
    let sel: Vec<&str> = sel.iter().map(String::as_str).collect();
    let mark = s3.requests().unwrap().len();
    let out = on_s3(&[&["ls", url, "--format", "json"][..], &sel].concat());
    assert_exit(&out, 0);
    let parts = json_lines(&out.stdout)
        .into_iter()
        .filter(|l| l["type"] == "partition")
        .count();
    assert_eq!(parts, 1);
    let (kinds, keys) = requests_since(&s3, mark);
    let want: std::collections::BTreeMap<String, usize> =
        [("GET".to_string(), 3), ("LIST".to_string(), 6)].into();
    assert_eq!(kinds, want, "{keys:#?}");
    let mine = format!("/topics/{topic}/");
    assert!(
        keys.iter().all(|k| k.contains(&mine) && k.contains("/2/")),
        "{keys:#?}"
    );

    let mark = s3.requests().unwrap().len();
    let dst = tmp.path().join("dst");
    let to = dst.to_str().unwrap();
    let out = on_s3(&[&["restore", url, "--to", to][..], &sel].concat());
    assert_exit(&out, 0);
    let (kinds, keys) = requests_since(&s3, mark);
    // The same 6 LISTs and 3 GETs, the node's checkpoint and meta.properties, and the 7
    // objects restored: 2 ranges' log, index and timeindex, and one producer snapshot (the
    // last range's; the first range's is not fetched).
    let want: std::collections::BTreeMap<String, usize> =
        [("GET".to_string(), 3 + 2 + 7), ("LIST".to_string(), 6)].into();
    assert_eq!(kinds, want, "{keys:#?}");
    let snapshots = keys.iter().filter(|k| k.ends_with("/snapshot")).count();
    assert_eq!(snapshots, 1, "{keys:#?}");
    let other: Vec<&String> = keys
        .iter()
        .filter(|k| k.contains("/topics/") && !(k.contains(&mine) && k.contains("/2/")))
        .collect();
    assert!(
        other.is_empty(),
        "keys of other partitions read: {other:#?}"
    );
    assert!(
        keys.iter()
            .any(|k| k.ends_with("/replication-offset-checkpoint")),
        "{keys:#?}"
    );
}

/// A partition of more than 1,000 objects is read prefix by prefix over S3 (the one listing
/// of it all stops after its first page), its `data/` listed in slices at once (split at every
/// third index: 7 indexes, 3 slices): the same ranges, a restore of it places them, and an
/// object missing from any slice is a problem naming it.
#[test]
fn a_partition_too_large_for_one_listing_is_read_prefix_by_prefix() {
    use segvault_harness::wide::Wide;
    let tmp = tempfile::tempdir().unwrap();
    // 450 ranges of 5 objects (log, index, timeindex, snapshot, manifest), 7 indexes.
    let shape = Wide {
        topics: 1,
        partitions_per_topic: 1,
        segments: 450,
    };
    let (s3, url) = wide_on_s3(tmp.path(), shape);
    let on_s3 = |args: &[&str]| output(segvault().args(args).envs(s3.env()));
    // The listings of `data/` that start after a key (the slices after the first), and those
    // that continue a listing (a page after the first), as the access log shows them.
    let data_listings = || {
        let log = fs::read_to_string(s3.access_log()).unwrap();
        let lists = log.lines().filter(|l| l.contains("s3_ListObjectsV2"));
        let (mut sliced, mut continued) = (0, 0);
        for l in lists {
            sliced += usize::from(l.contains("%2F0%2Fdata%2F&start-after="));
            continued += usize::from(l.contains("continuation-token="));
        }
        (sliced, continued)
    };
    let before = data_listings();
    let mark = s3.requests().unwrap().len();
    let out = on_s3(&["ls", url, "--format", "json"]);
    assert_exit(&out, 0);
    let after = data_listings();
    assert_eq!(
        (after.0 - before.0, after.1 - before.1),
        (2, 0),
        "expected 2 slices listed after a key and no listing past its first page"
    );
    let lines = json_lines(&out.stdout);
    let p = lines.iter().find(|l| l["type"] == "partition").unwrap();
    assert_eq!(p["ranges"], 450);
    assert_eq!(p["start_offset"], 0);
    assert_eq!(p["end_offset"], shape.end_offset() - 20);
    let (kinds, keys) = requests_since(&s3, mark);
    // 5 fixed LISTs, the capped listing's first page, then the partition's root, `index/`,
    // `data/` in 3 slices of at most 1,000 keys (3 indexes of 64 ranges of 4 data objects
    // each: 768 keys), and `chain/` after the last index; 7 indexes, the 2 manifests
    // after them and start.json.
    assert_eq!(
        kinds.get("LIST").copied(),
        Some(5 + 1 + 2 + 3 + 1),
        "{keys:#?}"
    );
    assert_eq!(
        kinds.get("GET").copied(),
        Some(1 + 7 + 2),
        "{kinds:?} {keys:#?}"
    );
    let dst = tmp.path().join("dst");
    let out = on_s3(&["restore", url, "--to", dst.to_str().unwrap()]);
    assert_exit(&out, 0);
    let part = dst.join(format!("{}-0", Wide::topic(0)));
    assert_eq!(
        crate::common::logdir::segments(&part).len(),
        450,
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // One object gone from the first slice, one from the second, one from the last.
    let store = s3.store("archive").unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut data: Vec<String> = rt.block_on(async {
        use futures::TryStreamExt;
        use object_store::ObjectStore;
        let all: Vec<object_store::ObjectMeta> = store.list(None).try_collect().await.unwrap();
        all.into_iter()
            .map(|m| m.location.to_string())
            .filter(|k| k.contains("/data/") && k.ends_with("/timeindex"))
            .collect()
    });
    data.sort();
    assert_eq!(data.len(), 450);
    let gone = [&data[10], &data[250], &data[440]];
    rt.block_on(async {
        use object_store::ObjectStoreExt;
        for k in gone {
            store
                .delete(&object_store::path::Path::from(k.as_str()))
                .await
                .unwrap();
        }
    });
    let out = on_s3(&["ls", url, "--format", "json"]);
    assert_exit(&out, 1);
    let lines = json_lines(&out.stdout);
    let p = lines.iter().find(|l| l["type"] == "partition").unwrap();
    let problems: Vec<String> = p["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(problems.len(), 3, "{problems:#?}");
    for (k, problem) in gone.iter().zip(&problems) {
        let name = k.strip_prefix("kafka/").unwrap_or(k);
        assert!(
            problem.contains(name) && problem.contains("not in the store"),
            "{problem} does not name {name}"
        );
    }
}
