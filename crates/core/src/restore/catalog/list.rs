//! Listings of the catalog: one level under a prefix (a delimiter listing: what is there and
//! the names one level down), or everything under a prefix, optionally after a key. Nothing
//! here ever lists the whole archive root: the catalog asks for the prefixes it needs.
//!
//! A local store is walked here, not through object_store: its local listing ends at the
//! first file whose name is not UTF-8 (or not a valid key), and such a file must not hide
//! the rest of the archive. It is left out and named in `unknown` (by its lossy name).

use crate::archive::store::Store;
use crate::restore::RestoreError;
use futures::StreamExt;
use object_store::path::Path;
use object_store::ObjectMeta;

/// One level under a prefix.
#[derive(Debug, Default)]
pub(super) struct DirListing {
    /// The names one level down that hold something (S3's common prefixes; directories).
    pub dirs: Vec<String>,
    /// The objects directly under the prefix.
    pub objects: Vec<ObjectMeta>,
    /// What could not be read as a key (a local file whose name is not UTF-8).
    pub unknown: Vec<String>,
}

impl DirListing {
    pub(super) fn has_dir(&self, name: &str) -> bool {
        self.dirs.iter().any(|d| d == name)
    }
}

/// Every object under a prefix, and what could not be read as a key.
#[derive(Debug, Default)]
pub(super) struct TreeListing {
    pub objects: Vec<ObjectMeta>,
    pub unknown: Vec<String>,
}

fn store_err(store: &Store, key: &Path) -> impl FnOnce(object_store::Error) -> RestoreError {
    let (url, key) = (store.url.clone(), key.to_string());
    move |source| RestoreError::Store { url, key, source }
}

fn io_err(store: &Store, key: &Path) -> impl FnOnce(std::io::Error) -> RestoreError {
    let err = store_err(store, key);
    move |e| {
        err(object_store::Error::Generic {
            store: "LocalFileSystem",
            source: Box::new(e),
        })
    }
}

/// The local directory of `prefix`, and the store's own directory (its components less
/// those of `prefix`), for a local store.
fn local_dirs(
    store: &Store,
    prefix: &Path,
) -> Option<Result<(std::path::PathBuf, std::path::PathBuf), RestoreError>> {
    let local = store.local.as_ref()?;
    Some(
        local
            .path_to_filesystem(prefix)
            .map_err(store_err(store, prefix))
            .map(|dir| {
                let base = dir
                    .ancestors()
                    .nth(prefix.parts().count())
                    .unwrap_or(&dir)
                    .to_path_buf();
                (dir, base)
            }),
    )
}

/// One level under `prefix` (a delimiter listing).
pub(super) async fn list_dir(store: &Store, prefix: &Path) -> Result<DirListing, RestoreError> {
    if let Some(dirs) = local_dirs(store, prefix) {
        let (dir, base) = dirs?;
        return crate::sys::blocking(|| local_dir(&base, &dir)).map_err(io_err(store, prefix));
    }
    let r = store
        .inner
        .list_with_delimiter(Some(prefix))
        .await
        .map_err(store_err(store, prefix))?;
    let mut out = DirListing {
        objects: r.objects,
        ..Default::default()
    };
    for p in r.common_prefixes {
        match p.filename() {
            Some(name) => out.dirs.push(name.to_string()),
            None => out.unknown.push(p.to_string()),
        }
    }
    Ok(out)
}

/// Every object under `prefix`, or only those whose key sorts after `after` (S3's
/// StartAfter: the store skips what comes before it).
pub(super) async fn list_tree(
    store: &Store,
    prefix: &Path,
    after: Option<&Path>,
) -> Result<TreeListing, RestoreError> {
    let mut out = TreeListing::default();
    if let Some(dirs) = local_dirs(store, prefix) {
        let (dir, base) = dirs?;
        crate::sys::blocking(|| list_local(&base, &dir, &mut out.objects, &mut out.unknown))
            .map_err(io_err(store, prefix))?;
        if let Some(after) = after {
            out.objects.retain(|m| m.location > *after);
        }
        return Ok(out);
    }
    let listing = match after {
        Some(after) => store.inner.list_with_offset(Some(prefix), after),
        None => store.inner.list(Some(prefix)),
    };
    collect(store, prefix, listing, &mut out, usize::MAX).await?;
    Ok(out)
}

/// Collects `listing` (of `prefix`) into `out`; `false` as soon as it holds `cap` entries
/// (the rest is not asked for: a listing of pages of `cap` keys stops after its first page,
/// not one page later).
async fn collect(
    store: &Store,
    prefix: &Path,
    mut listing: futures::stream::BoxStream<'static, object_store::Result<ObjectMeta>>,
    out: &mut TreeListing,
    cap: usize,
) -> Result<bool, RestoreError> {
    while let Some(item) = listing.next().await {
        match item {
            Ok(m) => out.objects.push(m),
            Err(object_store::Error::InvalidPath { source }) => out
                .unknown
                .push(format!("(a key that is not a valid path: {source})")),
            Err(e) => return Err(store_err(store, prefix)(e)),
        }
        if out.objects.len() + out.unknown.len() >= cap {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Every object under `prefix` if there are fewer than `cap` of them (one page of an object
/// store's listing, so one request), else `None` (the listing is dropped after its first page
/// and the caller lists by smaller prefixes). A local store is walked whole: it costs no
/// request.
pub(super) async fn list_tree_capped(
    store: &Store,
    prefix: &Path,
    cap: usize,
) -> Result<Option<TreeListing>, RestoreError> {
    if store.local.is_some() {
        return list_tree(store, prefix, None).await.map(Some);
    }
    let mut out = TreeListing::default();
    let whole = collect(store, prefix, store.inner.list(Some(prefix)), &mut out, cap).await?;
    Ok(whole.then_some(out))
}

/// A local directory one level deep, as a delimiter listing would give it.
fn local_dir(base: &std::path::Path, dir: &std::path::Path) -> std::io::Result<DirListing> {
    let mut out = DirListing::default();
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for e in rd {
        let e = e?;
        if e.file_type()?.is_dir() {
            match e.file_name().to_str() {
                Some(name) if Path::parse(name).is_ok() => out.dirs.push(name.to_string()),
                _ => out.unknown.push(format!(
                    "{} (not a valid key)",
                    e.path().strip_prefix(base).unwrap_or(&e.path()).display()
                )),
            }
        } else if let Some(m) = local_object(base, &e, &mut out.unknown)? {
            out.objects.push(m);
        }
    }
    out.dirs.sort();
    Ok(out)
}

/// Every object under `dir` of a local store rooted at `base`, as the store would list it
/// (staging files `<name>#<n>` of interrupted writes left out); files whose path is not a
/// valid key (not UTF-8, say) go to `unknown` by their lossy name.
fn list_local(
    base: &std::path::Path,
    dir: &std::path::Path,
    out: &mut Vec<ObjectMeta>,
    unknown: &mut Vec<String>,
) -> std::io::Result<()> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for e in rd {
        let e = e?;
        if e.file_type()?.is_dir() {
            list_local(base, &e.path(), out, unknown)?;
        } else if let Some(m) = local_object(base, &e, unknown)? {
            out.push(m);
        }
    }
    Ok(())
}

/// A local store's file as the object it holds: `None` for a staging file, a name that is
/// not a valid key (then in `unknown`), or a file gone since the directory was read.
fn local_object(
    base: &std::path::Path,
    e: &std::fs::DirEntry,
    unknown: &mut Vec<String>,
) -> std::io::Result<Option<ObjectMeta>> {
    let path = e.path();
    let rel = path.strip_prefix(base).unwrap_or(&path);
    let Some(key) = rel.to_str() else {
        unknown.push(format!("{} (not UTF-8)", rel.to_string_lossy()));
        return Ok(None);
    };
    if key
        .rsplit_once('#')
        .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    {
        return Ok(None);
    }
    let location = match Path::parse(key) {
        Ok(l) => l,
        Err(err) => {
            unknown.push(format!("{key} ({err})"));
            return Ok(None);
        }
    };
    let md = match e.metadata() {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(Some(ObjectMeta {
        location,
        last_modified: md
            .modified()
            .map(chrono::DateTime::<chrono::Utc>::from)
            .unwrap_or_default(),
        size: md.len(),
        e_tag: None,
        version: None,
    }))
}

/// Every object under `prefix` as key -> size, and nothing else of it: what a check of the
/// manifests against the store needs, at a fraction of the memory of the listing. Keys that
/// are not valid paths are left out (a manifest cannot name them).
///
/// `bounds` (sorted) split the listing into slices listed at once, each from one bound (as
/// S3's StartAfter) up to the next: a listing of N objects costs about the ⌈N/1000⌉ requests
/// of one listing, in the time of a few. A local store is walked whole.
pub(super) async fn list_sizes(
    store: &Store,
    prefix: &Path,
    bounds: &[Path],
    width: usize,
) -> Result<std::collections::HashMap<String, u64>, RestoreError> {
    if store.local.is_some() {
        let all = list_tree(store, prefix, None).await?;
        return Ok(all
            .objects
            .into_iter()
            .map(|m| (m.location.into(), m.size))
            .collect());
    }
    let slices = (0..=bounds.len()).map(|i| {
        let from = i.checked_sub(1).map(|j| bounds[j].clone());
        let to = bounds.get(i).cloned();
        async move {
            let mut listing = match &from {
                Some(after) => store.inner.list_with_offset(Some(prefix), after),
                None => store.inner.list(Some(prefix)),
            };
            let mut out = Vec::new();
            while let Some(item) = listing.next().await {
                match item {
                    Ok(m) if to.as_ref().is_some_and(|t| m.location >= *t) => break,
                    Ok(m) => out.push((String::from(m.location), m.size)),
                    Err(object_store::Error::InvalidPath { .. }) => {}
                    Err(e) => return Err(store_err(store, prefix)(e)),
                }
            }
            Ok(out)
        }
    });
    let mut sliced = futures::stream::iter(slices).buffer_unordered(width.max(1));
    let mut out = std::collections::HashMap::new();
    while let Some(slice) = sliced.next().await {
        out.extend(slice?);
    }
    Ok(out)
}
