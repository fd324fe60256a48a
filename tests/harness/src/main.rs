//! `harness`: the test bed from the command line.
//!
//!   harness provision                 download every pinned Kafka, build versitygw, fetch HAProxy
//!   harness kafka [--version V] [--brokers N --controllers M] [--config k=v]...
//!                                     start a cluster, print where it is, run until Enter/EOF
//!   harness kafka --zookeeper [--version 3.9.2] [--brokers N]
//!                                     the same in ZooKeeper mode (Kafka 3.x), with its ZooKeeper
//!   harness s3 [--bucket B]...        start versitygw, print its endpoint and AWS variables
//!   harness fixtures [--out DIR]      regenerate fixtures/ from real brokers
//!   harness wide --out DIR --topics T --partitions P --segments S
//!                                     a synthetic log dir of T*P partitions of S segments

use anyhow::{anyhow, Result};
use clap::{Parser, Subcommand};
use segvault_harness::{
    dist, faults, fixtures, s3, Cluster, ClusterSpec, FIXTURE_VERSIONS, KAFKA_VERSIONS,
};
use std::io::BufRead;
use std::path::PathBuf;

#[derive(Parser)]
#[command(about = "segvault's test bed: real Kafka brokers and a real S3 server on loopback")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Download every pinned Kafka version (Maven) and build the S3 server (go install), so
    /// later runs need no network.
    Provision,
    /// Start a KRaft cluster (or, with --zookeeper, a ZooKeeper-mode cluster) on loopback and
    /// keep it running until Enter or end of input.
    Kafka {
        /// Kafka version (any version on Maven Central; the pinned ones are tested).
        #[arg(long, default_value = KAFKA_VERSIONS[0])]
        version: String,
        /// Number of broker-only nodes; 0 starts one combined broker+controller node (with
        /// --zookeeper: one broker).
        #[arg(long, default_value_t = 0)]
        brokers: u32,
        /// ZooKeeper mode (Kafka 3.x only): a ZooKeeper server from the same Maven download and
        /// brokers with `zookeeper.connect`, no KRaft controllers.
        #[arg(long)]
        zookeeper: bool,
        /// Number of controller-only nodes (with --brokers).
        #[arg(long, default_value_t = 1)]
        controllers: u32,
        /// Broker config, key=value; repeatable.
        #[arg(long = "config", value_name = "KEY=VALUE")]
        configs: Vec<String>,
    },
    /// Start versitygw on loopback and keep it running until Enter or end of input.
    S3 {
        #[arg(long = "bucket", default_value = "segvault")]
        buckets: Vec<String>,
    },
    /// Regenerate the fixtures from real brokers of every fixture version.
    Fixtures {
        #[arg(long, default_value = "fixtures")]
        out: PathBuf,
        /// Only these versions (default: every fixture version, `FIXTURE_VERSIONS`).
        #[arg(long = "version")]
        versions: Vec<String>,
    },
    /// Write a wide synthetic log dir (see `wide`): T topics of P partitions, each with S
    /// closed, committed segments cloned from a real fixture segment, and an active one.
    Wide {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 1)]
        topics: usize,
        #[arg(long, default_value_t = 1)]
        partitions: usize,
        #[arg(long, default_value_t = 1)]
        segments: usize,
        /// The fixture log dir the segment is cloned from.
        #[arg(long, default_value = "fixtures/kafka-4.3.1/clean")]
        fixture: PathBuf,
    },
}

fn wait_for_enter() {
    let _ = std::io::stdin().lock().lines().next();
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Provision => {
            let mut versions = KAFKA_VERSIONS.to_vec();
            versions.extend(
                FIXTURE_VERSIONS
                    .iter()
                    .filter(|v| !KAFKA_VERSIONS.contains(v)),
            );
            for v in versions {
                let d = dist::KafkaDist::get(v)?;
                println!("kafka {v}: {}", d.libs.display());
            }
            println!("versitygw: {}", s3::versitygw_binary()?.display());
            println!("haproxy: {}", faults::haproxy()?.0.display());
            println!("toxiproxy: {}", faults::toxiproxy_binary()?.display());
        }
        Cmd::Kafka {
            version,
            brokers,
            controllers,
            zookeeper,
            configs,
        } => {
            let mut spec = if zookeeper {
                ClusterSpec::zookeeper(&version, brokers.max(1))
            } else if brokers == 0 {
                ClusterSpec::combined(&version)
            } else {
                ClusterSpec::cluster(&version, brokers, controllers)
            };
            for c in configs {
                let (k, v) = c
                    .split_once('=')
                    .ok_or_else(|| anyhow!("--config wants KEY=VALUE, got {c:?}"))?;
                spec = spec.config(k, v);
            }
            let c = Cluster::start(spec)?;
            println!("cluster.id {}\nbootstrap  {}", c.cluster_id, c.bootstrap());
            if let Some(zk) = c.zookeeper() {
                println!(
                    "zookeeper  {} (data {}, output {})",
                    zk.connect(),
                    zk.data_dir.display(),
                    zk.log_file.display()
                );
            }
            for n in &c.nodes {
                println!(
                    "node {} ({:?}) log dirs {:?}, output {}",
                    n.id,
                    n.role,
                    n.log_dirs,
                    n.log_file.display()
                );
            }
            println!("running; press Enter to stop");
            wait_for_enter();
        }
        Cmd::S3 { buckets } => {
            let b: Vec<&str> = buckets.iter().map(String::as_str).collect();
            let s = s3::S3Server::start(&b)?;
            for (k, v) in s.env() {
                println!("export {k}={v}");
            }
            println!(
                "# access log (one line per request): {}",
                s.access_log().display()
            );
            println!(
                "# buckets {buckets:?} under {}; press Enter to stop",
                s.root.display()
            );
            wait_for_enter();
        }
        Cmd::Fixtures { out, versions } => {
            let vs: Vec<&str> = if versions.is_empty() {
                FIXTURE_VERSIONS.to_vec()
            } else {
                versions.iter().map(String::as_str).collect()
            };
            fixtures::generate(&out, &vs)?;
            println!("fixtures written to {}", out.display());
        }
        Cmd::Wide {
            out,
            topics,
            partitions,
            segments,
            fixture,
        } => {
            let shape = segvault_harness::wide::Wide {
                topics,
                partitions_per_topic: partitions,
                segments,
            };
            segvault_harness::wide::write(&out, &fixture, shape)?;
            println!("{}", out.display());
        }
    }
    Ok(())
}
