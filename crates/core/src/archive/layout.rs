//! The archive's key layout, version 1. Self-describing: every key says what it holds, and
//! nothing needs a central index. Keys are built here and read back here ([`parse`]), which
//! validates every name in them (see [`validate_name`]), because a store is input like any
//! other.
//!
//! ```text
//! segvault/v1/clusters/<cluster-id>/
//!   brokers/<node-id>/log-dirs/<log-dir-id>/meta.properties         latest copy
//!   brokers/<node-id>/log-dirs/<log-dir-id>/<checkpoint file>       latest copy
//!   brokers/<node-id>/metadata/<offset>-<epoch>.checkpoint          KRaft snapshots
//!   topics/<topic>/<topic-id>/<partition>/
//!     start.json                          the first archived offset (created once)
//!     chain/<start:020>.json              manifest of the range starting there: COMMIT POINT
//!     index/<first:020>-<next:020>.json   the manifests of INDEX_SPAN consecutive ranges, first
//!                                         to next (created once, after they are published)
//!     data/<start:020>-<next:020>/<node-id>/<attempt>/{log,index,timeindex,txnindex,snapshot}
//!     corrupt/<base:020>-<node-id>.json   a segment that failed verification (not archived)
//!     divergence/<start:020>-<node-id>.json  a replica whose bytes differ from the archive
//!     verified/<start:020>-<node-id>         a replica whose bytes were compared and match
//! ```
//!
//! `chain/` manifests are created with a conditional create, so each offset range is claimed
//! exactly once whichever replica's agent gets there first; they are written after every
//! data object, so a manifest that exists always describes complete data.
//!
//! Data keys are unique to each attempt (`<attempt>` is 128 random bits, hex): two archivers
//! of one range, on replicas or on the same log dir, never write or delete each other's
//! objects, and the objects a published manifest names are never anyone else's. Once
//! `chain/<start>.json` exists no other attempt at `start` can be published, so an object
//! under `data/<start>-<next>/` that this manifest does not name is garbage for good (an
//! interrupted or losing attempt's) and may be deleted; nothing else under `data/` ever is.

use object_store::path::Path;

pub const ROOT: &str = "segvault/v1";

/// Checks a name read from the store or a log dir before it becomes part of a key or a path:
/// Kafka's topic charset (`[a-zA-Z0-9._-]`), not `.` or `..`, at most 255 bytes.
pub fn validate_name(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 255 || name == "." || name == ".." {
        return Err(format!(
            "{what} {name:?}: expected 1 to 255 characters, not '.' or '..'"
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "{what} {name:?}: character {c:?} is outside [a-zA-Z0-9._-]"
        ));
    }
    Ok(())
}

/// Kafka's limit on a topic name (`Topic.MAX_NAME_LENGTH`): a partition directory adds
/// `-<partition>` (and a deletion suffix), which must still fit a 255-byte file name.
pub const MAX_TOPIC_LEN: usize = 249;

/// [`validate_name`] for a topic, with Kafka's own length limit.
pub fn validate_topic(name: &str) -> Result<(), String> {
    validate_name("topic", name)?;
    if name.len() > MAX_TOPIC_LEN {
        return Err(format!(
            "topic {name:?}: {} characters; Kafka allows at most {MAX_TOPIC_LEN}",
            name.len()
        ));
    }
    Ok(())
}

pub fn cluster(cluster_id: &str) -> Path {
    Path::from(format!("{ROOT}/clusters/{cluster_id}"))
}

/// Where one partition's archive lives.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PartitionKey {
    pub cluster_id: String,
    pub topic: String,
    pub topic_id: String,
    pub partition: i32,
}

impl PartitionKey {
    pub fn root(&self) -> Path {
        Path::from(format!(
            "{ROOT}/clusters/{}/topics/{}/{}/{}",
            self.cluster_id, self.topic, self.topic_id, self.partition
        ))
    }
    pub fn start(&self) -> Path {
        self.root().clone().join("start.json")
    }
    pub fn chain_dir(&self) -> Path {
        self.root().clone().join("chain")
    }
    pub fn manifest(&self, start: i64) -> Path {
        self.chain_dir().join(format!("{start:020}.json"))
    }
    pub fn index_dir(&self) -> Path {
        self.root().clone().join("index")
    }
    /// The chain index holding the manifests of the ranges from `first` up to `next`.
    pub fn index(&self, first: i64, next: i64) -> Path {
        self.index_dir()
            .join(format!("{first:020}-{next:020}.json"))
    }
    /// The object `file` of one attempt at archiving `[start, next)` from node `node`.
    pub fn data(&self, start: i64, next: i64, node: i32, attempt: &str, file: &str) -> Path {
        self.range_data(start, next)
            .join(node.to_string())
            .join(attempt)
            .join(file)
    }
    /// Every attempt's objects for `[start, next)`: only the manifest `chain/<start>.json` may
    /// name keys under it.
    pub fn range_data(&self, start: i64, next: i64) -> Path {
        self.root()
            .clone()
            .join("data")
            .join(format!("{start:020}-{next:020}"))
    }
    /// A key that sorts just before the `data/` of every range from offset `first` on (and
    /// after every range that begins before it): where a listing of those ranges' objects
    /// starts (S3's StartAfter) or a listing of earlier ones stops.
    pub fn range_data_bound(&self, first: i64) -> Path {
        self.root()
            .clone()
            .join("data")
            .join(format!("{first:020}"))
    }
    pub fn corrupt(&self, base: i64, node: i32) -> Path {
        self.root()
            .clone()
            .join("corrupt")
            .join(format!("{base:020}-{node}.json"))
    }
    pub fn divergence(&self, start: i64, node: i32) -> Path {
        self.root()
            .clone()
            .join("divergence")
            .join(format!("{start:020}-{node}.json"))
    }
    pub fn verified(&self, start: i64, node: i32) -> Path {
        self.root()
            .clone()
            .join("verified")
            .join(format!("{start:020}-{node}"))
    }
    /// Ranges node `node` has already compared with the archive (verified/ or divergence/).
    pub fn compared_prefixes(&self) -> [Path; 2] {
        [
            self.root().clone().join("verified"),
            self.root().clone().join("divergence"),
        ]
    }
}

/// The (start, node) a `verified/` or `divergence/` key names.
pub fn compared_range(key: &Path) -> Option<(i64, i32)> {
    offset_and_node(key.filename()?)
}

/// The (offset, node) of an evidence name, `<offset:020>-<node>` with or without `.json`.
fn offset_and_node(name: &str) -> Option<(i64, i32)> {
    let name = name.strip_suffix(".json").unwrap_or(name);
    let (start, node) = name.split_once('-')?;
    Some((start.parse().ok()?, node.parse().ok()?))
}

/// The (first, next) an `index/<first:020>-<next:020>.json` key names, if it is one.
pub fn index_span(key: &Path) -> Option<(i64, i64)> {
    index_name_span(key.filename()?)
}

fn index_name_span(name: &str) -> Option<(i64, i64)> {
    let (first, next) = name.strip_suffix(".json")?.split_once('-')?;
    let digits = |d: &str| d.len() == 20 && d.bytes().all(|b| b.is_ascii_digit());
    if !digits(first) || !digits(next) {
        return None;
    }
    let span = (first.parse().ok()?, next.parse().ok()?);
    (span.0 < span.1).then_some(span)
}

/// The start offset a `chain/<start>.json` key names, if it is one.
pub fn manifest_start(key: &Path) -> Option<i64> {
    manifest_name_start(key.filename()?)
}

/// The start offset of a manifest's name, `<start:020>.json`.
fn manifest_name_start(name: &str) -> Option<i64> {
    let digits = name.strip_suffix(".json")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// What a key under [`ROOT`] names: the reading of every key the builders above make, for
/// [`parse`]. Names are validated as they are read; a partition's key whose name under it is
/// not one segvault writes is [`Key::Other`] (part of the layout, nothing to list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// `brokers/<node-id>/log-dirs/<log-dir-id>/<file>` ([`broker_file`]).
    BrokerFile {
        cluster_id: String,
        node: i32,
        log_dir_id: String,
        file: String,
    },
    /// `brokers/<node-id>/metadata/<file>` ([`metadata_snapshot`]).
    MetadataSnapshot {
        cluster_id: String,
        node: i32,
        file: String,
    },
    /// `start.json` ([`PartitionKey::start`]).
    Start(PartitionKey),
    /// `chain/<start:020>.json` ([`PartitionKey::manifest`]).
    Manifest(PartitionKey, i64),
    /// `index/<first:020>-<next:020>.json` ([`PartitionKey::index`]).
    Index(PartitionKey, i64, i64),
    /// `data/<start:020>-<next:020>/<node-id>/<attempt>/<file>` ([`PartitionKey::data`]).
    Data {
        partition: PartitionKey,
        start: i64,
        next: i64,
        node: i32,
        attempt: String,
        file: String,
    },
    /// `corrupt/<name>`, with the (base, node) of a name [`PartitionKey::corrupt`] makes.
    Corrupt(PartitionKey, Option<(i64, i32)>),
    /// `divergence/<name>`, with the (start, node) of a name [`PartitionKey::divergence`]
    /// makes.
    Divergence(PartitionKey, Option<(i64, i32)>),
    /// `verified/<name>`, with the (start, node) of a name [`PartitionKey::verified`] makes.
    Verified(PartitionKey, Option<(i64, i32)>),
    /// Any other key under a partition.
    Other(PartitionKey),
}

/// Reads a key back: `None` if it is not under [`ROOT`], names a cluster, topic, topic id,
/// partition, node, log dir or file outside what [`validate_name`] and [`validate_topic`]
/// allow, or is a `chain/` key that is not `<start:020>.json`.
pub fn parse(path: &Path) -> Option<Key> {
    let s = path
        .as_ref()
        .strip_prefix(ROOT)?
        .strip_prefix("/clusters/")?;
    let parts: Vec<&str> = s.split('/').collect();
    let cluster = *parts.first()?;
    validate_name("cluster id", cluster).ok()?;
    let cluster_id = cluster.to_string();
    match parts.get(1..)? {
        ["brokers", node, "log-dirs", dir_id, file] => {
            validate_name("log dir id", dir_id).ok()?;
            validate_name("file", file).ok()?;
            Some(Key::BrokerFile {
                cluster_id,
                node: node.parse().ok()?,
                log_dir_id: dir_id.to_string(),
                file: file.to_string(),
            })
        }
        ["brokers", node, "metadata", file] => {
            validate_name("file", file).ok()?;
            Some(Key::MetadataSnapshot {
                cluster_id,
                node: node.parse().ok()?,
                file: file.to_string(),
            })
        }
        ["topics", topic, topic_id, partition, rest @ ..] => {
            validate_topic(topic).ok()?;
            validate_name("topic id", topic_id).ok()?;
            let partition: i32 = partition.parse().ok().filter(|p: &i32| *p >= 0)?;
            let key = PartitionKey {
                cluster_id,
                topic: topic.to_string(),
                topic_id: topic_id.to_string(),
                partition,
            };
            Some(match rest {
                ["start.json"] => Key::Start(key),
                ["chain", name] => Key::Manifest(key, manifest_name_start(name)?),
                ["index", name] => match index_name_span(name) {
                    Some((first, next)) => Key::Index(key, first, next),
                    None => Key::Other(key),
                },
                ["corrupt", name] => Key::Corrupt(key, offset_and_node(name)),
                ["divergence", name] => Key::Divergence(key, offset_and_node(name)),
                ["verified", name] => Key::Verified(key, offset_and_node(name)),
                ["data", range, node, attempt, file] => match data_parts(range, node) {
                    Some((start, next, node)) => Key::Data {
                        partition: key,
                        start,
                        next,
                        node,
                        attempt: attempt.to_string(),
                        file: file.to_string(),
                    },
                    None => Key::Other(key),
                },
                _ => Key::Other(key),
            })
        }
        _ => None,
    }
}

/// The (start, next, node) of a data key's `<start:020>-<next:020>/<node-id>`.
fn data_parts(range: &str, node: &str) -> Option<(i64, i64, i32)> {
    let (start, next) = range.split_once('-')?;
    Some((start.parse().ok()?, next.parse().ok()?, node.parse().ok()?))
}

/// A fresh attempt id: 128 bits from the kernel's random source, as 32 hex digits. Unique
/// to one attempt at one range, so that no two archivers ever share a data key.
pub fn attempt_id() -> String {
    let mut b = [0u8; 16];
    let mut filled = 0;
    while filled < b.len() {
        match rustix::rand::getrandom(&mut b[filled..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => filled += n,
            Err(rustix::io::Errno::INTR) => {}
            // getrandom(2) does not fail otherwise once the pool is initialised (Linux >= 3.17);
            // a time-and-pid fallback still keeps attempts of different processes apart.
            Err(_) => {
                let t = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos());
                let v = t ^ ((std::process::id() as u128) << 96);
                b = v.to_le_bytes();
                break;
            }
        }
    }
    hex::encode(b)
}

pub fn broker_file(cluster_id: &str, node: i32, log_dir_id: &str, file: &str) -> Path {
    cluster(cluster_id)
        .join("brokers")
        .join(node.to_string())
        .join("log-dirs")
        .join(log_dir_id)
        .join(file)
}

pub fn metadata_snapshot(cluster_id: &str, node: i32, file: &str) -> Path {
    cluster(cluster_id)
        .join("brokers")
        .join(node.to_string())
        .join("metadata")
        .join(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_outside_kafkas_charset_are_refused() {
        assert!(validate_name("topic", "orders.v2_x-1").is_ok());
        assert!(validate_topic(&"t".repeat(249)).is_ok());
        assert!(validate_topic(&"t".repeat(250)).is_err());
        for bad in ["", ".", "..", "a/b", "a\\b", "é", "a b", &"x".repeat(256)] {
            assert!(validate_name("topic", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn manifest_keys_round_trip() {
        let k = PartitionKey {
            cluster_id: "c".into(),
            topic: "t".into(),
            topic_id: "id".into(),
            partition: 3,
        };
        let m = k.manifest(1234);
        assert_eq!(
            m.as_ref(),
            "segvault/v1/clusters/c/topics/t/id/3/chain/00000000000000001234.json"
        );
        assert_eq!(manifest_start(&m), Some(1234));
        assert_eq!(manifest_start(&Path::from("x/chain/12.json")), None);
        let d = k.data(0, 20, 1, "ab", "log");
        assert_eq!(
            d.as_ref(),
            "segvault/v1/clusters/c/topics/t/id/3/data/00000000000000000000-00000000000000000020/1/ab/log"
        );
        assert!(d.as_ref().starts_with(k.range_data(0, 20).as_ref()));
    }

    /// A name Kafka and the layout allow: `[a-zA-Z0-9._-]`, not `.` or `..`.
    fn name() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9._-]{1,40}".prop_filter("not . or ..", |n| n != "." && n != "..")
    }

    fn partition_key() -> impl Strategy<Value = PartitionKey> {
        (name(), name(), name(), 0..=i32::MAX).prop_map(
            |(cluster_id, topic, topic_id, partition)| PartitionKey {
                cluster_id,
                topic,
                topic_id,
                partition,
            },
        )
    }

    proptest! {
        /// Every key the layout builds parses back to what built it.
        #[test]
        fn every_key_built_parses_back_to_what_built_it(
            k in partition_key(),
            start in 0..=i64::MAX,
            next in 0..=i64::MAX,
            node in any::<i32>(),
            attempt in "[0-9a-f]{32}",
            dir in name(),
            file in name(),
        ) {
            prop_assert_eq!(parse(&k.start()), Some(Key::Start(k.clone())));
            prop_assert_eq!(parse(&k.manifest(start)), Some(Key::Manifest(k.clone(), start)));
            prop_assert_eq!(manifest_start(&k.manifest(start)), Some(start));
            prop_assert_eq!(
                parse(&k.data(start, next, node, &attempt, &file)),
                Some(Key::Data {
                    partition: k.clone(),
                    start,
                    next,
                    node,
                    attempt: attempt.clone(),
                    file: file.clone(),
                })
            );
            let at = Some((start, node));
            prop_assert_eq!(parse(&k.corrupt(start, node)), Some(Key::Corrupt(k.clone(), at)));
            prop_assert_eq!(
                parse(&k.divergence(start, node)),
                Some(Key::Divergence(k.clone(), at))
            );
            prop_assert_eq!(parse(&k.verified(start, node)), Some(Key::Verified(k.clone(), at)));
            prop_assert_eq!(compared_range(&k.divergence(start, node)), at);
            prop_assert_eq!(compared_range(&k.verified(start, node)), at);
            prop_assert_eq!(
                parse(&broker_file(&k.cluster_id, node, &dir, &file)),
                Some(Key::BrokerFile {
                    cluster_id: k.cluster_id.clone(),
                    node,
                    log_dir_id: dir.clone(),
                    file: file.clone(),
                })
            );
            prop_assert_eq!(
                parse(&metadata_snapshot(&k.cluster_id, node, &file)),
                Some(Key::MetadataSnapshot {
                    cluster_id: k.cluster_id.clone(),
                    node,
                    file: file.clone(),
                })
            );
        }
    }

    /// Keys outside the layout, or with names it refuses, are not read as any part of it.
    #[test]
    fn keys_outside_the_layout_parse_to_nothing() {
        let k = PartitionKey {
            cluster_id: "c".into(),
            topic: "t".into(),
            topic_id: "id".into(),
            partition: 3,
        };
        for bad in [
            "other/v1/clusters/c/topics/t/id/3/start.json",
            "segvault/v1/clusters/c/topics/t/id/-1/start.json",
            "segvault/v1/clusters/c/topics/t/id/x/start.json",
            "segvault/v1/clusters/c/topics/t/id/3/chain/12.json",
            "segvault/v1/clusters/c/brokers/x/metadata/f",
            "segvault/v1/clusters/c/brokers/1/log-dirs/d",
            "segvault/v1/clusters/c/somewhere/else",
        ] {
            assert_eq!(parse(&Path::from(bad)), None, "{bad}");
        }
        let long = format!(
            "segvault/v1/clusters/c/topics/{}/id/3/start.json",
            "t".repeat(250)
        );
        assert_eq!(parse(&Path::from(long)), None);
        // Under a partition, a name segvault does not write is still that partition's.
        let other = k.root().join("data").join("not-a-range");
        assert_eq!(parse(&other), Some(Key::Other(k.clone())));
        let odd = k.root().join("corrupt").join("x.json");
        assert_eq!(parse(&odd), Some(Key::Corrupt(k, None)));
    }

    #[test]
    fn attempt_ids_differ() {
        let (a, b) = (attempt_id(), attempt_id());
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
    }
}
