//! What the archive holds, read from the store alone: clusters, brokers and their files,
//! partitions with their chains of ranges, gaps, divergences and corrupt segments.
//!
//! The store is input like any other: every name in a key is validated before it is used,
//! every manifest is checked against the key it was found under, and object keys a manifest
//! names must lie under its own partition. Anything that does not fit is reported as a
//! problem of that partition, never followed.

use crate::archive::layout::{self, Key, PartitionKey, ROOT};
use crate::archive::manifest::{Manifest, RangeKind, StartRecord};
use crate::archive::store::Store;
use crate::restore::RestoreError;
use futures::StreamExt;
use object_store::path::Path;
use object_store::ObjectStoreExt;
use serde::Serialize;
use std::collections::BTreeMap;

/// Everything the archive holds.
#[derive(Debug, Default, Serialize)]
pub struct Catalog {
    pub clusters: BTreeMap<String, ClusterCatalog>,
    /// Keys under the archive root that fit no part of the layout (ignored).
    pub unknown_keys: Vec<String>,
}

#[derive(Debug, Default, Serialize)]
pub struct ClusterCatalog {
    pub brokers: BTreeMap<i32, BrokerCatalog>,
    /// Sorted by topic, partition, topic id.
    pub partitions: Vec<PartitionCatalog>,
}

#[derive(Debug, Default, Serialize)]
pub struct BrokerCatalog {
    /// Log dir id -> the files archived from it (`meta.properties`, checkpoints).
    pub log_dirs: BTreeMap<String, Vec<String>>,
    /// KRaft snapshots of `__cluster_metadata-0` (`<offset>-<epoch>.checkpoint`).
    pub metadata_snapshots: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PartitionCatalog {
    pub topic: String,
    pub topic_id: String,
    pub partition: i32,
    /// The chain's ranges in offset order (segments and gaps).
    pub ranges: Vec<Manifest>,
    /// `divergence/` and `corrupt/` evidence keys.
    pub divergences: Vec<String>,
    pub corrupt: Vec<String>,
    /// What does not fit: a hole or overlap in the chain, a manifest that disagrees with its
    /// key, an object key outside the partition. A restore refuses such a partition.
    pub problems: Vec<String>,
}

impl PartitionCatalog {
    /// Where this partition's archive lives in cluster `cluster_id`.
    fn key(&self, cluster_id: &str) -> PartitionKey {
        PartitionKey {
            cluster_id: cluster_id.to_string(),
            topic: self.topic.clone(),
            topic_id: self.topic_id.clone(),
            partition: self.partition,
        }
    }
    /// First archived offset.
    pub fn start_offset(&self) -> Option<i64> {
        self.ranges.first().map(|m| m.start_offset)
    }
    /// The offset after the last archived range.
    pub fn end_offset(&self) -> Option<i64> {
        self.ranges.last().map(|m| m.next_offset)
    }
    pub fn gaps(&self) -> Vec<(i64, i64)> {
        self.ranges
            .iter()
            .filter(|m| m.kind == RangeKind::Gap)
            .map(|m| (m.start_offset, m.next_offset))
            .collect()
    }
    /// Original bytes of the archived `.log` data.
    pub fn log_bytes(&self) -> u64 {
        self.ranges
            .iter()
            .filter_map(|m| m.objects.log.as_ref().map(|o| o.size))
            .sum()
    }
    /// Bytes as stored, every object.
    pub fn stored_bytes(&self) -> u64 {
        self.ranges
            .iter()
            .flat_map(|m| m.objects.iter().map(|r| r.stored_size))
            .sum()
    }
    pub fn time_range(&self) -> (Option<i64>, Option<i64>) {
        let min = self
            .ranges
            .iter()
            .filter_map(|m| m.stats.min_timestamp)
            .min();
        let max = self
            .ranges
            .iter()
            .filter_map(|m| m.stats.max_timestamp)
            .max();
        (min, max)
    }
}

/// Where a partition is while the catalog is read: (cluster, topic, partition, topic id).
type PartId = (String, String, i32, String);

/// The partitions read so far.
type Parts = BTreeMap<PartId, PartitionCatalog>;

/// Reads the whole catalog: one listing of the archive root, then every manifest.
pub async fn read(store: &Store) -> Result<Catalog, RestoreError> {
    let mut cat = Catalog::default();
    let metas = list(store, &mut cat.unknown_keys).await?;
    let mut parts = Parts::new();
    let (manifests, starts) = classify(&metas, &mut cat, &mut parts);
    let mut start_of: BTreeMap<PartId, Result<i64, String>> = BTreeMap::new();
    for (key, r) in fetch_starts(store, starts).await? {
        if let Some(r) = r {
            start_of.insert(part_id(&key), r);
        }
    }
    // Every object the listing holds, with its size: what manifests name is checked against
    // it, at no cost beyond the listing already taken.
    let sizes: std::collections::HashMap<&str, u64> = metas
        .iter()
        .map(|m| (m.location.as_ref(), m.size))
        .collect();
    let fetched = fetch_manifests(store, manifests).await;
    let mut suspects: Vec<(PartitionKey, String, u64, String)> = Vec::new();
    for (key, start, r) in fetched {
        let p = entry(&mut parts, &key);
        match r.and_then(|m| check_manifest(&key, start, m)) {
            Ok(m) => {
                suspects.extend(
                    check_objects(&key, &m, &sizes)
                        .into_iter()
                        .map(|(k, size, msg)| (key.clone(), k, size, msg)),
                );
                p.ranges.push(m)
            }
            Err(e) => p.problems.push(e),
        }
    }
    for (key, msg) in confirm(store, suspects).await {
        if let Some(msg) = msg {
            entry(&mut parts, &key).problems.push(msg);
        }
    }
    // A chain whose start.json the listing did not show: asked for directly.
    let unlisted: Vec<(PartitionKey, Path)> = parts
        .iter()
        .filter(|(id, p)| !p.ranges.is_empty() && !start_of.contains_key(*id))
        .map(|(id, p)| {
            let k = p.key(&id.0);
            let path = k.start();
            (k, path)
        })
        .collect();
    for (key, r) in fetch_starts(store, unlisted).await? {
        if let Some(r) = r {
            start_of.insert(part_id(&key), r);
        }
    }
    for (id, mut p) in parts {
        check_chain(&id.0, &mut p, start_of.remove(&id));
        p.divergences.sort();
        p.corrupt.sort();
        cat.clusters.entry(id.0).or_default().partitions.push(p);
    }
    for c in cat.clusters.values_mut() {
        for b in c.brokers.values_mut() {
            b.metadata_snapshots.sort();
        }
    }
    Ok(cat)
}

/// Every object under the archive root. A key the store cannot even name (a local store's
/// file whose name is not UTF-8) fits no part of the layout: it goes to `unknown`, never a
/// reason to read nothing.
async fn list(
    store: &Store,
    unknown: &mut Vec<String>,
) -> Result<Vec<object_store::ObjectMeta>, RestoreError> {
    let err = |key: &Path| {
        let (url, key) = (store.url.clone(), key.to_string());
        move |source| RestoreError::Store { url, key, source }
    };
    let root = Path::from(ROOT);
    let mut metas = Vec::new();
    match &store.local {
        // object_store's local listing ends at the first such file: walk the directory here.
        Some(local) => {
            let dir = local.path_to_filesystem(&root).map_err(err(&root))?;
            // The store's own directory: `dir` less the components of ROOT.
            let base = dir
                .ancestors()
                .nth(ROOT.split('/').count())
                .unwrap_or(&dir)
                .to_path_buf();
            list_local(&base, &dir, &mut metas, unknown).map_err(|e| {
                err(&root)(object_store::Error::Generic {
                    store: "LocalFileSystem",
                    source: Box::new(e),
                })
            })?;
        }
        None => {
            let mut listing = store.inner.list(Some(&root));
            while let Some(item) = listing.next().await {
                match item {
                    Ok(m) => metas.push(m),
                    Err(object_store::Error::InvalidPath { source }) => {
                        unknown.push(format!("(a key that is not a valid path: {source})"))
                    }
                    Err(e) => return Err(err(&root)(e)),
                }
            }
        }
    }
    Ok(metas)
}

/// What each listed key is: broker files and metadata snapshots go into `cat`, every key
/// of a partition makes it known in `parts`, evidence is listed. Returns the manifests
/// `(partition, start, key)` and start records to read.
#[allow(clippy::type_complexity)]
fn classify(
    metas: &[object_store::ObjectMeta],
    cat: &mut Catalog,
    parts: &mut Parts,
) -> (Vec<(PartitionKey, i64, Path)>, Vec<(PartitionKey, Path)>) {
    let mut manifests: Vec<(PartitionKey, i64, Path)> = Vec::new();
    let mut starts: Vec<(PartitionKey, Path)> = Vec::new();
    for m in metas {
        match layout::parse(&m.location) {
            None => cat.unknown_keys.push(m.location.to_string()),
            Some(Key::BrokerFile {
                cluster_id,
                node,
                log_dir_id,
                file,
            }) => cat
                .clusters
                .entry(cluster_id)
                .or_default()
                .brokers
                .entry(node)
                .or_default()
                .log_dirs
                .entry(log_dir_id)
                .or_default()
                .push(file),
            Some(Key::MetadataSnapshot {
                cluster_id,
                node,
                file,
            }) => cat
                .clusters
                .entry(cluster_id)
                .or_default()
                .brokers
                .entry(node)
                .or_default()
                .metadata_snapshots
                .push(file),
            Some(Key::Manifest(key, start)) => {
                entry(parts, &key);
                manifests.push((key, start, m.location.clone()));
            }
            Some(Key::Corrupt(key, _)) => entry(parts, &key).corrupt.push(m.location.to_string()),
            Some(Key::Divergence(key, _)) => {
                entry(parts, &key).divergences.push(m.location.to_string())
            }
            Some(Key::Start(key)) => {
                entry(parts, &key);
                starts.push((key, m.location.clone()));
            }
            // data/, verified/: part of the layout, nothing to list.
            Some(
                Key::Data { partition: key, .. }
                | Key::Verified(key, _)
                | Key::Index(key, ..)
                | Key::Other(key),
            ) => {
                entry(parts, &key);
            }
        }
    }
    (manifests, starts)
}

/// Every manifest, 16 at a time: each parsed, or why it could not be read.
async fn fetch_manifests(
    store: &Store,
    manifests: Vec<(PartitionKey, i64, Path)>,
) -> Vec<(PartitionKey, i64, Result<Manifest, String>)> {
    futures::stream::iter(manifests.into_iter().map(|(key, start, path)| {
        let store = store.clone();
        async move {
            let r = match store.inner.get(&path).await {
                Ok(g) => match g.bytes().await {
                    Ok(b) => serde_json::from_slice::<Manifest>(&b)
                        .map_err(|e| format!("manifest {path}: {e}")),
                    Err(e) => Err(format!("manifest {path}: {e}")),
                },
                Err(e) => Err(format!("manifest {path}: {e}")),
            };
            (key, start, r)
        }
    }))
    .buffer_unordered(16)
    .collect()
    .await
}

/// A listing is not a snapshot (a local store walks directories one by one while an
/// archiver writes): what looks missing or short (`(partition, key, size, problem)`) is
/// asked for directly. Returns each suspect's partition, with its problem if confirmed.
async fn confirm(
    store: &Store,
    suspects: Vec<(PartitionKey, String, u64, String)>,
) -> Vec<(PartitionKey, Option<String>)> {
    futures::stream::iter(suspects.into_iter().map(|(key, k, size, msg)| {
        let store = store.clone();
        async move {
            match store.inner.head(&Path::from(k.as_str())).await {
                Ok(meta) if meta.size == size => (key, None),
                _ => (key, Some(msg)),
            }
        }
    }))
    .buffer_unordered(16)
    .collect()
    .await
}

/// The chain's ranges in order, and where it does not hold together: its start record
/// (`start`, as read) missing or elsewhere, a hole or an overlap between two ranges.
fn check_chain(cluster_id: &str, p: &mut PartitionCatalog, start: Option<Result<i64, String>>) {
    p.ranges.sort_by_key(|m| m.start_offset);
    let start_key = p.key(cluster_id).start();
    match (p.ranges.first(), start) {
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
    for w in p.ranges.windows(2) {
        if w[0].next_offset != w[1].start_offset {
            p.problems.push(format!(
                "the chain is broken: range [{}, {}) is followed by one starting at {}",
                w[0].start_offset, w[0].next_offset, w[1].start_offset
            ));
        }
    }
}

/// Every object under `dir` of a local store rooted at `base`, as the store would list it
/// (staging files `<name>#<n>` of interrupted writes left out); files whose path is not a
/// valid key (not UTF-8, say) go to `unknown` by their lossy name.
fn list_local(
    base: &std::path::Path,
    dir: &std::path::Path,
    out: &mut Vec<object_store::ObjectMeta>,
    unknown: &mut Vec<String>,
) -> std::io::Result<()> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for e in rd {
        let e = e?;
        let path = e.path();
        let ft = e.file_type()?;
        if ft.is_dir() {
            list_local(base, &path, out, unknown)?;
            continue;
        }
        let rel = path.strip_prefix(base).unwrap_or(&path);
        let Some(key) = rel.to_str() else {
            unknown.push(format!("{} (not UTF-8)", rel.to_string_lossy()));
            continue;
        };
        if key
            .rsplit_once('#')
            .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        {
            continue;
        }
        let location = match Path::parse(key) {
            Ok(l) => l,
            Err(err) => {
                unknown.push(format!("{key} ({err})"));
                continue;
            }
        };
        let md = match e.metadata() {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        out.push(object_store::ObjectMeta {
            location,
            last_modified: md
                .modified()
                .map(chrono::DateTime::<chrono::Utc>::from)
                .unwrap_or_default(),
            size: md.len(),
            e_tag: None,
            version: None,
        });
    }
    Ok(())
}

fn part_id(k: &PartitionKey) -> PartId {
    (
        k.cluster_id.clone(),
        k.topic.clone(),
        k.partition,
        k.topic_id.clone(),
    )
}

/// Every object a manifest names must be in the listing, with the size the manifest records.
/// Returns `(key, recorded size, problem)` of each that is not.
fn check_objects(
    key: &PartitionKey,
    m: &Manifest,
    sizes: &std::collections::HashMap<&str, u64>,
) -> Vec<(String, u64, String)> {
    let at = key.manifest(m.start_offset);
    m.objects
        .iter()
        .filter_map(|r| {
            let msg = match sizes.get(r.key.as_str()) {
                None => format!(
                    "manifest {at} names object {}, which is not in the store: range [{}, {}) cannot be restored",
                    r.key, m.start_offset, m.next_offset
                ),
                Some(&n) if n != r.stored_size => format!(
                    "manifest {at} names object {} of {} bytes, but the store holds {n} bytes: range [{}, {}) cannot be restored",
                    r.key, r.stored_size, m.start_offset, m.next_offset
                ),
                Some(_) => return None,
            };
            Some((r.key.clone(), r.stored_size, msg))
        })
        .collect()
}

/// A start record as read: `None` if absent, `Some(Err)` if not a start record.
type StartRead = Option<Result<i64, String>>;

/// Reads `start.json` of each partition: `None` if it is not there, `Some(Err)` if it is
/// not a start record. A store error other than "not found" fails the whole read (an I/O
/// error, not damage).
async fn fetch_starts(
    store: &Store,
    starts: Vec<(PartitionKey, Path)>,
) -> Result<Vec<(PartitionKey, StartRead)>, RestoreError> {
    let fetched: Vec<(PartitionKey, Path, Result<StartRead, object_store::Error>)> =
        futures::stream::iter(starts.into_iter().map(|(key, path)| {
            let store = store.clone();
            async move {
                let r = match store.inner.get(&path).await {
                    Ok(g) => g.bytes().await.map(|b| {
                        Some(
                            serde_json::from_slice::<StartRecord>(&b)
                                .map(|s| s.start_offset)
                                .map_err(|e| {
                                    format!("{path}: expected a segvault start record: {e}")
                                }),
                        )
                    }),
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(e) => Err(e),
                };
                (key, path, r)
            }
        }))
        .buffer_unordered(16)
        .collect()
        .await;
    fetched
        .into_iter()
        .map(|(key, path, r)| match r {
            Ok(v) => Ok((key, v)),
            Err(source) => Err(RestoreError::Store {
                url: store.url.clone(),
                key: path.to_string(),
                source,
            }),
        })
        .collect()
}

fn entry<'a>(parts: &'a mut Parts, k: &PartitionKey) -> &'a mut PartitionCatalog {
    parts.entry(part_id(k)).or_insert_with(|| PartitionCatalog {
        topic: k.topic.clone(),
        topic_id: k.topic_id.clone(),
        partition: k.partition,
        ranges: vec![],
        divergences: vec![],
        corrupt: vec![],
        problems: vec![],
    })
}

/// The largest file a broker writes (`Integer.MAX_VALUE`).
const MAX_FILE: u64 = i32::MAX as u64;

/// A manifest must describe the range its key names, in the partition its key names, and
/// every object it lists must lie under that partition's `data/` for that range.
fn check_manifest(key: &PartitionKey, start: i64, m: Manifest) -> Result<Manifest, String> {
    let at = format!("manifest {}", key.manifest(start));
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
