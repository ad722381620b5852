//! Multipart writes into a local artifact directory.
//!
//! `object_store`'s `LocalFileSystem` writes whole files; a resumable upload needs parts. A write
//! here is one file, `<root>/.multipart/<upload id>`, its parts written in place at
//! `index × part_size` and synced before the part counts; completion syncs it and renames it to the
//! object's path (atomic: a reader sees no object, then all of it). The part size is part of the
//! upload id, so a write resumed after a restart needs nothing else.
//!
//! Parts stored at once share their syncs ([`SyncGroup`]): a flush costs this disk ~25 ms whatever
//! it carries, so one `fdatasync` per 8 MiB part held a write to ~250 MB/s where the disk takes
//! 1 GB/s; a part that finished writing while another part's sync ran waits for the next sync,
//! which then covers every part written meanwhile.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, PoisonError, Weak};

use bytes::Bytes;

use crate::blobs::ObjectInfo;
use crate::error::ArtifactError;

/// Directory of the unfinished writes, under the root.
const MULTIPART_DIR: &str = ".multipart";

#[derive(Debug, Clone)]
pub(crate) struct LocalParts {
    root: PathBuf,
    /// The sync group of each write with parts being stored (dropped with its last part).
    groups: Arc<Mutex<HashMap<String, Weak<SyncGroup>>>>,
}

/// The syncs of one write's file, shared by the parts being stored at once.
#[derive(Debug, Default)]
struct SyncGroup {
    state: Mutex<SyncState>,
    synced: Condvar,
}

#[derive(Debug, Default)]
struct SyncState {
    /// Parts whose bytes are written (counted in order of finishing).
    written: u64,
    /// Every part up to this count is on disk.
    synced: u64,
    /// A sync is running.
    syncing: bool,
}

impl SyncGroup {
    fn lock(&self) -> std::sync::MutexGuard<'_, SyncState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// After a part's bytes are written to `file`: returns once a sync that began after that made
    /// them durable — one this call runs, or another part's. Blocking.
    fn sync_after_write(&self, file: &std::fs::File) -> std::io::Result<()> {
        let mine = {
            let mut state = self.lock();
            state.written += 1;
            state.written
        };
        let mut state = self.lock();
        loop {
            if state.synced >= mine {
                return Ok(());
            }
            if !state.syncing {
                state.syncing = true;
                let covers = state.written;
                drop(state);
                let result = file.sync_data();
                state = self.lock();
                state.syncing = false;
                if result.is_ok() {
                    state.synced = state.synced.max(covers);
                }
                self.synced.notify_all();
                // A failed sync fails the part that ran it; the others try their own.
                result?;
                continue;
            }
            state = self
                .synced
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

impl LocalParts {
    pub(crate) fn new(root: PathBuf) -> Self {
        LocalParts {
            root,
            groups: Arc::default(),
        }
    }

    /// The sync group of `upload_id`, made when no part of it is being stored.
    fn group(&self, upload_id: &str) -> Arc<SyncGroup> {
        let mut groups = self.groups.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(group) = groups.get(upload_id).and_then(Weak::upgrade) {
            return group;
        }
        groups.retain(|_, group| group.strong_count() > 0);
        let group = Arc::new(SyncGroup::default());
        groups.insert(upload_id.to_owned(), Arc::downgrade(&group));
        group
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
        data: Vec<Bytes>,
    ) -> Result<String, ArtifactError> {
        let (path, part_size) = self.file(upload_id)?;
        let len: u64 = data.iter().map(|piece| piece.len() as u64).sum();
        if len > part_size {
            return Err(ArtifactError::Invalid(format!(
                "part {index} has {len} bytes, more than the part size {part_size}"
            )));
        }
        let offset = u64::from(index) * part_size;
        let group = self.group(upload_id);
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
            write_all_vectored_at(&file, &data, offset)
                .and_then(|()| group.sync_after_write(&file))
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

/// Writes `pieces` one after another at `offset` of `file`, in as few system calls as the kernel
/// takes (one `pwritev` for a part received as a few pieces; a part written piece by piece took the
/// file's lock once per piece, against the other parts being written at once).
fn write_all_vectored_at(
    file: &std::fs::File,
    pieces: &[Bytes],
    offset: u64,
) -> std::io::Result<()> {
    use std::io::{IoSlice, Seek, SeekFrom, Write};
    /// Linux takes at most this many slices in one call (`IOV_MAX`).
    const MAX_SLICES: usize = 1024;
    // The handle's own offset: each part is written through a handle of its own.
    let mut file = file;
    file.seek(SeekFrom::Start(offset))?;
    let mut slices: Vec<IoSlice<'_>> = pieces
        .iter()
        .filter(|piece| !piece.is_empty())
        .map(|piece| IoSlice::new(piece))
        .collect();
    let mut slices = &mut slices[..];
    while !slices.is_empty() {
        let take = slices.len().min(MAX_SLICES);
        let written = file.write_vectored(&slices[..take])?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut slices, written);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn parts_in_place_then_one_rename() {
        let dir = tempfile::tempdir().unwrap();
        let parts = LocalParts::new(dir.path().to_path_buf());
        let id = parts.create(4).await.unwrap();
        // Out of order, one part in pieces (as received), and one part stored twice (a resumed
        // writer).
        let p1 = parts
            .put(
                &id,
                1,
                vec![Bytes::from_static(b"e"), Bytes::from_static(b"fgh")],
            )
            .await
            .unwrap();
        let p0 = parts
            .put(&id, 0, vec![Bytes::from_static(b"abcd")])
            .await
            .unwrap();
        let p2 = parts
            .put(&id, 2, vec![Bytes::from_static(b"ij")])
            .await
            .unwrap();
        let p2 = parts
            .put(&id, 2, vec![Bytes::from_static(b"ij")])
            .await
            .map(|_| p2)
            .unwrap();
        let target = dir.path().join("outputs/j/1/x.bin");
        assert!(
            parts
                .put(
                    &id,
                    3,
                    vec![Bytes::from_static(b"too "), Bytes::from_static(b"long")]
                )
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
            parts.put(&id, 0, vec![Bytes::new()]).await,
            Err(ArtifactError::NotFound(_))
        ));
        assert!(parts.file("nope").is_err());
    }

    #[test]
    fn many_pieces_are_written_in_order_at_their_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"12345").unwrap();
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        // More pieces than one system call takes, and empty ones among them.
        let pieces: Vec<Bytes> = (0..1500u32)
            .map(|i| Bytes::from(vec![(i % 251) as u8; (i % 4) as usize]))
            .collect();
        write_all_vectored_at(&file, &pieces, 5).unwrap();
        let written = std::fs::read(&path).unwrap();
        assert_eq!(&written[..5], b"12345");
        assert_eq!(&written[5..], pieces.concat());
    }

    #[tokio::test]
    async fn parts_stored_at_once_share_syncs_and_all_land() {
        let dir = tempfile::tempdir().unwrap();
        let parts = LocalParts::new(dir.path().to_path_buf());
        let id = parts.create(1 << 16).await.unwrap();
        let data: Vec<u8> = (0..(1 << 16) * 12).map(|i: u32| (i % 253) as u8).collect();
        let puts = data.chunks(1 << 16).enumerate().map(|(index, chunk)| {
            let parts = parts.clone();
            let id = id.clone();
            let chunk = Bytes::copy_from_slice(chunk);
            tokio::spawn(async move { parts.put(&id, index as u32, vec![chunk]).await })
        });
        let mut part_ids = Vec::new();
        for put in puts.collect::<Vec<_>>() {
            part_ids.push(put.await.unwrap().unwrap());
        }
        let group = parts.group(&id);
        {
            let state = group.state.lock().unwrap();
            assert_eq!(state.written, 0, "a new group once the parts are stored");
        }
        let target = dir.path().join("object");
        parts
            .complete(&id, &part_ids, target.clone())
            .await
            .unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), data);
    }

    #[test]
    fn a_part_written_during_a_sync_waits_for_the_next_one() {
        let dir = tempfile::tempdir().unwrap();
        let file = std::fs::File::create(dir.path().join("f")).unwrap();
        let group = Arc::new(SyncGroup::default());
        // A sync is running (as if another part ran it): this part must not count it.
        group.state.lock().unwrap().syncing = true;
        let waiter = {
            let group = Arc::clone(&group);
            let file = file.try_clone().unwrap();
            std::thread::spawn(move || group.sync_after_write(&file))
        };
        while group.state.lock().unwrap().written == 0 {
            std::thread::yield_now();
        }
        {
            // That sync ends having covered nothing of the new part.
            let mut state = group.state.lock().unwrap();
            state.syncing = false;
            state.synced = 0;
            group.synced.notify_all();
        }
        waiter.join().unwrap().unwrap();
        let state = group.state.lock().unwrap();
        assert_eq!(
            (state.written, state.synced),
            (1, 1),
            "it ran a sync of its own"
        );
    }
}
