//! Multipart writes into a local artifact directory.
//!
//! `object_store`'s `LocalFileSystem` writes whole files; a resumable upload needs parts. A write
//! here is one file, `<root>/.multipart/<upload id>`, its parts written in place at
//! `index × part_size` and synced before the part counts; completion syncs it and renames it to the
//! object's path (atomic: a reader sees no object, then all of it). The part size is part of the
//! upload id, so a write resumed after a restart needs nothing else.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::blobs::ObjectInfo;
use crate::error::ArtifactError;

/// Directory of the unfinished writes, under the root.
const MULTIPART_DIR: &str = ".multipart";

#[derive(Debug, Clone)]
pub(crate) struct LocalParts {
    root: PathBuf,
}

impl LocalParts {
    pub(crate) fn new(root: PathBuf) -> Self {
        LocalParts { root }
    }

    fn file(&self, upload_id: &str) -> Result<(PathBuf, u64), ArtifactError> {
        let bad =
            || ArtifactError::NotFound(format!("multipart write {upload_id:?}: no such write"));
        let (id, part_size) = upload_id.rsplit_once('.').ok_or_else(bad)?;
        uuid::Uuid::parse_str(id).map_err(|_| bad())?;
        let part_size: u64 = part_size.parse().map_err(|_| bad())?;
        if part_size == 0 {
            return Err(bad());
        }
        Ok((self.root.join(MULTIPART_DIR).join(upload_id), part_size))
    }

    pub(crate) async fn create(&self, part_size: u64) -> Result<String, ArtifactError> {
        if part_size == 0 {
            return Err(ArtifactError::Invalid("part size 0".to_owned()));
        }
        let upload_id = format!("{}.{part_size}", uuid::Uuid::now_v7());
        let (path, _) = self.file(&upload_id)?;
        blocking(move || {
            let dir = path.parent().unwrap_or(Path::new("/"));
            std::fs::create_dir_all(dir)
                .map_err(|err| ArtifactError::disk(&format!("creating {}", dir.display()), &err))?;
            OpenOptions::new()
                .create_new(true)
                .write(true)
                .open(&path)
                .map_err(|err| {
                    ArtifactError::disk(&format!("creating {}", path.display()), &err)
                })?;
            Ok(())
        })
        .await?;
        Ok(upload_id)
    }

    pub(crate) async fn put(
        &self,
        upload_id: &str,
        index: u32,
        data: Bytes,
    ) -> Result<String, ArtifactError> {
        let (path, part_size) = self.file(upload_id)?;
        if data.len() as u64 > part_size {
            return Err(ArtifactError::Invalid(format!(
                "part {index} has {} bytes, more than the part size {part_size}",
                data.len()
            )));
        }
        let offset = u64::from(index) * part_size;
        let len = data.len();
        blocking(move || {
            let file = OpenOptions::new().write(true).open(&path).map_err(|err| {
                if err.kind() == std::io::ErrorKind::NotFound {
                    ArtifactError::NotFound(format!(
                        "multipart write {}: no such write",
                        path.display()
                    ))
                } else {
                    ArtifactError::disk(&format!("opening {}", path.display()), &err)
                }
            })?;
            file.write_all_at(&data, offset)
                .and_then(|()| file.sync_data())
                .map_err(|err| ArtifactError::disk(&format!("writing {}", path.display()), &err))
        })
        .await?;
        Ok(format!("{index}:{len}"))
    }

    pub(crate) async fn complete(
        &self,
        upload_id: &str,
        part_ids: &[String],
        target: PathBuf,
    ) -> Result<ObjectInfo, ArtifactError> {
        let (path, part_size) = self.file(upload_id)?;
        let mut size = 0u64;
        for (expected, part) in part_ids.iter().enumerate() {
            let (index, len) = part
                .split_once(':')
                .and_then(|(index, len)| {
                    Some((index.parse::<usize>().ok()?, len.parse::<u64>().ok()?))
                })
                .ok_or_else(|| {
                    ArtifactError::Invalid(format!("part id {part:?} is not one of this store's"))
                })?;
            let last = expected + 1 == part_ids.len();
            if index != expected || (!last && len != part_size) {
                return Err(ArtifactError::Invalid(format!(
                    "part {expected} is missing or short (got part {index} of {len} bytes; parts are {part_size})"
                )));
            }
            size += len;
        }
        blocking(move || {
            let file = OpenOptions::new().write(true).open(&path).map_err(|err| {
                if err.kind() == std::io::ErrorKind::NotFound {
                    ArtifactError::NotFound(format!(
                        "multipart write {}: no such write",
                        path.display()
                    ))
                } else {
                    ArtifactError::disk(&format!("opening {}", path.display()), &err)
                }
            })?;
            let written = file
                .metadata()
                .map_err(|err| ArtifactError::disk(&format!("reading {}", path.display()), &err))?
                .len();
            if written < size {
                return Err(ArtifactError::Integrity(format!(
                    "multipart write {} holds {written} bytes, its parts say {size}",
                    path.display()
                )));
            }
            file.set_len(size)
                .and_then(|()| file.sync_all())
                .map_err(|err| {
                    ArtifactError::disk(&format!("finishing {}", path.display()), &err)
                })?;
            let dir = target.parent().unwrap_or(Path::new("/"));
            std::fs::create_dir_all(dir)
                .map_err(|err| ArtifactError::disk(&format!("creating {}", dir.display()), &err))?;
            std::fs::rename(&path, &target).map_err(|err| {
                ArtifactError::disk(&format!("moving into {}", target.display()), &err)
            })?;
            if let Ok(dir) = std::fs::File::open(dir) {
                let _ = dir.sync_all();
            }
            Ok(ObjectInfo {
                size,
                etag: String::new(),
            })
        })
        .await
    }

    pub(crate) async fn abort(&self, upload_id: &str) -> Result<(), ArtifactError> {
        let (path, _) = self.file(upload_id)?;
        blocking(move || match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(ArtifactError::disk(
                &format!("removing {}", path.display()),
                &err,
            )),
        })
        .await
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ArtifactError> + Send + 'static,
) -> Result<T, ArtifactError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| ArtifactError::Unavailable(format!("file task failed: {err}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn parts_in_place_then_one_rename() {
        let dir = tempfile::tempdir().unwrap();
        let parts = LocalParts::new(dir.path().to_path_buf());
        let id = parts.create(4).await.unwrap();
        // Out of order, and one part stored twice (a resumed writer).
        let p1 = parts
            .put(&id, 1, Bytes::from_static(b"efgh"))
            .await
            .unwrap();
        let p0 = parts
            .put(&id, 0, Bytes::from_static(b"abcd"))
            .await
            .unwrap();
        let p2 = parts.put(&id, 2, Bytes::from_static(b"ij")).await.unwrap();
        let p2 = parts
            .put(&id, 2, Bytes::from_static(b"ij"))
            .await
            .map(|_| p2)
            .unwrap();
        let target = dir.path().join("outputs/j/1/x.bin");
        assert!(
            parts
                .put(&id, 3, Bytes::from_static(b"too long"))
                .await
                .is_err()
        );
        let err = parts
            .complete(&id, &[p0.clone(), p2.clone()], target.clone())
            .await
            .unwrap_err();
        assert!(matches!(err, ArtifactError::Invalid(_)), "{err}");
        assert!(!target.exists(), "nothing visible before completion");
        let info = parts
            .complete(&id, &[p0, p1, p2], target.clone())
            .await
            .unwrap();
        assert_eq!(info.size, 10);
        assert_eq!(std::fs::read(&target).unwrap(), b"abcdefghij");
        assert!(matches!(
            parts.put(&id, 0, Bytes::new()).await,
            Err(ArtifactError::NotFound(_))
        ));
        assert!(parts.file("nope").is_err());
    }
}
