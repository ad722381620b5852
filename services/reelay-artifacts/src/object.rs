//! [`ObjectBlobs`]: the artifact store itself, on the `object_store` crate.
//!
//! - S3 (or an S3-compatible server): reads, deletes and multipart writes are `AmazonS3`'s; an
//!   `s3://OTHER/KEY` input is read through a client of that bucket with the same options.
//! - A local directory: deletes are `LocalFileSystem`'s, and so is opening a file to read (then
//!   read in 1 MiB chunks by [`crate::local_read`]); multipart writes go through
//!   [`crate::local_parts`], since `LocalFileSystem` has no resumable multipart API.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::local::LocalFileSystem;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::{Path, PathPart};
use object_store::{
    ClientOptions, GetOptions, GetRange, GetResultPayload, ObjectStore, ObjectStoreExt, RetryConfig,
};

use crate::blobs::{Blobs, ByteStream, ObjectInfo, ObjectRef};
use crate::error::ArtifactError;
use crate::local_parts::LocalParts;
use crate::local_read::file_stream;
use crate::location::{S3Options, StoreLocation};

/// How long one request to S3 may take before it counts as failed (and is retried by the caller's
/// own backoff, which says so in the job).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The artifact store.
#[derive(Debug)]
pub struct ObjectBlobs {
    location: StoreLocation,
    store: Arc<dyn ObjectStore>,
    writes: Writes,
    /// The key prefix of every object (S3 `PREFIX`; empty for a directory).
    prefix: Vec<String>,
    /// S3 options, to reach other buckets of the endpoint.
    options: S3Options,
    /// Clients of other buckets (`s3://OTHER/KEY` inputs), made when first needed.
    others: Mutex<HashMap<String, Arc<AmazonS3>>>,
}

#[derive(Debug)]
enum Writes {
    S3(Arc<AmazonS3>),
    Local {
        fs: Arc<LocalFileSystem>,
        parts: LocalParts,
    },
}

impl ObjectBlobs {
    /// Opens the store at `location` (a directory is created when missing).
    pub fn open(location: &StoreLocation, options: &S3Options) -> Result<Self, ArtifactError> {
        match location {
            StoreLocation::Local(root) => {
                std::fs::create_dir_all(root).map_err(|err| {
                    ArtifactError::disk(
                        &format!("creating the artifact directory {}", root.display()),
                        &err,
                    )
                })?;
                // Empty directories go with the last object in them (a deleted job leaves none).
                let fs = LocalFileSystem::new_with_prefix(root).map_err(|err| {
                    ArtifactError::from_store(
                        &format!("artifact directory {}", root.display()),
                        err,
                    )
                })?;
                let fs = Arc::new(fs.with_automatic_cleanup(true));
                Ok(ObjectBlobs {
                    location: location.clone(),
                    store: fs.clone(),
                    writes: Writes::Local {
                        fs,
                        parts: LocalParts::new(root.clone()),
                    },
                    prefix: Vec::new(),
                    options: options.clone(),
                    others: Mutex::new(HashMap::new()),
                })
            }
            StoreLocation::S3 { bucket, prefix } => {
                let s3 = Arc::new(s3_client(bucket, options)?);
                Ok(ObjectBlobs {
                    location: location.clone(),
                    store: s3.clone(),
                    writes: Writes::S3(s3),
                    prefix: prefix
                        .split('/')
                        .filter(|part| !part.is_empty())
                        .map(str::to_owned)
                        .collect(),
                    options: options.clone(),
                    others: Mutex::new(HashMap::new()),
                })
            }
        }
    }

    pub fn location(&self) -> &StoreLocation {
        &self.location
    }

    /// The path of a key of this store.
    fn path(&self, key: &str) -> Path {
        self.prefix
            .iter()
            .map(String::as_str)
            .chain(key.split('/'))
            .map(PathPart::from)
            .collect()
    }

    /// The client and path of an object.
    fn resolve(&self, object: &ObjectRef) -> Result<(Arc<dyn ObjectStore>, Path), ArtifactError> {
        let Some(bucket) = &object.bucket else {
            return Ok((Arc::clone(&self.store), self.path(&object.key)));
        };
        if let StoreLocation::S3 { bucket: own, .. } = &self.location
            && own == bucket
            && self.prefix.is_empty()
        {
            return Ok((Arc::clone(&self.store), self.path(&object.key)));
        }
        if matches!(self.location, StoreLocation::Local(_)) {
            return Err(ArtifactError::Invalid(format!(
                "{object}: s3:// inputs need an S3 artifact store (coordinator --artifacts s3://BUCKET/PREFIX)"
            )));
        }
        let mut others = self
            .others
            .lock()
            .map_err(|_| ArtifactError::Unavailable("bucket clients poisoned".to_owned()))?;
        let client = match others.get(bucket) {
            Some(client) => Arc::clone(client),
            None => {
                let client = Arc::new(s3_client(bucket, &self.options)?);
                others.insert(bucket.clone(), Arc::clone(&client));
                client
            }
        };
        let path = object.key.split('/').map(PathPart::from).collect();
        Ok((client, path))
    }
}

/// An S3 client of `bucket`. Its own retries are short: an unreachable store surfaces quickly, and
/// the caller waits it out with a message the user sees.
fn s3_client(bucket: &str, options: &S3Options) -> Result<AmazonS3, ArtifactError> {
    let mut builder = AmazonS3Builder::new().with_bucket_name(bucket);
    for (key, value) in options.keys()? {
        builder = builder.with_config(key, value);
    }
    let client = ClientOptions::new()
        .with_timeout(REQUEST_TIMEOUT)
        .with_connect_timeout(CONNECT_TIMEOUT);
    let allow_http = options
        .0
        .iter()
        .any(|(key, value)| key.ends_with("allow_http") && value == "true");
    builder
        .with_client_options(client.with_allow_http(allow_http))
        .with_retry(RetryConfig {
            max_retries: 2,
            retry_timeout: Duration::from_secs(10),
            ..RetryConfig::default()
        })
        .build()
        .map_err(|err| ArtifactError::from_store(&format!("S3 bucket {bucket:?}"), err))
}

#[async_trait::async_trait]
impl Blobs for ObjectBlobs {
    async fn head(&self, object: &ObjectRef) -> Result<ObjectInfo, ArtifactError> {
        let (store, path) = self.resolve(object)?;
        let meta = store
            .head(&path)
            .await
            .map_err(|err| ArtifactError::from_store(&object.to_string(), err))?;
        Ok(ObjectInfo {
            size: meta.size,
            etag: meta.e_tag.unwrap_or_default(),
        })
    }

    async fn read(&self, object: &ObjectRef, offset: u64) -> Result<ByteStream, ArtifactError> {
        let (store, path) = self.resolve(object)?;
        let options = GetOptions {
            range: (offset > 0).then_some(GetRange::Offset(offset)),
            ..GetOptions::default()
        };
        let what = object.to_string();
        let result = store
            .get_opts(&path, options)
            .await
            .map_err(|err| ArtifactError::from_store(&what, err))?;
        match result.payload {
            // A file of a local store: read in big chunks (see `local_read`).
            GetResultPayload::File(file, _) => Ok(file_stream(file, result.range, what)),
            GetResultPayload::Stream(stream) => Ok(stream
                .map_err(move |err| ArtifactError::from_store(&what, err))
                .boxed()),
        }
    }

    async fn create_multipart(&self, key: &str, part_size: u64) -> Result<String, ArtifactError> {
        match &self.writes {
            Writes::S3(s3) => s3
                .create_multipart(&self.path(key))
                .await
                .map_err(|err| ArtifactError::from_store(key, err)),
            Writes::Local { parts, .. } => parts.create(part_size).await,
        }
    }

    async fn put_part(
        &self,
        key: &str,
        upload_id: &str,
        index: u32,
        data: Vec<Bytes>,
    ) -> Result<String, ArtifactError> {
        match &self.writes {
            Writes::S3(s3) => s3
                .put_part(
                    &self.path(key),
                    &upload_id.to_owned(),
                    index as usize,
                    data.into_iter().collect(),
                )
                .await
                .map(|part| part.content_id)
                .map_err(|err| ArtifactError::from_store(&format!("{key} part {index}"), err)),
            Writes::Local { parts, .. } => parts.put(upload_id, index, data).await,
        }
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        part_ids: Vec<String>,
    ) -> Result<ObjectInfo, ArtifactError> {
        match &self.writes {
            Writes::S3(s3) => {
                let parts = part_ids
                    .into_iter()
                    .map(|content_id| PartId { content_id })
                    .collect();
                let path = self.path(key);
                s3.complete_multipart(&path, &upload_id.to_owned(), parts)
                    .await
                    .map_err(|err| ArtifactError::from_store(key, err))?;
                self.head(&ObjectRef::stored(key)).await
            }
            Writes::Local { fs, parts } => {
                let target = fs
                    .path_to_filesystem(&self.path(key))
                    .map_err(|err| ArtifactError::from_store(key, err))?;
                parts.complete(upload_id, &part_ids, target).await
            }
        }
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), ArtifactError> {
        match &self.writes {
            Writes::S3(s3) => s3
                .abort_multipart(&self.path(key), &upload_id.to_owned())
                .await
                .map_err(|err| ArtifactError::from_store(key, err)),
            Writes::Local { parts, .. } => parts.abort(upload_id).await,
        }
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<u64, ArtifactError> {
        let path = self.path(prefix.trim_end_matches('/'));
        let listed = self
            .store
            .list(Some(&path))
            .map_ok(|meta| meta.location)
            .boxed();
        let mut deleted = 0u64;
        let mut results = self.store.delete_stream(listed);
        while let Some(result) = results.next().await {
            match result {
                Ok(_) => deleted += 1,
                Err(object_store::Error::NotFound { .. }) => {}
                Err(err) => return Err(ArtifactError::from_store(prefix, err)),
            }
        }
        Ok(deleted)
    }

    fn describe(&self) -> String {
        match &self.location {
            StoreLocation::Local(root) => format!("local directory {}", root.display()),
            s3 => s3.url(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read_all(blobs: &ObjectBlobs, key: &str, offset: u64) -> Vec<u8> {
        let mut stream = blobs.read(&ObjectRef::stored(key), offset).await.unwrap();
        let mut data = Vec::new();
        while let Some(chunk) = stream.next().await {
            data.extend_from_slice(&chunk.unwrap());
        }
        data
    }

    #[tokio::test]
    async fn a_local_store_writes_in_parts_and_reads_from_anywhere() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = ObjectBlobs::open(
            &StoreLocation::Local(dir.path().join("artifacts")),
            &S3Options::default(),
        )
        .unwrap();
        let key = "outputs/j/1/out file.bin";
        let id = blobs.create_multipart(key, 3).await.unwrap();
        let mut parts = Vec::new();
        for (index, chunk) in [&b"abc"[..], b"def", b"g"].iter().enumerate() {
            parts.push(
                blobs
                    .put_part(key, &id, index as u32, vec![Bytes::copy_from_slice(chunk)])
                    .await
                    .unwrap(),
            );
        }
        let missing = blobs.head(&ObjectRef::stored(key)).await.unwrap_err();
        assert!(matches!(missing, ArtifactError::NotFound(_)), "{missing}");
        let info = blobs.complete_multipart(key, &id, parts).await.unwrap();
        assert_eq!(info.size, 7);
        assert_eq!(blobs.head(&ObjectRef::stored(key)).await.unwrap().size, 7);
        assert_eq!(read_all(&blobs, key, 0).await, b"abcdefg");
        assert_eq!(read_all(&blobs, key, 4).await, b"efg");

        let other = "outputs/j/2/x";
        let id = blobs.create_multipart(other, 3).await.unwrap();
        let part = blobs
            .put_part(other, &id, 0, vec![Bytes::from_static(b"x")])
            .await
            .unwrap();
        blobs
            .complete_multipart(other, &id, vec![part])
            .await
            .unwrap();
        assert_eq!(blobs.delete_prefix("outputs/j/").await.unwrap(), 2);
        assert!(blobs.head(&ObjectRef::stored(key)).await.is_err());
        assert_eq!(blobs.delete_prefix("outputs/none/").await.unwrap(), 0);
    }

    #[tokio::test]
    async fn a_local_store_refuses_s3_objects() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = ObjectBlobs::open(
            &StoreLocation::Local(dir.path().into()),
            &S3Options::default(),
        )
        .unwrap();
        let object = ObjectRef {
            bucket: Some("media".into()),
            key: "a.mp4".into(),
        };
        let err = blobs.head(&object).await.unwrap_err();
        assert!(
            err.to_string().contains("need an S3 artifact store"),
            "{err}"
        );
    }
}
