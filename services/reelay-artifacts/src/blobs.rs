//! The one way Reelay reads and writes the artifact store: [`Blobs`].
//!
//! Writes are multipart only (create, put parts, complete): the object appears whole at completion
//! or not at all, and a writer that stops can resume with the parts it already stored. Reads start
//! at any offset. Two implementations: the store itself ([`crate::ObjectBlobs`]) and a worker's way to
//! it through the coordinator ([`crate::remote::CoordinatorBlobs`]).

use std::fmt;

use bytes::Bytes;
use futures::stream::BoxStream;

use crate::error::ArtifactError;

/// Bytes of an object, in order.
pub type ByteStream = BoxStream<'static, Result<Bytes, ArtifactError>>;

/// An object: a key of the artifact store, or a key of another bucket of the same S3 endpoint (an
/// `s3://BUCKET/KEY` input).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectRef {
    /// `None`: the artifact store's own bucket and prefix.
    pub bucket: Option<String>,
    pub key: String,
}

impl ObjectRef {
    /// A key of the artifact store.
    pub fn stored(key: impl Into<String>) -> Self {
        ObjectRef {
            bucket: None,
            key: key.into(),
        }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.bucket {
            Some(bucket) => write!(f, "s3://{bucket}/{}", self.key),
            None => write!(f, "{}", self.key),
        }
    }
}

/// What the store says of an object.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObjectInfo {
    pub size: u64,
    /// The store's entity tag (empty when it has none).
    pub etag: String,
}

/// Reads and resumable writes of the artifact store.
#[async_trait::async_trait]
pub trait Blobs: Send + Sync + fmt::Debug + 'static {
    /// The object's size; `NotFound` when there is none.
    async fn head(&self, object: &ObjectRef) -> Result<ObjectInfo, ArtifactError>;

    /// The object's bytes from `offset` (which must be below its size, or 0).
    async fn read(&self, object: &ObjectRef, offset: u64) -> Result<ByteStream, ArtifactError>;

    /// Starts a multipart write of `key`: every part is `part_size` bytes but the last.
    async fn create_multipart(&self, key: &str, part_size: u64) -> Result<String, ArtifactError>;

    /// Stores part `index` (from 0), its bytes the pieces of `data` in order (as they were
    /// received: nobody copies them into one buffer first); the returned id goes to
    /// [`Blobs::complete_multipart`]. Storing the same part again replaces it.
    async fn put_part(
        &self,
        key: &str,
        upload_id: &str,
        index: u32,
        data: Vec<Bytes>,
    ) -> Result<String, ArtifactError>;

    /// Makes the object of the parts, in order; it exists only from now on.
    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        part_ids: Vec<String>,
    ) -> Result<ObjectInfo, ArtifactError>;

    /// Drops a multipart write and its parts.
    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), ArtifactError>;

    /// Deletes every object under `prefix`; how many there were.
    async fn delete_prefix(&self, prefix: &str) -> Result<u64, ArtifactError>;

    /// The store, for messages (`local directory /x`, `s3://bucket/prefix`).
    fn describe(&self) -> String;
}
