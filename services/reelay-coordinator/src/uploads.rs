//! Uploads: input files sent to the coordinator (UploadInput over gRPC, `POST /upload` over HTTP)
//! and kept in the artifact store under `uploads/<id>`.
//!
//! An upload is a multipart write ([`PartWriter`]); after every part stored, its record in the
//! `uploads` tree says how far it got (and the SHA-256 state so far), durably. A cut upload keeps
//! its stored parts: `GetUpload` says how many bytes, and the client sends the rest. It counts
//! (`complete`) only when every byte arrived and the SHA-256 of all of them is the one the client
//! declared; before that the object does not exist in the store, and after a mismatch nothing of it
//! is kept. One call at a time writes an upload.

use std::collections::HashSet;
use std::ops::Bound;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use prost::Message;
use reelay_artifacts::writer::{PartWriter, WriteState};
use reelay_artifacts::{Blobs, keys, part_size_for};
use reelay_core::names::validate_output_name;
use reelay_core::{Error as Domain, InputFile};
use reelay_proto::convert::{opt_system_time, timestamp};
use reelay_proto::v1;
use reelay_store::{Direction, Store, WriteBatch};

use crate::error::{CoordinatorError, Result};
use crate::store::UPLOADS;

/// Largest upload accepted (S3's largest object).
pub const MAX_UPLOAD_BYTES: u64 = 5 << 40;
/// An upload nobody finished is removed this long after it started.
pub const ABANDONED_AFTER: Duration = Duration::from_secs(24 * 3600);

/// What a client says of the file it sends.
#[derive(Debug, Clone)]
pub struct Header {
    pub name: String,
    pub size: u64,
    pub sha256: String,
    /// Empty: a new upload.
    pub id: String,
    pub offset: u64,
}

impl From<v1::UploadHeader> for Header {
    fn from(header: v1::UploadHeader) -> Self {
        Header {
            name: header.name,
            size: header.size,
            sha256: header.sha256,
            id: header.id,
            offset: header.offset,
        }
    }
}

/// The uploads of a coordinator.
#[derive(Debug)]
pub struct Uploads {
    store: Arc<dyn Store>,
    blobs: Arc<dyn Blobs>,
    /// How long an unused complete upload is kept.
    retain: Duration,
    /// Uploads a call is writing now.
    writing: Mutex<HashSet<String>>,
}

/// Marks an upload as being written; unmarks it when dropped.
struct Writing<'a> {
    uploads: &'a Uploads,
    id: String,
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        if let Ok(mut writing) = self.uploads.writing.lock() {
            writing.remove(&self.id);
        }
    }
}

impl Uploads {
    pub fn new(store: Arc<dyn Store>, blobs: Arc<dyn Blobs>, retain: Duration) -> Self {
        Uploads {
            store,
            blobs,
            retain,
            writing: Mutex::new(HashSet::new()),
        }
    }

    pub fn blobs(&self) -> &Arc<dyn Blobs> {
        &self.blobs
    }

    /// Receives `data` for the upload `header` describes (new, or resumed at `header.offset`).
    /// Returns the upload, complete when all its bytes are in; a stream that ends early leaves it
    /// partial (resumable) and answers with what to do.
    pub async fn receive<S>(&self, header: Header, mut data: S) -> Result<v1::Upload>
    where
        S: Stream<Item = Result<Bytes>> + Unpin + Send,
    {
        let header = checked(header)?;
        let _writing = self.start_writing(&header.id)?;
        let now = SystemTime::now();
        let (mut record, mut writer) = match self.record(&header.id)? {
            None => {
                if header.offset != 0 {
                    return Err(Domain::precondition(format!(
                        "upload {} has no bytes stored: send it from offset 0",
                        header.id
                    ))
                    .into());
                }
                let writer = PartWriter::begin(
                    Arc::clone(&self.blobs),
                    &keys::upload(&header.id),
                    part_size_for(header.size),
                )
                .await?;
                let record = v1::StoredUpload {
                    upload: Some(v1::Upload {
                        id: header.id.clone(),
                        name: header.name.clone(),
                        size: header.size,
                        sha256: header.sha256.clone(),
                        received: 0,
                        complete: false,
                        created_at: Some(timestamp(now)),
                        expires_at: Some(timestamp(now + ABANDONED_AFTER)),
                    }),
                    last_used: Some(timestamp(now)),
                    ..Default::default()
                };
                let mut record = record;
                save_state(&mut record, writer.state());
                self.save(&record).await?;
                (record, writer)
            }
            Some(record) => {
                let upload = record.upload.clone().unwrap_or_default();
                if upload.name != header.name
                    || upload.size != header.size
                    || upload.sha256 != header.sha256
                {
                    return Err(Domain::precondition(format!(
                        "upload {} is {:?} ({} bytes, SHA-256 {}): another file needs another id",
                        upload.id, upload.name, upload.size, upload.sha256
                    ))
                    .into());
                }
                if upload.complete {
                    return Ok(self.view(&record));
                }
                if header.offset != upload.received {
                    return Err(Domain::precondition(format!(
                        "upload {} has {} bytes stored: resume from offset {} (GetUpload tells), not {}",
                        upload.id, upload.received, upload.received, header.offset
                    ))
                    .into());
                }
                let writer = PartWriter::resume(Arc::clone(&self.blobs), write_state(&record))?;
                (record, writer)
            }
        };
        while let Some(chunk) = data.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(err) => {
                    // The client went away: what is stored stays, for a resume.
                    self.keep_stored(&mut record, &mut writer).await;
                    return Err(err);
                }
            };
            if writer.written() + chunk.len() as u64 > header.size {
                return Err(Domain::invalid(
                    "data",
                    format!(
                        "more bytes than the {} the header declared; nothing past them is kept",
                        header.size
                    ),
                )
                .into());
            }
            if writer.write(&chunk).await? > 0 {
                save_state(&mut record, writer.state());
                self.save(&record).await?;
            }
        }
        if writer.written() < header.size {
            self.keep_stored(&mut record, &mut writer).await;
            let stored = writer.state().stored();
            return Err(Domain::invalid(
                "data",
                format!(
                    "the upload ended after {} of {} bytes; {stored} are stored: resume with \
                     offset {stored}",
                    writer.written(),
                    header.size
                ),
            )
            .into());
        }
        let sha256 = writer.seal().await?;
        if sha256 != header.sha256 {
            let _ = writer.abort().await;
            self.forget(&header.id).await?;
            return Err(Domain::invalid(
                "sha256",
                format!(
                    "the {} bytes received hash to {sha256}, not {} as declared: nothing was kept; \
                     check the file and upload it again",
                    header.size, header.sha256
                ),
            )
            .into());
        }
        save_state(&mut record, writer.state());
        let info = writer.complete().await?;
        if info.size != header.size {
            return Err(CoordinatorError::Internal(format!(
                "the store holds {} bytes of upload {}, not {}",
                info.size, header.id, header.size
            )));
        }
        if let Some(upload) = record.upload.as_mut() {
            upload.received = header.size;
            upload.complete = true;
            upload.expires_at = Some(timestamp(SystemTime::now() + self.retain));
        }
        self.save(&record).await?;
        tracing::info!(upload = %header.id, name = %header.name, size = header.size, "upload complete");
        Ok(self.view(&record))
    }

    /// Counts the parts still being stored when a call ends early, and records them: a resume
    /// then starts after them rather than at the last part counted while data flowed.
    async fn keep_stored(&self, record: &mut v1::StoredUpload, writer: &mut PartWriter) {
        match writer.settle().await {
            Ok(0) => {}
            Ok(_) => {
                save_state(record, writer.state());
                if let Err(err) = self.save(record).await {
                    tracing::warn!(error = %err, "cannot record the parts of a cut upload");
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "a part of a cut upload was not stored");
            }
        }
    }

    /// An upload as clients see it.
    pub fn get(&self, id: &str) -> Result<v1::Upload> {
        let id = parse_id(id)?;
        let record = self
            .record(&id)?
            .ok_or_else(|| Domain::not_found("upload", id.clone()))?;
        Ok(self.view(&record))
    }

    /// The input a job gets from a complete upload; notes the use (it keeps the upload).
    pub async fn use_for_job(&self, id: &str, uri: &str) -> Result<InputFile> {
        let mut record = self
            .record(id)?
            .ok_or_else(|| Domain::not_found("upload", id.to_owned()))?;
        let upload = record.upload.clone().unwrap_or_default();
        if !upload.complete {
            return Err(Domain::precondition(format!(
                "upload {id} is not complete ({} of {} bytes): finish it first",
                upload.received, upload.size
            ))
            .into());
        }
        let now = SystemTime::now();
        record.last_used = Some(timestamp(now));
        if let Some(upload) = record.upload.as_mut() {
            upload.expires_at = Some(timestamp(now + self.retain));
        }
        self.save(&record).await?;
        Ok(InputFile {
            uri: uri.to_owned(),
            name: upload.name,
            size: upload.size,
            sha256: upload.sha256,
        })
    }

    /// Removes uploads past their expiry: their objects or multipart writes, then their records.
    pub async fn expire(&self, now: SystemTime) -> Result<usize> {
        let mut due = Vec::new();
        for entry in self.store.scan(
            UPLOADS,
            Bound::Unbounded,
            Bound::Unbounded,
            Direction::Forward,
        )? {
            let record = v1::StoredUpload::decode(entry?.1.as_slice())?;
            let upload = record.upload.clone().unwrap_or_default();
            let expired = opt_system_time(upload.expires_at.as_ref()).is_some_and(|at| at <= now);
            if expired && !self.is_writing(&upload.id) {
                due.push(record);
            }
        }
        let mut removed = 0;
        for record in due {
            let upload = record.upload.clone().unwrap_or_default();
            let key = keys::upload(&upload.id);
            let result = if upload.complete {
                self.blobs.delete_prefix(&key).await.map(drop)
            } else {
                self.blobs.abort_multipart(&key, &record.multipart_id).await
            };
            match result {
                Ok(()) => {
                    self.forget(&upload.id).await?;
                    removed += 1;
                }
                Err(err) => {
                    tracing::warn!(upload = %upload.id, error = %err, "cannot remove an expired upload; trying later");
                }
            }
        }
        Ok(removed)
    }

    fn view(&self, record: &v1::StoredUpload) -> v1::Upload {
        record.upload.clone().unwrap_or_default()
    }

    fn start_writing(&self, id: &str) -> Result<Writing<'_>> {
        let mut writing = self
            .writing
            .lock()
            .map_err(|_| CoordinatorError::Internal("uploads lock poisoned".to_owned()))?;
        if !writing.insert(id.to_owned()) {
            return Err(CoordinatorError::Conflict(format!(
                "upload {id} is being written by another call; wait for it to end, then resume"
            )));
        }
        Ok(Writing {
            uploads: self,
            id: id.to_owned(),
        })
    }

    fn is_writing(&self, id: &str) -> bool {
        self.writing
            .lock()
            .map(|writing| writing.contains(id))
            .unwrap_or(true)
    }

    fn record(&self, id: &str) -> Result<Option<v1::StoredUpload>> {
        let key = record_key(id)?;
        match self.store.get(UPLOADS, &key)? {
            Some(bytes) => Ok(Some(v1::StoredUpload::decode(bytes.as_slice())?)),
            None => Ok(None),
        }
    }

    /// Writes a record durably.
    async fn save(&self, record: &v1::StoredUpload) -> Result<()> {
        let id = record
            .upload
            .as_ref()
            .map(|u| u.id.clone())
            .unwrap_or_default();
        let mut batch = WriteBatch::default();
        batch.put(UPLOADS, record_key(&id)?, record.encode_to_vec());
        self.commit(batch).await
    }

    async fn forget(&self, id: &str) -> Result<()> {
        let mut batch = WriteBatch::default();
        batch.delete(UPLOADS, record_key(id)?);
        self.commit(batch).await
    }

    async fn commit(&self, batch: WriteBatch) -> Result<()> {
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || {
            store.commit(&batch)?;
            store.flush()
        })
        .await
        .map_err(|err| CoordinatorError::Internal(err.to_string()))??;
        Ok(())
    }
}

/// The header, checked; the id made when none was given.
fn checked(mut header: Header) -> Result<Header> {
    validate_output_name(&header.name, "name")?;
    if header.size > MAX_UPLOAD_BYTES {
        return Err(Domain::invalid("size", "uploads are at most 5 TiB").into());
    }
    header.sha256 = header.sha256.to_ascii_lowercase();
    if header.sha256.len() != 64 || !header.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Domain::invalid(
            "sha256",
            "the file's SHA-256 in hex (64 characters) is required, as `sha256sum FILE` prints it",
        )
        .into());
    }
    header.id = if header.id.is_empty() {
        uuid::Uuid::now_v7().hyphenated().to_string()
    } else {
        parse_id(&header.id)?
    };
    if header.offset > header.size {
        return Err(Domain::invalid("offset", "past the end of the file").into());
    }
    Ok(header)
}

fn parse_id(id: &str) -> Result<String> {
    uuid::Uuid::parse_str(id)
        .map(|id| id.hyphenated().to_string())
        .map_err(|_| Domain::invalid("id", format!("{id:?} is not an upload id (a UUID)")).into())
}

fn record_key(id: &str) -> Result<Vec<u8>> {
    Ok(uuid::Uuid::parse_str(id)
        .map_err(|_| Domain::invalid("id", format!("{id:?} is not an upload id (a UUID)")))?
        .as_bytes()
        .to_vec())
}

fn save_state(record: &mut v1::StoredUpload, state: &WriteState) {
    record.multipart_id.clone_from(&state.upload_id);
    record.part_size = state.part_size;
    record.part_ids.clone_from(&state.part_ids);
    record.hasher.clone_from(&state.hasher);
    if let Some(upload) = record.upload.as_mut() {
        upload.received = state.stored();
    }
}

fn write_state(record: &v1::StoredUpload) -> WriteState {
    WriteState {
        key: keys::upload(
            &record
                .upload
                .as_ref()
                .map(|u| u.id.clone())
                .unwrap_or_default(),
        ),
        upload_id: record.multipart_id.clone(),
        part_size: record.part_size,
        part_ids: record.part_ids.clone(),
        hasher: record.hasher.clone(),
    }
}

#[cfg(test)]
mod tests {
    use reelay_artifacts::{ObjectBlobs, ObjectRef, S3Options, StoreLocation};
    use reelay_store::SledStore;
    use reelay_store::sled_store::SledOptions;
    use sha2::{Digest, Sha256};

    use super::*;

    struct Fixture {
        _dir: tempfile::TempDir,
        uploads: Uploads,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let sled = SledStore::open(
            &dir.path().join("db"),
            &crate::store::SCHEMA,
            SledOptions {
                cache_bytes: 1 << 20,
            },
        )
        .unwrap();
        let blobs = ObjectBlobs::open(
            &StoreLocation::Local(dir.path().join("artifacts")),
            &S3Options::default(),
        )
        .unwrap();
        Fixture {
            uploads: Uploads::new(Arc::new(sled), Arc::new(blobs), Duration::from_secs(60)),
            _dir: dir,
        }
    }

    fn header(data: &[u8], id: &str, offset: u64) -> Header {
        Header {
            name: "in.mp4".into(),
            size: data.len() as u64,
            sha256: hex::encode(Sha256::digest(data)),
            id: id.into(),
            offset,
        }
    }

    fn chunks(data: &[u8]) -> impl Stream<Item = Result<Bytes>> + Unpin + Send + use<> {
        let chunks: Vec<Result<Bytes>> = data
            .chunks(1 << 20)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        futures::stream::iter(chunks)
    }

    #[tokio::test]
    async fn an_upload_cut_midway_resumes_and_completes() {
        let f = fixture();
        let data: Vec<u8> = (0..20_000_000u32).map(|i| (i % 253) as u8).collect();
        let id = uuid::Uuid::now_v7().to_string();
        // 12 MB arrive, then the client goes away.
        let cut: Vec<Result<Bytes>> = vec![
            Ok(Bytes::copy_from_slice(&data[..12_000_000])),
            Err(CoordinatorError::Unavailable("client left".into())),
        ];
        let err = f
            .uploads
            .receive(header(&data, &id, 0), futures::stream::iter(cut))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("client left"), "{err}");
        let partial = f.uploads.get(&id).unwrap();
        assert!(!partial.complete);
        assert_eq!(partial.received, 8 << 20, "one 8 MiB part stored");
        let wrong = f
            .uploads
            .receive(header(&data, &id, 0), chunks(&data))
            .await
            .unwrap_err();
        assert!(
            wrong.to_string().contains("resume from offset 8388608"),
            "{wrong}"
        );
        let rest = &data[partial.received as usize..];
        let done = f
            .uploads
            .receive(header(&data, &id, partial.received), chunks(rest))
            .await
            .unwrap();
        assert!(done.complete);
        assert_eq!(done.received, data.len() as u64);
        let input = f.uploads.use_for_job(&id, "upload:x").await.unwrap();
        assert_eq!(
            (input.size, input.name.as_str()),
            (data.len() as u64, "in.mp4")
        );
        let mut stream = f
            .uploads
            .blobs()
            .read(&ObjectRef::stored(keys::upload(&id)), 0)
            .await
            .unwrap();
        let mut stored = Vec::new();
        while let Some(chunk) = stream.next().await {
            stored.extend_from_slice(&chunk.unwrap());
        }
        assert!(stored == data);
    }

    #[tokio::test]
    async fn a_wrong_hash_or_size_keeps_nothing() {
        let f = fixture();
        let data = b"hello world".to_vec();
        let mut lying = header(&data, "", 0);
        lying.sha256 = hex::encode(Sha256::digest(b"something else"));
        let err = f.uploads.receive(lying, chunks(&data)).await.unwrap_err();
        assert!(err.to_string().contains("nothing was kept"), "{err}");
        assert_eq!(
            f.uploads
                .store
                .scan(
                    UPLOADS,
                    Bound::Unbounded,
                    Bound::Unbounded,
                    Direction::Forward
                )
                .unwrap()
                .count(),
            0
        );

        let mut short = header(&data, "", 0);
        short.size = 5;
        let err = f.uploads.receive(short, chunks(&data)).await.unwrap_err();
        assert!(err.to_string().contains("more bytes than"), "{err}");
        let mut bad = header(&data, "", 0);
        bad.sha256 = "abc".into();
        assert!(f.uploads.receive(bad, chunks(&data)).await.is_err());
        let mut bad = header(&data, "", 0);
        bad.name = "../x".into();
        assert!(f.uploads.receive(bad, chunks(&data)).await.is_err());
    }

    #[tokio::test]
    async fn incomplete_uploads_cannot_feed_jobs_and_expire() {
        let f = fixture();
        let data = vec![7u8; 100];
        let id = uuid::Uuid::now_v7().to_string();
        let half: Vec<Result<Bytes>> = vec![Ok(Bytes::copy_from_slice(&data[..50]))];
        assert!(
            f.uploads
                .receive(header(&data, &id, 0), futures::stream::iter(half))
                .await
                .is_err()
        );
        let err = f.uploads.use_for_job(&id, "upload:x").await.unwrap_err();
        assert!(
            err.to_string().contains("not complete (0 of 100 bytes)"),
            "{err}"
        );
        assert_eq!(f.uploads.expire(SystemTime::now()).await.unwrap(), 0);
        let later = SystemTime::now() + ABANDONED_AFTER + Duration::from_secs(1);
        assert_eq!(f.uploads.expire(later).await.unwrap(), 1);
        assert!(f.uploads.get(&id).is_err());
    }
}
