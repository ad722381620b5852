//! Retention: finished jobs, their history, logs and outputs are removed once `expires_at` passes.
//!
//! A timer sleeps until the first expiry (at most ten minutes, so jobs that finish meanwhile are
//! not kept long past theirs) and asks the engine to remove what is due.

use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use crate::engine::{Command, Engine};
use crate::store::JobStore;

const MAX_SLEEP: Duration = Duration::from_secs(600);

pub(crate) async fn run(engine: Engine, store: JobStore, shutdown: CancellationToken) {
    loop {
        let next = store
            .expiring(1)
            .ok()
            .and_then(|due| due.first().map(|(at, _)| *at));
        let sleep = match next {
            Some(at) => at
                .duration_since(SystemTime::now())
                .unwrap_or_default()
                .min(MAX_SLEEP),
            None => MAX_SLEEP,
        };
        tokio::select! {
            () = tokio::time::sleep(sleep) => {}
            () = shutdown.cancelled() => return,
        }
        engine.send(Command::Expire).await;
        // Let the engine work through the batch before looking again.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
