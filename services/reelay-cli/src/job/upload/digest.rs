//! What an upload is made of before a byte is sent: the file's name, size and SHA-256 (read once,
//! streaming), and the upload id derived from them.
//!
//! The id is a UUID v8 made of the first 16 bytes of
//! `SHA-256("reelay-upload\n{name}\n{size}\n{sha256}")`, so the same file under the same name always
//! gets the same id: running the same command again after a cut (or Ctrl-C) finds the upload the
//! coordinator kept and resumes it. The web UI derives it the same way (`web/src/lib/upload.ts`),
//! so a file dropped in the browser and sent with the CLI is one upload.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use anyhow::Context;
use sha2::{Digest, Sha256};

/// Bytes read from the file at a time.
pub(super) const CHUNK: usize = 1 << 20;

/// A local file as the coordinator will know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileDigest {
    /// The file name, without directories: what the pipeline sees.
    pub(crate) name: String,
    pub(crate) size: u64,
    /// Lowercase hex SHA-256 of the whole file.
    pub(crate) sha256: String,
}

impl FileDigest {
    /// The upload id of this file (see the module doc).
    pub(crate) fn upload_id(&self) -> String {
        upload_id(&self.name, self.size, &self.sha256)
    }
}

/// The name the upload takes: the path's last component, which must be UTF-8.
pub(crate) fn file_name(path: &Path) -> anyhow::Result<String> {
    let name = path
        .file_name()
        .with_context(|| format!("{} names no file", path.display()))?;
    name.to_str()
        .map(str::to_owned)
        .with_context(|| format!("the file name {name:?} is not valid UTF-8; rename the file"))
}

/// Reads `path` once and hashes it; `progress` is told the bytes read so far after each chunk.
/// Blocking: call it from `spawn_blocking`.
pub(crate) fn hash_file(path: &Path, progress: impl Fn(u64)) -> anyhow::Result<FileDigest> {
    let name = file_name(path)?;
    let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let metadata = file
        .metadata()
        .with_context(|| format!("reading {}", path.display()))?;
    if !metadata.is_file() {
        anyhow::bail!("{} is not a regular file", path.display());
    }
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; CHUNK];
    let mut size = 0u64;
    loop {
        let read = match file.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err).with_context(|| format!("reading {}", path.display())),
        };
        hasher.update(&buffer[..read]);
        size += read as u64;
        progress(size);
    }
    Ok(FileDigest {
        name,
        size,
        sha256: hex::encode(hasher.finalize()),
    })
}

/// The upload id of a file: a UUID v8 from `SHA-256("reelay-upload\n{name}\n{size}\n{sha256}")`.
pub(crate) fn upload_id(name: &str, size: u64, sha256: &str) -> String {
    let digest = Sha256::digest(format!("reelay-upload\n{name}\n{size}\n{sha256}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes)
        .into_uuid()
        .hyphenated()
        .to_string()
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// The same vector is checked by the web UI's tests (web/src/lib/upload.test.ts): both sides
    /// must derive the same id for the same file.
    #[test]
    fn the_id_is_a_uuid_v8_from_name_size_and_hash() {
        let sha = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
        let id = upload_id("hello.txt", 5, sha);
        assert_eq!(id, "6c7e50bb-e9d3-864e-96af-bb351c085c9f");
        let parsed = uuid::Uuid::parse_str(&id).unwrap();
        assert_eq!(parsed.get_version_num(), 8);
        assert_eq!(parsed.get_variant(), uuid::Variant::RFC4122);
        // Any change of name, size or content is another upload.
        assert_ne!(upload_id("hello2.txt", 5, sha), id);
        assert_ne!(upload_id("hello.txt", 6, sha), id);
        assert_ne!(upload_id("hello.txt", 5, &sha.replace('2', "3")), id);
    }

    #[test]
    fn a_file_is_hashed_in_chunks_with_progress() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        let data: Vec<u8> = (0..(CHUNK * 2 + 100)).map(|i| (i % 251) as u8).collect();
        file.write_all(&data).unwrap();
        let seen = std::cell::RefCell::new(Vec::new());
        let digest = hash_file(file.path(), |done| seen.borrow_mut().push(done)).unwrap();
        assert_eq!(digest.size, data.len() as u64);
        assert_eq!(digest.sha256, hex::encode(Sha256::digest(&data)));
        assert_eq!(seen.borrow().last(), Some(&(data.len() as u64)));
        assert!(seen.borrow().len() >= 3, "{:?}", seen.borrow());
        assert_eq!(
            digest.upload_id(),
            upload_id(&digest.name, digest.size, &digest.sha256)
        );
    }

    #[test]
    fn directories_and_missing_files_are_refused_with_their_path() {
        let dir = tempfile::tempdir().unwrap();
        let err = hash_file(dir.path(), |_| {}).unwrap_err();
        assert!(format!("{err:#}").contains("not a regular file"), "{err:#}");
        let missing = dir.path().join("nope.mp4");
        let err = hash_file(&missing, |_| {}).unwrap_err();
        assert!(format!("{err:#}").contains("nope.mp4"), "{err:#}");
    }
}
