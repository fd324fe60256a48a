//! The object stores segvault writes to, exercised through object_store exactly as segvault
//! will use them: a real S3 server (versitygw on loopback) and the local filesystem backend.
//! Each must store, list and range-read an object, and refuse a conditional create of a key
//! that exists: segvault's exactly-once archive rests on that refusal.

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use segvault_harness::S3Server;
use std::sync::Arc;

async fn exercise(store: Arc<dyn ObjectStore>) {
    let key = Path::from("segvault-test/topic-0/00000000000000000000.log");
    let body: Vec<u8> = (0..100_000u32).flat_map(|i| i.to_be_bytes()).collect();
    store
        .put(&key, PutPayload::from(body.clone()))
        .await
        .expect("put");

    let listed: Vec<_> = store
        .list(Some(&Path::from("segvault-test")))
        .try_collect()
        .await
        .expect("list");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].location, key);
    assert_eq!(listed[0].size, body.len() as u64);

    let range = store.get_range(&key, 1000..1016).await.expect("range get");
    assert_eq!(range, Bytes::copy_from_slice(&body[1000..1016]));

    // Create-if-absent of an existing key is refused, and the first object is unchanged.
    let second = PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    let err = store
        .put_opts(&key, PutPayload::from_static(b"second writer"), second)
        .await;
    assert!(
        matches!(err, Err(object_store::Error::AlreadyExists { .. })),
        "{err:?}"
    );
    let whole = store
        .get(&key)
        .await
        .expect("get")
        .bytes()
        .await
        .expect("body");
    assert_eq!(whole.len(), body.len());
    assert_eq!(&whole[..], &body[..]);

    // Create-if-absent of a new key succeeds.
    let fresh = Path::from("segvault-test/topic-0/manifest.json");
    let create = PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    store
        .put_opts(&fresh, PutPayload::from_static(b"{}"), create)
        .await
        .expect("create new key");

    // Concurrent create-if-absent writers of one key: exactly one wins, the others are told
    // the key exists, and the stored bytes are the winner's.
    let race = Path::from("segvault-test/topic-0/race.json");
    let writers = (0..8u8).map(|i| {
        let store = store.clone();
        let race = race.clone();
        tokio::spawn(async move {
            let opts = PutOptions {
                mode: PutMode::Create,
                ..Default::default()
            };
            (
                i,
                store
                    .put_opts(&race, PutPayload::from(vec![i; 64 * 1024]), opts)
                    .await,
            )
        })
    });
    let results = futures::future::join_all(writers).await;
    let mut winners = Vec::new();
    for r in results {
        match r.unwrap() {
            (i, Ok(_)) => winners.push(i),
            (_, Err(object_store::Error::AlreadyExists { .. }))
            | (_, Err(object_store::Error::Precondition { .. })) => {}
            (i, Err(e)) => panic!("writer {i}: unexpected error {e}"),
        }
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    let stored = store.get(&race).await.unwrap().bytes().await.unwrap();
    assert_eq!(&stored[..], &vec![winners[0]; 64 * 1024][..]);
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_server_put_list_range_and_conditional_create() {
    let server = tokio::task::spawn_blocking(|| S3Server::start(&["segvault"]))
        .await
        .unwrap()
        .unwrap();
    exercise(Arc::new(server.store("segvault").unwrap())).await;
    // The object is a real file under the server's root: the server stored it, not a cache.
    let on_disk = server
        .root
        .join("segvault/segvault-test/topic-0/00000000000000000000.log");
    assert_eq!(std::fs::metadata(&on_disk).unwrap().len(), 400_000);
}

#[tokio::test]
async fn local_filesystem_put_list_range_and_conditional_create() {
    let dir = tempfile::tempdir().unwrap();
    let store = object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap();
    exercise(Arc::new(store)).await;
}
