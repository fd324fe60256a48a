//! What the archive holds, read from the store alone: clusters, brokers and their files,
//! partitions with their chains of ranges, gaps, divergences and corrupt segments.
//!
//! The cost of a read follows what is selected, never the whole archive: clusters, their
//! brokers and their topics are found by listing one level at a time
//! (`clusters/`, `clusters/<c>/brokers/`, `clusters/<c>/topics/`), topic ids and partitions
//! only under the selected topics ([`partitions`]), and each selected partition is read from
//! its own prefix alone ([`read_partitions`], see `partition`), a bounded window of them at
//! a time, in order, so that a caller can print or plan each as it comes.
//!
//! The store is input like any other: every name in a key is validated before it is used,
//! every manifest is checked against the key it was found under, and object keys a manifest
//! names must lie under its own partition. Anything that does not fit is reported as a
//! problem of that partition, never followed.

mod list;
mod partition;

use crate::archive::layout::{self, Key, PartitionKey, ROOT};
use crate::archive::manifest::{Manifest, RangeKind};
use crate::archive::store::Store;
use crate::restore::RestoreError;
use futures::{Stream, StreamExt, TryStreamExt};
use list::{list_dir, list_tree};
use object_store::path::Path;
use serde::Serialize;
use std::collections::BTreeMap;
use std::ops::ControlFlow;

/// How many partitions are read at once.
pub const PARTITION_WINDOW: usize = 16;

/// Which partitions a read is about: those of a topic matching any of `topics` (every topic
/// when there is none), numbered `partition` when given.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub topics: Vec<regex::Regex>,
    pub partition: Option<i32>,
}

impl Filter {
    /// Whether topic `topic` is selected.
    pub fn topic(&self, topic: &str) -> bool {
        self.topics.is_empty() || self.topics.iter().any(|r| r.is_match(topic))
    }
    /// Whether partition `partition` of topic `topic` is selected.
    pub fn selects(&self, topic: &str, partition: i32) -> bool {
        self.topic(topic) && self.partition.is_none_or(|n| n == partition)
    }
}

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
    /// The names under `topics/` (sorted): every topic archived, whether read or not.
    pub topics: Vec<String>,
    /// The partitions read (those selected), sorted by topic, partition, topic id.
    pub partitions: Vec<PartitionCatalog>,
}

#[derive(Debug, Default, Serialize)]
pub struct BrokerCatalog {
    /// Log dir id -> the files archived from it (`meta.properties`, checkpoints).
    pub log_dirs: BTreeMap<String, Vec<String>>,
    /// KRaft snapshots of `__cluster_metadata-0` (`<offset>-<epoch>.checkpoint`).
    pub metadata_snapshots: Vec<String>,
}

/// What a read keeps of each range it finds: every range is checked either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// Each range's manifest (a restore plan needs them).
    Manifests,
    /// Only each range's [`Span`] (what `ls` prints): the memory of a read of R ranges is
    /// R spans, not R manifests.
    Spans,
}

/// What a listing of the archive says of one range: its offsets, kind, sizes and times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Span {
    pub start_offset: i64,
    pub next_offset: i64,
    pub kind: RangeKind,
    /// Original bytes of the range's `.log` data.
    pub log_bytes: u64,
    /// Bytes as stored, every object of the range.
    pub stored_bytes: u64,
    pub min_timestamp: Option<i64>,
    pub max_timestamp: Option<i64>,
}

impl Span {
    pub fn of(m: &Manifest) -> Span {
        Span {
            start_offset: m.start_offset,
            next_offset: m.next_offset,
            kind: m.kind,
            log_bytes: m.objects.log.as_ref().map_or(0, |o| o.size),
            stored_bytes: m.objects.iter().map(|r| r.stored_size).sum(),
            min_timestamp: m.stats.min_timestamp,
            max_timestamp: m.stats.max_timestamp,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PartitionCatalog {
    pub topic: String,
    pub topic_id: String,
    pub partition: i32,
    /// The chain's ranges in offset order (segments and gaps).
    pub spans: Vec<Span>,
    /// Their manifests, in the same order, when read with [`Keep::Manifests`] (else empty).
    pub ranges: Vec<Manifest>,
    /// `divergence/` and `corrupt/` evidence keys.
    pub divergences: Vec<String>,
    pub corrupt: Vec<String>,
    /// What does not fit: a hole or overlap in the chain, a manifest that disagrees with its
    /// key, an object key outside the partition. A restore refuses such a partition.
    pub problems: Vec<String>,
}

impl PartitionCatalog {
    /// A partition with nothing read yet.
    fn empty(k: &PartitionKey) -> PartitionCatalog {
        PartitionCatalog {
            topic: k.topic.clone(),
            topic_id: k.topic_id.clone(),
            partition: k.partition,
            spans: vec![],
            ranges: vec![],
            divergences: vec![],
            corrupt: vec![],
            problems: vec![],
        }
    }
    /// First archived offset.
    pub fn start_offset(&self) -> Option<i64> {
        self.spans.first().map(|m| m.start_offset)
    }
    /// The offset after the last archived range.
    pub fn end_offset(&self) -> Option<i64> {
        self.spans.last().map(|m| m.next_offset)
    }
    pub fn gaps(&self) -> Vec<(i64, i64)> {
        self.spans
            .iter()
            .filter(|m| m.kind == RangeKind::Gap)
            .map(|m| (m.start_offset, m.next_offset))
            .collect()
    }
    /// Original bytes of the archived `.log` data.
    pub fn log_bytes(&self) -> u64 {
        self.spans.iter().map(|m| m.log_bytes).sum()
    }
    /// Bytes as stored, every object.
    pub fn stored_bytes(&self) -> u64 {
        self.spans.iter().map(|m| m.stored_bytes).sum()
    }
    pub fn time_range(&self) -> (Option<i64>, Option<i64>) {
        let min = self.spans.iter().filter_map(|m| m.min_timestamp).min();
        let max = self.spans.iter().filter_map(|m| m.max_timestamp).max();
        (min, max)
    }
}

/// Clusters, their brokers' files and the names of their topics, from one delimiter listing
/// of `clusters/` and, per cluster, a listing of `brokers/` and one of `topics/` (one level):
/// no partition is looked at.
pub async fn clusters(store: &Store) -> Result<Catalog, RestoreError> {
    let mut cat = Catalog::default();
    let root = Path::from(format!("{ROOT}/clusters"));
    let listing = list_dir(store, &root).await?;
    cat.unknown_keys.extend(listing.unknown);
    cat.unknown_keys
        .extend(listing.objects.iter().map(|m| m.location.to_string()));
    let mut ids = Vec::new();
    for id in listing.dirs {
        match layout::validate_name("cluster id", &id) {
            Ok(()) => ids.push(id),
            Err(e) => cat.unknown_keys.push(format!("{root}/{id}/ ({e})")),
        }
    }
    let read: Vec<_> = futures::stream::iter(ids.into_iter().map(|id| async move {
        let r = read_cluster(store, &id).await;
        (id, r)
    }))
    .buffered(PARTITION_WINDOW)
    .collect()
    .await;
    for (id, r) in read {
        let (c, unknown) = r?;
        cat.unknown_keys.extend(unknown);
        if !c.brokers.is_empty() || !c.topics.is_empty() {
            cat.clusters.insert(id, c);
        }
    }
    Ok(cat)
}

/// One cluster's brokers (their files) and topic names, and the keys that fit neither.
async fn read_cluster(
    store: &Store,
    cluster_id: &str,
) -> Result<(ClusterCatalog, Vec<String>), RestoreError> {
    let base = layout::cluster(cluster_id);
    let (brokers_dir, topics_dir) = (base.clone().join("brokers"), base.clone().join("topics"));
    let (brokers, topics) = futures::try_join!(
        list_tree(store, &brokers_dir, None),
        list_dir(store, &topics_dir),
    )?;
    let mut c = ClusterCatalog::default();
    let mut unknown = brokers.unknown;
    for m in brokers.objects {
        match layout::parse(&m.location) {
            Some(Key::BrokerFile {
                node,
                log_dir_id,
                file,
                ..
            }) => c
                .brokers
                .entry(node)
                .or_default()
                .log_dirs
                .entry(log_dir_id)
                .or_default()
                .push(file),
            Some(Key::MetadataSnapshot { node, file, .. }) => c
                .brokers
                .entry(node)
                .or_default()
                .metadata_snapshots
                .push(file),
            _ => unknown.push(m.location.to_string()),
        }
    }
    for b in c.brokers.values_mut() {
        b.metadata_snapshots.sort();
    }
    unknown.extend(topics.unknown);
    unknown.extend(topics.objects.iter().map(|m| m.location.to_string()));
    for t in topics.dirs {
        match layout::validate_topic(&t) {
            Ok(()) => c.topics.push(t),
            Err(e) => unknown.push(format!("{base}/topics/{t}/ ({e})")),
        }
    }
    c.topics.sort();
    Ok((c, unknown))
}

/// The partitions of cluster `cluster_id` under the topics `topics` (names from
/// [`ClusterCatalog::topics`]), numbered `partition` when given: one delimiter listing per
/// topic (its topic ids) and one per topic id (its partitions), nothing under any other
/// topic. Sorted by topic, partition, topic id. Names that are not a valid topic id or a
/// partition number as segvault writes it are left out.
pub async fn partitions<'t>(
    store: &Store,
    cluster_id: &str,
    topics: impl IntoIterator<Item = &'t str>,
    partition: Option<i32>,
) -> Result<Vec<PartitionKey>, RestoreError> {
    let per_topic: Vec<Result<Vec<PartitionKey>, RestoreError>> =
        futures::stream::iter(topics.into_iter().map(|topic| async move {
            let dir = layout::cluster(cluster_id).join("topics").join(topic);
            let mut keys = Vec::new();
            for topic_id in list_dir(store, &dir).await?.dirs {
                if layout::validate_name("topic id", &topic_id).is_err() {
                    continue;
                }
                let listing = list_dir(store, &dir.clone().join(topic_id.as_str())).await?;
                for name in listing.dirs {
                    let Ok(n) = name.parse::<i32>() else { continue };
                    if n < 0 || n.to_string() != name || partition.is_some_and(|p| p != n) {
                        continue;
                    }
                    keys.push(PartitionKey {
                        cluster_id: cluster_id.to_string(),
                        topic: topic.to_string(),
                        topic_id: topic_id.clone(),
                        partition: n,
                    });
                }
            }
            Ok(keys)
        }))
        .buffered(PARTITION_WINDOW)
        .collect()
        .await;
    let mut keys = Vec::new();
    for r in per_topic {
        keys.extend(r?);
    }
    keys.sort_by(|a, b| {
        (&a.topic, a.partition, &a.topic_id).cmp(&(&b.topic, b.partition, &b.topic_id))
    });
    Ok(keys)
}

/// Reads the partitions `keys`, [`PARTITION_WINDOW`] at a time, and yields each in the order
/// of `keys` as soon as it and those before it are read: a caller holding only what it
/// prints or plans holds at most the window.
pub fn read_partitions(
    store: &Store,
    keys: Vec<PartitionKey>,
    keep: Keep,
) -> impl Stream<Item = Result<PartitionCatalog, RestoreError>> + '_ {
    futures::stream::iter(keys)
        .map(move |k| partition::read_partition(store, k, keep))
        .buffered(PARTITION_WINDOW)
}

/// [`read_partitions`], each partition handed to `f` as it comes, in order, until `f`
/// breaks with an error: the first error (reading, or `f`'s) ends the read.
pub async fn for_each_partition(
    store: &Store,
    keys: Vec<PartitionKey>,
    keep: Keep,
    mut f: impl FnMut(PartitionCatalog) -> ControlFlow<RestoreError>,
) -> Result<(), RestoreError> {
    let mut parts = std::pin::pin!(read_partitions(store, keys, keep));
    while let Some(p) = parts.next().await {
        if let ControlFlow::Break(e) = f(p?) {
            return Err(e);
        }
    }
    Ok(())
}

/// The catalog of the partitions `filter` selects (the default selects every one), read
/// whole into memory: [`clusters`], [`partitions`] and [`read_partitions`] together.
pub async fn read(store: &Store, filter: &Filter) -> Result<Catalog, RestoreError> {
    let mut cat = clusters(store).await?;
    for (id, c) in cat.clusters.iter_mut() {
        let topics = c.topics.iter().map(String::as_str);
        let keys = partitions(
            store,
            id,
            topics.filter(|t| filter.topic(t)),
            filter.partition,
        )
        .await?;
        c.partitions = read_partitions(store, keys, Keep::Manifests)
            .try_collect()
            .await?;
    }
    Ok(cat)
}
