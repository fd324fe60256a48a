//! What the broker would delete of a restore at its first retention check: each restored
//! topic's `retention.ms` and `retention.bytes`, read from the archived KRaft snapshot (the
//! topic's own config, else the node's own dynamic config, else the cluster's dynamic
//! default; topics whose `cleanup.policy` lacks `delete` are never shortened), applied to the plan's segments as the broker applies them
//! (`UnifiedLog.deleteRetentionMsBreachedSegments`, `deleteRetentionSizeBreachedSegments`):
//! from the start of the log, every segment whose newest record is older than `now -
//! retention.ms`, then the oldest segments while the rest stays above `retention.bytes`.
//!
//! A restore of an archive older than a topic's retention places data the broker deletes
//! about 30 s after it starts (`LogManager`'s first retention check): this says which, and
//! how to raise the retention first. Static `log.retention.*` settings live in each broker's
//! `server.properties`, which is not archived: topics that follow them are not judged.

use super::error::RestoreError;
use super::fetch::get_all;
use super::plan::{Cut, Mode, PartitionPlan, Plan};
use crate::archive::layout;
use crate::archive::manifest::RangeKind;
use crate::archive::store::Store;
use segvault_format::kraft::{decode_metadata_record, MetadataFields};
use segvault_format::segment::{log_entries, Batch};
use serde::Serialize;
use std::collections::BTreeMap;

/// KRaft's resource types of `ConfigRecord` (`ConfigResource.Type`).
const TOPIC: i8 = 2;
const BROKER: i8 = 4;

/// One day, the margin the suggested `retention.ms` leaves after the oldest restored record.
const DAY_MS: i64 = 86_400_000;

/// A topic's retention as the archived metadata gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Limit {
    pub value: i64,
    /// `topic`, `cluster default` or `node <id>`: where the value is set.
    pub from: &'static str,
}

/// A restored partition the broker would shorten at start.
#[derive(Debug, Clone, Serialize)]
pub struct Deletion {
    pub topic: String,
    pub partition: i32,
    /// The configs that delete: `retention.ms`, `retention.bytes`, or both.
    pub by: Vec<String>,
    pub retention_ms: Option<Limit>,
    pub retention_bytes: Option<Limit>,
    /// Segments deleted and their bytes, out of all restored.
    pub segments: usize,
    pub of_segments: usize,
    pub bytes: u64,
    /// The log would start here instead of at `start_offset`.
    pub start_offset: i64,
    pub new_start_offset: i64,
    /// The newest record deleted (ms since the epoch), for retention.ms.
    pub newest_deleted_ms: Option<i64>,
}

/// What [`check`] found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Retention {
    /// The snapshot read: `brokers/<node>/metadata/<file>`, `None` if the archive has none
    /// (ZooKeeper mode, or no snapshot archived yet): nothing could be judged.
    pub snapshot: Option<String>,
    pub deletions: Vec<Deletion>,
    /// Per topic with deletions: the command that keeps the restored data.
    pub commands: Vec<(String, String)>,
}

/// The configs of a KRaft snapshot: `(resource type, resource name) -> key -> value`.
type Configs = BTreeMap<(i8, String), BTreeMap<String, String>>;

/// Reads the plan's config snapshot (see [`Plan::configs_from`]) and judges each partition
/// of the plan against its topic's retention at `now_ms`.
pub async fn check(store: &Store, plan: &Plan, now_ms: i64) -> Result<Retention, RestoreError> {
    let Some((node, file)) = &plan.configs_from else {
        return Ok(Retention::default());
    };
    let key = layout::metadata_snapshot(&plan.cluster_id, *node, file);
    let bytes = get_all(store, &key).await?;
    let configs = configs(&bytes).map_err(|source| RestoreError::Corrupt {
        key: key.to_string(),
        source,
    })?;
    let node = plan.node_id.filter(|_| plan.mode == Mode::BareMetal);
    let mut out = Retention {
        snapshot: Some(key.to_string()),
        ..Retention::default()
    };
    for p in &plan.partitions {
        if !deletes(&configs, &p.topic, node) {
            continue;
        }
        let ms = limit(&configs, &p.topic, node, "retention.ms", &MS_KEYS);
        let bytes = limit(&configs, &p.topic, node, "retention.bytes", &BYTES_KEYS);
        if let Some(d) = judge(p, plan.cut, ms, bytes, now_ms) {
            out.deletions.push(d);
        }
    }
    let mut by_topic: BTreeMap<&str, Vec<&Deletion>> = BTreeMap::new();
    for d in &out.deletions {
        by_topic.entry(&d.topic).or_default().push(d);
    }
    for (topic, ds) in by_topic {
        let parts = plan.partitions.iter().filter(|p| p.topic == topic);
        out.commands
            .push((topic.to_string(), command(topic, &ds, parts, now_ms)));
    }
    Ok(out)
}

/// The broker keys of a topic config's cluster-wide default, most precise first, with the
/// factor that turns each into the topic config's unit.
const MS_KEYS: [(&str, i64); 3] = [
    ("log.retention.ms", 1),
    ("log.retention.minutes", 60_000),
    ("log.retention.hours", 3_600_000),
];
const BYTES_KEYS: [(&str, i64); 1] = [("log.retention.bytes", 1)];

/// A topic's retention `topic_key`: its own config, else the node's dynamic broker config,
/// else the cluster's dynamic default (`broker_keys`, most precise first).
fn limit(
    configs: &Configs,
    topic: &str,
    node: Option<i32>,
    topic_key: &str,
    broker_keys: &[(&str, i64)],
) -> Option<Limit> {
    let get = |t: i8, name: &str, key: &str| config(configs, t, name, key)?.parse::<i64>().ok();
    if let Some(v) = get(TOPIC, topic, topic_key) {
        return Some(Limit {
            value: v,
            from: "topic",
        });
    }
    // Kafka merges the levels key by key (the node's over the cluster default), then takes
    // the most precise key set at any level.
    for (key, factor) in broker_keys {
        let levels = node
            .map(|n| (n.to_string(), "node"))
            .into_iter()
            .chain(std::iter::once((String::new(), "cluster default")));
        for (name, from) in levels {
            if let Some(v) = get(BROKER, &name, key) {
                let value = if v < 0 { -1 } else { v.saturating_mul(*factor) };
                return Some(Limit { value, from });
            }
        }
    }
    None
}

/// The value of `key` set on resource `(t, name)`, if any.
fn config<'c>(configs: &'c Configs, t: i8, name: &str, key: &str) -> Option<&'c str> {
    configs
        .get(&(t, name.to_string()))?
        .get(key)
        .map(String::as_str)
}

/// Whether retention deletes from `topic` at all: its `cleanup.policy` (else the node's or
/// the cluster's `log.cleanup.policy`, else Kafka's default `delete`) includes `delete`.
fn deletes(configs: &Configs, topic: &str, node: Option<i32>) -> bool {
    let get = |t: i8, name: &str, key: &str| config(configs, t, name, key);
    let policy = get(TOPIC, topic, "cleanup.policy")
        .or_else(|| node.and_then(|n| get(BROKER, &n.to_string(), "log.cleanup.policy")))
        .or_else(|| get(BROKER, "", "log.cleanup.policy"));
    policy.is_none_or(|p| p.split(',').any(|x| x.trim() == "delete"))
}

/// What the broker deletes of partition `p` at `now_ms`, if anything.
fn judge(
    p: &PartitionPlan,
    cut: Option<Cut>,
    ms: Option<Limit>,
    bytes: Option<Limit>,
    now_ms: i64,
) -> Option<Deletion> {
    let segs: Vec<_> = p
        .ranges
        .iter()
        .filter(|m| m.kind == RangeKind::Segment && m.objects.log.is_some())
        .collect();
    let size =
        |m: &&crate::archive::manifest::Manifest| m.objects.log.as_ref().map_or(0, |l| l.size);
    let mut gone = 0;
    let mut by = Vec::new();
    let mut newest_deleted_ms = None;
    // The newest record of each restored segment: the archived one, except that a segment
    // trimmed at `--until-time T` keeps only records older than T.
    let newest = |i: usize| {
        let t = segs[i].stats.max_timestamp;
        match cut {
            Some(Cut::Time(c)) if p.trim_last && i + 1 == segs.len() => t.map(|t| t.min(c - 1)),
            _ => t,
        }
    };
    if let Some(l) = ms.filter(|l| l.value >= 0) {
        let horizon = now_ms.saturating_sub(l.value);
        while gone < segs.len() && newest(gone).is_some_and(|t| t < horizon) {
            newest_deleted_ms = newest_deleted_ms.max(newest(gone));
            gone += 1;
        }
        if gone > 0 {
            by.push("retention.ms".to_string());
        }
    }
    if let Some(l) = bytes.filter(|l| l.value >= 0) {
        let before = gone;
        let mut diff: i128 =
            segs[gone..].iter().map(|m| size(m) as i128).sum::<i128>() - l.value as i128;
        while gone < segs.len() && diff - size(&segs[gone]) as i128 >= 0 {
            diff -= size(&segs[gone]) as i128;
            gone += 1;
        }
        if gone > before {
            by.push("retention.bytes".to_string());
        }
    }
    if gone == 0 {
        return None;
    }
    let start_offset = p.ranges.first().map_or(0, |m| m.start_offset);
    Some(Deletion {
        topic: p.topic.clone(),
        partition: p.partition,
        by,
        retention_ms: ms,
        retention_bytes: bytes,
        segments: gone,
        of_segments: segs.len(),
        bytes: segs[..gone].iter().map(size).sum(),
        start_offset,
        new_start_offset: segs.get(gone).map_or_else(
            || p.ranges.last().map_or(start_offset, |m| m.next_offset),
            |m| m.start_offset,
        ),
        newest_deleted_ms,
    })
}

/// The `kafka-configs.sh` command that keeps every restored record of `topic`: a
/// `retention.ms` a day past its oldest restored segment's newest record, and a
/// `retention.bytes` above its largest restored partition, each only where it deletes.
fn command<'a>(
    topic: &str,
    ds: &[&Deletion],
    parts: impl Iterator<Item = &'a PartitionPlan>,
    now_ms: i64,
) -> String {
    let mut oldest: Option<i64> = None;
    let mut largest = 0u64;
    for p in parts {
        for m in p.ranges.iter().filter(|m| m.kind == RangeKind::Segment) {
            if let Some(t) = m.stats.max_timestamp {
                oldest = Some(oldest.map_or(t, |o: i64| o.min(t)));
            }
        }
        largest = largest.max(
            p.ranges
                .iter()
                .filter_map(|m| m.objects.log.as_ref())
                .map(|l| l.size)
                .sum(),
        );
    }
    let mut set = Vec::new();
    if ds.iter().any(|d| d.by.iter().any(|b| b == "retention.ms")) {
        let age = now_ms.saturating_sub(oldest.unwrap_or(now_ms)).max(0);
        // Whole days, one more than the oldest data's age.
        set.push(format!("retention.ms={}", (age / DAY_MS + 2) * DAY_MS));
    }
    if ds
        .iter()
        .any(|d| d.by.iter().any(|b| b == "retention.bytes"))
    {
        // Whole GiB, at least twice the largest partition.
        let gib = 1u64 << 30;
        set.push(format!(
            "retention.bytes={}",
            (largest * 2).div_ceil(gib).max(1) * gib
        ));
    }
    format!(
        "kafka-configs.sh --bootstrap-server <broker:port> --alter --entity-type topics --entity-name {topic} --add-config {}",
        set.join(",")
    )
}

/// The topic and broker configs a KRaft snapshot holds, its records applied in order.
fn configs(snapshot: &[u8]) -> Result<Configs, segvault_format::FormatError> {
    let mut out = Configs::new();
    let mut walk = log_entries(snapshot);
    for batch in walk.by_ref() {
        let Batch::V2(b) = batch else { continue };
        if b.header.attributes.is_control() {
            continue;
        }
        let mut records = b.records()?;
        while let Some(r) = records.next_record() {
            let r = r?;
            let Some(value) = r.value else { continue };
            if let MetadataFields::Config {
                resource_type,
                resource_name,
                name,
                value,
            } = decode_metadata_record(value)?.fields
            {
                if resource_type != TOPIC && resource_type != BROKER {
                    continue;
                }
                let c = out
                    .entry((resource_type, resource_name.to_string()))
                    .or_default();
                match value {
                    Some(v) => c.insert(name.to_string(), v.to_string()),
                    None => c.remove(name),
                };
            }
        }
    }
    match walk.finish() {
        segvault_format::segment::SegmentEnd::Clean => Ok(out),
        segvault_format::segment::SegmentEnd::Corrupt(e) => Err(e),
        segvault_format::segment::SegmentEnd::PartialTail { position, bytes } => {
            Err(segvault_format::FormatError::new(
                segvault_format::ErrorKind::BadLength,
                position,
                format!("a whole batch (the snapshot ends {bytes} bytes into one)"),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configs(entries: &[(i8, &str, &str, &str)]) -> Configs {
        let mut c = Configs::new();
        for (t, name, k, v) in entries {
            c.entry((*t, name.to_string()))
                .or_default()
                .insert(k.to_string(), v.to_string());
        }
        c
    }

    #[test]
    fn the_topic_wins_then_the_most_precise_key_at_any_level() {
        let c = configs(&[
            (BROKER, "", "log.retention.ms", "604800000"),
            (BROKER, "1", "log.retention.hours", "1"),
            (TOPIC, "t", "retention.ms", "5000"),
        ]);
        let ms = |topic, node| limit(&c, topic, node, "retention.ms", &MS_KEYS);
        assert_eq!(
            ms("t", Some(1)),
            Some(Limit {
                value: 5000,
                from: "topic"
            })
        );
        // log.retention.ms (cluster default) beats the node's log.retention.hours, as the
        // broker merges the levels key by key before choosing the key.
        assert_eq!(
            ms("u", Some(1)),
            Some(Limit {
                value: 604_800_000,
                from: "cluster default"
            })
        );
        let c = configs(&[
            (BROKER, "", "log.retention.hours", "168"),
            (BROKER, "1", "log.retention.hours", "1"),
        ]);
        let ms = |node| limit(&c, "u", node, "retention.ms", &MS_KEYS);
        assert_eq!(
            ms(Some(1)),
            Some(Limit {
                value: 3_600_000,
                from: "node"
            })
        );
        assert_eq!(
            ms(None),
            Some(Limit {
                value: 604_800_000,
                from: "cluster default"
            })
        );
        assert_eq!(
            limit(&Configs::new(), "u", None, "retention.ms", &MS_KEYS),
            None
        );
    }

    #[test]
    fn compacted_topics_are_never_shortened() {
        let c = configs(&[
            (TOPIC, "__consumer_offsets", "cleanup.policy", "compact"),
            (TOPIC, "both", "cleanup.policy", "compact,delete"),
            (BROKER, "", "log.cleanup.policy", "compact"),
            (TOPIC, "plain", "cleanup.policy", "delete"),
        ]);
        assert!(!deletes(&c, "__consumer_offsets", None));
        assert!(deletes(&c, "both", None));
        assert!(deletes(&c, "plain", None));
        assert!(!deletes(&c, "other", None), "the cluster default");
        assert!(deletes(&Configs::new(), "other", None), "Kafka's default");
    }
}
