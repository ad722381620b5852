//! The janitor of the artifact store: removes the objects of deleted jobs and expired uploads.
//!
//! A job's deletion (by a user or by retention) writes its objects' key prefix to the `gc` tree in
//! the same batch that deletes the job, and wakes the janitor. The janitor deletes the objects, then
//! the entry; a store that does not answer keeps the entry for the next round, so nothing is
//! forgotten across failures or restarts. Uploads past their expiry go in the same rounds.

use std::ops::Bound;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reelay_artifacts::Blobs;
use reelay_store::{Direction, WriteBatch};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::store::{GC, JobStore};
use crate::uploads::Uploads;

/// A round at least this often (uploads expire without anyone waking the janitor).
const ROUND: Duration = Duration::from_secs(600);
/// After a round that left work undone (the store did not answer).
const RETRY: Duration = Duration::from_secs(30);

pub(crate) async fn run(
    store: JobStore,
    uploads: Arc<Uploads>,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) {
    loop {
        let blobs = Arc::clone(uploads.blobs());
        let left = collect(&store, blobs.as_ref()).await;
        if let Err(err) = uploads.expire(SystemTime::now()).await {
            tracing::warn!(error = %err, "cannot remove expired uploads");
        }
        let pause = if left { RETRY } else { ROUND };
        tokio::select! {
            () = wake.notified() => {}
            () = tokio::time::sleep(pause) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

/// Deletes the objects the `gc` tree lists; whether some are left for later.
async fn collect(store: &JobStore, blobs: &dyn Blobs) -> bool {
    let entries: Vec<(Vec<u8>, Vec<u8>)> =
        match store
            .raw()
            .scan(GC, Bound::Unbounded, Bound::Unbounded, Direction::Forward)
        {
            Ok(entries) => entries.filter_map(Result::ok).collect(),
            Err(err) => {
                tracing::warn!(error = %err, "cannot read the gc tree");
                return true;
            }
        };
    let mut left = false;
    for (key, prefix) in entries {
        let prefix = String::from_utf8_lossy(&prefix).into_owned();
        match blobs.delete_prefix(&prefix).await {
            Ok(deleted) => {
                tracing::debug!(%prefix, deleted, "removed a deleted job's objects");
                let mut batch = WriteBatch::default();
                batch.delete(GC, key);
                if let Err(err) = store.raw().commit(&batch) {
                    tracing::warn!(error = %err, "cannot update the gc tree");
                }
            }
            Err(err) => {
                tracing::warn!(%prefix, error = %err, "cannot remove a deleted job's objects yet");
                left = true;
            }
        }
    }
    left
}
