//! The index parsers: `.index` and `.timeindex` (entries, Kafka's sanity check, segvault's
//! check, and the cross checks against batch spans decoded from the same input) and
//! `.txnindex`. The first 8 bytes choose the base offset.
#![no_main]

use libfuzzer_sys::fuzz_target;
use segvault_format::index::{
    cross_check_offset_index, cross_check_time_index, parse_txn_index, BatchSpan, OffsetIndex, TimeIndex,
};

fuzz_target!(|data: &[u8]| {
    let (base, rest) = if data.len() >= 8 {
        (i64::from_be_bytes(data[..8].try_into().unwrap()), &data[8..])
    } else {
        (0, data)
    };
    // Batch spans for the cross checks: the tail of the input, 20 bytes each, sorted.
    let split = rest.len() / 2;
    let (idx_bytes, span_bytes) = rest.split_at(split);
    let mut spans: Vec<BatchSpan> = span_bytes
        .chunks_exact(20)
        .map(|c| BatchSpan {
            position: u64::from(u32::from_be_bytes(c[0..4].try_into().unwrap())),
            last_offset: i64::from_be_bytes(c[4..12].try_into().unwrap()),
            max_timestamp: Some(i64::from_be_bytes(c[12..20].try_into().unwrap())),
        })
        .collect();
    spans.sort_by_key(|s| s.position);

    for bytes in [rest, idx_bytes] {
        let oi = OffsetIndex::parse(bytes, base);
        assert!(oi.valid_entries <= oi.all_entries());
        let n = oi.entries().count();
        assert!(n <= oi.all_entries());
        for i in 0..oi.all_entries().min(64) {
            if let Some(e) = oi.entry(i) {
                let _ = oi.absolute(e.relative_offset);
            }
        }
        let _ = oi.kafka_sanity_check();
        let _ = oi.check();
        let _ = cross_check_offset_index(&oi, &spans);

        let ti = TimeIndex::parse(bytes, base);
        let _ = ti.entries().count();
        let _ = ti.kafka_sanity_check();
        let _ = ti.check();
        let _ = cross_check_time_index(&ti, &spans);
    }
    let _ = parse_txn_index(rest);
    let _ = parse_txn_index(data);
});
