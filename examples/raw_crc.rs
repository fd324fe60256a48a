//! The whole-process baseline for `segvault verify`: a fresh process that maps a file the
//! way segvault does ([`MappedFile`]) and runs one `crc32c::crc32c` pass over all of it.
//! `benches/verify.rs` times it next to the `segvault verify` process (benches/verify_binary.sh
//! builds it), so both pay process start, page-table set-up and teardown.
//!
//!   cargo run --release --example raw_crc -- FILE

use segvault_format::mapped::MappedFile;

fn main() {
    let Some(path) = std::env::args_os().nth(1) else {
        eprintln!("usage: raw_crc FILE");
        std::process::exit(2);
    };
    // SAFETY: a benchmark's own file; nothing modifies it while mapped.
    match unsafe { MappedFile::open(&path) } {
        Ok(map) => println!("{:#010x} {}", crc32c::crc32c(&map), map.len()),
        Err(e) => {
            eprintln!("raw_crc: {}: {e}", std::path::Path::new(&path).display());
            std::process::exit(2);
        }
    }
}
