//! Helpers shared by the integration-test binaries (`offline`, `format`, `kafka`): where the
//! fixtures and the corpus are, running the `segvault` binary and reading its JSON lines, a
//! log dir's files and checkpoints, what a store holds, and the real components (brokers,
//! agents) the `kafka` binary runs.
//!
//! Each binary compiles this whole module and uses the part it needs (`format` the paths and
//! the log dir helpers, `offline` the runs as well, `kafka` nearly all), so unused items are
//! expected in each of them: hence the one `allow` below.
#![allow(dead_code)]

pub mod agent;
pub mod broker;
pub mod logdir;
pub mod machine;
pub mod paths;
pub mod rng;
pub mod run;
pub mod store;

/// Milliseconds since the Unix epoch, as Kafka's timestamps count them.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}
