//! The worker's `StreamEvents` stream: the node's own event, then the event log after a cursor,
//! then each event as it is appended.
//!
//! The stream reads the log where the server polls it (its connection task), not in a task of its
//! own that hands events over through a channel: one thread hand-off fewer between a pipeline's
//! line and the coordinator. It also means a client that leaves (cancel, deadline, closed
//! connection) frees the stream at once, however quiet the log: the server drops the stream, and
//! with it its subscriptions and its [`OpenStream`] guard. On shutdown the stream ends with
//! `UNAVAILABLE`.

use std::collections::VecDeque;
use std::sync::Arc;

use futures::Stream;
use reelay_proto::v1;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tonic::Status;

use crate::metrics::OpenStream;
use crate::supervisor::Supervisor;

/// Events read from the log at a time.
const READ_BATCH: usize = 512;

/// Notifies `ended` when dropped: the stream ended (the coordinator went away, or an error), unless
/// the worker is shutting down.
struct EndSignal {
    ended: Arc<Notify>,
    shutdown: CancellationToken,
}

impl Drop for EndSignal {
    fn drop(&mut self) {
        if !self.shutdown.is_cancelled() {
            self.ended.notify_one();
        }
    }
}

struct State {
    supervisor: Arc<Supervisor>,
    appended: watch::Receiver<u64>,
    condition: watch::Receiver<Option<String>>,
    cursor: u64,
    pending: VecDeque<v1::WorkerEvent>,
    node_event_due: bool,
    /// Set once the stream's last item (an error) was returned.
    finished: bool,
    /// Also holds the shutdown token the stream ends on.
    end: EndSignal,
    /// Counts the stream in `/metrics` while it lives.
    _open: OpenStream,
}

/// Every event after `after_seq`, live, until the client goes away or `shutdown`. `ended` is
/// notified when the stream is dropped, unless the worker is shutting down; `open` counts it.
pub fn events(
    supervisor: Arc<Supervisor>,
    after_seq: u64,
    (ended, shutdown): (Arc<Notify>, CancellationToken),
    open: OpenStream,
) -> impl Stream<Item = Result<v1::WorkerEvent, Status>> + Send + 'static {
    let appended = supervisor.log().subscribe();
    let mut condition = supervisor.condition.subscribe();
    condition.borrow_and_update();
    let state = State {
        supervisor,
        appended,
        condition,
        cursor: after_seq,
        pending: VecDeque::new(),
        node_event_due: true,
        finished: false,
        end: EndSignal { ended, shutdown },
        _open: open,
    };
    futures::stream::unfold(state, next)
}

async fn next(mut state: State) -> Option<(Result<v1::WorkerEvent, Status>, State)> {
    if state.finished {
        return None;
    }
    if state.end.shutdown.is_cancelled() {
        return Some(shutting_down(state));
    }
    loop {
        if std::mem::take(&mut state.node_event_due) {
            let event = node_event(&state.supervisor).await;
            return Some((Ok(event), state));
        }
        if let Some(event) = state.pending.pop_front() {
            state.cursor = event.seq;
            return Some((Ok(event), state));
        }
        // Marked seen before reading, so an append during the read wakes the wait below. Only
        // what may be streamed is read: a state change waits for its flush (`visibility`).
        let visible = *state.appended.borrow_and_update();
        match state
            .supervisor
            .log()
            .read_between(state.cursor, visible, READ_BATCH)
        {
            Ok(events) if !events.is_empty() => {
                state.pending.extend(events);
                continue;
            }
            Ok(_) => {}
            Err(err) => {
                state.finished = true;
                return Some((Err(err.into()), state));
            }
        }
        tokio::select! {
            changed = state.appended.changed() => if changed.is_err() { return None },
            changed = state.condition.changed() => {
                if changed.is_err() {
                    return None;
                }
                state.node_event_due = true;
            }
            () = state.end.shutdown.cancelled() => return Some(shutting_down(state)),
        }
    }
}

/// The stream's last item when the worker shuts down: the coordinator reconnects from its cursor.
fn shutting_down(mut state: State) -> (Result<v1::WorkerEvent, Status>, State) {
    state.finished = true;
    let status = Status::unavailable("the worker is shutting down: reconnect to resume");
    (Err(status), state)
}

/// The node's own event: its info, not part of the log (`seq` = 0).
async fn node_event(supervisor: &Supervisor) -> v1::WorkerEvent {
    v1::WorkerEvent {
        kind: v1::WorkerEventKind::Node as i32,
        info: Some(supervisor.info().await),
        time: Some(reelay_proto::convert::timestamp(
            std::time::SystemTime::now(),
        )),
        ..Default::default()
    }
}
