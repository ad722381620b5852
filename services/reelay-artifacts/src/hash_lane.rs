//! SHA-256 beside the bytes: each piece is hashed in a short blocking task while the caller moves
//! the next one, so the hash — a core's worth of work at ~1.8 GB/s on the machines measured, which
//! done inline held each transfer's task for as long again as the bytes took to arrive — overlaps
//! with the transfer instead of following it.
//!
//! One piece is hashed at a time, in order: the task hashing a piece hands the hasher back, and the
//! next piece waits for it. No thread is held between pieces, so a transfer that stalls (a slow
//! client) keeps no thread of the blocking pool.

use bytes::Bytes;
use sha2::digest::common::hazmat::SerializableState;
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::error::ArtifactError;

/// A SHA-256 over the pieces given, in order.
#[derive(Debug)]
pub(crate) struct HashLane {
    /// `None` only while a call of this lane runs.
    lane: Option<Lane>,
}

#[derive(Debug)]
enum Lane {
    Idle(Box<Sha256>),
    /// Hashing the last piece given; hands the hasher back.
    Busy(JoinHandle<Box<Sha256>>),
}

impl HashLane {
    /// Hashes on from `hasher` (fresh, or the state of bytes hashed before).
    pub(crate) fn start(hasher: Sha256) -> Self {
        HashLane {
            lane: Some(Lane::Idle(Box::new(hasher))),
        }
    }

    /// Hashes `data` after every piece given before (waiting, if need be, for the previous one).
    pub(crate) async fn update(&mut self, data: Bytes) -> Result<(), ArtifactError> {
        self.feed(data, None).await
    }

    /// As [`HashLane::update`]; the hasher's state after `data` comes once it is hashed.
    pub(crate) async fn update_then_state(
        &mut self,
        data: Bytes,
    ) -> Result<PendingState, ArtifactError> {
        let (reply, state) = oneshot::channel();
        self.feed(data, Some(reply)).await?;
        Ok(PendingState(state))
    }

    /// The hex SHA-256 of every piece given.
    pub(crate) async fn finish(mut self) -> Result<String, ArtifactError> {
        Ok(hex::encode(self.hasher().await?.finalize()))
    }

    async fn feed(
        &mut self,
        data: Bytes,
        state: Option<oneshot::Sender<Vec<u8>>>,
    ) -> Result<(), ArtifactError> {
        let mut hasher = self.hasher().await?;
        self.lane = Some(Lane::Busy(tokio::task::spawn_blocking(move || {
            hasher.update(&data);
            if let Some(reply) = state {
                let _ = reply.send(hasher.serialize().to_vec());
            }
            hasher
        })));
        Ok(())
    }

    /// The hasher, once every piece given is hashed (the lane is empty until it is put back).
    async fn hasher(&mut self) -> Result<Box<Sha256>, ArtifactError> {
        match self.lane.take() {
            Some(Lane::Idle(hasher)) => Ok(hasher),
            Some(Lane::Busy(task)) => task.await.map_err(|_| ended()),
            None => Err(ended()),
        }
    }
}

/// A hasher state asked for with [`HashLane::update_then_state`].
#[derive(Debug)]
pub(crate) struct PendingState(oneshot::Receiver<Vec<u8>>);

impl PendingState {
    /// The serialized state (see [`hasher_at`]).
    pub(crate) async fn wait(self) -> Result<Vec<u8>, ArtifactError> {
        self.0.await.map_err(|_| ended())
    }
}

fn ended() -> ArtifactError {
    ArtifactError::Unavailable("the hashing task failed".to_owned())
}

/// The hasher a serialized state (of [`HashLane::update_then_state`]) stands for.
pub(crate) fn hasher_at(serialized: &[u8]) -> Result<Sha256, ArtifactError> {
    let damaged =
        || ArtifactError::Invalid("a resume point with a damaged SHA-256 state".to_owned());
    let serialized = serialized.try_into().map_err(|_| damaged())?;
    Sha256::deserialize(serialized).map_err(|_| damaged())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_in_order_with_states_between() {
        let mut lane = HashLane::start(Sha256::new());
        let middle = lane
            .update_then_state(Bytes::from_static(b"hello "))
            .await
            .unwrap();
        for _ in 0..10 {
            lane.update(Bytes::from_static(b"world")).await.unwrap();
        }
        let whole = format!("hello {}", "world".repeat(10));
        assert_eq!(
            lane.finish().await.unwrap(),
            hex::encode(Sha256::digest(whole.as_bytes()))
        );
        // The state taken in the middle goes on from "hello ".
        let mut resumed = hasher_at(&middle.wait().await.unwrap()).unwrap();
        resumed.update(b"again");
        assert_eq!(resumed.finalize(), Sha256::digest(b"hello again"));
        assert!(hasher_at(b"short").is_err());
    }
}
