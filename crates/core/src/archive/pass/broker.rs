//! The broker a log dir belongs to, and its own files: `meta.properties`, the checkpoints and
//! the KRaft snapshots, stored beside the partitions' chains.

use super::chain::create;
use super::memory::Memory;
use crate::archive::error::ArchiveError;
use crate::archive::layout;
use crate::archive::store::Store;
use crate::logdir::{self, LogDirListing};
use object_store::{ObjectStoreExt, PutPayload};
use sha2::{Digest as _, Sha256};
use std::path::PathBuf;

/// The identity of the broker whose log dir this is.
#[derive(Debug, Clone)]
pub(super) struct Broker {
    pub(super) cluster_id: String,
    pub(super) node_id: i32,
    pub(super) log_dir: PathBuf,
    pub(super) log_dir_id: String,
}

pub(super) fn broker_of(listing: &LogDirListing) -> Result<Broker, ArchiveError> {
    let not = |message: String| ArchiveError::NotABrokerDir {
        path: listing.path.clone(),
        message,
    };
    let meta = match &listing.meta_properties {
        None => {
            return Err(not(
                "expected meta.properties (a broker log dir); found none".into(),
            ))
        }
        Some(Err(e)) => {
            return Err(ArchiveError::BadMetaProperties {
                path: listing.path.clone(),
                source: e.clone(),
            })
        }
        Some(Ok(m)) => m,
    };
    let cluster_id = meta
        .cluster_id
        .clone()
        .ok_or_else(|| not("meta.properties has no cluster.id".into()))?;
    let node_id = meta
        .node_id
        .ok_or_else(|| not("meta.properties has no node.id or broker.id".into()))?;
    layout::validate_name("cluster.id", &cluster_id).map_err(not)?;
    let log_dir_id = match &meta.directory_id {
        Some(u) => u.to_string(),
        // No directory.id (older brokers): name the dir by a hash of its path.
        None => hex::encode(&Sha256::digest(listing.path.to_string_lossy().as_bytes())[..8]),
    };
    let log_dir = std::fs::canonicalize(&listing.path).unwrap_or_else(|_| listing.path.clone());
    Ok(Broker {
        cluster_id,
        node_id,
        log_dir,
        log_dir_id,
    })
}

/// Checks that `dir` is a readable broker log dir (a directory with a valid
/// `meta.properties` naming the cluster and node), as a pass needs it.
pub(crate) fn check_log_dir(dir: &std::path::Path) -> Result<(), ArchiveError> {
    broker_of(&logdir::scan(dir)?).map(|_| ())
}

/// Stores the latest copy of the log dir's own files; with `memory`, only those whose bytes
/// changed since this agent last stored them.
pub(super) async fn upload_broker_files(
    store: &Store,
    b: &Broker,
    listing: &LogDirListing,
    memory: Option<&Memory>,
) -> Result<(), ArchiveError> {
    let mut files: Vec<String> = vec!["meta.properties".into()];
    files.extend(
        listing
            .checkpoints
            .named()
            .iter()
            .filter(|(_, c)| c.is_some())
            .map(|(n, _)| n.to_string()),
    );
    for name in files {
        let path = listing.path.join(&name);
        // A checkpoint may be replaced (tmp + rename) while we read it: read it whole, once.
        let Ok(bytes) = segvault_format::mapped::read_regular(&path, 1 << 20) else {
            continue;
        };
        let key = layout::broker_file(&b.cluster_id, b.node_id, &b.log_dir_id, &name);
        let digest: [u8; 32] = Sha256::digest(&bytes).into();
        if memory.is_some_and(|m| m.broker_file_is(key.as_ref(), &digest)) {
            continue;
        }
        store
            .inner
            .put(&key, PutPayload::from(bytes))
            .await
            .map_err(store.err(&key))?;
        if let Some(m) = memory {
            m.broker_file_stored(key.as_ref(), digest);
        }
    }
    Ok(())
}

/// KRaft snapshots (`__cluster_metadata-0/<offset>-<epoch>.checkpoint`) are immutable once
/// written: each is stored once per node, with a conditional create.
pub(super) async fn upload_kraft_snapshots(
    store: &Store,
    b: &Broker,
    listing: &LogDirListing,
    memory: Option<&Memory>,
) -> Result<(), ArchiveError> {
    let Some(meta) = listing.partitions.iter().find(|p| p.is_metadata_log()) else {
        return Ok(());
    };
    for (_, _, path) in &meta.kraft_snapshots {
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let key = layout::metadata_snapshot(&b.cluster_id, b.node_id, name);
        if memory.is_some_and(|m| m.snapshot_known(key.as_ref())) {
            continue;
        }
        if store.inner.head(&key).await.is_ok() {
            if let Some(m) = memory {
                m.snapshot_stored(key.as_ref());
            }
            continue;
        }
        // The controller deletes old snapshots: one that vanished meanwhile is skipped.
        let Ok(bytes) = segvault_format::mapped::read_regular(path, 1 << 30) else {
            continue;
        };
        create(store, &key, bytes).await?;
        if let Some(m) = memory {
            m.snapshot_stored(key.as_ref());
        }
    }
    Ok(())
}
