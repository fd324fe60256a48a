//! The small text and KRaft files: checkpoints, leader-epoch checkpoints,
//! `partition.metadata`, `meta.properties`, `.kafka_cleanshutdown`, `quorum-state`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use segvault_format::kraft::parse_quorum_state;
use segvault_format::text::{
    parse_clean_shutdown, parse_leader_epoch_checkpoint, parse_meta_properties, parse_offset_checkpoint,
    parse_partition_metadata,
};

fuzz_target!(|data: &[u8]| {
    let _ = parse_offset_checkpoint(data);
    let _ = parse_leader_epoch_checkpoint(data);
    let _ = parse_partition_metadata(data);
    let _ = parse_meta_properties(data);
    let _ = parse_clean_shutdown(data);
    let _ = parse_quorum_state(data);
});
