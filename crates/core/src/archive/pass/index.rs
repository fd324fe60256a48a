//! Chain indexes (`index/<first>-<next>.json`): once [`INDEX_SPAN`] ranges past the last
//! index are published, the archiver that sees it stores their manifests in one object, so
//! that readers find a partition's ranges from its few indexes and the manifests after the
//! last one. Each index holds ranges `k * INDEX_SPAN ..` of the chain, exactly the bytes
//! stored under `chain/`, so every archiver that builds index `k` builds the same one; it is
//! created conditionally and a refused create means it exists already. Manifests stay where
//! they are: an index adds a way to read them, it never replaces them.

use super::chain::{create, exists, parse_json, read_bytes, Chain};
use super::memory::PartitionMemory;
use crate::archive::error::ArchiveError;
use crate::archive::layout::PartitionKey;
use crate::archive::manifest::{chain_index_bytes, Manifest, INDEX_SPAN};
use crate::archive::store::Store;
use std::sync::Arc;

/// Stores every index now due (none if fewer than [`INDEX_SPAN`] ranges are unindexed).
/// Manifests this node holds in memory are used as they are; the others are read.
pub(super) async fn write_due_indexes(
    store: &Store,
    key: &PartitionKey,
    state: &mut PartitionMemory,
) -> Result<(), ArchiveError> {
    loop {
        let span: Vec<i64> = state.chain.unindexed().take(INDEX_SPAN).collect();
        if span.len() < INDEX_SPAN || !complete(&state.chain, &span) {
            return Ok(());
        }
        // Where the span ends, if the chain holds together: the next range's start.
        let end = state
            .chain
            .starts
            .range(span[INDEX_SPAN - 1] + 1..)
            .next()
            .copied()
            .or(state.chain.next);
        if let Some(end) = end {
            // Another archiver may have stored it (one HEAD per span, not its manifests).
            if exists(store, &key.index(span[0], end)).await? {
                advance(state, &span, end);
                continue;
            }
        }
        let mut manifests = Vec::with_capacity(INDEX_SPAN);
        for &start in &span {
            let bytes = match state.held.get(&start) {
                Some(b) => b.clone(),
                None => Arc::new(stored_manifest(store, key, start).await?),
            };
            manifests.push(bytes);
        }
        let Some(next) = contiguous(store, key, &span, &manifests)? else {
            return Ok(());
        };
        let first = span[0];
        let slices: Vec<&[u8]> = manifests.iter().map(|m| m.as_slice()).collect();
        let bytes =
            chain_index_bytes(first, next, &slices).map_err(|e| ArchiveError::NotARecord {
                url: store.url.clone(),
                key: key.manifest(first).to_string(),
                source: e,
            })?;
        create(store, &key.index(first, next), bytes).await?;
        tracing::debug!(topic = %key.topic, partition = key.partition, first, next, "chain index stored");
        advance(state, &span, next);
    }
}

/// The ranges of `span` are indexed (up to `next`): nothing of them is held any more.
fn advance(state: &mut PartitionMemory, span: &[i64], next: i64) {
    state.chain.indexed_next = Some(next);
    for s in span {
        state.held.remove(s);
    }
}

/// Whether the ranges `span` start at the chain's last indexed offset.
fn complete(chain: &Chain, span: &[i64]) -> bool {
    span.first().copied() == chain.indexed_next
}

/// The next offset of the last of `manifests` if they tile `span` (each one's key and start
/// agree, each next is the following start); `None`, logged, if not: no index is built over
/// a chain that does not hold together (readers report it).
fn contiguous(
    store: &Store,
    key: &PartitionKey,
    span: &[i64],
    manifests: &[Arc<Vec<u8>>],
) -> Result<Option<i64>, ArchiveError> {
    let mut next = span[0];
    for (&start, bytes) in span.iter().zip(manifests) {
        let m: Manifest = parse_json(store, &key.manifest(start), bytes)?;
        if m.start_offset != start || start != next {
            tracing::warn!(topic = %key.topic, partition = key.partition, start, "chain does not hold together here: no index built");
            return Ok(None);
        }
        next = m.next_offset;
    }
    Ok(Some(next))
}

/// The manifest stored at `chain/<start>.json`, as stored.
async fn stored_manifest(
    store: &Store,
    key: &PartitionKey,
    start: i64,
) -> Result<Vec<u8>, ArchiveError> {
    let loc = key.manifest(start);
    match read_bytes(store, &loc).await? {
        Some(b) => Ok(b.to_vec()),
        None => Err(ArchiveError::Store {
            url: store.url.clone(),
            key: Some(loc.to_string()),
            source: object_store::Error::NotFound {
                path: loc.to_string(),
                source: "listed but gone".into(),
            },
        }),
    }
}
