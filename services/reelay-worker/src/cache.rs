//! The node's input cache: inputs fetched from the artifact store, kept by SHA-256 so a retry or
//! another job on the same input fetches nothing.
//!
//! Layout under `<data-dir>/cache/`:
//! - `files/<sha256>` — a verified input, read-only; its modification time is its last use;
//! - `partial/<key>` — a fetch under way (resumed after a restart), `key` the SHA-256 when known;
//! - `aliases/<hash of uri, size, etag>` — the SHA-256 of an `s3://` object that came with none.
//!
//! A job does not read the cache directly: its attempt gets a hard link to the file
//! (`<data-dir>/inputs/<job id>/<name>`), so a file whose link count is above one is in use and is
//! never evicted. Before a fetch, the least recently used files not in use are removed until the
//! new one fits under `--cache-size`.

use std::collections::HashMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use reelay_artifacts::ArtifactError;
use sha2::{Digest, Sha256};

/// A cache of inputs.
#[derive(Debug)]
pub struct InputCache {
    dir: PathBuf,
    /// Most bytes of files kept.
    capacity: u64,
    /// One fetch per key at a time: a second attempt on the same input waits for the first.
    fetching: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl InputCache {
    /// Opens (creates) the cache in `dir`; partial fetches are kept for resuming.
    pub fn open(dir: PathBuf, capacity: u64) -> std::io::Result<Self> {
        for sub in ["files", "partial", "aliases"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        Ok(InputCache {
            dir,
            capacity,
            fetching: Mutex::new(HashMap::new()),
        })
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// The lock held while `key` is fetched.
    pub fn fetch_lock(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut fetching = self
            .fetching
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        fetching.retain(|_, lock| Arc::strong_count(lock) > 1);
        Arc::clone(fetching.entry(key.to_owned()).or_default())
    }

    /// The cached file of `sha256`, if there is one (and notes its use).
    pub fn lookup(&self, sha256: &str) -> Option<PathBuf> {
        let path = self.file(sha256);
        if !path.is_file() {
            return None;
        }
        touch(&path);
        Some(path)
    }

    /// The SHA-256 an `s3://` object was found to have, when fetched before.
    pub fn alias(&self, alias: &str) -> Option<String> {
        let sha = std::fs::read_to_string(self.dir.join("aliases").join(alias)).ok()?;
        let sha = sha.trim();
        (sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit())).then(|| sha.to_owned())
    }

    /// Where the fetch of `key` writes.
    pub fn partial(&self, key: &str) -> PathBuf {
        self.dir.join("partial").join(key)
    }

    fn file(&self, sha256: &str) -> PathBuf {
        self.dir.join("files").join(sha256)
    }

    /// Makes room for `size` more bytes: removes the least recently used files not in use.
    pub fn make_room(&self, size: u64) -> Result<(), ArtifactError> {
        if size > self.capacity {
            return Err(ArtifactError::Disk(format!(
                "the input ({size} bytes) is larger than the node's input cache (--cache-size \
                 {} bytes): raise --cache-size",
                self.capacity
            )));
        }
        let mut files = Vec::new();
        let mut used = 0u64;
        let entries = std::fs::read_dir(self.dir.join("files"))
            .map_err(|err| ArtifactError::disk("reading the input cache", &err))?;
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            used += meta.len();
            let in_use = meta.nlink() > 1;
            let last_use = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            files.push((last_use, entry.path(), meta.len(), in_use));
        }
        for partial in std::fs::read_dir(self.dir.join("partial"))
            .into_iter()
            .flatten()
            .flatten()
        {
            used += partial.metadata().map(|meta| meta.len()).unwrap_or(0);
        }
        files.sort_by_key(|(last_use, ..)| *last_use);
        for (_, path, len, in_use) in files {
            if used + size <= self.capacity {
                break;
            }
            if in_use {
                continue;
            }
            if std::fs::remove_file(&path).is_ok() {
                tracing::info!(file = %path.display(), bytes = len, "evicted from the input cache");
                used -= len;
            }
        }
        if used + size > self.capacity {
            return Err(ArtifactError::Disk(format!(
                "the input cache is full of inputs in use ({used} of {} bytes): wait for jobs to \
                 finish, or raise --cache-size",
                self.capacity
            )));
        }
        Ok(())
    }

    /// Moves a verified fetch into the cache, read-only; notes an alias when given.
    pub fn admit(
        &self,
        partial: &Path,
        sha256: &str,
        alias: Option<&str>,
    ) -> Result<PathBuf, ArtifactError> {
        let target = self.file(sha256);
        std::fs::set_permissions(partial, std::fs::Permissions::from_mode(0o444))
            .and_then(|()| std::fs::rename(partial, &target))
            .map_err(|err| ArtifactError::disk("moving a fetched input into the cache", &err))?;
        if let Some(alias) = alias {
            let path = self.dir.join("aliases").join(alias);
            std::fs::write(&path, sha256)
                .map_err(|err| ArtifactError::disk("writing a cache alias", &err))?;
        }
        touch(&target);
        Ok(target)
    }
}

/// The alias of an `s3://` object that comes without a SHA-256: its URI, size and entity tag.
pub fn alias_of(uri: &str, size: u64, etag: &str) -> String {
    hex::encode(Sha256::digest(format!("{uri}\n{size}\n{etag}").as_bytes()))
}

/// Marks a cached file as just used (its modification time is its last use).
fn touch(path: &Path) {
    if let Ok(file) = std::fs::File::open(path) {
        let _ = file.set_modified(SystemTime::now());
    }
}

/// Gives an attempt its inputs: in `dir` (made empty), a hard link to each cached file under the
/// name the pipeline sees (a symbolic link when the two are on different file systems). The paths
/// of the links, in order.
pub fn link_inputs(dir: &Path, files: &[(PathBuf, String)]) -> Result<Vec<PathBuf>, ArtifactError> {
    let disk = |err: std::io::Error| ArtifactError::disk("linking the inputs for the job", &err);
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(disk(err)),
    }
    std::fs::create_dir_all(dir).map_err(disk)?;
    let mut links = Vec::with_capacity(files.len());
    for (cached, name) in files {
        let link = dir.join(name);
        if std::fs::hard_link(cached, &link).is_err() {
            std::os::unix::fs::symlink(cached, &link).map_err(disk)?;
        }
        links.push(link);
    }
    // Other users (a container's uid) may need to read them; the cache's files are 0444.
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755));
    Ok(links)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cached(cache: &InputCache, content: &[u8]) -> (String, PathBuf) {
        let sha = hex::encode(Sha256::digest(content));
        let partial = cache.partial(&sha);
        std::fs::write(&partial, content).unwrap();
        (sha.clone(), cache.admit(&partial, &sha, None).unwrap())
    }

    #[test]
    fn evicts_least_recently_used_files_not_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let cache = InputCache::open(dir.path().join("cache"), 100).unwrap();
        let (a, a_path) = cached(&cache, &[1u8; 40]);
        std::thread::sleep(std::time::Duration::from_millis(20));
        let (b, _) = cached(&cache, &[2u8; 40]);
        assert!(cache.lookup(&a).is_some());
        // a is in use (linked for a job), b is older than that use: b goes.
        let links = link_inputs(
            &dir.path().join("inputs/j1"),
            &[(a_path.clone(), "in.mp4".to_owned())],
        )
        .unwrap();
        assert_eq!(std::fs::read(&links[0]).unwrap(), vec![1u8; 40]);
        cache.make_room(50).unwrap();
        assert!(cache.lookup(&b).is_none());
        assert!(cache.lookup(&a).is_some());
        // Nothing more can go while a is in use.
        let err = cache.make_room(70).unwrap_err();
        assert!(err.to_string().contains("in use"), "{err}");
        std::fs::remove_dir_all(dir.path().join("inputs/j1")).unwrap();
        cache.make_room(70).unwrap();
        assert!(cache.lookup(&a).is_none());
        let err = cache.make_room(101).unwrap_err();
        assert!(err.to_string().contains("--cache-size"), "{err}");
    }

    #[test]
    fn cached_files_are_read_only_and_aliases_remember_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let cache = InputCache::open(dir.path().to_path_buf(), 1000).unwrap();
        let sha = hex::encode(Sha256::digest(b"x"));
        let partial = cache.partial("some-alias");
        std::fs::write(&partial, b"x").unwrap();
        let alias = alias_of("s3://b/k", 1, "etag");
        let path = cache.admit(&partial, &sha, Some(&alias)).unwrap();
        assert_eq!(path.metadata().unwrap().permissions().mode() & 0o777, 0o444);
        assert_eq!(cache.alias(&alias).as_deref(), Some(sha.as_str()));
        assert_eq!(cache.alias(&alias_of("s3://b/k", 2, "etag")), None);
    }
}
