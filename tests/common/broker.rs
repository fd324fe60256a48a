//! A real broker under load: the one the archive and agent tests run beside.

use segvault_harness::{Cluster, ClusterSpec, KAFKA_VERSIONS};
use std::path::PathBuf;
use std::process::{Child, Stdio};

/// The topic the load tests write to.
pub const TOPIC: &str = "load";

/// A broker with 1 MiB segments in `TOPIC` and a fast high watermark checkpoint.
pub fn broker() -> (Cluster, PathBuf) {
    let c = Cluster::start(
        ClusterSpec::combined(KAFKA_VERSIONS[1])
            .config("replica.high.watermark.checkpoint.interval.ms", 500),
    )
    .unwrap();
    c.client()
        .create_topic(TOPIC, 1, 1, &[("segment.bytes", "1048576")])
        .unwrap();
    let log_dir = c.log_dirs(1).unwrap()[0].clone();
    (c, log_dir)
}

/// ~2 MB/s of 1000-byte records: a segment roll about every half second.
pub fn producer(c: &Cluster, records: u32) -> Child {
    c.dist
        .java("org.apache.kafka.tools.ProducerPerformance", 512)
        .args([
            "--topic",
            TOPIC,
            "--num-records",
            &records.to_string(),
            "--record-size",
            "1000",
            "--throughput",
            "2000",
        ])
        .args([
            "--producer-props",
            &format!("bootstrap.servers={}", c.bootstrap()),
            "acks=all",
            "linger.ms=5",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}
