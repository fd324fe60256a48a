//! The archive layer's one error type: everything that can stop a pass, the agent, or the
//! opening of a store. Each variant keeps what it failed on (a path, a URL, a key) and the
//! underlying error as its [`source`](std::error::Error::source).

use crate::logdir;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    /// A log dir could not be listed.
    #[error("{0}")]
    LogDir(#[from] logdir::Error),
    /// A log dir is not a broker's: no usable `meta.properties`.
    #[error("{path}: {message}")]
    NotABrokerDir { path: PathBuf, message: String },
    /// A log dir's `meta.properties` is not one.
    #[error("{path}: meta.properties: {source}")]
    BadMetaProperties {
        /// The log dir.
        path: PathBuf,
        #[source]
        source: segvault_format::FormatError,
    },
    /// A file of a log dir could not be read (or was truncated while read).
    #[error("{path}: {source}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A partition's task panicked or was cancelled.
    #[error("{path}: a partition's archive task stopped: {source}")]
    TaskStopped {
        /// The log dir.
        path: PathBuf,
        #[source]
        source: tokio::task::JoinError,
    },
    /// A store URL that names no store this build can open.
    #[error("store URL {url:?}: {message}")]
    StoreUrl { url: String, message: String },
    /// The AWS shared config files of an s3:// store could not be read or parsed.
    #[error("store URL {url:?}: cannot read the AWS config files: {}", error_chain(.source))]
    AwsConfig {
        url: String,
        #[source]
        source: aws_config::profile::ProfileFileLoadError,
    },
    /// A store URL that does not parse.
    #[error("store URL {url:?}: {source}")]
    StoreUrlParse {
        url: String,
        #[source]
        source: url::ParseError,
    },
    /// A local store's directory could not be resolved or created.
    #[error("store URL {url:?}: {}{source}", in_dir(.path))]
    StoreDir {
        url: String,
        /// The directory, if it was known.
        path: Option<PathBuf>,
        #[source]
        source: std::io::Error,
    },
    /// The store failed: at `key`, or as a whole (building its client, listing its root).
    #[error("store {url}{}: {source}", at_key(.key))]
    Store {
        url: String,
        key: Option<String>,
        #[source]
        source: object_store::Error,
    },
    /// What the store holds at `key` is not the segvault record expected there.
    #[error(
        "store {url}, key {key}: Generic manifest error: expected a segvault manifest: {source}"
    )]
    NotARecord {
        url: String,
        key: String,
        #[source]
        source: serde_json::Error,
    },
    /// The agent was given no log dir.
    #[error("no log dir given: expected at least one --log-dir (or log_dirs in the config file)")]
    NoLogDir,
    /// A log dir the agent was given cannot be archived.
    #[error("log dir {0}")]
    BadLogDir(#[source] Box<ArchiveError>),
    /// The agent's startup LIST of the store's root failed.
    #[error("store {url}: cannot list its root (unreachable, or bad credentials?): {source}")]
    StoreUnlisted {
        url: String,
        #[source]
        source: object_store::Error,
    },
    /// The agent's startup LIST of the store's root did not answer in time.
    #[error(
        "store {url}: no answer to a LIST of its root within {seconds} s (unreachable endpoint?)"
    )]
    StoreSilent { url: String, seconds: f64 },
    /// The agent cannot handle a signal.
    #[error("cannot handle {signal}: {source}")]
    Signal {
        signal: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The agent cannot serve its metrics.
    #[error("metrics address {addr}: cannot listen: {source}")]
    MetricsAddr {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The agent cannot watch its log dirs.
    #[error("cannot start the file watcher: {0}")]
    Watcher(#[source] notify::Error),
}

fn at_key(key: &Option<String>) -> String {
    key.as_ref()
        .map_or_else(String::new, |k| format!(", key {k}"))
}

fn in_dir(path: &Option<PathBuf>) -> String {
    path.as_ref()
        .map_or_else(String::new, |p| format!("cannot create {}: ", p.display()))
}

/// The error and its sources, joined: aws-config's top-level messages alone are terse.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    //! The texts are the ones the variants replaced (strings built with `format!`).

    use super::*;

    fn object_store_error() -> object_store::Error {
        object_store::Error::NotFound {
            path: "k".into(),
            source: "gone".into(),
        }
    }

    #[test]
    fn store_errors_read_as_before() {
        let e = ArchiveError::Store {
            url: "s3://b/p".into(),
            key: Some("a/b.json".into()),
            source: object_store_error(),
        };
        assert_eq!(
            e.to_string(),
            format!("store s3://b/p, key a/b.json: {}", object_store_error())
        );
        let e = ArchiveError::Store {
            url: "s3://b/p".into(),
            key: None,
            source: object_store_error(),
        };
        assert_eq!(
            e.to_string(),
            format!("store s3://b/p: {}", object_store_error())
        );
        let json = serde_json::from_slice::<serde_json::Value>(b"nope").unwrap_err();
        let old = object_store::Error::Generic {
            store: "manifest",
            source: format!("expected a segvault manifest: {json}").into(),
        };
        let e = ArchiveError::NotARecord {
            url: "s3://b/p".into(),
            key: "a/b.json".into(),
            source: json,
        };
        assert_eq!(
            e.to_string(),
            format!("store s3://b/p, key a/b.json: {old}")
        );
        assert!(std::error::Error::source(&e).is_some());
    }

    #[test]
    fn file_and_startup_errors_read_as_before() {
        let io = || std::io::Error::other("boom");
        let e = ArchiveError::File {
            path: "/d/0.log".into(),
            source: io(),
        };
        assert_eq!(e.to_string(), "/d/0.log: boom");
        let e = ArchiveError::StoreDir {
            url: "/x".into(),
            path: Some("/x".into()),
            source: io(),
        };
        assert_eq!(e.to_string(), "store URL \"/x\": cannot create /x: boom");
        let e = ArchiveError::StoreDir {
            url: "/x".into(),
            path: None,
            source: io(),
        };
        assert_eq!(e.to_string(), "store URL \"/x\": boom");
        let e = ArchiveError::StoreSilent {
            url: "s3://b".into(),
            seconds: 2.5,
        };
        assert_eq!(
            e.to_string(),
            "store s3://b: no answer to a LIST of its root within 2.5 s (unreachable endpoint?)"
        );
        let e = ArchiveError::BadLogDir(Box::new(ArchiveError::NotABrokerDir {
            path: "/d".into(),
            message: "expected meta.properties (a broker log dir); found none".into(),
        }));
        assert_eq!(
            e.to_string(),
            "log dir /d: expected meta.properties (a broker log dir); found none"
        );
        let e = ArchiveError::Signal {
            signal: "SIGTERM",
            source: io(),
        };
        assert_eq!(e.to_string(), "cannot handle SIGTERM: boom");
    }
}
