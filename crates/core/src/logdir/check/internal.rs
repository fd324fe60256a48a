//! The records of the internal topics (`__consumer_offsets`, `__transaction_state`,
//! `__cluster_metadata`), decoded to segvault-format's types for the caller to render.

use segvault_format::internal::{
    parse_group_key, parse_offset_commit_value, parse_txn_key, parse_txn_value, GroupKey,
    OffsetCommitValue, TxnValue,
};
use segvault_format::kraft::{decode_metadata_record, MetadataRecord};
use segvault_format::FormatError;

use super::options::Decoder;

/// A decoded internal-topic record. Exhaustive on purpose: a renderer must handle every
/// kind.
#[derive(Debug, Clone)]
pub enum InternalRecord<'a> {
    /// A `__consumer_offsets` or `__transaction_state` record without a key.
    NullKey,
    /// A `__cluster_metadata` record without a value.
    NullValue,
    /// The key (`__cluster_metadata`: the value) does not parse.
    Invalid(FormatError),
    /// `__consumer_offsets`: a committed offset, with its value (`None`: a tombstone).
    OffsetCommit {
        /// Key version.
        key_version: i16,
        /// Group id.
        group: &'a str,
        /// Topic.
        topic: &'a str,
        /// Partition.
        partition: i32,
        /// The value, parsed.
        value: Option<Result<OffsetCommitValue<'a>, FormatError>>,
    },
    /// `__consumer_offsets`: group metadata (its value is not decoded).
    GroupMetadata {
        /// Group id.
        group: &'a str,
        /// The record has no value.
        tombstone: bool,
    },
    /// `__consumer_offsets`: a key version segvault does not decode.
    OtherGroupKey {
        /// Key version (record type).
        key_version: i16,
    },
    /// `__transaction_state`: a transaction, with its value (`None`: a tombstone).
    Transaction {
        /// Transactional id.
        transactional_id: &'a str,
        /// The value, parsed.
        value: Option<Result<TxnValue, FormatError>>,
    },
    /// `__cluster_metadata`: a metadata record.
    Metadata(MetadataRecord<'a>),
}

/// Decodes an internal-topic record's key and value (`None` for plain topics).
pub(super) fn decode<'a>(
    decoder: Decoder,
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
) -> Option<InternalRecord<'a>> {
    match decoder {
        Decoder::None => None,
        Decoder::ConsumerOffsets => Some(decode_group(key, value)),
        Decoder::TransactionState => Some(decode_txn(key, value)),
        Decoder::ClusterMetadata => Some(decode_metadata(value)),
    }
}

fn decode_group<'a>(key: Option<&'a [u8]>, value: Option<&'a [u8]>) -> InternalRecord<'a> {
    let Some(key) = key else {
        return InternalRecord::NullKey;
    };
    match parse_group_key(key) {
        Ok(GroupKey::OffsetCommit {
            version,
            group,
            topic,
            partition,
        }) => InternalRecord::OffsetCommit {
            key_version: version,
            group,
            topic,
            partition,
            value: value.map(parse_offset_commit_value),
        },
        Ok(GroupKey::GroupMetadata { group }) => InternalRecord::GroupMetadata {
            group,
            tombstone: value.is_none(),
        },
        Ok(GroupKey::Other { version }) => InternalRecord::OtherGroupKey {
            key_version: version,
        },
        Err(e) => InternalRecord::Invalid(e),
    }
}

fn decode_txn<'a>(key: Option<&'a [u8]>, value: Option<&'a [u8]>) -> InternalRecord<'a> {
    let Some(key) = key else {
        return InternalRecord::NullKey;
    };
    match parse_txn_key(key) {
        Ok(transactional_id) => InternalRecord::Transaction {
            transactional_id,
            value: value.map(parse_txn_value),
        },
        Err(e) => InternalRecord::Invalid(e),
    }
}

fn decode_metadata(value: Option<&[u8]>) -> InternalRecord<'_> {
    let Some(value) = value else {
        return InternalRecord::NullValue;
    };
    match decode_metadata_record(value) {
        Ok(r) => InternalRecord::Metadata(r),
        Err(e) => InternalRecord::Invalid(e),
    }
}
