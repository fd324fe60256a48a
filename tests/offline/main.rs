//! The command line over the fixture log dirs and the shared corpus, with file stores (and,
//! for one restore test, versitygw behind Toxiproxy on loopback): inspect, verify, archive,
//! ls and restore, on intact and damaged input. No broker.

#[path = "../common/mod.rs"]
mod common;

mod archive_once;
mod archive_races;
mod bad_input;
mod catalog_reads;
mod inspect_cli;
mod metadata_cost;
mod restore_fixtures;
mod verify_cli;
