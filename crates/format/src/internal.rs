//! Records of Kafka's internal topics: `__consumer_offsets` (group coordinator) and
//! `__transaction_state` (transaction coordinator). Keys and values start with an int16
//! version selecting the schema (`OffsetCommitKey/Value`, `GroupMetadataKey`,
//! `TransactionLogKey/Value`). We decode what identifies a record and the committed
//! offset / transaction state; the rest stays undecoded.

use nom::number::complete::{be_i16, be_i32, be_i64, be_i8};

use super::error::{ErrorKind, FormatError, Result};
use super::primitives::{compact_nullable_bytes, i16_nullable_string, run, PResult};

fn string(input: &[u8]) -> PResult<'_, &str> {
    let (r, b) = i16_nullable_string(input)?;
    match b.map(std::str::from_utf8) {
        Some(Ok(s)) => Ok((r, s)),
        _ => Err(nom::Err::Error(nom::error::Error::new(
            input,
            nom::error::ErrorKind::Verify,
        ))),
    }
}

/// A `__consumer_offsets` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupKey<'a> {
    /// Versions 0/1: a committed offset.
    OffsetCommit {
        /// Key version.
        version: i16,
        /// Group id.
        group: &'a str,
        /// Topic.
        topic: &'a str,
        /// Partition.
        partition: i32,
    },
    /// Version 2: group metadata.
    GroupMetadata {
        /// Group id.
        group: &'a str,
    },
    /// Versions ≥ 3 (KIP-848 consumer groups, share groups): not decoded.
    Other {
        /// Key version (record type).
        version: i16,
    },
}

/// Parses a `__consumer_offsets` record key.
pub fn parse_group_key(key: &[u8]) -> Result<GroupKey<'_>> {
    let (rest, version) = run(key, 0, "an int16 key version", be_i16)?;
    Ok(match version {
        0 | 1 => {
            let (_, (group, topic, partition)) =
                run(rest, 2, "group, topic, partition", (string, string, be_i32))?;
            GroupKey::OffsetCommit {
                version,
                group,
                topic,
                partition,
            }
        }
        2 => GroupKey::GroupMetadata {
            group: run(rest, 2, "a group id", string)?.1,
        },
        v if v < 0 => {
            return Err(
                FormatError::new(ErrorKind::BadVersion, 0, "a non-negative key version").found(v),
            )
        }
        v => GroupKey::Other { version: v },
    })
}

/// The decoded part of an offset commit value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetCommitValue<'a> {
    /// Value version (0-4).
    pub version: i16,
    /// Committed offset.
    pub offset: i64,
    /// Leader epoch (v3+), −1 if unknown.
    pub leader_epoch: Option<i32>,
    /// Commit metadata.
    pub metadata: &'a str,
    /// Commit time.
    pub commit_timestamp: i64,
}

/// Parses an offset commit value (`OffsetCommitValue` v0-4).
pub fn parse_offset_commit_value(value: &[u8]) -> Result<OffsetCommitValue<'_>> {
    let (rest, version) = run(value, 0, "an int16 value version", be_i16)?;
    let what = "offset commit fields";
    let (offset, leader_epoch, metadata, commit_timestamp) = match version {
        0..=2 => {
            let (_, (o, m, t)) = run(rest, 2, what, (be_i64, string, be_i64))?;
            (o, None, m, t)
        }
        3 => {
            let (_, (o, e, m, t)) = run(rest, 2, what, (be_i64, be_i32, string, be_i64))?;
            (o, Some(e), m, t)
        }
        4 => {
            let (_, (o, e, m, t)) = run(
                rest,
                2,
                what,
                (be_i64, be_i32, compact_nullable_bytes, be_i64),
            )?;
            let m = std::str::from_utf8(m.unwrap_or(&[]))
                .map_err(|_| FormatError::new(ErrorKind::BadValue, 14, "UTF-8 metadata"))?;
            (o, Some(e), m, t)
        }
        v => {
            return Err(FormatError::new(
                ErrorKind::BadVersion,
                0,
                "offset commit value version 0-4",
            )
            .found(v))
        }
    };
    Ok(OffsetCommitValue {
        version,
        offset,
        leader_epoch,
        metadata,
        commit_timestamp,
    })
}

/// Transaction states (`TransactionState` ids).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TxnState {
    /// 0.
    Empty,
    /// 1.
    Ongoing,
    /// 2.
    PrepareCommit,
    /// 3.
    PrepareAbort,
    /// 4.
    CompleteCommit,
    /// 5.
    CompleteAbort,
    /// 6.
    Dead,
    /// 7.
    PrepareEpochFence,
    /// Anything else.
    Unknown(i8),
}

impl TxnState {
    /// From the stored id.
    pub fn from_id(id: i8) -> TxnState {
        match id {
            0 => TxnState::Empty,
            1 => TxnState::Ongoing,
            2 => TxnState::PrepareCommit,
            3 => TxnState::PrepareAbort,
            4 => TxnState::CompleteCommit,
            5 => TxnState::CompleteAbort,
            6 => TxnState::Dead,
            7 => TxnState::PrepareEpochFence,
            o => TxnState::Unknown(o),
        }
    }
}

/// Parses a `__transaction_state` key: (version 0, transactional id).
pub fn parse_txn_key(key: &[u8]) -> Result<&str> {
    let (rest, version) = run(key, 0, "an int16 key version", be_i16)?;
    if version != 0 {
        return Err(
            FormatError::new(ErrorKind::BadVersion, 0, "transaction log key version 0")
                .found(version),
        );
    }
    Ok(run(rest, 2, "a transactional id", string)?.1)
}

/// The decoded part of a `__transaction_state` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnValue {
    /// Value version (0-1).
    pub version: i16,
    /// Producer id.
    pub producer_id: i64,
    /// Producer epoch.
    pub producer_epoch: i16,
    /// Transaction timeout.
    pub timeout_ms: i32,
    /// State.
    pub state: TxnState,
}

/// Parses a `__transaction_state` value (`TransactionLogValue` v0-1).
pub fn parse_txn_value(value: &[u8]) -> Result<TxnValue> {
    let (rest, version) = run(value, 0, "an int16 value version", be_i16)?;
    if !(0..=1).contains(&version) {
        return Err(FormatError::new(
            ErrorKind::BadVersion,
            0,
            "transaction log value version 0-1",
        )
        .found(version));
    }
    let (_, (producer_id, producer_epoch, timeout_ms, state)) = run(
        rest,
        2,
        "producer id, epoch, timeout, state",
        (be_i64, be_i16, be_i32, be_i8),
    )?;
    Ok(TxnValue {
        version,
        producer_id,
        producer_epoch,
        timeout_ms,
        state: TxnState::from_id(state),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_commit_key_and_value() {
        let mut k = vec![0, 1, 0, 2];
        k.extend_from_slice(b"gr");
        k.extend_from_slice(&[0, 1, b't']);
        k.extend_from_slice(&5i32.to_be_bytes());
        assert_eq!(
            parse_group_key(&k).unwrap(),
            GroupKey::OffsetCommit {
                version: 1,
                group: "gr",
                topic: "t",
                partition: 5
            }
        );
        assert!(parse_group_key(&k[..k.len() - 1]).is_err());
        let mut v = vec![0, 3];
        v.extend_from_slice(&42i64.to_be_bytes());
        v.extend_from_slice(&7i32.to_be_bytes());
        v.extend_from_slice(&[0, 0]);
        v.extend_from_slice(&9i64.to_be_bytes());
        let c = parse_offset_commit_value(&v).unwrap();
        assert_eq!(
            (c.offset, c.leader_epoch, c.commit_timestamp),
            (42, Some(7), 9)
        );
    }
}
