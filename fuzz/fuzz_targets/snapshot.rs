//! The producer-state `.snapshot` parser; a snapshot that parses must survive a write and
//! re-parse with the same entries.
#![no_main]

use libfuzzer_sys::fuzz_target;
use segvault_format::snapshot::{parse_producer_snapshot, write_producer_snapshot};

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = parse_producer_snapshot(data) {
        let again = parse_producer_snapshot(&write_producer_snapshot(&s.entries)).expect("re-parse of a written snapshot");
        assert_eq!(again.entries, s.entries);
    }
});
