//! The archive layer's error.

use super::store::Store;
use crate::logdir;
use object_store::path::Path;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{0}")]
    LogDir(#[from] logdir::Error),
    #[error("{path}: {message}")]
    NotABrokerDir { path: PathBuf, message: String },
    #[error("store {url}, key {key}: {source}")]
    Store {
        url: String,
        key: String,
        #[source]
        source: object_store::Error,
    },
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
}

/// The error of `store` at `key`.
pub(crate) fn store_err(
    store: &Store,
    key: &Path,
) -> impl FnOnce(object_store::Error) -> ArchiveError {
    let url = store.url.clone();
    let key = key.to_string();
    move |source| ArchiveError::Store { url, key, source }
}
