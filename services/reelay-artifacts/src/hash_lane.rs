//! SHA-256 on a blocking thread of its own, fed in order: the hash of what a transfer moves
//! overlaps with moving it instead of following it — a core's worth of work at ~1.8 GB/s on the
//! machines measured, done inline it held each transfer's task for as long again as the bytes
//! took to arrive.

use bytes::Bytes;
use sha2::digest::common::hazmat::SerializableState;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

use crate::error::ArtifactError;

/// Bytes (or state requests) waiting for the thread, at most: a sender that outruns the hash
/// waits instead of queueing memory.
const QUEUED: usize = 2;

enum Op {
    Update(Bytes),
    /// The hasher's state after every update sent before.
    State(oneshot::Sender<Vec<u8>>),
}

/// A SHA-256 taken on a blocking thread; the thread ends when the lane is dropped.
#[derive(Debug)]
pub(crate) struct HashLane {
    ops: mpsc::Sender<Op>,
}

impl HashLane {
    /// Hashes on from `hasher` (fresh, or the state of bytes hashed before).
    pub(crate) fn start(mut hasher: Sha256) -> Self {
        let (ops, mut received) = mpsc::channel(QUEUED);
        tokio::task::spawn_blocking(move || {
            while let Some(op) = received.blocking_recv() {
                match op {
                    Op::Update(data) => hasher.update(&data),
                    Op::State(reply) => {
                        let _ = reply.send(hasher.serialize().to_vec());
                    }
                }
            }
        });
        HashLane { ops }
    }

    /// Hashes `data` after everything sent before; waits while the thread is [`QUEUED`] behind.
    pub(crate) async fn update(&self, data: Bytes) -> Result<(), ArtifactError> {
        self.ops.send(Op::Update(data)).await.map_err(|_| ended())
    }

    /// The state after everything sent so far, to be awaited once the thread got there.
    pub(crate) async fn state(&self) -> Result<PendingState, ArtifactError> {
        let (reply, state) = oneshot::channel();
        self.ops.send(Op::State(reply)).await.map_err(|_| ended())?;
        Ok(PendingState(state))
    }

    /// The hex SHA-256 of everything sent.
    pub(crate) async fn finish(self) -> Result<String, ArtifactError> {
        let state = self.state().await?.wait().await?;
        Ok(hex::encode(hasher_at(&state)?.finalize()))
    }
}

/// A hasher state asked for with [`HashLane::state`].
#[derive(Debug)]
pub(crate) struct PendingState(oneshot::Receiver<Vec<u8>>);

impl PendingState {
    /// The serialized state (see [`hasher_at`]).
    pub(crate) async fn wait(self) -> Result<Vec<u8>, ArtifactError> {
        self.0.await.map_err(|_| ended())
    }
}

fn ended() -> ArtifactError {
    ArtifactError::Unavailable("the hashing task ended".to_owned())
}

/// The hasher a serialized state (of [`HashLane::state`]) stands for.
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
        let lane = HashLane::start(Sha256::new());
        lane.update(Bytes::from_static(b"hello ")).await.unwrap();
        let middle = lane.state().await.unwrap();
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
