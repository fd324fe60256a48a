//! Property tests of the format layer: (a) random valid batches in every codec decode to
//! exactly what was encoded; (b) arbitrary, mutated and truncated input never panics any
//! parser, and is either parsed or reported as an error.

use proptest::prelude::*;

use segvault_format::control::decode_control_record;
use segvault_format::encode::{
    encode_batch, encode_legacy, encode_legacy_wrapper, BatchSpec, LegacySpec, RecordSpec,
};
use segvault_format::index::{parse_txn_index, OffsetIndex, TimeIndex};
use segvault_format::internal::{
    parse_group_key, parse_offset_commit_value, parse_txn_key, parse_txn_value,
};
use segvault_format::kraft::{decode_metadata_record, parse_quorum_state};
use segvault_format::snapshot::parse_producer_snapshot;
use segvault_format::text::{
    parse_leader_epoch_checkpoint, parse_meta_properties, parse_offset_checkpoint,
    parse_partition_metadata,
};
use segvault_format::{log_entries, Batch, Compression, ErrorKind, Limits, SegmentEnd};

fn codec() -> impl Strategy<Value = Compression> {
    prop_oneof![
        Just(Compression::None),
        Just(Compression::Gzip),
        Just(Compression::Snappy),
        Just(Compression::Lz4),
        Just(Compression::Zstd),
    ]
}

fn bytes(max: usize) -> impl Strategy<Value = Option<Vec<u8>>> {
    proptest::option::of(proptest::collection::vec(any::<u8>(), 0..max))
}

fn record() -> impl Strategy<Value = RecordSpec> {
    (
        -1_000_000i64..1_000_000,
        bytes(40),
        bytes(300),
        proptest::collection::vec(
            (proptest::collection::vec(any::<u8>(), 0..12), bytes(20)),
            0..3,
        ),
    )
        .prop_map(|(timestamp_delta, key, value, headers)| RecordSpec {
            timestamp_delta,
            offset_delta: None,
            key,
            value,
            headers,
        })
}

fn batch_spec() -> impl Strategy<Value = BatchSpec> {
    (
        0i64..(1 << 40),
        -1i32..100,
        codec(),
        (any::<bool>(), any::<bool>()),
        (0i64..(1 << 42), -1i64..1000, -1i16..10, -1i32..1000),
        proptest::collection::vec(record(), 0..12),
        0i32..3,
    )
        .prop_map(
            |(base_offset, epoch, compression, (lat, txn), (ts, pid, pe, seq), records, gap)| {
                let n = records.len() as i32;
                BatchSpec {
                    base_offset,
                    partition_leader_epoch: epoch,
                    compression,
                    attribute_flags: if lat { 0x08 } else { 0 } | if txn { 0x10 } else { 0 },
                    // Compaction can leave a last offset delta beyond the last record.
                    last_offset_delta: Some((n - 1).max(0) + gap),
                    base_timestamp: ts,
                    max_timestamp: None,
                    producer_id: pid,
                    producer_epoch: pe,
                    base_sequence: seq,
                    records,
                }
            },
        )
}

/// Decodes everything reachable from a segment, returning nothing: used to prove that no
/// input makes a parser panic.
fn exercise_segment(data: &[u8], check_crc: bool) -> SegmentEnd {
    let limits = Limits {
        max_record_bytes: 1 << 20,
        max_decompressed_bytes: 8 << 20,
    };
    let mut it = if check_crc {
        log_entries(data)
    } else {
        log_entries(data).without_crc_check()
    };
    for b in it.by_ref() {
        let _ = (
            b.last_offset(),
            b.crc_ok(),
            b.compression(),
            b.max_timestamp(),
        );
        match b {
            Batch::V2(batch) => {
                if let Ok(mut recs) = batch.records_with_limits(limits) {
                    while let Some(r) = recs.next_record() {
                        let Ok(r) = r else { break };
                        let _ = batch.record_offset(r.offset_delta);
                        let _ = batch.record_timestamp(r.timestamp_delta);
                        for h in r.headers() {
                            let _ = h;
                        }
                        let _ = decode_control_record(r.key, r.value);
                        if let Some(v) = r.value {
                            let _ = decode_metadata_record(v);
                            let _ = parse_offset_commit_value(v);
                            let _ = parse_txn_value(v);
                        }
                        if let Some(k) = r.key {
                            let _ = parse_group_key(k);
                            let _ = parse_txn_key(k);
                        }
                    }
                }
                let _ = batch.last_sequence();
            }
            Batch::Legacy(l) => {
                if l.is_compressed() {
                    if let Ok(inner) = l.inner(limits) {
                        for m in inner.iter() {
                            let _ = m;
                        }
                    }
                }
            }
        }
    }
    it.finish()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, ..ProptestConfig::default() })]

    #[test]
    fn random_batches_roundtrip(specs in proptest::collection::vec(batch_spec(), 1..4)) {
        let mut data = Vec::new();
        for s in &specs {
            data.extend(encode_batch(s));
        }
        let mut it = log_entries(&data);
        let mut n = 0;
        for (b, spec) in it.by_ref().zip(&specs) {
            n += 1;
            let Batch::V2(batch) = b else { panic!("not v2") };
            prop_assert!(batch.crc_ok());
            let h = batch.header;
            prop_assert_eq!(h.base_offset, spec.base_offset);
            prop_assert_eq!(h.partition_leader_epoch, spec.partition_leader_epoch);
            prop_assert_eq!(h.attributes.compression(), Some(spec.compression));
            prop_assert_eq!(h.attributes.is_transactional(), spec.attribute_flags & 0x10 != 0);
            prop_assert_eq!(h.last_offset_delta, spec.last_offset_delta.unwrap());
            prop_assert_eq!(h.base_timestamp, spec.base_timestamp);
            prop_assert_eq!(h.producer_id, spec.producer_id);
            prop_assert_eq!(h.producer_epoch, spec.producer_epoch);
            prop_assert_eq!(h.base_sequence, spec.base_sequence);
            prop_assert_eq!(h.record_count as usize, spec.records.len());
            let mut recs = batch.records().unwrap();
            let mut i = 0usize;
            while let Some(r) = recs.next_record() {
                let r = r.unwrap();
                let want = &spec.records[i];
                prop_assert_eq!(r.offset_delta, i as i32);
                prop_assert_eq!(r.timestamp_delta, want.timestamp_delta);
                prop_assert_eq!(r.key, want.key.as_deref());
                prop_assert_eq!(r.value, want.value.as_deref());
                let headers: Vec<(Vec<u8>, Option<Vec<u8>>)> =
                    r.headers().map(|h| (h.key.to_vec(), h.value.map(<[u8]>::to_vec))).collect();
                prop_assert_eq!(&headers, &want.headers);
                let ts = batch.record_timestamp(r.timestamp_delta).unwrap();
                if spec.attribute_flags & 0x08 != 0 {
                    prop_assert_eq!(ts, h.max_timestamp);
                } else {
                    prop_assert_eq!(ts, spec.base_timestamp + want.timestamp_delta);
                }
                i += 1;
            }
            prop_assert_eq!(i, spec.records.len());
        }
        prop_assert_eq!(n, specs.len());
        prop_assert_eq!(it.finish(), SegmentEnd::Clean);
    }

    #[test]
    fn random_legacy_roundtrip(
        magic in 0u8..2,
        codec in prop_oneof![Just(Compression::None), Just(Compression::Gzip), Just(Compression::Snappy), Just(Compression::Lz4)],
        base in 0i64..(1 << 40),
        values in proptest::collection::vec((bytes(20), bytes(200)), 1..8),
    ) {
        let n = values.len() as i64;
        let inner: Vec<LegacySpec> = values.iter().enumerate().map(|(i, (k, v))| LegacySpec {
            offset: if magic == 0 { base + i as i64 } else { i as i64 },
            magic,
            attributes: 0,
            timestamp: 1000 + i as i64,
            key: k.clone(),
            value: v.clone(),
        }).collect();
        let data = if codec == Compression::None {
            inner.iter().map(|m| encode_legacy(&LegacySpec { offset: base + m.offset - if magic == 0 { base } else { 0 }, ..m.clone() })).collect::<Vec<_>>().concat()
        } else {
            encode_legacy_wrapper(base + n - 1, magic, codec, &inner)
        };
        let mut it = log_entries(&data);
        let mut got = Vec::new();
        for b in it.by_ref() {
            let Batch::Legacy(l) = b else { panic!("not legacy") };
            prop_assert!(l.crc_ok());
            if l.is_compressed() {
                for m in l.inner(Limits::default()).unwrap().iter() {
                    let m = m.unwrap();
                    got.push((m.offset, m.entry.key.map(<[u8]>::to_vec), m.entry.value.map(<[u8]>::to_vec)));
                }
            } else {
                got.push((l.offset, l.key.map(<[u8]>::to_vec), l.value.map(<[u8]>::to_vec)));
            }
        }
        prop_assert_eq!(it.finish(), SegmentEnd::Clean);
        let want: Vec<_> = values.iter().enumerate().map(|(i, (k, v))| (base + i as i64, k.clone(), v.clone())).collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        exercise_segment(&data, true);
        exercise_segment(&data, false);
        let idx = OffsetIndex::parse(&data, 5);
        let _ = (idx.check(), idx.kafka_sanity_check(), idx.entries().count());
        let ti = TimeIndex::parse(&data, 5);
        let _ = (ti.check(), ti.kafka_sanity_check(), ti.entries().count());
        let _ = parse_txn_index(&data);
        let _ = parse_producer_snapshot(&data);
        let _ = parse_offset_checkpoint(&data);
        let _ = parse_leader_epoch_checkpoint(&data);
        let _ = parse_partition_metadata(&data);
        let _ = parse_meta_properties(&data);
        let _ = parse_quorum_state(&data);
        let _ = decode_metadata_record(&data);
        let _ = decode_control_record(Some(&data), Some(&data));
        let _ = parse_group_key(&data);
        let _ = parse_offset_commit_value(&data);
    }

    #[test]
    fn arbitrary_bytes_behind_a_valid_header_never_panic(
        magic in 0u8..3,
        attrs in any::<u8>(),
        body in proptest::collection::vec(any::<u8>(), 0..400),
    ) {
        // A framing that passes the size checks, so the record/message parsers see the junk.
        let mut d = 0i64.to_be_bytes().to_vec();
        let len = if magic == 2 { 49 + body.len() } else { 10 + body.len() };
        d.extend_from_slice(&(len as i32).to_be_bytes());
        d.extend_from_slice(&[0, 0, 0, 0]);
        d.push(magic);
        if magic == 2 {
            d.extend_from_slice(&[0, 0, 0, 0, 0, attrs]);
            d.extend_from_slice(&[0u8; 36]);
        } else {
            d.push(attrs);
        }
        d.extend_from_slice(&body);
        d.truncate(12 + len);
        exercise_segment(&d, false);
    }

    #[test]
    fn mutated_batches_never_panic_and_flips_are_caught(
        specs in proptest::collection::vec(batch_spec(), 1..3),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..4),
    ) {
        let mut data = Vec::new();
        for s in &specs {
            data.extend(encode_batch(s));
        }
        let mut m = data.clone();
        for (i, x) in &flips {
            let i = i.index(m.len());
            m[i] ^= x;
        }
        exercise_segment(&m, false);
        let strict = exercise_segment(&m, true);
        // A changed byte inside some batch's CRC range must not leave a clean walk over the
        // same batches. (A clean walk with different framing can happen when a length or
        // magic byte was hit.)
        if m != data && strict == SegmentEnd::Clean {
            let mut a = log_entries(&m);
            let got: Vec<u64> = a.by_ref().map(|b| b.position()).collect();
            let mut b = log_entries(&data);
            let orig: Vec<u64> = b.by_ref().map(|b| b.position()).collect();
            // Only flips outside every CRC range (offsets, lengths, epochs, magic) can pass.
            if got == orig {
                for (i, _) in &flips {
                    let i = i.index(m.len());
                    let mut inside = false;
                    let mut start = 0usize;
                    for s in &specs {
                        let len = encode_batch(s).len();
                        if i >= start + 21 && i < start + len {
                            inside = true;
                        }
                        start += len;
                    }
                    prop_assert!(!inside || m[i] == data[i], "flip at {} passed the CRC", i);
                }
            }
        }
    }

    #[test]
    fn truncations_are_partial_tails(specs in proptest::collection::vec(batch_spec(), 1..4), cut in any::<prop::sample::Index>()) {
        let mut data = Vec::new();
        let mut bounds = vec![0usize];
        for s in &specs {
            data.extend(encode_batch(s));
            bounds.push(data.len());
        }
        let cut = cut.index(data.len());
        let mut it = log_entries(&data[..cut]);
        let n = it.by_ref().count();
        let end = it.finish();
        if bounds.contains(&cut) {
            prop_assert_eq!(end, SegmentEnd::Clean);
        } else {
            let start = *bounds.iter().filter(|&&b| b < cut).max().unwrap();
            prop_assert_eq!(end, SegmentEnd::PartialTail { position: start as u64, bytes: (cut - start) as u64 });
        }
        prop_assert_eq!(n, bounds.iter().filter(|&&b| b > 0 && b <= cut).count());
    }

    #[test]
    fn records_count_must_match(spec in batch_spec(), delta in prop_oneof![Just(-1i32), Just(1)]) {
        // Changing the record count (and fixing the CRC) is corruption found by deep decode.
        let mut b = encode_batch(&spec);
        let count = i32::from_be_bytes(b[57..61].try_into().unwrap()) + delta;
        prop_assume!(count >= 0);
        b[57..61].copy_from_slice(&count.to_be_bytes());
        let crc = crc32c::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        let Some(Batch::V2(batch)) = log_entries(&b).next() else { panic!() };
        let r = batch.records().and_then(|r| r.verify());
        let e = r.unwrap_err();
        prop_assert!(matches!(e.kind, ErrorKind::BadLength | ErrorKind::Truncated | ErrorKind::BadValue), "{e}");
    }
}
