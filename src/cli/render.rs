//! JSON of what the walk decoded: control records and internal-topic records, as
//! `segvault inspect` prints them (in its JSON lines, and inline in its text lines).

use serde_json::{json, Value};

use segvault_core::logdir::check::{FileInfo, InternalRecord};
use segvault_format::control::ControlRecord;
use segvault_format::kraft::MetadataFields;
use segvault_format::FormatError;

/// A control record (a transaction marker, a KRaft control record), or why it does not
/// decode.
pub fn control_json(c: &Result<ControlRecord, FormatError>) -> Value {
    match c {
        Ok(ControlRecord::EndTxn {
            commit,
            version,
            coordinator_epoch,
        }) => json!({
            "type": if *commit { "COMMIT" } else { "ABORT" }, "version": version, "coordinator_epoch": coordinator_epoch
        }),
        Ok(ControlRecord::LeaderChange { version, leader_id }) => {
            json!({"type": "LEADER_CHANGE", "version": version, "leader_id": leader_id})
        }
        Ok(ControlRecord::SnapshotHeader {
            version,
            last_contained_log_timestamp,
        }) => {
            json!({"type": "SNAPSHOT_HEADER", "version": version, "last_contained_log_timestamp": last_contained_log_timestamp})
        }
        Ok(ControlRecord::SnapshotFooter { version }) => {
            json!({"type": "SNAPSHOT_FOOTER", "version": version})
        }
        Ok(ControlRecord::KraftVersion {
            version,
            kraft_version,
        }) => json!({"type": "KRAFT_VERSION", "version": version, "kraft_version": kraft_version}),
        Ok(ControlRecord::KraftVoters {
            version,
            voter_count,
            first_voter_id,
        }) => {
            json!({"type": "KRAFT_VOTERS", "version": version, "voter_count": voter_count, "first_voter_id": first_voter_id})
        }
        Ok(ControlRecord::Unknown {
            key_version,
            type_id,
        }) => json!({"type": "UNKNOWN", "key_version": key_version, "type_id": type_id}),
        Err(e) => json!({"type": "INVALID", "error": e.to_string()}),
    }
}

/// A record of `__consumer_offsets`, `__transaction_state` or `__cluster_metadata`.
pub fn internal_json(r: &InternalRecord<'_>) -> Value {
    match r {
        InternalRecord::NullKey => json!({"type": "invalid", "error": "a null key"}),
        InternalRecord::NullValue => json!({"type": "invalid", "error": "a null value"}),
        InternalRecord::Invalid(e) => json!({"type": "invalid", "error": e.to_string()}),
        InternalRecord::OffsetCommit {
            key_version,
            group,
            topic,
            partition,
            value,
        } => {
            let mut v = json!({"type": "offset_commit", "key_version": key_version, "group": group, "topic": topic, "partition": partition});
            match value {
                None => v["tombstone"] = json!(true),
                Some(Ok(c)) => {
                    v["offset"] = json!(c.offset);
                    v["leader_epoch"] = json!(c.leader_epoch);
                    v["metadata"] = json!(c.metadata);
                    v["commit_timestamp"] = json!(c.commit_timestamp);
                }
                Some(Err(e)) => v["value_error"] = json!(e.to_string()),
            }
            v
        }
        InternalRecord::GroupMetadata { group, tombstone } => {
            json!({"type": "group_metadata", "group": group, "tombstone": tombstone})
        }
        InternalRecord::OtherGroupKey { key_version } => {
            json!({"type": "other", "key_version": key_version})
        }
        InternalRecord::Transaction {
            transactional_id,
            value,
        } => {
            let mut v = json!({"type": "transaction", "transactional_id": transactional_id});
            match value {
                None => v["tombstone"] = json!(true),
                Some(Ok(t)) => {
                    v["producer_id"] = json!(t.producer_id);
                    v["producer_epoch"] = json!(t.producer_epoch);
                    v["timeout_ms"] = json!(t.timeout_ms);
                    v["state"] = json!(format!("{:?}", t.state));
                }
                Some(Err(e)) => v["value_error"] = json!(e.to_string()),
            }
            v
        }
        InternalRecord::Metadata(r) => metadata_json(r),
    }
}

fn metadata_json(r: &segvault_format::kraft::MetadataRecord<'_>) -> Value {
    let mut v = json!({
        "type": r.type_name.unwrap_or("Unknown"), "api_key": r.api_key, "version": r.version,
    });
    match &r.fields {
        MetadataFields::Topic { name, topic_id } => {
            v["name"] = json!(name);
            v["topic_id"] = json!(topic_id.to_string());
        }
        MetadataFields::Partition {
            partition_id,
            topic_id,
        } => {
            v["partition_id"] = json!(partition_id);
            v["topic_id"] = json!(topic_id.to_string());
        }
        MetadataFields::RemoveTopic { topic_id } => v["topic_id"] = json!(topic_id.to_string()),
        MetadataFields::Broker {
            broker_id,
            broker_epoch,
        } => {
            v["broker_id"] = json!(broker_id);
            v["broker_epoch"] = json!(broker_epoch);
        }
        MetadataFields::Controller { controller_id } => v["controller_id"] = json!(controller_id),
        MetadataFields::FeatureLevel { name, level } => {
            v["name"] = json!(name);
            v["level"] = json!(level);
        }
        MetadataFields::Config {
            resource_type,
            resource_name,
            name,
            value,
        } => {
            v["resource_type"] = json!(resource_type);
            v["resource_name"] = json!(resource_name);
            v["name"] = json!(name);
            v["value"] = json!(value);
        }
        MetadataFields::ProducerIds {
            broker_id,
            broker_epoch,
            next_producer_id,
        } => {
            v["broker_id"] = json!(broker_id);
            v["broker_epoch"] = json!(broker_epoch);
            v["next_producer_id"] = json!(next_producer_id);
        }
        MetadataFields::Other => {}
    }
    v
}

/// An entry of a small file (see [`FileInfo`]) as one JSON object with its `type` and
/// `file`; the text output prints the same object without those two.
pub fn file_info_json(file: &str, info: &FileInfo<'_>) -> Value {
    match *info {
        FileInfo::ProducerState(e) => {
            json!({"type": "producer_state", "file": file, "producer_id": e.producer_id, "producer_epoch": e.epoch,
            "last_sequence": e.last_sequence, "last_offset": e.last_offset, "offset_delta": e.offset_delta,
            "timestamp": e.timestamp, "coordinator_epoch": e.coordinator_epoch, "current_txn_first_offset": e.current_txn_first_offset})
        }
        FileInfo::CheckpointEntry(e) => {
            json!({"type": "checkpoint_entry", "file": file, "topic": e.topic, "partition": e.partition, "offset": e.offset})
        }
        FileInfo::LeaderEpoch(e) => {
            json!({"type": "leader_epoch", "file": file, "epoch": e.epoch, "start_offset": e.start_offset})
        }
        FileInfo::PartitionMetadata(id) => {
            json!({"type": "partition_metadata", "file": file, "version": 0, "topic_id": id.to_string()})
        }
        FileInfo::MetaProperties(m) => {
            json!({"type": "meta_properties", "file": file, "version": m.version, "node_id": m.node_id,
            "cluster_id": m.cluster_id, "directory_id": m.directory_id.map(|d| d.to_string()), "properties": m.properties})
        }
        FileInfo::QuorumState(q) => json!({"type": "quorum_state", "file": file, "state": q}),
        FileInfo::CleanShutdown(epoch) => {
            json!({"type": "clean_shutdown", "file": file, "broker_epoch": epoch})
        }
    }
}
