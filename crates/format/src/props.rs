//! Property round-trips for every codec of this crate whose bytes we write: what a writer
//! (or the test-util encoder) produces, the matching parser reads back as the same values,
//! and (for the text files) the parser's input is the writer's output byte for byte.
//! Record batches and legacy messages are covered by the workspace's format tests
//! (`random_batches_roundtrip`, `random_legacy_roundtrip`), records by
//! `records::tests`.

use proptest::prelude::*;

use crate::index::{parse_txn_index, AbortedTxn};
use crate::index_build::encode_txn_index;
use crate::names::{parse_file_name, segment_file_name, FileName, SegmentFileKind};
use crate::primitives::{read_varint_from, unsigned_varint, varint, varlong};
use crate::snapshot::{parse_producer_snapshot, write_producer_snapshot, ProducerEntry};
use crate::text::{
    parse_leader_epoch_checkpoint, parse_offset_checkpoint, parse_partition_metadata,
    write_leader_epoch_checkpoint, write_offset_checkpoint, write_partition_metadata, EpochEntry,
    OffsetCheckpointEntry, Uuid,
};
use crate::{encode_unsigned_varint, encode_varint, encode_varlong};

/// Legal topic names: Kafka's `[a-zA-Z0-9._-]{1,249}` (a checkpoint line is split on spaces).
fn topic() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9._-]{1,40}"
}

fn producer_entry() -> impl Strategy<Value = ProducerEntry> {
    (
        any::<i64>(),
        any::<i16>(),
        any::<i32>(),
        any::<i64>(),
        any::<i32>(),
        any::<i64>(),
        any::<i32>(),
        any::<i64>(),
    )
        .prop_map(|(p, e, s, o, d, t, c, f)| ProducerEntry {
            producer_id: p,
            epoch: e,
            last_sequence: s,
            last_offset: o,
            offset_delta: d,
            timestamp: t,
            coordinator_epoch: c,
            current_txn_first_offset: f,
        })
}

fn segment_kind() -> impl Strategy<Value = SegmentFileKind> {
    prop_oneof![
        Just(SegmentFileKind::Log),
        Just(SegmentFileKind::Index),
        Just(SegmentFileKind::TimeIndex),
        Just(SegmentFileKind::TxnIndex),
        Just(SegmentFileKind::ProducerSnapshot),
        (0..=i32::MAX).prop_map(|epoch| SegmentFileKind::KraftSnapshot { epoch }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn varints_roundtrip(a in any::<i32>(), b in any::<i64>(), c in any::<u32>()) {
        let mut buf = Vec::new();
        encode_varint(a, &mut buf);
        prop_assert_eq!(varint(&buf).unwrap(), (&[][..], a));
        prop_assert_eq!(read_varint_from(&mut std::io::Cursor::new(&buf)).unwrap(), Some(a));
        buf.clear();
        encode_varlong(b, &mut buf);
        prop_assert_eq!(varlong(&buf).unwrap(), (&[][..], b));
        buf.clear();
        encode_unsigned_varint(c, &mut buf);
        prop_assert_eq!(unsigned_varint(&buf).unwrap(), (&[][..], c));
    }

    #[test]
    fn offset_checkpoints_roundtrip(
        entries in proptest::collection::vec((topic(), 0..=i32::MAX, 0..=i64::MAX), 0..20)
    ) {
        let entries: Vec<OffsetCheckpointEntry<'_>> = entries
            .iter()
            .map(|(t, p, o)| OffsetCheckpointEntry { topic: t, partition: *p, offset: *o })
            .collect();
        let text = write_offset_checkpoint(&entries);
        prop_assert_eq!(parse_offset_checkpoint(text.as_bytes()).unwrap(), entries);
    }

    #[test]
    fn leader_epoch_checkpoints_roundtrip(
        entries in proptest::collection::vec((0..=i32::MAX, 0..=i64::MAX), 0..20)
    ) {
        let entries: Vec<EpochEntry> = entries
            .into_iter()
            .map(|(epoch, start_offset)| EpochEntry { epoch, start_offset })
            .collect();
        let text = write_leader_epoch_checkpoint(&entries);
        prop_assert_eq!(parse_leader_epoch_checkpoint(text.as_bytes()).unwrap(), entries);
    }

    #[test]
    fn partition_metadata_roundtrips(id in any::<[u8; 16]>()) {
        let id = Uuid(id);
        prop_assume!(!id.is_zero());
        let text = write_partition_metadata(&id);
        prop_assert_eq!(parse_partition_metadata(text.as_bytes()).unwrap(), id);
        prop_assert_eq!(Uuid::parse(&id.to_string()).unwrap(), id);
    }

    #[test]
    fn producer_snapshots_roundtrip(entries in proptest::collection::vec(producer_entry(), 0..12)) {
        let bytes = write_producer_snapshot(&entries);
        prop_assert_eq!(parse_producer_snapshot(&bytes).unwrap().entries, entries);
    }

    #[test]
    fn txn_indexes_roundtrip(
        entries in proptest::collection::vec((any::<i64>(), 1..1_000_000i64, 0..1_000_000i64, 0..=i64::MAX), 0..12)
    ) {
        // A valid index: each transaction's first offset at or before its last, last offsets
        // strictly increasing (what the parser checks).
        let mut cursor = 0;
        let entries: Vec<AbortedTxn> = entries
            .into_iter()
            .map(|(producer_id, gap, span, last_stable_offset)| {
                let first_offset = cursor + gap;
                cursor = first_offset + span;
                AbortedTxn { version: 0, producer_id, first_offset, last_offset: cursor, last_stable_offset }
            })
            .collect();
        prop_assert_eq!(parse_txn_index(&encode_txn_index(&entries)).unwrap(), entries);
    }

    #[test]
    fn segment_file_names_roundtrip(offset in 0..=i64::MAX, kind in segment_kind()) {
        let name = segment_file_name(offset, kind);
        match parse_file_name(&name) {
            FileName::Segment(s) => {
                prop_assert_eq!((s.offset, s.kind, s.suffix, s.canonical), (offset, kind, None, true));
            }
            other => prop_assert!(false, "{name} parsed as {other:?}"),
        }
    }
}
