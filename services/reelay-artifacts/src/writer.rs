//! [`PartWriter`]: a multipart write that can stop anywhere and resume.
//!
//! Bytes are cut into parts of the write's part size; a few parts are stored at once (each in a
//! task of its own), and they are counted in order. After each part counted, [`PartWriter::state`]
//! says everything needed to resume — the upload, the part ids and the SHA-256 state of the bytes of
//! those parts — and the caller persists it. Bytes of a part not yet stored are lost with the
//! writer; a resumed write starts again at [`WriteState::stored`].
//!
//! Parts are hashed in order beside the writer ([`HashLane`]) while the caller fills the next part:
//! the hash overlaps with receiving or reading the bytes instead of following it.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use sha2::digest::common::hazmat::SerializableState;
use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;

use crate::blobs::{Blobs, ObjectInfo};
use crate::error::ArtifactError;
use crate::hash_lane::{HashLane, PendingState, hasher_at};

/// Parts stored at once by one writer: enough to keep a link busy, few enough to bound memory.
const PARTS_IN_FLIGHT: usize = 3;

/// Where a multipart write stands: enough to resume it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WriteState {
    pub key: String,
    pub upload_id: String,
    pub part_size: u64,
    /// Ids of the parts stored, in order.
    pub part_ids: Vec<String>,
    /// The SHA-256 state over the bytes of those parts (serialized).
    pub hasher: Vec<u8>,
}

impl WriteState {
    /// Bytes stored: where a resumed write starts.
    pub fn stored(&self) -> u64 {
        self.part_ids.len() as u64 * self.part_size
    }
}

type PartTask = JoinHandle<Result<String, ArtifactError>>;

/// A resumable multipart write of one object.
#[derive(Debug)]
pub struct PartWriter {
    blobs: Arc<dyn Blobs>,
    state: WriteState,
    /// Hashes every part given so far, in order.
    hasher: HashLane,
    /// The part being filled.
    buffer: BytesMut,
    /// Parts being stored, oldest first, with the hasher state after each (once hashed).
    in_flight: VecDeque<(PartTask, PendingState)>,
}

impl PartWriter {
    /// Starts a new write of `key`.
    pub async fn begin(
        blobs: Arc<dyn Blobs>,
        key: &str,
        part_size: u64,
    ) -> Result<Self, ArtifactError> {
        let upload_id = blobs.create_multipart(key, part_size).await?;
        let hasher = Sha256::new();
        Ok(Self::with_state(
            blobs,
            WriteState {
                key: key.to_owned(),
                upload_id,
                part_size,
                part_ids: Vec::new(),
                hasher: hasher.serialize().to_vec(),
            },
            hasher,
        ))
    }

    /// Resumes a write at `state` (as [`PartWriter::state`] gave it).
    pub fn resume(blobs: Arc<dyn Blobs>, state: WriteState) -> Result<Self, ArtifactError> {
        let hasher = hasher_at(&state.hasher)?;
        Ok(Self::with_state(blobs, state, hasher))
    }

    fn with_state(blobs: Arc<dyn Blobs>, state: WriteState, hasher: Sha256) -> Self {
        let capacity = usize::try_from(state.part_size)
            .unwrap_or(usize::MAX)
            .min(64 << 20);
        PartWriter {
            blobs,
            state,
            hasher: HashLane::start(hasher),
            buffer: BytesMut::with_capacity(capacity),
            in_flight: VecDeque::new(),
        }
    }

    /// What a resumed write needs, as of the parts stored so far.
    pub fn state(&self) -> &WriteState {
        &self.state
    }

    /// Bytes given so far (stored or not).
    pub fn written(&self) -> u64 {
        self.state.stored()
            + self.in_flight.len() as u64 * self.state.part_size
            + self.buffer.len() as u64
    }

    /// Adds bytes; returns how many parts were newly stored (then [`PartWriter::state`] changed
    /// and is worth persisting).
    pub async fn write(&mut self, mut data: &[u8]) -> Result<usize, ArtifactError> {
        let part_size = usize::try_from(self.state.part_size).unwrap_or(usize::MAX);
        let mut stored = 0;
        while !data.is_empty() {
            let take = (part_size - self.buffer.len()).min(data.len());
            self.buffer.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buffer.len() == part_size {
                if self.in_flight.len() >= PARTS_IN_FLIGHT {
                    stored += self.settle_one().await?;
                }
                self.dispatch().await?;
            }
        }
        stored += self.settle_ready().await?;
        Ok(stored)
    }

    /// Waits for the parts in flight (not the buffered bytes): afterwards [`PartWriter::state`]
    /// holds everything that can be kept of this write, for a resume.
    pub async fn checkpoint(&mut self) -> Result<(), ArtifactError> {
        while !self.in_flight.is_empty() {
            self.settle_one().await?;
        }
        Ok(())
    }

    /// Stores the last part and waits for every part; the SHA-256 of all the bytes written.
    /// The object does not exist before [`PartWriter::complete`].
    pub async fn seal(&mut self) -> Result<String, ArtifactError> {
        // An empty object is one empty part.
        if !self.buffer.is_empty() || (self.state.part_ids.is_empty() && self.in_flight.is_empty())
        {
            self.dispatch().await?;
        }
        while !self.in_flight.is_empty() {
            self.settle_one().await?;
        }
        Ok(hex::encode(hasher_at(&self.state.hasher)?.finalize()))
    }

    /// Makes the object of the parts (after [`PartWriter::seal`]).
    pub async fn complete(self) -> Result<ObjectInfo, ArtifactError> {
        if !self.in_flight.is_empty() || !self.buffer.is_empty() {
            return Err(ArtifactError::Invalid(
                "complete before seal: parts are still being written".to_owned(),
            ));
        }
        self.blobs
            .complete_multipart(&self.state.key, &self.state.upload_id, self.state.part_ids)
            .await
    }

    /// Drops the write and every part stored.
    pub async fn abort(self) -> Result<(), ArtifactError> {
        for (task, _) in self.in_flight {
            task.abort();
        }
        self.blobs
            .abort_multipart(&self.state.key, &self.state.upload_id)
            .await
    }

    /// Sends the buffer as the next part (and to the hash).
    async fn dispatch(&mut self) -> Result<(), ArtifactError> {
        let part_size = usize::try_from(self.state.part_size).unwrap_or(usize::MAX);
        let data: Bytes = std::mem::replace(
            &mut self.buffer,
            BytesMut::with_capacity(part_size.min(64 << 20)),
        )
        .freeze();
        let index = (self.state.part_ids.len() + self.in_flight.len()) as u32;
        let blobs = Arc::clone(&self.blobs);
        let key = self.state.key.clone();
        let upload_id = self.state.upload_id.clone();
        let hashed = self.hasher.update_then_state(data.clone()).await?;
        let task =
            tokio::spawn(async move { blobs.put_part(&key, &upload_id, index, vec![data]).await });
        self.in_flight.push_back((task, hashed));
        Ok(())
    }

    /// Waits for the oldest part in flight and counts it.
    async fn settle_one(&mut self) -> Result<usize, ArtifactError> {
        let Some((task, hashed)) = self.in_flight.pop_front() else {
            return Ok(0);
        };
        let part_id = task
            .await
            .map_err(|err| ArtifactError::Unavailable(format!("part task failed: {err}")))??;
        let hasher = hashed.wait().await?;
        self.state.part_ids.push(part_id);
        self.state.hasher = hasher;
        Ok(1)
    }

    /// Counts the parts at the front that are already stored, without waiting.
    async fn settle_ready(&mut self) -> Result<usize, ArtifactError> {
        let mut stored = 0;
        while self
            .in_flight
            .front()
            .is_some_and(|(task, _)| task.is_finished())
        {
            stored += self.settle_one().await?;
        }
        Ok(stored)
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;
    use crate::blobs::ObjectRef;
    use crate::location::{S3Options, StoreLocation};
    use crate::object::ObjectBlobs;

    fn sha(data: &[u8]) -> String {
        hex::encode(Sha256::digest(data))
    }

    async fn read_all(blobs: &Arc<dyn Blobs>, key: &str) -> Vec<u8> {
        let mut stream = blobs.read(&ObjectRef::stored(key), 0).await.unwrap();
        let mut data = Vec::new();
        while let Some(chunk) = stream.next().await {
            data.extend_from_slice(&chunk.unwrap());
        }
        data
    }

    fn store() -> (tempfile::TempDir, Arc<dyn Blobs>) {
        let dir = tempfile::tempdir().unwrap();
        let blobs = ObjectBlobs::open(
            &StoreLocation::Local(dir.path().into()),
            &S3Options::default(),
        )
        .unwrap();
        (dir, Arc::new(blobs))
    }

    #[tokio::test]
    async fn writes_in_parts_and_hashes_everything() {
        let (_dir, blobs) = store();
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let mut writer = PartWriter::begin(Arc::clone(&blobs), "uploads/a", 1000)
            .await
            .unwrap();
        let mut stored = 0;
        for chunk in data.chunks(333) {
            stored += writer.write(chunk).await.unwrap();
        }
        assert_eq!(writer.written(), 10_000);
        assert_eq!(writer.seal().await.unwrap(), sha(&data));
        assert_eq!(writer.state().part_ids.len(), 10);
        assert!(stored <= 10);
        assert_eq!(writer.complete().await.unwrap().size, 10_000);
        assert_eq!(read_all(&blobs, "uploads/a").await, data);
    }

    #[tokio::test]
    async fn a_write_cut_anywhere_resumes_from_its_last_part() {
        let (_dir, blobs) = store();
        let data: Vec<u8> = (0..5_500u32).map(|i| (i * 7 % 256) as u8).collect();
        let mut writer = PartWriter::begin(Arc::clone(&blobs), "uploads/b", 1000)
            .await
            .unwrap();
        writer.write(&data[..3_700]).await.unwrap();
        // Let the parts in flight land, as a checkpointing caller would see them.
        while writer.in_flight.front().is_some() {
            writer.settle_one().await.unwrap();
        }
        let state = writer.state().clone();
        assert_eq!(state.stored(), 3_000);
        drop(writer); // the process dies: the buffered 700 bytes are gone

        let mut resumed = PartWriter::resume(Arc::clone(&blobs), state.clone()).unwrap();
        resumed
            .write(&data[state.stored() as usize..])
            .await
            .unwrap();
        assert_eq!(resumed.seal().await.unwrap(), sha(&data));
        resumed.complete().await.unwrap();
        assert_eq!(read_all(&blobs, "uploads/b").await, data);

        let mut damaged = state;
        damaged.hasher.truncate(3);
        assert!(PartWriter::resume(blobs, damaged).is_err());
    }

    #[tokio::test]
    async fn empty_objects_and_aborts() {
        let (dir, blobs) = store();
        let mut writer = PartWriter::begin(Arc::clone(&blobs), "uploads/empty", 1000)
            .await
            .unwrap();
        assert_eq!(writer.seal().await.unwrap(), sha(b""));
        assert_eq!(writer.complete().await.unwrap().size, 0);
        assert!(read_all(&blobs, "uploads/empty").await.is_empty());

        let mut writer = PartWriter::begin(Arc::clone(&blobs), "uploads/gone", 4)
            .await
            .unwrap();
        writer.write(b"abcdefgh").await.unwrap();
        writer.abort().await.unwrap();
        assert!(
            blobs
                .head(&ObjectRef::stored("uploads/gone"))
                .await
                .is_err()
        );
        let leftovers = std::fs::read_dir(dir.path().join(".multipart"))
            .unwrap()
            .count();
        assert_eq!(leftovers, 0, "an aborted write leaves nothing");
    }
}
