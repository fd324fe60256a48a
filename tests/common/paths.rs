//! Where the test inputs are: the fixture log dirs (written by real brokers, `fixtures/`) and
//! the shared corpus of real Kafka files (`../shared/kafka-corpus`).

use std::path::PathBuf;

/// The repository root (the `segvault` package's manifest dir).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `fixtures/`: one directory per Kafka version.
pub fn fixtures() -> PathBuf {
    root().join("fixtures")
}

/// The cleanly shut down log dir of the fixture of Kafka `version` (`fixtures/kafka-<v>/clean`).
pub fn fixture(version: &str) -> PathBuf {
    fixture_root(version).join("clean")
}

/// `fixtures/kafka-<version>`: its `clean/` and `live/` copies and `expected.json`.
pub fn fixture_root(version: &str) -> PathBuf {
    fixtures().join(format!("kafka-{version}"))
}

/// Every fixture version's directory (those holding an `expected.json`), sorted; at least two.
pub fn fixture_versions() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("expected.json").is_file())
        .collect();
    v.sort();
    assert!(
        v.len() >= 2,
        "expected fixtures of two Kafka versions, found {v:?}"
    );
    v
}

/// The shared corpus of real Kafka files: `SEGVAULT_KAFKA_CORPUS`, else
/// `../shared/kafka-corpus` beside the repository.
pub fn corpus() -> PathBuf {
    std::env::var_os("SEGVAULT_KAFKA_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared/kafka-corpus"))
}
