//! A directory on the local filesystem as an object store: the embedded default, so compactor
//! works with no cloud account.
//!
//! Writes go to a temporary file under `<root>/.compactor-tmp/` (same filesystem) and are
//! renamed into place, so an object appears whole or not at all. That directory is never listed;
//! leftovers of a killed process are removed when the store is opened if older than an hour.

use std::io::{Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;

use super::{BlockingReader, Listing, ObjectMeta, Store, StoreError, validate_key};

const TMP_DIR: &str = ".compactor-tmp";
const STALE_TMP_AGE: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    /// Opens (and creates, if missing) the directory `root`.
    pub fn try_new(root: impl Into<PathBuf>) -> Result<LocalStore, StoreError> {
        let root = root.into();
        let fail = |e: std::io::Error| backend_error(&root.display().to_string(), e);
        std::fs::create_dir_all(&root).map_err(fail)?;
        let root = root.canonicalize().map_err(fail)?;
        let store = LocalStore { root };
        store.remove_stale_temp_files();
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> Result<PathBuf, StoreError> {
        validate_key(key)?;
        Ok(self.root.join(key))
    }

    /// The directory of a prefix (empty or ending in `/`).
    fn dir(&self, prefix: &str) -> Result<PathBuf, StoreError> {
        if prefix.is_empty() {
            Ok(self.root.clone())
        } else {
            self.path(prefix.trim_end_matches('/'))
        }
    }

    /// [`Store::get_unchanged`], on the calling thread.
    fn read_unchanged(&self, key: &str, etag: &str) -> Result<Bytes, StoreError> {
        let path = self.path(key)?;
        let fail = |e| backend_error(key, e);
        let changed = || StoreError::Changed {
            key: key.to_string(),
        };
        let mut file = std::fs::File::open(&path).map_err(fail)?;
        // The open file is one version; its metadata before and after the read says whether
        // that is the listed one and whether it was written to meanwhile.
        if meta_of(key, &file.metadata().map_err(fail)?).etag != etag {
            return Err(changed());
        }
        let mut data = Vec::new();
        file.read_to_end(&mut data).map_err(fail)?;
        if meta_of(key, &file.metadata().map_err(fail)?).etag != etag {
            return Err(changed());
        }
        Ok(Bytes::from(data))
    }

    fn remove_stale_temp_files(&self) {
        remove_stale_files(&self.root.join(TMP_DIR), STALE_TMP_AGE, |_| true);
    }

    /// The lock file that serializes conditional writes of `key`.
    fn lock_path(&self, key: &str) -> Result<PathBuf, StoreError> {
        use sha2::{Digest, Sha256};
        let dir = self.root.join(TMP_DIR).join("locks");
        std::fs::create_dir_all(&dir).map_err(|e| backend_error(TMP_DIR, e))?;
        let digest = Sha256::digest(key.as_bytes());
        let name: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        Ok(dir.join(name))
    }

    /// A fresh temporary path on the store's filesystem.
    fn temp_path(&self) -> Result<PathBuf, StoreError> {
        let dir = self.root.join(TMP_DIR);
        std::fs::create_dir_all(&dir).map_err(|e| backend_error(TMP_DIR, e))?;
        let unique = format!(
            "{}-{}-{:x}",
            std::process::id(),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
            rand_u64()
        );
        Ok(dir.join(unique))
    }
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(0u8)
}

/// Gives the file at `path` the mode this process gives a file it creates: 0666 less its umask,
/// as every writer's files get. A merged file is written as a private temporary file (0600,
/// since a work dir may be shared with other users) and then published; left at 0600, it
/// would be unreadable to a query engine that runs as another user than compactor.
pub fn give_new_file_mode(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    static MODE: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let mode = *MODE.get_or_init(|| {
        // Reading the umask through umask(2) would change it for every thread meanwhile.
        let umask = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|status| {
                let value = status.lines().find_map(|l| l.strip_prefix("Umask:"))?;
                u32::from_str_radix(value.trim(), 8).ok()
            })
            .unwrap_or(0o022);
        0o666 & !umask
    });
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// Whether `src`, linked into `dir`, has the group a file created there gets. A set-group-ID
/// directory (a warehouse its writers and readers share by group, see the README's file modes)
/// gives new files its own group, which a file made elsewhere and linked in does not carry.
fn link_keeps_group(dir: &Path, src: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    const SET_GROUP_ID: u32 = 0o2000;
    match (std::fs::metadata(dir), std::fs::metadata(src)) {
        (Ok(dir), Ok(src)) => dir.mode() & SET_GROUP_ID == 0 || dir.gid() == src.gid(),
        _ => false,
    }
}

fn backend_error(key: &str, e: std::io::Error) -> StoreError {
    if e.kind() == std::io::ErrorKind::NotFound {
        StoreError::NotFound {
            key: key.to_string(),
        }
    } else if e.kind() == std::io::ErrorKind::PermissionDenied {
        StoreError::Denied {
            backend: "local",
            key: key.to_string(),
            message: e.to_string(),
        }
    } else {
        StoreError::Backend {
            backend: "local",
            key: key.to_string(),
            message: e.to_string(),
        }
    }
}

/// Whether a file lies anywhere below `dir`; stops at the first one found. A missing `dir`,
/// or a file of that name, holds none.
fn holds_files(dir: &Path) -> std::io::Result<bool> {
    use std::io::ErrorKind::{NotADirectory, NotFound};
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if matches!(e.kind(), NotFound | NotADirectory) => return Ok(false),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let file_type = entry.file_type()?;
        if file_type.is_file() || (file_type.is_dir() && holds_files(&entry.path())?) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The modification time an ETag of [`meta_of`] carries, in nanoseconds.
fn etag_nanos(etag: &str) -> u64 {
    etag.split('-')
        .next()
        .and_then(|n| u64::from_str_radix(n, 16).ok())
        .unwrap_or(0)
}

fn meta_of(key: &str, md: &std::fs::Metadata) -> ObjectMeta {
    let modified = md.modified().ok();
    let nanos = modified
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    ObjectMeta {
        key: key.to_string(),
        size: md.len(),
        last_modified_ms: (nanos / 1_000_000) as i64,
        etag: format!("{:x}-{:x}", nanos, md.len()),
        archived: false,
    }
}

/// Runs blocking filesystem work off the async reactor.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(StoreError::Backend {
            backend: "local",
            key: String::new(),
            message: format!("worker task failed: {e}"),
        })
    })
}

/// Removes the files in `dir` whose name `matches` and that were last modified more than
/// `older_than` ago: what a killed process left (a live one's files are younger). Returns how
/// many were removed.
pub fn remove_stale_files(
    dir: &Path,
    older_than: Duration,
    matches: impl Fn(&str) -> bool,
) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > older_than);
        let name = entry.file_name();
        if stale && matches(&name.to_string_lossy()) && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

#[async_trait]
impl Store for LocalStore {
    fn describe(&self) -> String {
        format!("file://{}", self.root.display())
    }

    /// Each footer's read is a task on the blocking pool, woken and waited for: a group of
    /// 10,000 files of 12 KiB merged in 3.0 s reading one at a time (their data too, then),
    /// 2.0 s with 8. A merge reads its inputs' data itself ([`Store::blocking_reader`]).
    fn reads_at_once(&self) -> usize {
        8
    }

    async fn list(&self, prefix: &str) -> Result<Listing, StoreError> {
        let dir = self.dir(prefix)?;
        let prefix = prefix.to_string();
        blocking(move || {
            let mut listing = Listing::default();
            let entries = match std::fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(listing),
                Err(e) => return Err(backend_error(&prefix, e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| backend_error(&prefix, e))?;
                let Ok(name) = entry.file_name().into_string() else {
                    continue; // not valid UTF-8: cannot be a key
                };
                if prefix.is_empty() && name == TMP_DIR {
                    continue;
                }
                let md = match entry.metadata() {
                    Ok(md) => md,
                    // Deleted between the directory read and the stat: it is gone, as a
                    // listing taken a moment later would say.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(backend_error(&prefix, e)),
                };
                if md.is_dir() {
                    listing.prefixes.push(format!("{prefix}{name}/"));
                } else if md.is_file() {
                    listing
                        .objects
                        .push(meta_of(&format!("{prefix}{name}"), &md));
                }
            }
            listing.objects.sort_by(|a, b| a.key.cmp(&b.key));
            listing.prefixes.sort();
            Ok(listing)
        })
        .await
    }

    async fn holds_objects(&self, prefix: &str) -> Result<bool, StoreError> {
        let dir = self.dir(prefix)?;
        let prefix = prefix.to_string();
        blocking(move || holds_files(&dir).map_err(|e| backend_error(&prefix, e))).await
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta, StoreError> {
        let path = self.path(key)?;
        let key = key.to_string();
        blocking(move || {
            let md = std::fs::metadata(&path).map_err(|e| backend_error(&key, e))?;
            if !md.is_file() {
                return Err(StoreError::NotFound { key });
            }
            Ok(meta_of(&key, &md))
        })
        .await
    }

    async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        let path = self.path(key)?;
        let key = key.to_string();
        blocking(move || {
            std::fs::read(&path)
                .map(Bytes::from)
                .map_err(|e| backend_error(&key, e))
        })
        .await
    }

    async fn get_unchanged(&self, key: &str, etag: &str) -> Result<Bytes, StoreError> {
        let store = self.clone();
        let (key, etag) = (key.to_string(), etag.to_string());
        blocking(move || store.read_unchanged(&key, &etag)).await
    }

    fn blocking_reader(&self) -> Option<BlockingReader> {
        let store = self.clone();
        Some(Arc::new(move |key, etag| store.read_unchanged(key, etag)))
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, StoreError> {
        let path = self.path(key)?;
        let key = key.to_string();
        blocking(move || {
            let fail = |e| backend_error(&key, e);
            let mut file = std::fs::File::open(&path).map_err(fail)?;
            let size = file.metadata().map_err(fail)?.len();
            let (start, end) = (range.start.min(size), range.end.min(size));
            file.seek(SeekFrom::Start(start)).map_err(fail)?;
            let mut buf = vec![0; (end.saturating_sub(start)) as usize];
            file.read_exact(&mut buf).map_err(fail)?;
            Ok(Bytes::from(buf))
        })
        .await
    }

    async fn put_file(&self, key: &str, src: &Path) -> Result<ObjectMeta, StoreError> {
        let dest = self.path(key)?;
        let tmp = self.temp_path()?;
        let src = src.to_path_buf();
        let key = key.to_string();
        blocking(move || {
            let fail = |e| backend_error(&key, e);
            // On the same filesystem the file gets a second name instead of a copy of its
            // bytes (the caller leaves it as it is, see `Store::put_file`): a merged file is
            // hundreds of MiB, and copying it was 4% of `compactor once` on the large
            // benchmark set. Elsewhere, where links are refused, or where the link would carry
            // the wrong group, it is copied.
            let linked = tmp.parent().is_some_and(|dir| link_keeps_group(dir, &src))
                && std::fs::hard_link(&src, &tmp).is_ok();
            if !linked {
                std::fs::copy(&src, &tmp).map_err(fail)?;
            }
            give_new_file_mode(&tmp).map_err(fail)?;
            std::fs::File::open(&tmp)
                .and_then(|f| f.sync_all())
                .map_err(fail)?;
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent).map_err(fail)?;
            }
            std::fs::rename(&tmp, &dest).map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                fail(e)
            })?;
            let md = std::fs::metadata(&dest).map_err(fail)?;
            Ok(meta_of(&key, &md))
        })
        .await
    }

    async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<bool, StoreError> {
        let dest = self.path(key)?;
        let tmp = self.temp_path()?;
        let key = key.to_string();
        blocking(move || {
            let fail = |e| backend_error(&key, e);
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent).map_err(fail)?;
            }
            let mut file = std::fs::File::create(&tmp).map_err(fail)?;
            file.write_all(&data)
                .and_then(|_| file.sync_all())
                .map_err(fail)?;
            // hard_link fails if `dest` exists: an atomic create-if-absent of complete content.
            let linked = std::fs::hard_link(&tmp, &dest);
            let _ = std::fs::remove_file(&tmp);
            match linked {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
                Err(e) => Err(fail(e)),
            }
        })
        .await
    }

    async fn put_if_match(&self, key: &str, data: Bytes, etag: &str) -> Result<bool, StoreError> {
        let dest = self.path(key)?;
        let tmp = self.temp_path()?;
        let lock_path = self.lock_path(key)?;
        let key = key.to_string();
        let etag = etag.to_string();
        blocking(move || {
            let fail = |e| backend_error(&key, e);
            // Writers of one key take turns (an OS file lock, so other processes too): the
            // check and the replace are one step.
            let lock = std::fs::File::create(&lock_path).map_err(fail)?;
            lock.lock().map_err(fail)?;
            let current = match std::fs::metadata(&dest) {
                Ok(md) => meta_of(&key, &md),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(fail(e)),
            };
            if current.etag != etag {
                return Ok(false);
            }
            let mut file = std::fs::File::create(&tmp).map_err(fail)?;
            file.write_all(&data)
                .and_then(|_| file.sync_all())
                .map_err(fail)?;
            // The ETag must change on every write; coarse file timestamps may not have moved.
            if meta_of(&key, &file.metadata().map_err(fail)?).etag == etag {
                let later = SystemTime::UNIX_EPOCH
                    + Duration::from_nanos(etag_nanos(&etag).saturating_add(1_000));
                file.set_modified(later).map_err(fail)?;
            }
            std::fs::rename(&tmp, &dest).map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                fail(e)
            })?;
            Ok(true)
        })
        .await
    }

    async fn delete_many(&self, keys: &[String]) -> Vec<(String, StoreError)> {
        let mut failed = Vec::new();
        for key in keys {
            let path = match self.path(key) {
                Ok(path) => path,
                Err(e) => {
                    failed.push((key.clone(), e));
                    continue;
                }
            };
            match tokio::fs::remove_file(&path).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => failed.push((key.clone(), backend_error(key, e))),
            }
        }
        failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn conformance_on_a_temp_dir() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::try_new(dir.path()).unwrap();
        crate::store::conformance::run_all(&store, crate::store::conformance::Supports::ALL).await;
    }

    /// A file on the store's filesystem is published as a second name of itself, not copied;
    /// it outlives the caller's name. One elsewhere (a tmpfs) is copied.
    #[tokio::test]
    async fn put_file_links_on_the_same_filesystem_and_copies_across() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::try_new(dir.path().join("warehouse")).unwrap();
        let src = dir.path().join("merged.parquet");
        std::fs::write(&src, b"merged rows").unwrap();

        let meta = store.put_file("t/p/out.parquet", &src).await.unwrap();
        let published = dir.path().join("warehouse/t/p/out.parquet");
        assert_eq!(meta.size, 11);
        let ino = |p: &Path| std::fs::metadata(p).unwrap().ino();
        assert_eq!(ino(&published), ino(&src), "linked, not copied");
        std::fs::remove_file(&src).unwrap();
        assert_eq!(std::fs::read(&published).unwrap(), b"merged rows");
        assert_eq!(store.head("t/p/out.parquet").await.unwrap(), meta);
        let leftovers = std::fs::read_dir(dir.path().join("warehouse").join(TMP_DIR)).unwrap();
        assert_eq!(leftovers.count(), 0, "no temporary name left behind");

        // Another filesystem: linking fails (EXDEV) and the bytes are copied.
        let shm = Path::new("/dev/shm");
        let elsewhere =
            std::fs::metadata(shm).is_ok_and(|m| m.dev() != dir.path().metadata().unwrap().dev());
        if !elsewhere {
            eprintln!("no tmpfs at /dev/shm on another device: the copy path is not exercised");
            return;
        }
        let other = tempfile::tempdir_in(shm).unwrap();
        let src = other.path().join("merged.parquet");
        std::fs::write(&src, b"other rows").unwrap();
        store.put_file("t/p/out.parquet", &src).await.unwrap();
        assert_ne!(ino(&published), ino(&src), "copied");
        std::fs::write(&src, b"changed").unwrap();
        assert_eq!(std::fs::read(&published).unwrap(), b"other rows");
    }

    /// A warehouse shared by group (a set-group-ID directory) gives a merged file its group:
    /// one made under another group is copied in, as a linked one would keep its old group.
    #[tokio::test]
    async fn put_file_into_a_set_group_id_warehouse_gives_the_warehouse_s_group() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("warehouse");
        std::fs::create_dir(&root).unwrap();
        let src = dir.path().join("merged.parquet");
        std::fs::write(&src, b"merged rows").unwrap();
        let group = std::fs::metadata(&src).unwrap().gid() + 1;
        if std::os::unix::fs::chown(&root, None, Some(group)).is_err() {
            eprintln!("cannot give a directory another group here (not root): not exercised");
            return;
        }
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o2775)).unwrap();
        let store = LocalStore::try_new(&root).unwrap();

        store.put_file("t/p/out.parquet", &src).await.unwrap();
        let published = std::fs::metadata(root.join("t/p/out.parquet")).unwrap();
        assert_eq!(published.gid(), group, "the warehouse's group");
        assert_ne!(
            published.ino(),
            std::fs::metadata(&src).unwrap().ino(),
            "copied"
        );
        assert_eq!(
            std::fs::read(root.join("t/p/out.parquet")).unwrap(),
            b"merged rows"
        );
    }

    /// Another process (a replica, a writer) deleting files while we list: the listing says
    /// what is there, it does not fail on what just went.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn listing_while_files_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::try_new(dir.path()).unwrap();
        let part = dir.path().join("t/p");
        std::fs::create_dir_all(&part).unwrap();
        let churn = std::thread::spawn(move || {
            for round in 0..300 {
                let names: Vec<_> = (0..20).map(|i| part.join(format!("{round}-{i}"))).collect();
                for name in &names {
                    std::fs::write(name, b"x").unwrap();
                }
                for name in &names {
                    std::fs::remove_file(name).unwrap();
                }
            }
        });
        while !churn.is_finished() {
            let listing = store.list("t/p/").await.expect("listing during deletes");
            assert!(listing.objects.len() <= 20);
        }
        churn.join().unwrap();
    }

    #[tokio::test]
    async fn keys_cannot_escape_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::try_new(dir.path().join("root")).unwrap();
        for key in ["../outside", "a/../../b", "/etc/passwd", "a//b", ""] {
            assert!(
                matches!(store.get(key).await, Err(StoreError::InvalidKey { .. })),
                "{key}"
            );
        }
    }
}
