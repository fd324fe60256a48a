//! The claim chain, the exactly-once core: what the store says a partition's chain holds,
//! and the conditional creates that extend it (see the [module doc](super)).
//!
//! A key is created once: [`create`] reports whether this call created it, [`claim`] tells
//! our own applied retry from another archiver's win, and [`drop_unnamed`] removes what a
//! published manifest does not name under its range.

use crate::archive::error::ArchiveError;
use crate::archive::layout::{self, PartitionKey};
use crate::archive::manifest::{Manifest, Objects, StartRecord};
use crate::archive::store::Store;
use crate::sys::now_ms;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use std::collections::BTreeSet;

/// The chain's state for one partition, as the store says.
#[derive(Debug, Clone)]
pub(super) struct Chain {
    /// Offset the next range must start at; `None` if the chain has not started.
    pub(super) next: Option<i64>,
    /// Start offsets of the ranges from where the chain was listed from (at or before the
    /// oldest segment on disk, and at or before the last index's first range) to its end.
    pub(super) starts: BTreeSet<i64>,
    /// When the last range (or the start) was written, ms since the epoch.
    pub(super) last_written_ms: i64,
    /// Where the ranges no chain index holds yet begin (the last index's next offset, or the
    /// chain's start); `None` if the chain has not started.
    pub(super) indexed_next: Option<i64>,
}

impl Chain {
    /// Start offsets of the ranges no index holds yet, in order.
    pub(super) fn unindexed(&self) -> impl Iterator<Item = i64> + '_ {
        let from = self.indexed_next.unwrap_or(i64::MAX);
        self.starts.range(from..).copied()
    }
}

/// The JSON record at `key`, `None` if there is none.
pub(super) async fn read_json<T: serde::de::DeserializeOwned>(
    store: &Store,
    key: &Path,
) -> Result<Option<T>, ArchiveError> {
    Ok(match read_bytes(store, key).await? {
        Some(bytes) => Some(parse_json(store, key, &bytes)?),
        None => None,
    })
}

/// The bytes stored at `key`, `None` if there is none.
pub(super) async fn read_bytes(
    store: &Store,
    key: &Path,
) -> Result<Option<bytes::Bytes>, ArchiveError> {
    match store.inner.get(key).await {
        Ok(r) => Ok(Some(r.bytes().await.map_err(store.err(key))?)),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(store.err(key)(e)),
    }
}

pub(super) fn parse_json<T: serde::de::DeserializeOwned>(
    store: &Store,
    key: &Path,
    bytes: &[u8],
) -> Result<T, ArchiveError> {
    serde_json::from_slice(bytes).map_err(|source| ArchiveError::NotARecord {
        url: store.url.clone(),
        key: key.to_string(),
        source,
    })
}

/// Every key under `prefix` whose name sorts at or after `from`'s (S3 `start-after`), or all
/// of them if `from` is `None`.
async fn list_from(
    store: &Store,
    prefix: &Path,
    from: Option<Path>,
) -> Result<Vec<object_store::ObjectMeta>, ArchiveError> {
    let listing = match &from {
        Some(offset) => store.inner.list_with_offset(Some(prefix), offset),
        None => store.inner.list(Some(prefix)),
    };
    listing.try_collect().await.map_err(store.err(prefix))
}

/// The key just before `name` in `prefix` (`name` with its last byte decremented and padded
/// high), so that listing after it starts at `name` itself.
pub(super) fn just_before(prefix: &Path, name: &str) -> Path {
    let mut b = name.as_bytes().to_vec();
    match b.last_mut() {
        Some(last) if *last > 0 => *last -= 1,
        _ => {}
    }
    let mut s = String::from_utf8_lossy(&b).into_owned();
    s.push('~');
    prefix.clone().join(s)
}

/// The chain as the store holds it, for a broker whose oldest segment on disk starts at
/// `from`: the chain indexes are listed (names only), then `chain/` from the last index's
/// first range or from `from`, whichever is lower, and the last manifest is read (or
/// `start.json` if there is none). An archive without indexes lists all of `chain/`.
pub(super) async fn load_chain(
    store: &Store,
    key: &PartitionKey,
    from: i64,
) -> Result<Chain, ArchiveError> {
    let spans: BTreeSet<(i64, i64)> = list_from(store, &key.index_dir(), None)
        .await?
        .iter()
        .filter_map(|m| layout::index_span(&m.location))
        .collect();
    let last_index = spans.last().copied();
    let list_at = last_index.map(|(first, _)| first.min(from).max(0));
    let after = list_at.map(|at| just_before(&key.chain_dir(), &format!("{at:020}.json")));
    let starts: BTreeSet<i64> = list_from(store, &key.chain_dir(), after)
        .await?
        .iter()
        .filter_map(|m| layout::manifest_start(&m.location))
        .collect();
    let indexed_next = last_index.map(|(_, next)| next).or(starts.first().copied());
    if let Some(&last) = starts.last() {
        let m = read_manifest(store, key, last).await?;
        return Ok(Chain {
            next: Some(m.next_offset),
            starts,
            last_written_ms: m.source.archived_at_ms,
            indexed_next,
        });
    }
    let start: Option<StartRecord> = read_json(store, &key.start()).await?;
    Ok(match start {
        Some(s) => Chain {
            next: Some(last_index.map_or(s.start_offset, |(_, next)| next)),
            starts,
            last_written_ms: s.created_at_ms,
            indexed_next: Some(last_index.map_or(s.start_offset, |(_, next)| next)),
        },
        None => Chain {
            next: None,
            starts,
            last_written_ms: now_ms(),
            indexed_next: None,
        },
    })
}

/// The chain as it stands past `chain.next`, which another archiver has taken: `chain/`
/// listed from there, the last manifest read.
pub(super) async fn refresh_chain(
    store: &Store,
    key: &PartitionKey,
    chain: &mut Chain,
) -> Result<(), ArchiveError> {
    let Some(at) = chain.next else {
        *chain = load_chain(store, key, i64::MAX).await?;
        return Ok(());
    };
    let after = just_before(&key.chain_dir(), &format!("{at:020}.json"));
    let more: Vec<i64> = list_from(store, &key.chain_dir(), Some(after))
        .await?
        .iter()
        .filter_map(|m| layout::manifest_start(&m.location))
        .collect();
    if let Some(&last) = more.iter().max() {
        let m = read_manifest(store, key, last).await?;
        chain.starts.extend(more);
        chain.next = Some(m.next_offset);
        chain.last_written_ms = m.source.archived_at_ms;
    }
    Ok(())
}

/// The manifest `chain/<start>.json`, which a listing showed.
async fn read_manifest(
    store: &Store,
    key: &PartitionKey,
    start: i64,
) -> Result<Manifest, ArchiveError> {
    let loc = key.manifest(start);
    read_json(store, &loc)
        .await?
        .ok_or_else(|| ArchiveError::Store {
            url: store.url.clone(),
            key: Some(loc.to_string()),
            source: object_store::Error::NotFound {
                path: loc.to_string(),
                source: "listed but gone".into(),
            },
        })
}

/// Whether `key` exists (a HEAD).
pub(super) async fn exists(store: &Store, key: &Path) -> Result<bool, ArchiveError> {
    match store.inner.head(key).await {
        Ok(_) => Ok(true),
        Err(object_store::Error::NotFound { .. }) => Ok(false),
        Err(e) => Err(store.err(key)(e)),
    }
}

/// Creates `key` with `bytes` if absent: `true` if this call created it, `false` if the
/// store says it exists.
pub(super) async fn create(
    store: &Store,
    key: &Path,
    bytes: Vec<u8>,
) -> Result<bool, ArchiveError> {
    let opts = PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    match store
        .inner
        .put_opts(key, PutPayload::from(bytes), opts)
        .await
    {
        Ok(_) => Ok(true),
        Err(object_store::Error::AlreadyExists { .. })
        | Err(object_store::Error::Precondition { .. }) => Ok(false),
        Err(e) => Err(store.err(key)(e)),
    }
}

/// How a conditional create of a manifest ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Claim {
    /// The create succeeded.
    Created,
    /// The store said "exists", and what it holds is the manifest we sent (read back): our
    /// own earlier try was applied.
    ReadBack,
    /// Another archiver's manifest is there.
    Lost,
}

/// Creates `key` with `bytes` if absent, telling our own applied retry from a loss (see
/// [`is_ours`]).
pub(super) async fn claim(
    store: &Store,
    key: &Path,
    bytes: Vec<u8>,
) -> Result<Claim, ArchiveError> {
    if create(store, key, bytes.clone()).await? {
        Ok(Claim::Created)
    } else if is_ours(store, key, &bytes).await? {
        Ok(Claim::ReadBack)
    } else {
        Ok(Claim::Lost)
    }
}

/// Whether the manifest stored at `key` is the one we sent: a conditional create whose first
/// try was applied but whose reply was lost (a 503, a reset) is retried by the client and
/// answered "already exists". The manifest carries this attempt's unique data keys, so equal
/// bytes mean our own write.
pub(super) async fn is_ours(store: &Store, key: &Path, sent: &[u8]) -> Result<bool, ArchiveError> {
    match store.inner.get(key).await {
        Ok(r) => {
            let stored = r.bytes().await.map_err(store.err(key))?;
            Ok(stored.as_ref() == sent)
        }
        Err(object_store::Error::NotFound { .. }) => Ok(false),
        Err(e) => Err(store.err(key)(e)),
    }
}

/// Deletes every object under `[start, next)`'s `data/` that `named` (the objects of the
/// published manifest `chain/<start>.json`) does not name: once that manifest exists, no
/// other attempt at `start` can be published, and no other manifest may name keys there.
/// Best effort: what is left is garbage, never data.
pub(super) async fn drop_unnamed(
    store: &Store,
    key: &PartitionKey,
    start: i64,
    next: i64,
    named: &Objects,
) {
    let dir = key.range_data(start, next);
    let listed: Vec<object_store::ObjectMeta> = match store
        .inner
        .list(Some(&dir))
        .try_collect()
        .await
    {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(prefix = %dir, error = %e, "could not list a range's data objects to drop those no manifest names; left in place");
            return;
        }
    };
    for o in listed {
        if !named.iter().any(|r| r.key == o.location.as_ref()) {
            let _ = store.inner.delete(&o.location).await;
        }
    }
}

/// Deletes the objects `o` names (best effort: what is left is garbage, never data).
pub(super) async fn delete_objects(store: &Store, o: &Objects) {
    for r in o.iter() {
        let _ = store.inner.delete(&Path::from(r.key.as_str())).await;
    }
}

#[cfg(test)]
mod tests {
    //! The chain against object_store's `InMemory` and `LocalFileSystem` (as `file://` opens
    //! it: with fsync): what the code does today, asserted.

    use super::*;
    use crate::archive::manifest::{
        ObjectRef, RangeKind, RangeStats, Source, FORMAT, START_FORMAT,
    };
    use object_store::memory::InMemory;
    use std::sync::Arc;

    fn in_memory() -> Store {
        Store {
            inner: Arc::new(InMemory::new()),
            url: "memory:///".into(),
            local: None,
        }
    }

    fn local(dir: &tempfile::TempDir) -> Store {
        crate::archive::store::open(dir.path().to_str().unwrap()).unwrap()
    }

    /// Runs `test` against both stores.
    async fn on_both<F, Fut>(test: F)
    where
        F: Fn(Store) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        test(in_memory()).await;
        let dir = tempfile::tempdir().unwrap();
        test(local(&dir)).await;
    }

    fn key() -> PartitionKey {
        PartitionKey {
            cluster_id: "c1".into(),
            topic: "t".into(),
            topic_id: "AAAAAAAAAAAAAAAAAAAAAA".into(),
            partition: 0,
        }
    }

    fn manifest(start: i64, next: i64, node: i32, archived_at_ms: i64) -> Manifest {
        let k = key();
        Manifest {
            format: FORMAT.into(),
            kind: RangeKind::Segment,
            cluster_id: k.cluster_id,
            topic: k.topic,
            topic_id: k.topic_id,
            partition: k.partition,
            start_offset: start,
            next_offset: next,
            segment_base_offset: start,
            slice_position: 0,
            stats: RangeStats::default(),
            leader_epochs: vec![],
            objects: Objects::default(),
            source: Source {
                node_id: node,
                log_dir: "/data".into(),
                host: "h".into(),
                segvault_version: "0".into(),
                archived_at_ms,
            },
        }
    }

    async fn publish(store: &Store, m: &Manifest) -> Claim {
        let bytes = serde_json::to_vec_pretty(m).unwrap();
        claim(store, &key().manifest(m.start_offset), bytes)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_key_is_created_once() {
        on_both(|store| async move {
            let k = Path::from("x/once");
            assert!(create(&store, &k, b"first".to_vec()).await.unwrap());
            assert!(!create(&store, &k, b"second".to_vec()).await.unwrap());
            let stored = store.inner.get(&k).await.unwrap().bytes().await.unwrap();
            assert_eq!(stored.as_ref(), b"first");
        })
        .await;
    }

    #[tokio::test]
    async fn a_claim_wins_once_and_a_second_claim_loses() {
        on_both(|store| async move {
            let ours = manifest(0, 100, 1, 1);
            let theirs = manifest(0, 100, 2, 2);
            assert_eq!(publish(&store, &ours).await, Claim::Created);
            assert_eq!(publish(&store, &theirs).await, Claim::Lost);
            let stored: Manifest = read_json(&store, &key().manifest(0))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(stored, ours);
        })
        .await;
    }

    #[tokio::test]
    async fn an_applied_create_whose_reply_was_lost_is_still_ours() {
        on_both(|store| async move {
            let m = manifest(0, 100, 1, 1);
            let (k, sent) = (key().manifest(0), serde_json::to_vec_pretty(&m).unwrap());
            // The first try landed; its reply never came back; the retry finds the key taken.
            assert!(create(&store, &k, sent.clone()).await.unwrap());
            assert_eq!(
                claim(&store, &k, sent.clone()).await.unwrap(),
                Claim::ReadBack
            );
            assert!(is_ours(&store, &k, &sent).await.unwrap());
            assert!(!is_ours(&store, &k, b"other").await.unwrap());
            assert!(!is_ours(&store, &Path::from("x/absent"), &sent)
                .await
                .unwrap());
        })
        .await;
    }

    #[tokio::test]
    async fn the_chain_loads_what_was_published_in_order() {
        on_both(|store| async move {
            let k = key();
            let empty = load_chain(&store, &k, 0).await.unwrap();
            assert_eq!(empty.next, None);
            assert!(empty.starts.is_empty());

            let start = StartRecord {
                format: START_FORMAT.into(),
                start_offset: 10,
                created_at_ms: 5,
                node_id: 1,
            };
            assert!(
                create(&store, &k.start(), serde_json::to_vec(&start).unwrap())
                    .await
                    .unwrap()
            );
            let started = load_chain(&store, &k, 0).await.unwrap();
            assert_eq!((started.next, started.last_written_ms), (Some(10), 5));
            assert!(started.starts.is_empty());

            for (s, n, at) in [(10, 50, 7), (50, 120, 8), (120, 121, 9)] {
                assert_eq!(
                    publish(&store, &manifest(s, n, 1, at)).await,
                    Claim::Created
                );
            }
            let chain = load_chain(&store, &k, 0).await.unwrap();
            assert_eq!(chain.next, Some(121));
            assert_eq!(chain.last_written_ms, 9);
            assert_eq!(chain.starts.into_iter().collect::<Vec<_>>(), [10, 50, 120]);
        })
        .await;
    }

    #[tokio::test]
    async fn a_manifest_that_is_not_one_is_refused() {
        on_both(|store| async move {
            let k = key();
            store
                .inner
                .put(&k.manifest(0), PutPayload::from_static(b"not json"))
                .await
                .unwrap();
            let e = load_chain(&store, &k, 0).await.unwrap_err();
            assert!(matches!(e, ArchiveError::NotARecord { .. }), "{e:?}");
            assert!(
                e.to_string().contains("expected a segvault manifest"),
                "{e}"
            );
        })
        .await;
    }

    #[tokio::test]
    async fn what_the_published_manifest_does_not_name_is_dropped() {
        on_both(|store| async move {
            let k = key();
            let named = k.data(0, 100, 1, "a1", "log");
            let other = k.data(0, 100, 2, "b2", "log");
            let elsewhere = k.data(100, 200, 2, "b2", "log");
            for p in [&named, &other, &elsewhere] {
                store
                    .inner
                    .put(p, PutPayload::from_static(b"x"))
                    .await
                    .unwrap();
            }
            let objects = Objects {
                log: Some(ObjectRef {
                    key: named.to_string(),
                    stored_size: 1,
                    size: 1,
                    sha256: String::new(),
                    encoding: "identity".into(),
                    frames: vec![],
                }),
                ..Objects::default()
            };
            drop_unnamed(&store, &k, 0, 100, &objects).await;
            assert!(store.inner.head(&named).await.is_ok());
            assert!(store.inner.head(&other).await.is_err());
            assert!(store.inner.head(&elsewhere).await.is_ok());
            delete_objects(&store, &objects).await;
            assert!(store.inner.head(&named).await.is_err());
        })
        .await;
    }

    #[tokio::test]
    async fn indexes_hold_every_span_of_64_ranges_and_the_chain_loads_from_the_last_one() {
        use crate::archive::manifest::{ChainIndex, INDEX_SPAN};
        use crate::archive::pass::index::write_due_indexes;
        use crate::archive::pass::memory::PartitionMemory;
        on_both(|store| async move {
            let k = key();
            let start = StartRecord {
                format: START_FORMAT.into(),
                start_offset: 0,
                created_at_ms: 1,
                node_id: 1,
            };
            create(&store, &k.start(), serde_json::to_vec(&start).unwrap())
                .await
                .unwrap();
            // 130 ranges of 10 offsets: two full spans and 2 ranges after them.
            for r in 0..130 {
                publish(&store, &manifest(r * 10, r * 10 + 10, 1, r)).await;
            }
            let mut state = PartitionMemory::new(load_chain(&store, &k, 0).await.unwrap());
            assert_eq!(state.chain.indexed_next, Some(0));
            assert_eq!(state.chain.unindexed().count(), 130);
            write_due_indexes(&store, &k, &mut state).await.unwrap();
            assert_eq!(state.chain.indexed_next, Some(1280));
            let spans: BTreeSet<(i64, i64)> = list_from(&store, &k.index_dir(), None)
                .await
                .unwrap()
                .iter()
                .filter_map(|m| layout::index_span(&m.location))
                .collect();
            assert_eq!(
                spans.into_iter().collect::<Vec<_>>(),
                [(0, 640), (640, 1280)]
            );
            // An index holds each manifest exactly as stored under chain/.
            let bytes = read_bytes(&store, &k.index(640, 1280))
                .await
                .unwrap()
                .unwrap();
            let index: ChainIndex = serde_json::from_slice(&bytes).unwrap();
            assert_eq!((index.first_offset, index.next_offset), (640, 1280));
            assert_eq!(index.manifests.len(), INDEX_SPAN);
            let stored = read_bytes(&store, &k.manifest(650)).await.unwrap().unwrap();
            assert_eq!(index.manifests[1].get().as_bytes(), stored.trim_ascii());
            // A second archiver builds the same index: its create is refused, nothing changes.
            let mut again = PartitionMemory::new(load_chain(&store, &k, 0).await.unwrap());
            assert_eq!(again.chain.indexed_next, Some(1280));
            write_due_indexes(&store, &k, &mut again).await.unwrap();
            let same = read_bytes(&store, &k.index(640, 1280))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(same, bytes);
            // A broker whose oldest segment starts at 1290 lists chain/ from the last
            // index's first range on, not from the chain's start.
            let chain = load_chain(&store, &k, 1290).await.unwrap();
            assert_eq!(chain.next, Some(1300));
            assert_eq!(chain.starts.first(), Some(&640));
            assert_eq!(chain.starts.len(), 130 - 64);
            assert_eq!(chain.unindexed().collect::<Vec<_>>(), [1280, 1290]);
            // Listing from a later offset reads what comes after it only.
            let mut c = chain.clone();
            c.next = Some(1290);
            publish(&store, &manifest(1300, 1310, 2, 200)).await;
            refresh_chain(&store, &k, &mut c).await.unwrap();
            assert_eq!((c.next, c.last_written_ms), (Some(1310), 200));
        })
        .await;
    }
}
