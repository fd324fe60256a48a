//! Control records: the single record of a control batch (attribute bit 5).
//!
//! Key = int16 version + int16 type. Transaction markers (ABORT 0, COMMIT 1) have the value
//! `int16 version, int32 coordinatorEpoch`. KRaft types (2-6) carry a flexible-version
//! message whose first field is its own int16 `Version`; we decode the simple fields.

use nom::number::complete::{be_i16, be_i32, be_i64};

use super::error::{ErrorKind, FormatError, Result};
use super::primitives::{run, unsigned_varint, PResult};

/// The type in a control record key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ControlType {
    /// Transaction aborted.
    Abort,
    /// Transaction committed.
    Commit,
    /// KRaft: a new leader was elected.
    LeaderChange,
    /// KRaft snapshot: first record.
    SnapshotHeader,
    /// KRaft snapshot: last record.
    SnapshotFooter,
    /// KRaft: kraft.version feature record.
    KraftVersion,
    /// KRaft: voter set.
    KraftVoters,
    /// A type this code does not know (Kafka maps it to UNKNOWN too).
    Unknown(i16),
}

impl ControlType {
    /// From the key's type field.
    pub fn from_id(id: i16) -> ControlType {
        match id {
            0 => ControlType::Abort,
            1 => ControlType::Commit,
            2 => ControlType::LeaderChange,
            3 => ControlType::SnapshotHeader,
            4 => ControlType::SnapshotFooter,
            5 => ControlType::KraftVersion,
            6 => ControlType::KraftVoters,
            other => ControlType::Unknown(other),
        }
    }
    /// Kafka's name (`ControlRecordType`).
    pub fn name(self) -> &'static str {
        match self {
            ControlType::Abort => "ABORT",
            ControlType::Commit => "COMMIT",
            ControlType::LeaderChange => "LEADER_CHANGE",
            ControlType::SnapshotHeader => "SNAPSHOT_HEADER",
            ControlType::SnapshotFooter => "SNAPSHOT_FOOTER",
            ControlType::KraftVersion => "KRAFT_VERSION",
            ControlType::KraftVoters => "KRAFT_VOTERS",
            ControlType::Unknown(_) => "UNKNOWN",
        }
    }
}

/// A decoded control record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlRecord {
    /// COMMIT or ABORT marker.
    EndTxn {
        /// True for COMMIT.
        commit: bool,
        /// Marker value version.
        version: i16,
        /// Transaction coordinator epoch.
        coordinator_epoch: i32,
    },
    /// LeaderChangeMessage.
    LeaderChange {
        /// Message version.
        version: i16,
        /// The new leader.
        leader_id: i32,
    },
    /// SnapshotHeaderRecord.
    SnapshotHeader {
        /// Message version.
        version: i16,
        /// Timestamp of the last record contained in the snapshot.
        last_contained_log_timestamp: i64,
    },
    /// SnapshotFooterRecord.
    SnapshotFooter {
        /// Message version.
        version: i16,
    },
    /// KRaftVersionRecord.
    KraftVersion {
        /// Message version.
        version: i16,
        /// The kraft.version feature level.
        kraft_version: i16,
    },
    /// VotersRecord.
    KraftVoters {
        /// Message version.
        version: i16,
        /// Number of voters.
        voter_count: u32,
        /// Id of the first voter (to show something useful without decoding endpoints).
        first_voter_id: Option<i32>,
    },
    /// Unknown type: the key's fields only.
    Unknown {
        /// Key version.
        key_version: i16,
        /// Type id.
        type_id: i16,
    },
}

/// Parses a control record key: (version, type). Kafka requires at least 4 bytes and a
/// non-negative version.
pub fn parse_control_key(key: &[u8]) -> Result<(i16, ControlType)> {
    let (_, (version, ty)) = run(
        key,
        0,
        "a control key (int16 version, int16 type)",
        (be_i16, be_i16),
    )?;
    if version < 0 {
        return Err(FormatError::new(
            ErrorKind::BadVersion,
            0,
            "a non-negative control key version",
        )
        .found(version));
    }
    Ok((version, ControlType::from_id(ty)))
}

fn compact_array_len(input: &[u8]) -> PResult<'_, u32> {
    let (r, n) = unsigned_varint(input)?;
    Ok((r, n.saturating_sub(1)))
}

/// Decodes a control record from its key and value. Positions in errors are relative to
/// the value (or key).
pub fn decode_control_record(key: Option<&[u8]>, value: Option<&[u8]>) -> Result<ControlRecord> {
    let key =
        key.ok_or_else(|| FormatError::new(ErrorKind::BadValue, 0, "a control record key"))?;
    let (key_version, ty) = parse_control_key(key)?;
    let value = value.unwrap_or(&[]);
    Ok(match ty {
        ControlType::Abort | ControlType::Commit => {
            let (_, (version, coordinator_epoch)) = run(
                value,
                0,
                "an end-transaction marker value (int16 version, int32 coordinator epoch)",
                (be_i16, be_i32),
            )?;
            if version < 0 {
                return Err(FormatError::new(
                    ErrorKind::BadVersion,
                    0,
                    "a non-negative marker version",
                )
                .found(version));
            }
            ControlRecord::EndTxn {
                commit: ty == ControlType::Commit,
                version,
                coordinator_epoch,
            }
        }
        ControlType::LeaderChange => {
            let (_, (version, leader_id)) = run(
                value,
                0,
                "LeaderChangeMessage (version, leader id)",
                (be_i16, be_i32),
            )?;
            ControlRecord::LeaderChange { version, leader_id }
        }
        ControlType::SnapshotHeader => {
            let (_, (version, ts)) = run(
                value,
                0,
                "SnapshotHeaderRecord (version, last contained log timestamp)",
                (be_i16, be_i64),
            )?;
            ControlRecord::SnapshotHeader {
                version,
                last_contained_log_timestamp: ts,
            }
        }
        ControlType::SnapshotFooter => {
            let (_, version) = run(value, 0, "SnapshotFooterRecord (version)", be_i16)?;
            ControlRecord::SnapshotFooter { version }
        }
        ControlType::KraftVersion => {
            let (_, (version, kraft_version)) = run(
                value,
                0,
                "KRaftVersionRecord (version, kraft version)",
                (be_i16, be_i16),
            )?;
            ControlRecord::KraftVersion {
                version,
                kraft_version,
            }
        }
        ControlType::KraftVoters => {
            let (rest, (version, voter_count)) = run(
                value,
                0,
                "VotersRecord (version, voters)",
                (be_i16, compact_array_len),
            )?;
            let first_voter_id = if voter_count > 0 {
                Some(run(rest, 0, "a voter id", be_i32)?.1)
            } else {
                None
            };
            ControlRecord::KraftVoters {
                version,
                voter_count,
                first_voter_id,
            }
        }
        ControlType::Unknown(type_id) => ControlRecord::Unknown {
            key_version,
            type_id,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_and_abort() {
        let v = [0u8, 0, 0, 0, 0, 7];
        assert_eq!(
            decode_control_record(Some(&[0, 0, 0, 1]), Some(&v)).unwrap(),
            ControlRecord::EndTxn {
                commit: true,
                version: 0,
                coordinator_epoch: 7
            }
        );
        assert!(matches!(
            decode_control_record(Some(&[0, 0, 0, 0]), Some(&v)).unwrap(),
            ControlRecord::EndTxn { commit: false, .. }
        ));
        assert!(decode_control_record(Some(&[0, 0, 0, 1]), Some(&v[..5])).is_err());
        assert!(decode_control_record(Some(&[0, 0, 0]), Some(&v)).is_err());
        assert!(decode_control_record(Some(&[0xff, 0xff, 0, 1]), Some(&v)).is_err());
        assert_eq!(
            parse_control_key(&[0, 0, 0, 9]).unwrap().1,
            ControlType::Unknown(9)
        );
    }
}
