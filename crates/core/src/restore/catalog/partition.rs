//! One partition's catalog, read from its own prefix only: one delimiter listing of the
//! partition, its `start.json`, its chain index objects (`index/`, each the manifests of
//! consecutive ranges), the `chain/` manifests after the last index (a listing that starts
//! after it), the `data/` listing the manifests' objects are checked against, and its
//! evidence (`corrupt/`, `divergence/`). A partition written before chain indexes existed
//! (no `index/`) is read from `chain/` alone, as before.
//!
//! Every check holds whichever way a range was found: a manifest (from `chain/` or from an
//! index) must describe the range its position names in the partition it is under, the
//! ranges must tile the offsets from `start.json` on, and every object a manifest names must
//! be in the partition's `data/` at its size. An index must agree with its key, with its
//! entries, with `start.json` (the first) and with the index before it; one that does not is
//! a problem naming its key, and the ranges from there on are read from `chain/`.

use super::list::{list_dir, list_sizes, list_tree, list_tree_capped};
use super::{Keep, PartitionCatalog, Span};
use crate::archive::layout::{self, Key, PartitionKey};
use crate::archive::manifest::{ChainIndex, Manifest, RangeKind, StartRecord, INDEX_FORMAT};
use crate::archive::store::Store;
use crate::restore::RestoreError;
use futures::StreamExt;
use object_store::path::Path;
use object_store::ObjectMeta;
use object_store::ObjectStoreExt;
use std::collections::HashMap;

/// How many objects of one partition are asked for at once.
const WINDOW: usize = 16;

/// A start record as read: `None` if absent, `Some(Err)` if not a start record.
type StartRead = Option<Result<i64, String>>;

/// Reads one partition. A store error (other than an object found missing) fails the read:
/// an I/O error, not damage. Damage is a problem of the partition.
pub(super) async fn read_partition(
    store: &Store,
    key: PartitionKey,
    keep: Keep,
) -> Result<PartitionCatalog, RestoreError> {
    let mut p = PartitionCatalog::empty(&key);
    let listed = match list_tree_capped(store, &key.root(), ONE_PAGE).await? {
        Some(all) => Listed::from_whole(&key, all.objects),
        None => Listed::by_prefix(store, &key).await?,
    };
    let start_key = key.start();
    let start = match listed.has_start || listed.index.is_some() || listed.chain.is_some() {
        true => fetch_start(store, &start_key).await?,
        false => None,
    };
    let start_at = start.as_ref().and_then(|s| s.as_ref().ok().copied());
    let mut found = Found {
        keep,
        sizes: &listed.data,
        spans: Vec::new(),
        manifests: Vec::new(),
        suspects: Vec::new(),
    };
    let after = match listed.index {
        Some(spans) => {
            read_indexes(store, &key, spans, start_at, &mut found, &mut p.problems).await?
        }
        None => None,
    };
    if let Some(mut chain) = listed.chain {
        if !listed.whole {
            // Keys sort by offset (20 digits): listing after the key of `after - 1` skips
            // every manifest an index already gave, and nothing at or after `after`.
            let from = after.map(|a| key.manifest(a - 1));
            chain = list_tree(store, &key.chain_dir(), from.as_ref())
                .await?
                .objects;
        }
        read_chain(store, &key, chain, after, &mut found, &mut p.problems).await?;
    }
    let (spans, manifests, suspects) = (found.spans, found.manifests, found.suspects);
    drop(listed.data);
    p.problems.extend(confirm(store, suspects).await);
    for m in listed.corrupt.iter().chain(&listed.divergence) {
        match layout::parse(&m.location) {
            Some(Key::Corrupt(..)) => p.corrupt.push(m.location.to_string()),
            Some(Key::Divergence(..)) => p.divergences.push(m.location.to_string()),
            _ => {}
        }
    }
    (p.spans, p.ranges) = (spans, manifests);
    check_chain(&key, &mut p, start);
    p.divergences.sort();
    p.corrupt.sort();
    Ok(p)
}

/// A partition listing fewer than this many objects is read from one listing of its prefix
/// (one request for everything: `start.json`, `index/`, `chain/`, `data/`, evidence).
const ONE_PAGE: usize = 1000;

/// What a partition holds, as listed: by one listing of it all (a small partition), or by
/// its prefixes (`chain/` then listed after the last index only, as S3 `StartAfter`).
/// `index` and `chain` are `None` when there is nothing there.
struct Listed {
    /// Listed whole (`chain` holds all of `chain/`), or by prefix (`chain/` still to list).
    whole: bool,
    has_start: bool,
    /// The chain indexes, as `(first, next, key)` sorted by offset.
    index: Option<Vec<(i64, i64, Path)>>,
    chain: Option<Vec<ObjectMeta>>,
    /// `data/`: each object's key and size (all a check of the manifests needs).
    data: HashMap<String, u64>,
    corrupt: Vec<ObjectMeta>,
    divergence: Vec<ObjectMeta>,
}

impl Listed {
    fn from_whole(key: &PartitionKey, all: Vec<ObjectMeta>) -> Listed {
        let start = key.start();
        let mut l = Listed {
            whole: true,
            has_start: false,
            index: None,
            chain: None,
            data: HashMap::new(),
            corrupt: Vec::new(),
            divergence: Vec::new(),
        };
        let under = |name: &str| format!("{}/{name}/", key.root());
        let (index, chain, data, corrupt, divergence) = (
            under("index"),
            under("chain"),
            under("data"),
            under("corrupt"),
            under("divergence"),
        );
        for m in all {
            let k = m.location.as_ref();
            if m.location == start {
                l.has_start = true;
            } else if k.starts_with(&index) {
                l.index
                    .get_or_insert_with(Vec::new)
                    .extend(index_span(key, m));
            } else if k.starts_with(&chain) {
                l.chain.get_or_insert_with(Vec::new).push(m);
            } else if k.starts_with(&data) {
                l.data.insert(m.location.into(), m.size);
            } else if k.starts_with(&corrupt) {
                l.corrupt.push(m);
            } else if k.starts_with(&divergence) {
                l.divergence.push(m);
            }
        }
        if let Some(index) = l.index.as_mut() {
            index.sort_by_key(|s| (s.0, s.1));
        }
        l
    }

    /// A large partition: one delimiter listing of it, then each prefix that is there.
    /// `chain/` is listed later, from the last index on.
    async fn by_prefix(store: &Store, key: &PartitionKey) -> Result<Listed, RestoreError> {
        let root = list_dir(store, &key.root()).await?;
        let subtree = |name: &'static str| {
            let (store, dir) = (store.clone(), key.root().clone().join(name));
            let wanted = root.has_dir(name);
            async move {
                match wanted {
                    true => list_tree(&store, &dir, None).await.map(|l| l.objects),
                    false => Ok(Vec::new()),
                }
            }
        };
        let index = index_spans(key, subtree("index").await?);
        // `data/` keys sort by range (`data/<start>-<next>/`, 20 digits): the indexes' first
        // offsets split its listing into slices listed at once.
        let data = async {
            let bounds: Vec<Path> = index
                .iter()
                .skip(INDEXES_PER_SLICE)
                .step_by(INDEXES_PER_SLICE)
                .map(|(first, _, _)| key.range_data_bound(*first))
                .collect();
            match root.has_dir("data") {
                true => list_sizes(store, &key.root().clone().join("data"), &bounds, WINDOW).await,
                false => Ok(HashMap::new()),
            }
        };
        let (data, corrupt, divergence) =
            futures::try_join!(data, subtree("corrupt"), subtree("divergence"))?;
        let start_key = key.start();
        Ok(Listed {
            whole: false,
            has_start: root.objects.iter().any(|m| m.location == start_key),
            index: root.has_dir("index").then_some(index),
            // Listed after the indexes are read, from where they end.
            chain: root.has_dir("chain").then_some(Vec::new()),
            data,
            corrupt,
            divergence,
        })
    }
}

/// The ranges a read found so far, each checked as it is found: its span (and manifest,
/// as `keep` says), and what its objects look like in the `data/` listing (`sizes`).
struct Found<'a> {
    keep: Keep,
    sizes: &'a HashMap<String, u64>,
    spans: Vec<Span>,
    manifests: Vec<Manifest>,
    /// `(key, recorded size, problem)` of each object a manifest names that the listing
    /// does not show at its size (asked for directly before it is a problem).
    suspects: Vec<(String, u64, String)>,
}

impl Found<'_> {
    /// Range `m`, read where `at` says.
    fn add(&mut self, at: &str, m: Manifest) {
        self.suspects.extend(check_objects(at, &m, self.sizes));
        self.spans.push(Span::of(&m));
        if self.keep == Keep::Manifests {
            self.manifests.push(m);
        }
    }
}

/// How many chain indexes' worth of `data/` one slice of its listing covers: an index holds
/// 64 ranges, a segment range 3–6 objects, so about one page (1,000 keys) of a listing.
const INDEXES_PER_SLICE: usize = 3;

/// A listed object as the chain index of `key` it is (`(first, next, key)`), if it is one.
fn index_span(key: &PartitionKey, m: ObjectMeta) -> Option<(i64, i64, Path)> {
    match layout::parse(&m.location) {
        Some(Key::Index(k, first, next)) if k == *key => Some((first, next, m.location)),
        _ => None,
    }
}

/// The chain indexes listed (`(first, next, key)`), sorted by offset.
fn index_spans(key: &PartitionKey, listed: Vec<ObjectMeta>) -> Vec<(i64, i64, Path)> {
    let mut spans: Vec<(i64, i64, Path)> = listed
        .into_iter()
        .filter_map(|m| index_span(key, m))
        .collect();
    spans.sort_by_key(|s| (s.0, s.1));
    spans
}

/// The ranges the partition's chain indexes hold, in order, into `found`, and where the
/// indexes that hold together end (the ranges from there on are read from `chain/`). Indexes are used from the first on
/// while each agrees with its key, its entries, `start.json` (`start`, when it could be
/// read) and the one before it; the first that does not is a problem, and it and every
/// index after it are left to `chain/`.
async fn read_indexes(
    store: &Store,
    key: &PartitionKey,
    spans: Vec<(i64, i64, Path)>,
    start: Option<i64>,
    found: &mut Found<'_>,
    problems: &mut Vec<String>,
) -> Result<Option<i64>, RestoreError> {
    let mut fetched = futures::stream::iter(spans.into_iter().map(|(first, next, path)| {
        let store = store.clone();
        async move {
            let got = get_bytes(&store, &path).await;
            (first, next, path, got)
        }
    }))
    .buffered(WINDOW);
    let mut after: Option<i64> = None;
    while let Some((first, next, path, got)) = fetched.next().await {
        let expected = after.or(start);
        let checked = got
            .map_err(|e| format!("index {path}: {e}"))
            .and_then(|bytes| check_index(key, &path, (first, next), expected, after, &bytes));
        match checked {
            Ok(entries) => {
                for m in entries {
                    let at = format!(
                        "the manifest of range [{}, {}) in index {path}",
                        m.start_offset, m.next_offset
                    );
                    found.add(&at, m);
                }
                after = Some(next);
            }
            Err(e) => {
                problems.push(e);
                break;
            }
        }
    }
    Ok(after)
}

/// One chain index, checked: its format, its offsets against its key's `span`, its first
/// offset against `expected` (the previous index's end when `after_index`, else the
/// partition's start), and its entries as manifests that tile the span in order.
fn check_index(
    key: &PartitionKey,
    path: &Path,
    (first, next): (i64, i64),
    expected: Option<i64>,
    after_index: Option<i64>,
    bytes: &[u8],
) -> Result<Vec<Manifest>, String> {
    let at = format!("index {path}");
    let idx: ChainIndex = serde_json::from_slice(bytes)
        .map_err(|e| format!("{at}: expected a segvault chain index ({INDEX_FORMAT}): {e}"))?;
    if idx.format != INDEX_FORMAT {
        return Err(format!(
            "{at}: format {:?}, expected {INDEX_FORMAT:?}",
            idx.format
        ));
    }
    if (idx.first_offset, idx.next_offset) != (first, next) {
        return Err(format!(
            "{at}: holds the ranges from {} to {}, but its key names {first} to {next}",
            idx.first_offset, idx.next_offset
        ));
    }
    match (expected, after_index) {
        (Some(e), Some(_)) if e != first => {
            return Err(format!(
                "{at}: begins at offset {first}, but the index before it ends at {e}"
            ))
        }
        (Some(s), None) if s != first => {
            return Err(format!(
                "{at}: begins at offset {first}, but {} says the archive begins at offset {s}",
                key.start()
            ))
        }
        _ => {}
    }
    if idx.manifests.is_empty() {
        return Err(format!("{at}: holds no manifest"));
    }
    let mut pos = first;
    let mut out = Vec::with_capacity(idx.manifests.len());
    for (i, raw) in idx.manifests.iter().enumerate() {
        let entry = format!("{at}, manifest {i} (of the range at {pos})");
        let m: Manifest = serde_json::from_str(raw.get())
            .map_err(|e| format!("{entry}: expected a segvault manifest: {e}"))?;
        let m = check_manifest(&entry, key, pos, m)?;
        pos = m.next_offset;
        out.push(m);
    }
    if pos != next {
        return Err(format!(
            "{at}: its manifests end at offset {pos}, but its key names {next}"
        ));
    }
    Ok(out)
}

/// The `chain/` manifests from `after` on (all when `None`), read `WINDOW` at a time, each
/// checked against its key: appended to `ranges`, or a problem. `chain` is what was listed
/// of `chain/`: all of it, or (by prefix) only what sorts after `after`.
async fn read_chain(
    store: &Store,
    key: &PartitionKey,
    chain: Vec<ObjectMeta>,
    after: Option<i64>,
    found: &mut Found<'_>,
    problems: &mut Vec<String>,
) -> Result<(), RestoreError> {
    let mut manifests: Vec<(i64, Path)> = chain
        .into_iter()
        .filter_map(|m| match layout::parse(&m.location) {
            Some(Key::Manifest(k, start)) if k == *key => Some((start, m.location)),
            _ => None,
        })
        .filter(|(start, _)| after.is_none_or(|a| *start >= a))
        .collect();
    manifests.sort_by_key(|m| m.0);
    let mut fetched = futures::stream::iter(manifests.into_iter().map(|(start, path)| {
        let store = store.clone();
        async move {
            let r = get_bytes(&store, &path)
                .await
                .and_then(|b| serde_json::from_slice::<Manifest>(&b).map_err(|e| e.to_string()));
            (start, path, r)
        }
    }))
    .buffered(WINDOW);
    while let Some((start, path, r)) = fetched.next().await {
        let at = format!("manifest {path}");
        match r
            .map_err(|e| format!("{at}: {e}"))
            .and_then(|m| check_manifest(&at, key, start, m))
        {
            Ok(m) => found.add(&at, m),
            Err(e) => problems.push(e),
        }
    }
    Ok(())
}

/// An object's bytes, or why they could not be had.
async fn get_bytes(store: &Store, path: &Path) -> Result<bytes::Bytes, String> {
    match store.inner.get(path).await {
        Ok(g) => g.bytes().await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// Reads `start.json`: `None` if it is not there, `Some(Err)` if it is not a start record.
/// A store error other than "not found" fails the whole read (an I/O error, not damage).
async fn fetch_start(store: &Store, path: &Path) -> Result<StartRead, RestoreError> {
    let r = match store.inner.get(path).await {
        Ok(g) => g.bytes().await.map(|b| {
            Some(
                serde_json::from_slice::<StartRecord>(&b)
                    .map(|s| s.start_offset)
                    .map_err(|e| format!("{path}: expected a segvault start record: {e}")),
            )
        }),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    };
    r.map_err(|source| RestoreError::Store {
        url: store.url.clone(),
        key: path.to_string(),
        source,
    })
}

/// A listing is not a snapshot (a local store walks directories one by one while an
/// archiver writes): what looks missing or short (`(key, size, problem)`) is asked for
/// directly. Returns the problems confirmed.
async fn confirm(store: &Store, suspects: Vec<(String, u64, String)>) -> Vec<String> {
    futures::stream::iter(suspects.into_iter().map(|(k, size, msg)| {
        let store = store.clone();
        async move {
            match store.inner.head(&Path::from(k.as_str())).await {
                Ok(meta) if meta.size == size => None,
                _ => Some(msg),
            }
        }
    }))
    .buffered(WINDOW)
    .filter_map(futures::future::ready)
    .collect()
    .await
}

/// The chain's ranges in order, and where it does not hold together: its start record
/// (`start`, as read) missing or elsewhere, a hole or an overlap between two ranges.
fn check_chain(key: &PartitionKey, p: &mut PartitionCatalog, start: StartRead) {
    p.spans.sort_by_key(|m| m.start_offset);
    p.ranges.sort_by_key(|m| m.start_offset);
    let start_key = key.start();
    match (p.spans.first(), start) {
        (None, _) => {}
        (Some(first), None) => p.problems.push(format!(
            "{start_key} is missing: the chain's first range begins at {}, and where the archive began is unknown (earlier ranges may be lost)",
            first.start_offset
        )),
        (Some(_), Some(Err(e))) => p.problems.push(e),
        (Some(first), Some(Ok(s))) if first.start_offset != s => p.problems.push(format!(
            "the chain is broken at its start: {start_key} says the archive begins at offset {s}, but its first range begins at {}: offsets [{s}, {}) are missing",
            first.start_offset, first.start_offset
        )),
        _ => {}
    }
    for w in p.spans.windows(2) {
        if w[0].next_offset != w[1].start_offset {
            p.problems.push(format!(
                "the chain is broken: range [{}, {}) is followed by one starting at {}",
                w[0].start_offset, w[0].next_offset, w[1].start_offset
            ));
        }
    }
}

/// Every object a manifest (`at` says where it was read) names must be in the listing, with
/// the size the manifest records. Returns `(key, recorded size, problem)` of each that is not.
fn check_objects(
    at: &str,
    m: &Manifest,
    sizes: &HashMap<String, u64>,
) -> Vec<(String, u64, String)> {
    m.objects
        .iter()
        .filter_map(|r| {
            let msg = match sizes.get(r.key.as_str()) {
                None => format!(
                    "{at} names object {}, which is not in the store: range [{}, {}) cannot be restored",
                    r.key, m.start_offset, m.next_offset
                ),
                Some(&n) if n != r.stored_size => format!(
                    "{at} names object {} of {} bytes, but the store holds {n} bytes: range [{}, {}) cannot be restored",
                    r.key, r.stored_size, m.start_offset, m.next_offset
                ),
                Some(_) => return None,
            };
            Some((r.key.clone(), r.stored_size, msg))
        })
        .collect()
}

/// The largest file a broker writes (`Integer.MAX_VALUE`).
const MAX_FILE: u64 = i32::MAX as u64;

/// A manifest (`at` names where it was read) must describe the range its position names
/// (starting at `start`), in the partition it is under, and every object it lists must lie
/// under that partition's `data/` for that range.
fn check_manifest(
    at: &str,
    key: &PartitionKey,
    start: i64,
    m: Manifest,
) -> Result<Manifest, String> {
    if m.cluster_id != key.cluster_id
        || m.topic != key.topic
        || m.topic_id != key.topic_id
        || m.partition != key.partition
        || m.start_offset != start
    {
        return Err(format!(
            "{at}: describes {}/{}/{}-{} at {}, not what its key names",
            m.cluster_id, m.topic_id, m.topic, m.partition, m.start_offset
        ));
    }
    if m.next_offset <= m.start_offset {
        return Err(format!(
            "{at}: empty or backward range [{}, {})",
            m.start_offset, m.next_offset
        ));
    }
    let data = format!("{}/", key.range_data(m.start_offset, m.next_offset));
    let o = &m.objects;
    for r in o.iter() {
        let p = Path::parse(&r.key).map_err(|e| {
            format!(
                "{at}: object key {:?} is not a key under {data}, it lies outside its partition: {e}",
                r.key
            )
        })?;
        if !p.as_ref().starts_with(&data) || p.as_ref() != r.key {
            return Err(format!("{at}: object key {:?} lies outside {data}", r.key));
        }
    }
    for r in o.iter() {
        // Kafka's files are at most 2 GiB (sizes and positions are Java ints); zstd frames
        // add little to incompressible data.
        if r.size > MAX_FILE || r.stored_size > MAX_FILE + MAX_FILE / 8 {
            return Err(format!(
                "{at}: object {} declares {} bytes ({} stored); a Kafka file is at most {MAX_FILE} bytes",
                r.key, r.size, r.stored_size
            ));
        }
    }
    if m.kind == RangeKind::Segment && o.log.is_none() {
        return Err(format!("{at}: a segment range without a log object"));
    }
    Ok(m)
}
