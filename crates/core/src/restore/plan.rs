//! What a restore will write, decided from the catalog alone (no data is read): which
//! partitions, which ranges of each, where each is cut, which objects are fetched, how many
//! bytes, and what cannot be restored as it was (gaps, epoch breaks, divergences). `--dry-run`
//! prints this plan; the writer carries it out.

use super::catalog::{Catalog, ClusterCatalog, Filter, PartitionCatalog};
use crate::archive::manifest::{Manifest, RangeKind};
use crate::restore::RestoreError;
use serde::Serialize;

/// The two restore modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Rebuild a lost broker's log dir: the same cluster, node id and topic ids.
    BareMetal,
    /// Into a brand-new cluster whose topics exist already: keep its topic ids, reset epochs.
    NewCluster,
}

/// Where each partition is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cut {
    /// Keep the batches whose offsets are all below this one.
    Offset(i64),
    /// Keep the batches whose records all have timestamps below this one (ms since the
    /// epoch), up to the first batch that does not: the same instant for every partition.
    Time(i64),
}

#[derive(Debug, Clone)]
pub struct Selection {
    pub cluster_id: Option<String>,
    pub node_id: Option<i32>,
    /// The topics and partition restored (the same selection `ls` takes).
    pub filter: Filter,
    pub cut: Option<Cut>,
    pub mode: Mode,
}

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub cluster_id: String,
    pub mode: Mode,
    /// Bare-metal: the node whose log dir is rebuilt, and its archived log dir id.
    pub node_id: Option<i32>,
    pub log_dir_id: Option<String>,
    /// Bare-metal: the node's newest archived KRaft snapshot, restored as its metadata log.
    pub metadata_snapshot: Option<String>,
    /// The archived KRaft snapshot the topics' configs are read from, `(node, file)`: the
    /// node's newest (bare-metal), else the newest of any node of the cluster.
    pub configs_from: Option<(i32, String)>,
    pub cut: Option<Cut>,
    pub partitions: Vec<PartitionPlan>,
    /// Bytes to fetch, as stored.
    pub fetch_bytes: u64,
    /// Objects to fetch.
    pub objects: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct PartitionPlan {
    pub topic: String,
    pub partition: i32,
    /// The archived topic id (where the data is in the store).
    pub archived_topic_id: String,
    /// The ranges restored, in order; the last may be trimmed at the cut.
    pub ranges: Vec<Manifest>,
    /// Offsets no range holds, inside what is restored.
    pub gaps: Vec<(i64, i64)>,
    /// Where leader epochs change inside what is restored: `(epoch, start offset)`.
    pub epochs: Vec<(i32, i64)>,
    /// The last range must be trimmed (the cut falls inside it).
    pub trim_last: bool,
    pub divergences: usize,
    pub fetch_bytes: u64,
}

fn choose_cluster<'a>(
    cat: &'a Catalog,
    want: Option<&str>,
) -> Result<(&'a String, &'a ClusterCatalog), RestoreError> {
    match want {
        Some(id) => cat.clusters.get_key_value(id).ok_or_else(|| {
            RestoreError::Choose(format!(
                "cluster {id} is not in the archive; it holds {}",
                list(cat.clusters.keys())
            ))
        }),
        None => {
            let mut it = cat.clusters.iter();
            match (it.next(), it.next()) {
                (Some(c), None) => Ok(c),
                (None, _) => Err(RestoreError::Choose("the archive holds no cluster".into())),
                _ => Err(RestoreError::Choose(format!(
                    "the archive holds several clusters ({}); choose one with --cluster",
                    list(cat.clusters.keys())
                ))),
            }
        }
    }
}

fn list<T: std::fmt::Display>(it: impl Iterator<Item = T>) -> String {
    it.map(|x| x.to_string()).collect::<Vec<_>>().join(", ")
}

/// The node and log dir a bare-metal restore rebuilds (`None`s in new-cluster mode), from the
/// selection and the archive's broker files alone: no partition is looked at.
pub fn target_node<'a>(
    cat: &'a Catalog,
    sel: &Selection,
) -> Result<(&'a String, Option<i32>, Option<String>), RestoreError> {
    let (cluster_id, cluster) = choose_cluster(cat, sel.cluster_id.as_deref())?;
    let (node, dir) = match sel.mode {
        Mode::NewCluster => (None, None),
        Mode::BareMetal => {
            let node = match sel.node_id {
                Some(n) if cluster.brokers.contains_key(&n) => n,
                Some(n) => {
                    return Err(RestoreError::Choose(format!(
                    "node {n} has no files in the archive of cluster {cluster_id}; it has nodes {}",
                    list(cluster.brokers.keys())
                )))
                }
                None => {
                    let mut it = cluster.brokers.keys();
                    match (it.next(), it.next()) {
                        (Some(n), None) => *n,
                        (None, _) => {
                            return Err(RestoreError::Choose(format!(
                                "cluster {cluster_id} has no broker files in the archive (meta.properties); bare-metal needs them"
                            )))
                        }
                        _ => {
                            return Err(RestoreError::Choose(format!(
                                "cluster {cluster_id} has several nodes ({}); choose one with --node",
                                list(cluster.brokers.keys())
                            )))
                        }
                    }
                }
            };
            let dirs = &cluster.brokers[&node].log_dirs;
            let mut it = dirs.keys();
            let dir = match (it.next(), it.next()) {
                (Some(d), None) => d.clone(),
                (None, _) => {
                    return Err(RestoreError::Choose(format!(
                        "node {node} has no archived log dir (meta.properties)"
                    )))
                }
                _ => {
                    return Err(RestoreError::Choose(format!(
                        "node {node} had several log dirs ({}); restoring more than one is not supported yet",
                        list(dirs.keys())
                    )))
                }
            };
            (Some(node), Some(dir))
        }
    };
    Ok((cluster_id, node, dir))
}

/// Whether the node being rebuilt held `(topic, partition)`.
pub type Hosted<'a> = dyn Fn(&str, i32) -> bool + 'a;

/// A restore's plan, built one partition at a time: each partition is planned as it is read
/// and only what it restores is kept (ranges past the cut are dropped at once).
pub struct Planner<'s> {
    sel: &'s Selection,
    cluster_id: String,
    node_id: Option<i32>,
    log_dir_id: Option<String>,
    metadata_snapshot: Option<String>,
    configs_from: Option<(i32, String)>,
    partitions: Vec<PartitionPlan>,
}

impl<'s> Planner<'s> {
    /// The cluster, the node and its log dir and KRaft snapshot, from the selection and the
    /// archive's broker files alone (`cat` need hold no partition).
    pub fn new(cat: &Catalog, sel: &'s Selection) -> Result<Planner<'s>, RestoreError> {
        let (cluster_id, cluster) = choose_cluster(cat, sel.cluster_id.as_deref())?;
        let (_, node_id, log_dir_id) = target_node(cat, sel)?;
        // Snapshot names are `<offset:020>-<epoch:010>.checkpoint`: the newest sorts last.
        let metadata_snapshot = node_id.and_then(|n| {
            cluster.brokers[&n]
                .metadata_snapshots
                .iter()
                .filter(|s| s.ends_with(".checkpoint"))
                .max()
                .cloned()
        });
        // Names sort by offset: the newest snapshot of any node, by its offset.
        let newest = |n: &i32| {
            cluster.brokers[n]
                .metadata_snapshots
                .iter()
                .filter(|s| s.ends_with(".checkpoint"))
                .max()
                .map(|s| (*n, s.clone()))
        };
        let configs_from = match node_id {
            Some(n) => metadata_snapshot.clone().map(|s| (n, s)),
            None => cluster
                .brokers
                .keys()
                .filter_map(newest)
                .max_by(|a, b| a.1.cmp(&b.1)),
        };
        Ok(Planner {
            sel,
            cluster_id: cluster_id.clone(),
            node_id,
            log_dir_id,
            metadata_snapshot,
            configs_from,
            partitions: Vec::new(),
        })
    }

    /// The cluster restored.
    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// Whether partition `partition` of `topic` is restored: selected, held by the node
    /// being rebuilt (`hosted`, in bare-metal mode), and not the metadata log (restored from
    /// its snapshots, not as a partition). Only those need be read.
    pub fn wants(&self, topic: &str, partition: i32, hosted: Option<&Hosted>) -> bool {
        self.sel.filter.selects(topic, partition)
            && hosted.is_none_or(|h| h(topic, partition))
            && topic != "__cluster_metadata"
    }

    /// Plans partition `p` if it is wanted; a damaged one fails the plan.
    pub fn add(
        &mut self,
        p: PartitionCatalog,
        hosted: Option<&Hosted>,
    ) -> Result<(), RestoreError> {
        if !self.wants(&p.topic, p.partition, hosted) {
            return Ok(());
        }
        if !p.problems.is_empty() {
            return Err(RestoreError::Damaged(format!(
                "{}-{} (topic id {}): the archive is damaged, refusing to restore it: {}",
                p.topic,
                p.partition,
                p.topic_id,
                p.problems.join("; ")
            )));
        }
        self.partitions.push(plan_partition(p, self.sel.cut));
        Ok(())
    }

    /// The plan of the partitions added (in the order they were added: topic, partition,
    /// topic id).
    pub fn finish(self) -> Result<Plan, RestoreError> {
        let partitions = self.partitions;
        // Two topic ids for one name (a topic deleted and re-created): the newest archive
        // wins only if the user says so; refuse to guess.
        for w in partitions.windows(2) {
            if w[0].topic == w[1].topic && w[0].partition == w[1].partition {
                return Err(RestoreError::Choose(format!(
                    "{}-{} is archived under two topic ids ({} and {}): the topic was re-created; select one with --topic-id",
                    w[0].topic, w[0].partition, w[0].archived_topic_id, w[1].archived_topic_id
                )));
            }
        }
        let fetch_bytes = partitions.iter().map(|p| p.fetch_bytes).sum();
        let objects = partitions
            .iter()
            .flat_map(|p| &p.ranges)
            .map(|m| m.objects.iter().count())
            .sum();
        Ok(Plan {
            cluster_id: self.cluster_id,
            mode: self.sel.mode,
            node_id: self.node_id,
            log_dir_id: self.log_dir_id,
            metadata_snapshot: self.metadata_snapshot,
            configs_from: self.configs_from,
            cut: self.sel.cut,
            partitions,
            fetch_bytes,
            objects,
        })
    }
}

/// Plans a restore from a catalog read whole. In bare-metal mode the partitions are those the
/// chosen broker held (`hosted`: its archived `replication-offset-checkpoint` names them).
pub fn plan(
    mut cat: Catalog,
    sel: &Selection,
    hosted: Option<&Hosted>,
) -> Result<Plan, RestoreError> {
    let mut planner = Planner::new(&cat, sel)?;
    let cluster_id = planner.cluster_id.clone();
    let cluster = cat.clusters.remove(&cluster_id).unwrap_or_default();
    for p in cluster.partitions {
        planner.add(p, hosted)?;
    }
    planner.finish()
}

/// What of partition `p` is restored: its ranges up to the cut (moved, not copied; the rest
/// dropped).
fn plan_partition(p: PartitionCatalog, cut: Option<Cut>) -> PartitionPlan {
    let mut ranges = Vec::new();
    let mut trim_last = false;
    for m in p.ranges {
        let whole = match cut {
            None => true,
            Some(Cut::Offset(o)) => {
                if m.start_offset >= o {
                    break;
                }
                m.next_offset <= o
            }
            Some(Cut::Time(t)) => {
                // A range whose every batch is older than t is kept whole; the first that is
                // not is trimmed, and nothing after it is kept.
                m.kind == RangeKind::Gap || m.stats.max_timestamp.is_none_or(|mx| mx < t)
            }
        };
        let segment = m.kind == RangeKind::Segment;
        ranges.push(m);
        if !whole {
            trim_last = segment;
            break;
        }
    }
    // A trailing gap restores nothing.
    while ranges.last().is_some_and(|m| m.kind == RangeKind::Gap) {
        ranges.pop();
        trim_last = false;
    }
    let gaps = ranges
        .iter()
        .filter(|m| m.kind == RangeKind::Gap)
        .map(|m| (m.start_offset, m.next_offset))
        .collect();
    let mut epochs: Vec<(i32, i64)> = Vec::new();
    for m in &ranges {
        for &(e, o) in &m.leader_epochs {
            match epochs.last() {
                Some(&(le, _)) if le >= e => {}
                _ => epochs.push((e, o.max(ranges[0].start_offset))),
            }
        }
    }
    let fetch_bytes = ranges
        .iter()
        .map(|m| m.objects.iter().map(|r| r.stored_size).sum::<u64>())
        .sum();
    PartitionPlan {
        topic: p.topic,
        partition: p.partition,
        archived_topic_id: p.topic_id,
        ranges,
        gaps,
        epochs,
        trim_last,
        divergences: p.divergences.len(),
        fetch_bytes,
    }
}
