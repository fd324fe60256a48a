//! The on-disk formats (segvault-format) on their own: the shared corpus and the fixtures
//! against what Kafka wrote, property round-trips of the codecs, and the index rebuild.

#[path = "../common/mod.rs"]
mod common;

mod format_corpus;
mod format_props;
mod index_rebuild;
