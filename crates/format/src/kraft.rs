//! KRaft metadata: the `quorum-state` file and the records of `__cluster_metadata`
//! (segments, `.checkpoint` snapshots and `bootstrap.checkpoint` all hold record batches,
//! parsed by [`super::segment`]; this module decodes the record values).
//!
//! A metadata record value is a frame: unsigned varint frame version (1), unsigned varint
//! api key (= record type), unsigned varint record version, then the flexible-version
//! message (`AbstractApiMessageSerde`). We name every type and decode the identifying
//! fields of the common ones.

use nom::number::complete::{be_i16, be_i32, be_i64, be_i8, be_u8};
use nom::Parser;

use super::error::{ErrorKind, FormatError, Result};
use super::primitives::{compact_nullable_bytes, run, unsigned_varint, PResult};
use super::text::Uuid;

/// `quorum-state` (JSON written by `FileQuorumStateStore`); unknown fields are ignored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QuorumState {
    /// Cluster id (empty string in some versions; absent in data_version 1).
    pub cluster_id: Option<String>,
    /// Current leader, −1 if unknown.
    pub leader_id: Option<i32>,
    /// Current epoch.
    pub leader_epoch: Option<i32>,
    /// Voted-for node, −1 if none.
    pub voted_id: Option<i32>,
    /// Directory id of the voted-for node (data_version 1).
    pub voted_directory_id: Option<String>,
    /// Applied offset (data_version 0).
    pub applied_offset: Option<i64>,
    /// Static voters (data_version 0).
    pub current_voters: Option<Vec<QuorumVoter>>,
    /// File format version.
    #[serde(rename = "data_version")]
    pub data_version: Option<i32>,
}

/// A voter in `quorum-state`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QuorumVoter {
    /// Node id.
    pub voter_id: i32,
}

/// Parses `quorum-state`.
pub fn parse_quorum_state(data: &[u8]) -> Result<QuorumState> {
    serde_json::from_slice(data).map_err(|e| {
        FormatError::new(ErrorKind::Syntax, e.column() as u64, "quorum-state JSON").found(e)
    })
}

/// Record types of `__cluster_metadata` by api key (`metadata/.../common/metadata/*.json`).
pub const METADATA_RECORD_TYPES: &[(u16, &str)] = &[
    (0, "RegisterBrokerRecord"),
    (1, "UnregisterBrokerRecord"),
    (2, "TopicRecord"),
    (3, "PartitionRecord"),
    (4, "ConfigRecord"),
    (5, "PartitionChangeRecord"),
    (7, "FenceBrokerRecord"),
    (8, "UnfenceBrokerRecord"),
    (9, "RemoveTopicRecord"),
    (10, "DelegationTokenRecord"),
    (11, "UserScramCredentialRecord"),
    (12, "FeatureLevelRecord"),
    (14, "ClientQuotaRecord"),
    (15, "ProducerIdsRecord"),
    (17, "BrokerRegistrationChangeRecord"),
    (18, "AccessControlEntryRecord"),
    (19, "RemoveAccessControlEntryRecord"),
    (20, "NoOpRecord"),
    (21, "ZkMigrationRecord"),
    (22, "RemoveUserScramCredentialRecord"),
    (23, "BeginTransactionRecord"),
    (24, "EndTransactionRecord"),
    (25, "AbortTransactionRecord"),
    (26, "RemoveDelegationTokenRecord"),
    (27, "RegisterControllerRecord"),
];

/// The record type name of an api key, `None` if unknown.
pub fn metadata_record_type_name(api_key: u16) -> Option<&'static str> {
    METADATA_RECORD_TYPES
        .iter()
        .find(|(k, _)| *k == api_key)
        .map(|(_, n)| *n)
}

/// Identifying fields of a metadata record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetadataFields<'a> {
    /// TopicRecord.
    Topic {
        /// Topic name.
        name: &'a str,
        /// Topic id.
        topic_id: Uuid,
    },
    /// PartitionRecord or PartitionChangeRecord.
    Partition {
        /// Partition.
        partition_id: i32,
        /// Topic id.
        topic_id: Uuid,
    },
    /// RemoveTopicRecord.
    RemoveTopic {
        /// Topic id.
        topic_id: Uuid,
    },
    /// Register/Unregister/Fence/Unfence broker, broker registration change.
    Broker {
        /// Broker id.
        broker_id: i32,
        /// Broker epoch.
        broker_epoch: i64,
    },
    /// RegisterControllerRecord.
    Controller {
        /// Controller id.
        controller_id: i32,
    },
    /// FeatureLevelRecord.
    FeatureLevel {
        /// Feature name.
        name: &'a str,
        /// Level.
        level: i16,
    },
    /// ConfigRecord.
    Config {
        /// Resource type (2 topic, 4 broker, ...).
        resource_type: i8,
        /// Resource name ("" for cluster default).
        resource_name: &'a str,
        /// Config key.
        name: &'a str,
        /// Its value; `None` removes the key (back to the default).
        value: Option<&'a str>,
    },
    /// ProducerIdsRecord.
    ProducerIds {
        /// Broker that got the block.
        broker_id: i32,
        /// Its epoch.
        broker_epoch: i64,
        /// Next producer id to hand out.
        next_producer_id: i64,
    },
    /// Any other record type (or one whose fields we do not decode).
    Other,
}

/// A decoded `__cluster_metadata` record value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataRecord<'a> {
    /// Frame version (1).
    pub frame_version: u32,
    /// Api key = record type.
    pub api_key: u16,
    /// Record version.
    pub version: u16,
    /// Type name, `None` for unknown api keys.
    pub type_name: Option<&'static str>,
    /// Decoded identifying fields.
    pub fields: MetadataFields<'a>,
}

fn uuid(input: &[u8]) -> PResult<'_, Uuid> {
    let (r, b) = nom::bytes::complete::take(16usize)(input)?;
    let mut a = [0u8; 16];
    a.copy_from_slice(b);
    Ok((r, Uuid(a)))
}

fn compact_str(input: &[u8]) -> PResult<'_, &str> {
    let (r, b) = compact_nullable_bytes(input)?;
    match b.map(std::str::from_utf8) {
        Some(Ok(s)) => Ok((r, s)),
        _ => Err(nom::Err::Error(nom::error::Error::new(
            input,
            nom::error::ErrorKind::Verify,
        ))),
    }
}

fn compact_nullable_str(input: &[u8]) -> PResult<'_, Option<&str>> {
    let (r, b) = compact_nullable_bytes(input)?;
    match b.map(std::str::from_utf8).transpose() {
        Ok(s) => Ok((r, s)),
        Err(_) => Err(nom::Err::Error(nom::error::Error::new(
            input,
            nom::error::ErrorKind::Verify,
        ))),
    }
}

fn short(v: u32, what: &str) -> Result<u16> {
    u16::try_from(v).map_err(|_| {
        FormatError::new(ErrorKind::BadValue, 0, format!("a {what} below 65536")).found(v)
    })
}

/// Decodes a metadata record value.
pub fn decode_metadata_record(value: &[u8]) -> Result<MetadataRecord<'_>> {
    let (body, (frame_version, api_key, version)) = run(
        value,
        0,
        "a metadata record frame (frame version, api key, version)",
        (unsigned_varint, unsigned_varint, unsigned_varint),
    )?;
    if frame_version != 1 {
        return Err(
            FormatError::new(ErrorKind::BadVersion, 0, "metadata frame version 1")
                .found(frame_version),
        );
    }
    let api_key = short(api_key, "record type")?;
    let version = short(version, "record version")?;
    let base = (value.len() - body.len()) as u64;
    let what = "the record's fields";
    let fields = match api_key {
        2 => {
            let (_, (name, topic_id)) = run(body, base, what, (compact_str, uuid))?;
            MetadataFields::Topic { name, topic_id }
        }
        3 | 5 => {
            let (_, (partition_id, topic_id)) = run(body, base, what, (be_i32, uuid))?;
            MetadataFields::Partition {
                partition_id,
                topic_id,
            }
        }
        9 => MetadataFields::RemoveTopic {
            topic_id: run(body, base, what, uuid)?.1,
        },
        0 => {
            let (_, (broker_id, broker_epoch)) = if version >= 2 {
                run(body, base, what, (be_i32, be_u8, uuid, be_i64))
                    .map(|(r, (id, _, _, e))| (r, (id, e)))?
            } else {
                run(body, base, what, (be_i32, uuid, be_i64)).map(|(r, (id, _, e))| (r, (id, e)))?
            };
            MetadataFields::Broker {
                broker_id,
                broker_epoch,
            }
        }
        1 | 7 | 8 | 17 => {
            let (_, (broker_id, broker_epoch)) = run(body, base, what, (be_i32, be_i64))?;
            MetadataFields::Broker {
                broker_id,
                broker_epoch,
            }
        }
        27 => MetadataFields::Controller {
            controller_id: run(body, base, what, be_i32)?.1,
        },
        12 => {
            let (_, (name, level)) = run(body, base, what, (compact_str, be_i16))?;
            MetadataFields::FeatureLevel { name, level }
        }
        4 => {
            let (_, (resource_type, resource_name, name, value)) = run(
                body,
                base,
                what,
                (be_i8, compact_str, compact_str, compact_nullable_str),
            )?;
            MetadataFields::Config {
                resource_type,
                resource_name,
                name,
                value,
            }
        }
        15 => {
            let (_, (broker_id, broker_epoch, next_producer_id)) =
                run(body, base, what, (be_i32, be_i64, be_i64))?;
            MetadataFields::ProducerIds {
                broker_id,
                broker_epoch,
                next_producer_id,
            }
        }
        20 => {
            // NoOpRecord: only tagged fields.
            let _ = run(body, base, what, unsigned_varint.map(|_| ()))?;
            MetadataFields::Other
        }
        _ => MetadataFields::Other,
    };
    Ok(MetadataRecord {
        frame_version,
        api_key,
        version,
        type_name: metadata_record_type_name(api_key),
        fields,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorum_state_variants() {
        let q = parse_quorum_state(br#"{"clusterId":"","leaderId":1,"leaderEpoch":25,"votedId":-1,"appliedOffset":0,"currentVoters":[{"voterId":1}],"data_version":0}"#).unwrap();
        assert_eq!(q.leader_epoch, Some(25));
        assert_eq!(q.current_voters.unwrap()[0].voter_id, 1);
        let q = parse_quorum_state(br#"{"leaderId":1,"leaderEpoch":1,"votedId":-1,"votedDirectoryId":"AAAAAAAAAAAAAAAAAAAAAA","data_version":1}"#).unwrap();
        assert_eq!(q.data_version, Some(1));
        assert!(parse_quorum_state(b"{").is_err());
    }

    #[test]
    fn topic_record() {
        let mut v = vec![1u8, 2, 0, 4];
        v.extend_from_slice(b"foo");
        v.extend_from_slice(&[7u8; 16]);
        v.push(0);
        let r = decode_metadata_record(&v).unwrap();
        assert_eq!(r.type_name, Some("TopicRecord"));
        assert_eq!(
            r.fields,
            MetadataFields::Topic {
                name: "foo",
                topic_id: Uuid([7; 16])
            }
        );
        assert!(decode_metadata_record(&[0, 2, 0]).is_err());
        // ConfigRecord v0: topic "foo", retention.ms = "3600000", then one removed.
        let config = |value: Option<&str>| {
            let mut v = vec![1u8, 4, 0, 2, 4];
            v.extend_from_slice(b"foo");
            v.push(13);
            v.extend_from_slice(b"retention.ms");
            match value {
                Some(x) => {
                    v.push(x.len() as u8 + 1);
                    v.extend_from_slice(x.as_bytes());
                }
                None => v.push(0),
            }
            v.push(0);
            v
        };
        for value in [Some("3600000"), None] {
            assert_eq!(
                decode_metadata_record(&config(value)).unwrap().fields,
                MetadataFields::Config {
                    resource_type: 2,
                    resource_name: "foo",
                    name: "retention.ms",
                    value
                }
            );
        }
        assert!(decode_metadata_record(&v[..10]).is_err());
    }
}
