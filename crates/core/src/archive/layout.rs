//! The archive's key layout, version 1. Self-describing: every key says what it holds, and
//! nothing needs a central index. Readers must validate every name they read back (see
//! [`validate_name`]), because a store is input like any other.
//!
//! ```text
//! segvault/v1/clusters/<cluster-id>/
//!   brokers/<node-id>/log-dirs/<log-dir-id>/meta.properties         latest copy
//!   brokers/<node-id>/log-dirs/<log-dir-id>/<checkpoint file>       latest copy
//!   brokers/<node-id>/metadata/<offset>-<epoch>.checkpoint          KRaft snapshots
//!   topics/<topic>/<topic-id>/<partition>/
//!     start.json                          the first archived offset (created once)
//!     chain/<start:020>.json              manifest of the range starting there: COMMIT POINT
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
#[derive(Debug, Clone, PartialEq, Eq)]
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
    let name = key.filename()?;
    let name = name.strip_suffix(".json").unwrap_or(name);
    let (start, node) = name.split_once('-')?;
    Some((start.parse().ok()?, node.parse().ok()?))
}

/// The start offset a `chain/<start>.json` key names, if it is one.
pub fn manifest_start(key: &Path) -> Option<i64> {
    let name = key.filename()?;
    let digits = name.strip_suffix(".json")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
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

    #[test]
    fn attempt_ids_differ() {
        let (a, b) = (attempt_id(), attempt_id());
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
    }
}
