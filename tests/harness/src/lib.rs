//! segvault's test bed: real Apache Kafka brokers fetched from Maven Central and started on
//! loopback, Kafka's own Java client to drive them, record digests to compare what a broker
//! serves before archiving and after restoring, and a real S3-compatible server.
//!
//! - [`dist`]: a Kafka version's jars (Maven) and the compiled client driver.
//! - [`cluster`]: KRaft clusters (one combined node, or brokers + controller quorum) and
//!   ZooKeeper-mode clusters (Kafka 3.x brokers + a ZooKeeper server).
//! - [`client`]: produce plans, consumption, digests, consumer-group offsets.
//! - [`workload`]: the standard workloads every archive/restore test uses.
//! - [`s3`]: versitygw on loopback.
//! - [`faults`]: real fault proxies in front of it: HAProxy (answers rewritten after the
//!   server applied the request) and Toxiproxy (TCP latency, resets, cut replies).
//! - [`fixtures`]: regenerates `fixtures/` from real brokers.

pub mod client;
pub mod cluster;
pub mod dist;
pub mod faults;
pub mod fixtures;
pub mod s3;
pub mod wide;
pub mod workload;
pub mod zookeeper;

pub use client::{Client, Isolation, PartitionDigest, Plan, Record, Send};
pub use cluster::{Cluster, ClusterSpec, Shape};
pub use dist::{KafkaDist, FIXTURE_VERSIONS, KAFKA_VERSIONS};
pub use faults::{FaultProxy, Toxiproxy};
pub use s3::{Request, S3Server};
pub use zookeeper::ZooKeeper;
