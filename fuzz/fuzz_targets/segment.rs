//! The segment walker and every record decoder: `log_entries` over arbitrary bytes (with and
//! without the CRC check, so mutated batches still reach record decoding), records of every
//! v2 batch in every codec with their headers, control records, KRaft metadata records and
//! `__consumer_offsets` / `__transaction_state` keys and values, and legacy wrappers' inner
//! messages. Nothing may panic; walks must end and stay within the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use segvault_format::control::decode_control_record;
use segvault_format::internal::{parse_group_key, parse_offset_commit_value, parse_txn_key, parse_txn_value};
use segvault_format::kraft::decode_metadata_record;
use segvault_format::{log_entries, Batch, Limits, SegmentEnd};

/// Small bounds so decompression bombs cost memory the fuzzer can afford.
const LIMITS: Limits = Limits { max_record_bytes: 1 << 20, max_decompressed_bytes: 8 << 20 };

fn deep(b: &Batch<'_>) {
    match b {
        Batch::V2(batch) => {
            let _ = batch.last_offset();
            let _ = batch.last_sequence();
            let control = batch.header.attributes.is_control();
            let Ok(mut records) = batch.records_with_limits(LIMITS) else { return };
            while let Some(r) = records.next_record() {
                let Ok(r) = r else { break };
                let _ = batch.record_offset(r.offset_delta);
                let _ = batch.record_timestamp(r.timestamp_delta);
                let n = r.headers().count();
                assert!(n <= r.header_count() as usize);
                if control {
                    let _ = decode_control_record(r.key, r.value);
                }
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
        Batch::Legacy(l) => {
            let _ = l.verify_crc();
            if l.is_compressed() {
                if let Ok(inner) = l.inner(LIMITS) {
                    for m in inner.iter() {
                        if m.is_err() {
                            break;
                        }
                    }
                }
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    // The verify path: stops at the first bad CRC.
    let mut it = log_entries(data);
    let mut last_end = 0u64;
    for b in it.by_ref() {
        assert!(b.position() >= last_end);
        last_end = b.position() + b.size() as u64;
        assert!(last_end <= data.len() as u64);
        let _ = (b.magic(), b.base_offset(), b.last_offset(), b.compression(), b.shallow_record_count());
        let _ = (b.producer_id(), b.partition_leader_epoch(), b.max_timestamp());
    }
    match it.finish() {
        SegmentEnd::Clean => assert_eq!(it.position(), data.len() as u64),
        SegmentEnd::PartialTail { position, bytes } => assert_eq!(position + bytes, data.len() as u64),
        SegmentEnd::Corrupt(e) => {
            let _ = e.to_string();
        }
    }
    // The inspect path: CRCs reported per batch, records decoded regardless.
    let mut it = log_entries(data).without_crc_check();
    for b in it.by_ref() {
        let _ = b.crc_ok();
        deep(&b);
    }
    let _ = it.finish();
});
