//! What a store holds, read back as files (a file store's root, or the bucket directory of
//! versitygw's posix backend, which stores each object as a file named by its key), and the
//! checks of it against the log dir it archives.

use super::logdir::{closed_committed, high_watermark, segments};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// Every file under `root/prefix`, as keys relative to `root` (empty if absent).
pub fn list_files(root: &Path, prefix: &str) -> Vec<String> {
    let mut out = vec![];
    let mut stack = vec![root.join(prefix)];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p)
            } else {
                out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned())
            }
        }
    }
    out
}

/// object_store's local file system writes `<key>#<digits>` and renames it into place; such a
/// file is not an object (the store never lists it) but the leftover of an interrupted write.
pub fn is_staging(key: &str) -> bool {
    key.rsplit_once('#')
        .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// `(start, next)` of every manifest of `topic` among `keys`, read through `get`.
pub fn manifests(
    topic: &str,
    keys: &[String],
    get: &dyn Fn(&str) -> Vec<u8>,
) -> BTreeMap<i64, Value> {
    keys.iter()
        .filter(|k| {
            k.contains(&format!("/topics/{topic}/")) && k.contains("/chain/") && !is_staging(k)
        })
        .map(|k| {
            let m: Value = serde_json::from_slice(&get(k)).unwrap();
            (m["start_offset"].as_i64().unwrap(), m)
        })
        .collect()
}

/// Checks the store (read through `list(prefix) -> keys` and `get(key) -> bytes`) against
/// `topic-0` in `log_dir`: every closed committed segment archived exactly once, as one range
/// each, byte-identical with its indexes; the active segment never; every object a manifest
/// names present with the size it records; no data object that no manifest names. Returns
/// the number of manifests.
pub fn check_store(
    log_dir: &Path,
    topic: &str,
    list: &dyn Fn(&str) -> Vec<String>,
    get: &dyn Fn(&str) -> Vec<u8>,
) -> usize {
    let (n, garbage) = check_store_keeping_garbage(log_dir, topic, list, get);
    assert_eq!(garbage, Vec::<String>::new(), "unreferenced objects");
    n
}

/// [`check_store`] for a store that archivers killed with SIGKILL wrote to: data objects that
/// no manifest names are allowed only where they can never be published (under the `data/`
/// of a range whose manifest exists and names other keys: an interrupted attempt's leftovers,
/// which a pass drops when it publishes the range, unless it too is killed in between).
/// Returns the number of manifests and those leftovers.
pub fn check_store_keeping_garbage(
    log_dir: &Path,
    topic: &str,
    list: &dyn Fn(&str) -> Vec<String>,
    get: &dyn Fn(&str) -> Vec<u8>,
) -> (usize, Vec<String>) {
    let pdir = log_dir.join(format!("{topic}-0"));
    let bases = segments(&pdir);
    let hw = high_watermark(log_dir, topic, 0).unwrap();
    let want = closed_committed(log_dir, topic);
    assert!(
        want.len() >= 10,
        "only {} closed committed segments",
        want.len()
    );
    let keys = list("segvault/v1");
    let manifests = manifests(topic, &keys, get);
    let got: Vec<(i64, i64)> = manifests
        .iter()
        .map(|(s, m)| (*s, m["next_offset"].as_i64().unwrap()))
        .collect();
    assert_eq!(
        got, want,
        "archived ranges vs closed committed segments (hw {hw})"
    );
    let active = *bases.last().unwrap();
    assert!(
        !manifests.contains_key(&active),
        "the active segment {active} was archived"
    );
    let mut referenced = Vec::new();
    for (start, m) in &manifests {
        for (obj, suffix) in [
            ("log", "log"),
            ("index", "index"),
            ("timeindex", "timeindex"),
        ] {
            let key = m["objects"][obj]["key"].as_str().unwrap();
            let src = fs::read(pdir.join(format!("{start:020}.{suffix}"))).unwrap();
            assert!(
                get(key) == src,
                "{key} is not byte-identical with segment {start}'s .{suffix}"
            );
        }
        // No manifest names a missing object or one of another size than it records.
        for obj in ["log", "index", "timeindex", "txnindex", "producer_snapshot"] {
            let o = &m["objects"][obj];
            if let Some(key) = o["key"].as_str() {
                assert!(
                    keys.iter().any(|k| k == key),
                    "manifest {start} names {key}, which is not in the store"
                );
                let size = get(key).len() as u64;
                assert_eq!(
                    Some(size),
                    o["stored_size"].as_u64(),
                    "{key}: stored size differs from the manifest's"
                );
                referenced.push(key.to_string());
            }
        }
    }
    // Exactly once: no data object is stored that no manifest names. (`<key>#<n>` files are
    // the local store's staging files of an interrupted write: not objects, and never listed.)
    let garbage = unreferenced(topic, &keys, &referenced);
    for k in &garbage {
        let range = k.split("/data/").nth(1).and_then(|r| r.split('/').next());
        let start: Option<i64> = range.and_then(|r| r.split('-').next()?.parse().ok());
        assert!(
            start.is_some_and(|s| manifests.contains_key(&s)),
            "unreferenced object {k} under a range that has no manifest: it could still be published half-written"
        );
    }
    (manifests.len(), garbage)
}

/// Data objects of `topic` among `keys` that are not in `referenced`.
pub fn unreferenced(topic: &str, keys: &[String], referenced: &[String]) -> Vec<String> {
    keys.iter()
        .filter(|k| {
            k.contains(&format!("/topics/{topic}/"))
                && k.contains("/data/")
                && !is_staging(k)
                && !referenced.contains(k)
        })
        .cloned()
        .collect()
}

/// A store under test: its URL, the environment an agent needs to reach it, and the directory
/// its objects can be read back from as files (the file store's root, or the bucket
/// directory of versitygw's posix backend, which stores each object as a file named by its
/// key).
pub struct TestStore {
    pub url: String,
    pub env: Vec<(&'static str, String)>,
    pub root: PathBuf,
    _s3: Option<segvault_harness::S3Server>,
}

impl TestStore {
    /// A filesystem store in `dir/store`.
    pub fn file(dir: &Path) -> TestStore {
        let root = dir.join("store");
        TestStore {
            url: format!("file://{}", root.display()),
            env: vec![],
            root,
            _s3: None,
        }
    }

    /// A fresh versitygw server on loopback; the store is `s3://archive/kafka`.
    pub fn s3() -> TestStore {
        let s3 = segvault_harness::S3Server::start(&["archive"]).unwrap();
        TestStore {
            url: "s3://archive/kafka".into(),
            env: s3.env(),
            root: s3.root.join("archive/kafka"),
            _s3: Some(s3),
        }
    }

    /// Keys under `prefix`.
    pub fn list(&self, prefix: &str) -> Vec<String> {
        list_files(&self.root, prefix)
    }

    /// The bytes of `key`.
    pub fn get(&self, key: &str) -> Vec<u8> {
        fs::read(self.root.join(key)).unwrap_or_else(|e| panic!("{key}: {e}"))
    }
}

/// What a store holds, every partition at once (see [`audit`]).
#[derive(Debug, Default)]
pub struct Audit {
    /// Manifest keys (`chain/`).
    pub manifests: Vec<String>,
    /// Problems: a manifest naming an object that is missing or of another size.
    pub missing: Vec<String>,
    /// Data objects (`data/`) that no manifest names.
    pub unreferenced: Vec<String>,
}

/// Reads every manifest under `root/segvault/v1` (a file store's root, or versitygw's bucket
/// directory) and checks that every object it names is there with the size it records.
pub fn audit(root: &Path) -> Audit {
    let keys = list_files(root, "segvault/v1");
    let mut a = Audit::default();
    let mut named = std::collections::BTreeSet::new();
    for k in keys
        .iter()
        .filter(|k| k.contains("/chain/") && !is_staging(k))
    {
        let m: Value = serde_json::from_slice(&fs::read(root.join(k)).unwrap())
            .unwrap_or_else(|e| panic!("{k}: {e}"));
        for obj in ["log", "index", "timeindex", "txnindex", "producer_snapshot"] {
            let o = &m["objects"][obj];
            if let Some(key) = o["key"].as_str() {
                named.insert(key.to_string());
                match fs::metadata(root.join(key)) {
                    Ok(md) if Some(md.len()) == o["stored_size"].as_u64() => {}
                    Ok(md) => a.missing.push(format!(
                        "{k} names {key} of {} bytes; the store holds {}",
                        o["stored_size"],
                        md.len()
                    )),
                    Err(e) => a.missing.push(format!("{k} names {key}: {e}")),
                }
            }
        }
        a.manifests.push(k.clone());
    }
    a.unreferenced = keys
        .into_iter()
        .filter(|k| k.contains("/data/") && !is_staging(k) && !named.contains(k))
        .collect();
    a.manifests.sort();
    a
}
