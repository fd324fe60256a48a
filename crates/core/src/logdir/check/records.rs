//! The records of one batch or legacy entry: decoded, checked, counted and emitted.

use std::path::Path;

use serde_json::{json, Value};

use segvault_format::control::{decode_control_record, ControlRecord};
use segvault_format::internal::{
    parse_group_key, parse_offset_commit_value, parse_txn_key, parse_txn_value, GroupKey,
};
use segvault_format::kraft::{decode_metadata_record, MetadataFields};
use segvault_format::segment::Batch;
use segvault_format::{ErrorKind, FormatError, Limits};

use super::events::{Event, Out, RecordView};
use super::options::Decoder;
use super::problem::{Problem, Severity};

/// What the records of an entry held.
pub(super) struct RecordsResult {
    /// Records decoded.
    pub(super) count: u64,
    /// The first record's offset.
    pub(super) first_offset: Option<i64>,
    /// A control batch holding an ABORT marker.
    pub(super) abort: bool,
}

/// Decodes (and optionally emits) the records of a batch or legacy entry.
#[allow(clippy::too_many_arguments)]
pub(super) fn walk_records(
    file: &Path,
    pos: u64,
    start_pos: u64,
    b: &Batch<'_>,
    decoder: Decoder,
    emit: bool,
    limits: Limits,
    out: &mut Out<'_, '_>,
) -> Result<RecordsResult, Problem> {
    let to_problem = |e: FormatError| {
        let kind = match e.kind {
            ErrorKind::Crc => "crc",
            ErrorKind::Decompress => "decompress",
            _ => "record",
        };
        Problem::from_format(file, Severity::Corrupt, &e.shifted(start_pos)).with_kind(kind)
    };
    let mut res = RecordsResult {
        count: 0,
        first_offset: None,
        abort: false,
    };
    match b {
        Batch::V2(v) => {
            let control = v.header.attributes.is_control();
            let delta = v.header.last_offset_delta;
            let mut recs = v.records_with_limits(limits).map_err(to_problem)?;
            let mut prev_delta = -1i32;
            while let Some(r) = recs.next_record() {
                let r = r.map_err(to_problem)?;
                if r.offset_delta <= prev_delta || r.offset_delta > delta {
                    return Err(Problem::new(file, Severity::Corrupt, "record", format!(
                        "expected record offset deltas increasing within 0..={delta}, found {} after {prev_delta}",
                        r.offset_delta
                    )).at(Some(pos), Some(v.header.base_offset)));
                }
                prev_delta = r.offset_delta;
                res.count += 1;
                let offset = v.record_offset(r.offset_delta).unwrap_or(i64::MAX);
                if res.first_offset.is_none() {
                    res.first_offset = Some(offset);
                }
                let control_json = if control {
                    let c = decode_control_record(r.key, r.value);
                    if let Ok(ControlRecord::EndTxn { commit: false, .. }) = c {
                        res.abort = true;
                    }
                    Some(control_to_json(c))
                } else {
                    None
                };
                if emit {
                    let view = RecordView {
                        file,
                        batch_position: pos,
                        offset,
                        timestamp: v.record_timestamp(r.timestamp_delta),
                        key: r.key,
                        value: r.value,
                        headers: r.headers().map(|h| (h.key, h.value)).collect(),
                        control: control_json,
                        decoded: if control {
                            None
                        } else {
                            decode(decoder, r.key, r.value)
                        },
                    };
                    out.emit(Event::Record(&view));
                }
            }
        }
        Batch::Legacy(l) => {
            if !l.is_compressed() {
                res.count = 1;
                res.first_offset = Some(l.offset);
                if emit {
                    let view = RecordView {
                        file,
                        batch_position: pos,
                        offset: l.offset,
                        timestamp: l.timestamp,
                        key: l.key,
                        value: l.value,
                        headers: Vec::new(),
                        control: None,
                        decoded: decode(decoder, l.key, l.value),
                    };
                    out.emit(Event::Record(&view));
                }
            } else {
                let inner = l.inner(limits).map_err(to_problem)?;
                let mut prev: Option<i64> = None;
                for m in inner.iter() {
                    let m = m.map_err(to_problem)?;
                    if prev.is_some_and(|p| m.offset <= p) || m.offset > l.offset {
                        return Err(Problem::new(file, Severity::Corrupt, "record", format!(
                            "expected inner message offsets increasing up to the wrapper's {}, found {} after {}",
                            l.offset, m.offset, prev.map_or("none".into(), |p| p.to_string())
                        )).at(Some(pos), Some(l.offset)));
                    }
                    prev = Some(m.offset);
                    res.count += 1;
                    if res.first_offset.is_none() {
                        res.first_offset = Some(m.offset);
                    }
                    if emit {
                        let view = RecordView {
                            file,
                            batch_position: pos,
                            offset: m.offset,
                            timestamp: m.timestamp,
                            key: m.entry.key,
                            value: m.entry.value,
                            headers: Vec::new(),
                            control: None,
                            decoded: decode(decoder, m.entry.key, m.entry.value),
                        };
                        out.emit(Event::Record(&view));
                    }
                }
            }
        }
    }
    Ok(res)
}

fn control_to_json(c: Result<ControlRecord, FormatError>) -> Value {
    match c {
        Ok(ControlRecord::EndTxn {
            commit,
            version,
            coordinator_epoch,
        }) => json!({
            "type": if commit { "COMMIT" } else { "ABORT" }, "version": version, "coordinator_epoch": coordinator_epoch
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

/// Decodes an internal-topic record's key and value into JSON (`None` for plain topics).
pub fn decode(decoder: Decoder, key: Option<&[u8]>, value: Option<&[u8]>) -> Option<Value> {
    match decoder {
        Decoder::None => None,
        Decoder::ConsumerOffsets => Some(decode_group(key, value)),
        Decoder::TransactionState => Some(decode_txn(key, value)),
        Decoder::ClusterMetadata => Some(decode_metadata(value)),
    }
}

fn decode_group(key: Option<&[u8]>, value: Option<&[u8]>) -> Value {
    let Some(key) = key else {
        return json!({"type": "invalid", "error": "a null key"});
    };
    match parse_group_key(key) {
        Ok(GroupKey::OffsetCommit {
            version,
            group,
            topic,
            partition,
        }) => {
            let mut v = json!({"type": "offset_commit", "key_version": version, "group": group, "topic": topic, "partition": partition});
            match value.map(parse_offset_commit_value) {
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
        Ok(GroupKey::GroupMetadata { group }) => {
            json!({"type": "group_metadata", "group": group, "tombstone": value.is_none()})
        }
        Ok(GroupKey::Other { version }) => json!({"type": "other", "key_version": version}),
        Err(e) => json!({"type": "invalid", "error": e.to_string()}),
    }
}

fn decode_txn(key: Option<&[u8]>, value: Option<&[u8]>) -> Value {
    let Some(key) = key else {
        return json!({"type": "invalid", "error": "a null key"});
    };
    match parse_txn_key(key) {
        Ok(id) => {
            let mut v = json!({"type": "transaction", "transactional_id": id});
            match value.map(parse_txn_value) {
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
        Err(e) => json!({"type": "invalid", "error": e.to_string()}),
    }
}

fn decode_metadata(value: Option<&[u8]>) -> Value {
    let Some(value) = value else {
        return json!({"type": "invalid", "error": "a null value"});
    };
    match decode_metadata_record(value) {
        Ok(r) => {
            let mut v = json!({
                "type": r.type_name.unwrap_or("Unknown"), "api_key": r.api_key, "version": r.version,
            });
            match r.fields {
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
                MetadataFields::RemoveTopic { topic_id } => {
                    v["topic_id"] = json!(topic_id.to_string())
                }
                MetadataFields::Broker {
                    broker_id,
                    broker_epoch,
                } => {
                    v["broker_id"] = json!(broker_id);
                    v["broker_epoch"] = json!(broker_epoch);
                }
                MetadataFields::Controller { controller_id } => {
                    v["controller_id"] = json!(controller_id)
                }
                MetadataFields::FeatureLevel { name, level } => {
                    v["name"] = json!(name);
                    v["level"] = json!(level);
                }
                MetadataFields::Config {
                    resource_type,
                    resource_name,
                    name,
                } => {
                    v["resource_type"] = json!(resource_type);
                    v["resource_name"] = json!(resource_name);
                    v["name"] = json!(name);
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
        Err(e) => json!({"type": "invalid", "error": e.to_string()}),
    }
}
