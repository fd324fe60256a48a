//! Against the real components the test bed starts: Kafka brokers, versitygw (S3), and the
//! fault proxies (Toxiproxy, HAProxy). Set `SEGVAULT_HARNESS_CACHE` to reuse their downloads.

#[path = "../common/mod.rs"]
mod common;

mod agent;
mod agent_replicas;
mod archive_cleanup;
mod archive_kafka;
mod aws_profile;
mod commit_chaos;
mod commit_faults;
mod dump_log_conformance;
mod fixtures_serve;
mod restore_kafka;
mod restore_retention;
mod restore_txn;
mod s3_testbed;
mod testbed;
mod zookeeper_mode;
