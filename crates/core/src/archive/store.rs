//! Object stores from URLs: `file:///path`, `s3://bucket/prefix`, `gs://bucket/prefix`,
//! `az://container/prefix`, all through object_store.
//!
//! Credentials and endpoints come from the standard environment of each cloud
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT_URL` for an
//! S3-compatible server, `AWS_ALLOW_HTTP=true` for plain http; `GOOGLE_*`; `AZURE_*`), as
//! object_store's `from_env` builders read them; for S3 also from the AWS shared config files
//! and profiles (`AWS_PROFILE`, `~/.aws/credentials`, `~/.aws/config`), through aws-config
//! (see `aws`). Conditional creates, on which the archive's exactly-once rests, use
//! `If-None-Match: *` on S3.
//!
//! **Durability of a local store.** object_store's `LocalFileSystem` does not fsync by default:
//! a put returns once the bytes are in the page cache and the staged file is renamed (or, for
//! a conditional create, hard-linked) into place. The archive's commit protocol (every data
//! object first, the manifest last, as a conditional create) is only crash-safe if what the
//! manifest names is on disk before the manifest is, and the manifest once its create returns:
//! otherwise a power loss can leave a manifest naming empty or missing objects. So a `file://`
//! store is opened `with_fsync(true)`: every put fsyncs the file before publishing it and the
//! parent directory after (and every directory it creates), so a successful put, the
//! manifest's create included, is durable. Data objects the archive writes itself through
//! [`Store::local`] (see `upload::LocalObject`) follow the same rule. Object stores (S3, GCS,
//! Azure) are durable when a PUT returns: nothing to do there.

mod aws;

use super::error::ArchiveError;
use object_store::local::LocalFileSystem;
use object_store::path::Path as StorePath;
use object_store::prefix::PrefixStore;
use object_store::ObjectStore;
use std::sync::Arc;
use url::Url;

/// A store and a human-readable description of where it is.
#[derive(Clone)]
pub struct Store {
    pub inner: Arc<dyn ObjectStore>,
    pub url: String,
    /// The same store as `inner` when it is a local directory (`file://`): lets the archive
    /// and the restore read and write its files directly (one kernel copy, no chunked async
    /// streaming), with the same key-to-path mapping and durability as `inner`.
    pub local: Option<Arc<LocalFileSystem>>,
}

impl Store {
    /// The error of this store at `key`.
    pub(crate) fn err(&self, key: &StorePath) -> impl FnOnce(object_store::Error) -> ArchiveError {
        let url = self.url.clone();
        let key = Some(key.to_string());
        move |source| ArchiveError::Store { url, key, source }
    }

    /// The file that holds `key` in a local store; `None` for object stores.
    pub fn local_path(&self, key: &StorePath) -> Option<object_store::Result<std::path::PathBuf>> {
        self.local.as_ref().map(|l| l.path_to_filesystem(key))
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({})", self.url)
    }
}

/// A store URL fit to print: a password in it and its query (which may carry a SAS token or
/// other secrets) are replaced by `***`. Every message, log line and metric names the store
/// by this.
pub fn redact(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut u) => {
            let mut changed = false;
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
                changed = true;
            }
            if u.query().is_some() {
                u.set_query(Some("***"));
                changed = true;
            }
            if changed {
                u.to_string()
            } else {
                url.to_string()
            }
        }
        Err(_) => url.to_string(),
    }
}

/// Opens the store a URL names. A bare path is taken as a local directory. A local
/// directory is created if missing. The URL's path (after the bucket) becomes a key prefix.
pub fn open(url: &str) -> Result<Store, ArchiveError> {
    let shown = redact(url);
    let bad = |message: String| ArchiveError::StoreUrl {
        url: shown.clone(),
        message,
    };
    let dir = |path: Option<&std::path::Path>| {
        let (url, path) = (shown.clone(), path.map(|p| p.to_path_buf()));
        move |source| ArchiveError::StoreDir { url, path, source }
    };
    let parsed = match Url::parse(url) {
        Ok(u) => u,
        Err(url::ParseError::RelativeUrlWithoutBase) => {
            let abs = std::path::absolute(url).map_err(dir(None))?;
            Url::from_file_path(&abs).map_err(|_| bad("not an absolute path".into()))?
        }
        Err(source) => {
            return Err(ArchiveError::StoreUrlParse {
                url: shown.clone(),
                source,
            })
        }
    };
    let backend = |source| ArchiveError::Store {
        url: shown.clone(),
        key: None,
        source,
    };
    let mut local = None;
    let (store, prefix): (Arc<dyn ObjectStore>, String) = match parsed.scheme() {
        "file" => {
            let path = parsed
                .to_file_path()
                .map_err(|_| bad("expected file:///absolute/path".into()))?;
            std::fs::create_dir_all(&path).map_err(dir(Some(&path)))?;
            // Durable puts: see the module doc.
            let fs = Arc::new(
                LocalFileSystem::new_with_prefix(&path)
                    .map_err(backend)?
                    .with_fsync(true),
            );
            local = Some(fs.clone());
            (fs, String::new())
        }
        "s3" | "s3a" => {
            let b = object_store::aws::AmazonS3Builder::from_env().with_url(url);
            let b = aws::apply_profile(b).map_err(|e| match e {
                aws::ProfileError::Load(source) => ArchiveError::AwsConfig {
                    url: shown.clone(),
                    source,
                },
                aws::ProfileError::Undefined(message) => bad(message),
            })?;
            (
                Arc::new(b.build().map_err(backend)?),
                parsed.path().trim_start_matches('/').to_string(),
            )
        }
        "gs" => {
            let b = object_store::gcp::GoogleCloudStorageBuilder::from_env().with_url(url);
            (
                Arc::new(b.build().map_err(backend)?),
                parsed.path().trim_start_matches('/').to_string(),
            )
        }
        "az" | "azure" | "abfs" | "abfss" => {
            let b = object_store::azure::MicrosoftAzureBuilder::from_env().with_url(url);
            (
                Arc::new(b.build().map_err(backend)?),
                parsed.path().trim_start_matches('/').to_string(),
            )
        }
        other => {
            return Err(bad(format!(
                "unsupported scheme {other:?}; expected file, s3, gs or az"
            )))
        }
    };
    let inner: Arc<dyn ObjectStore> = if prefix.is_empty() {
        store
    } else {
        Arc::new(PrefixStore::new(
            store,
            StorePath::from(prefix.trim_end_matches('/')),
        ))
    };
    Ok(Store {
        inner,
        url: shown.clone(),
        local,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_in_store_urls_are_never_shown() {
        assert_eq!(redact("s3://bucket/prefix"), "s3://bucket/prefix");
        let r = redact("https://user:hunter2@host/c?sig=abc&se=1");
        assert!(!r.contains("hunter2") && !r.contains("sig=abc"), "{r}");
        let e = open("s3://user:hunter2@bucket/x?token=abc").err();
        if let Some(e) = e {
            assert!(
                !e.to_string().contains("hunter2") && !e.to_string().contains("abc"),
                "{e}"
            );
        }
    }
}
