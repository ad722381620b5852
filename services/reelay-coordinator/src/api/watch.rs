//! The streams of JobService and NodeService: one job's changes, every job's changes, one job's
//! log lines, the nodes.
//!
//! Each stream subscribes to the hub *before* it reads storage, then skips what storage already
//! gave it (by version or line number): nothing is missed between the read and the live feed, and
//! nothing is sent twice. A watcher that lags behind the hub resyncs from storage. Each stream's
//! loop runs under [`Tx::run`], which drops it when the client leaves or the server shuts down, so
//! a quiet feed never keeps a departed client's task and subscription.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use reelay_core::{JobId, JobState};
use reelay_proto::convert::{job_state, timestamp};
use reelay_proto::v1;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;
use tonic::Status;

use super::stream::{Gone, Tx};
use super::{ApiState, LIST_POSITION_CAP, ServerStream};
use crate::metrics::StreamKind;

/// Snapshots of active jobs sent at most when WatchJobs starts (or resyncs).
const SNAPSHOT_LIMIT: usize = 1000;
/// Log lines read from storage per round.
const LOG_CHUNK: usize = 1000;

/// A stream of `kind` towards a client: its sending side and the response stream.
fn client_channel<T: Send + 'static>(
    state: &ApiState,
    kind: StreamKind,
) -> (Tx<T>, ServerStream<T>) {
    super::stream::channel(&state.streams, kind, state.shutdown.clone())
}

fn is_terminal(event: &v1::JobEvent) -> bool {
    event
        .job
        .as_ref()
        .is_some_and(|job| job_state(job.state, "state").is_ok_and(JobState::is_terminal))
}

/// A snapshot event of a job as clients see it.
fn snapshot(job: v1::Job) -> v1::JobEvent {
    v1::JobEvent {
        job_id: job.id.clone(),
        version: job.version,
        job: Some(job),
        change: v1::JobChange::Snapshot as i32,
        previous_state: 0,
        time: Some(timestamp(std::time::SystemTime::now())),
    }
}

/// WatchJob: a snapshot (or the history after `after_version`), then each change; ends after a
/// terminal state or the job's deletion.
pub(crate) fn job(
    state: ApiState,
    id: JobId,
    after_version: u64,
) -> Result<ServerStream<v1::JobEvent>, Status> {
    let live = state.hub.subscribe_job(id);
    let checked = state
        .store
        .require_job(id)
        .map_err(Status::from)
        .and_then(|job| {
            if after_version > job.version {
                return Err(Status::out_of_range(format!(
                    "after_version: {after_version} is ahead of job {id}, which is at version {}",
                    job.version
                )));
            }
            Ok(job)
        });
    let job = match checked {
        Ok(job) => job,
        Err(status) => {
            drop(live);
            state.hub.release(id);
            return Err(status);
        }
    };
    let (tx, stream) = client_channel(&state, StreamKind::WatchJob);
    // Boxed: a task keeps its arguments for its whole life, and a job is large (~0.8 KiB).
    let job = Box::new(job);
    tokio::spawn(async move {
        let hub = Arc::clone(&state.hub);
        tx.run(follow_job(&state, id, job, after_version, live, &tx))
            .await;
        drop(tx);
        hub.release(id);
    });
    Ok(stream)
}

async fn follow_job(
    state: &ApiState,
    id: JobId,
    job: Box<reelay_core::Job>,
    after_version: u64,
    mut live: broadcast::Receiver<Arc<v1::JobEvent>>,
    tx: &Tx<v1::JobEvent>,
) -> Result<(), Gone> {
    // The first part (snapshot or history) runs boxed, so the long wait below keeps only what it
    // needs: an idle watcher is small.
    let Some(mut last) = Box::pin(send_first(state, id, *job, after_version, tx)).await? else {
        return Ok(());
    };
    loop {
        let event = match live.recv().await {
            Ok(event) => event,
            Err(RecvError::Lagged(_)) => match state.store.job(id) {
                Ok(Some(job)) => Arc::new(snapshot(state.view(&job))),
                _ => return Ok(()),
            },
            Err(RecvError::Closed) => return Ok(()),
        };
        if event.version <= last {
            continue;
        }
        last = event.version;
        let done = is_terminal(&event) || event.change == v1::JobChange::Deleted as i32;
        tx.send(Ok((*event).clone())).await?;
        if done {
            return Ok(());
        }
    }
}

/// Sends WatchJob's first part: a snapshot, or the history after `after_version`. Returns the last
/// version sent, or `None` when the stream is over (the job is finished, or storage failed).
async fn send_first(
    state: &ApiState,
    id: JobId,
    job: reelay_core::Job,
    after_version: u64,
    tx: &Tx<v1::JobEvent>,
) -> Result<Option<u64>, Gone> {
    let mut last = after_version;
    let first: Vec<v1::JobEvent> = if after_version == 0 {
        vec![snapshot(state.view(&job))]
    } else {
        match state.store.events_after(id, after_version, usize::MAX) {
            Ok(events) => events,
            Err(err) => {
                tx.send(Err(err.into())).await?;
                return Ok(None);
            }
        }
    };
    for event in first {
        last = last.max(event.version);
        let done = is_terminal(&event) && event.version >= job.version;
        tx.send(Ok(event)).await?;
        if done {
            return Ok(None);
        }
    }
    if job.state.is_terminal() && last >= job.version {
        return Ok(None);
    }
    Ok(Some(last))
}

/// WatchJobs: snapshots of the active jobs (newest first, bounded), then every change of jobs in
/// `states` (all when empty). A change is sent when the job is in a wanted state before or after it.
pub(crate) fn jobs(
    state: ApiState,
    states: BTreeSet<JobState>,
    snapshots: bool,
) -> ServerStream<v1::JobEvent> {
    let live = state.hub.subscribe_all();
    let (tx, stream) = client_channel(&state, StreamKind::WatchJobs);
    tokio::spawn(async move {
        tx.run(follow_all(&state, &states, snapshots, live, &tx))
            .await;
    });
    stream
}

async fn follow_all(
    state: &ApiState,
    states: &BTreeSet<JobState>,
    snapshots: bool,
    mut live: broadcast::Receiver<Arc<v1::JobEvent>>,
    tx: &Tx<v1::JobEvent>,
) -> Result<(), Gone> {
    let mut seen = HashMap::new();
    if snapshots {
        send_active(state, states, tx, &mut seen).await?;
    }
    let wanted = |value: i32| {
        states.is_empty() || job_state(value, "state").is_ok_and(|s| states.contains(&s))
    };
    loop {
        let event = match live.recv().await {
            Ok(event) => event,
            Err(RecvError::Lagged(_)) => {
                seen.clear();
                send_active(state, states, tx, &mut seen).await?;
                continue;
            }
            Err(RecvError::Closed) => return Ok(()),
        };
        let Ok(id) = JobId::parse(&event.job_id, "job_id") else {
            continue;
        };
        if seen
            .get(&id)
            .is_some_and(|version| event.version <= *version)
        {
            continue;
        }
        seen.remove(&id);
        let now_wanted = event.job.as_ref().is_some_and(|job| wanted(job.state));
        if now_wanted || wanted(event.previous_state) {
            tx.send(Ok((*event).clone())).await?;
        }
    }
}

/// Sends snapshots of active jobs in `states`; records the versions sent in `seen`.
async fn send_active(
    state: &ApiState,
    states: &BTreeSet<JobState>,
    tx: &Tx<v1::JobEvent>,
    seen: &mut HashMap<JobId, u64>,
) -> Result<(), Gone> {
    let mut remaining = SNAPSHOT_LIMIT;
    for active in [JobState::Running, JobState::Assigned, JobState::Queued] {
        if !states.is_empty() && !states.contains(&active) {
            continue;
        }
        let ids = match state.store.ids_in_state(active, None, remaining) {
            Ok(ids) => ids,
            Err(err) => return tx.send(Err(err.into())).await,
        };
        let jobs: Vec<reelay_core::Job> = ids
            .into_iter()
            .filter_map(|id| state.store.job(id).ok().flatten())
            .collect();
        for job in state.views(&jobs, LIST_POSITION_CAP) {
            if let Ok(id) = JobId::parse(&job.id, "id") {
                seen.insert(id, job.version);
            }
            tx.send(Ok(snapshot(job))).await?;
            remaining -= 1;
        }
        if remaining == 0 {
            break;
        }
    }
    Ok(())
}

/// GetJobLogs: stored lines after `after_line`; with `follow`, then new lines until the job is
/// finished and every line is sent.
pub(crate) fn logs(
    state: ApiState,
    id: JobId,
    after_line: u64,
    follow: bool,
) -> Result<ServerStream<v1::LogLine>, Status> {
    let feeds = (state.hub.subscribe_logs(id), state.hub.subscribe_job(id));
    let job = match check_log_cursor(&state, id, after_line) {
        Ok(job) => job,
        Err(status) => {
            drop(feeds);
            state.hub.release(id);
            return Err(status);
        }
    };
    // Only whether the job is finished goes into the task, which keeps what it captures for its
    // whole life (a job is ~0.8 KiB).
    let finished = job.state.is_terminal();
    let (tx, stream) = client_channel(&state, StreamKind::GetJobLogs);
    tokio::spawn(async move {
        let hub = Arc::clone(&state.hub);
        tx.run(follow_logs(
            &state,
            id,
            finished,
            (after_line, follow),
            feeds,
            &tx,
        ))
        .await;
        drop(tx);
        hub.release(id);
    });
    Ok(stream)
}

/// The job, if `after_line` is a line of its log (or 0). A line a client was sent is stored
/// first, so a cursor past the last line is no cursor of this log: following it would skip every
/// line to come.
fn check_log_cursor(
    state: &ApiState,
    id: JobId,
    after_line: u64,
) -> Result<reelay_core::Job, Status> {
    let job = state.store.require_job(id)?;
    let lines = state.store.log_mark(id)?.total;
    if after_line > lines {
        return Err(Status::out_of_range(format!(
            "after_line: {after_line} is past the end of the log of job {id}, which has {lines} lines"
        )));
    }
    Ok(job)
}

/// A job's log lines and its changes, subscribed to before storage is read.
type LogFeeds = (
    broadcast::Receiver<Arc<v1::LogLine>>,
    broadcast::Receiver<Arc<v1::JobEvent>>,
);

/// What a log follower waits for: a new line or a change of the job.
enum LogFeed {
    Line(Result<Arc<v1::LogLine>, RecvError>),
    Change(Result<Arc<v1::JobEvent>, RecvError>),
}

async fn follow_logs(
    state: &ApiState,
    id: JobId,
    finished: bool,
    (after_line, follow): (u64, bool),
    (mut lines, mut changes): LogFeeds,
    tx: &Tx<v1::LogLine>,
) -> Result<(), Gone> {
    let mut last = after_line;
    let complete = send_stored(state, id, &mut last, tx).await?;
    if !complete || !follow || finished {
        return Ok(());
    }
    loop {
        let feed = tokio::select! {
            line = lines.recv() => LogFeed::Line(line),
            change = changes.recv() => LogFeed::Change(change),
        };
        match feed {
            LogFeed::Line(Ok(line)) if line.number <= last => {}
            LogFeed::Line(Ok(line)) if line.number == last + 1 => {
                last = line.number;
                tx.send(Ok((*line).clone())).await?;
            }
            // A gap (lag, or lines stored before we subscribed): read them from storage.
            LogFeed::Line(Ok(_) | Err(RecvError::Lagged(_))) => {
                if !send_stored(state, id, &mut last, tx).await? {
                    return Ok(());
                }
            }
            LogFeed::Change(Ok(event))
                if is_terminal(&event) || event.change == v1::JobChange::Deleted as i32 =>
            {
                // Every line of the attempt is stored before its end: send the rest and stop.
                send_stored(state, id, &mut last, tx).await?;
                return Ok(());
            }
            LogFeed::Change(Ok(_) | Err(RecvError::Lagged(_))) => {}
            LogFeed::Line(Err(RecvError::Closed)) | LogFeed::Change(Err(RecvError::Closed)) => {
                return Ok(());
            }
        }
    }
}

/// Sends the stored lines after `last`, advancing it. `Ok(false)` when storage failed (the client
/// was sent the error, and the stream is over).
async fn send_stored(
    state: &ApiState,
    id: JobId,
    last: &mut u64,
    tx: &Tx<v1::LogLine>,
) -> Result<bool, Gone> {
    loop {
        let lines = match state.store.logs_after(id, *last, LOG_CHUNK) {
            Ok(lines) => lines,
            Err(err) => {
                tx.send(Err(err.into())).await?;
                return Ok(false);
            }
        };
        let count = lines.len();
        for line in lines {
            *last = line.number;
            tx.send(Ok(line)).await?;
        }
        if count < LOG_CHUNK {
            return Ok(true);
        }
    }
}

/// WatchNodes: every node as last published, `synced`, then each change. A watcher that lags
/// gets every node again, `removed` for those it knew that are gone, and `synced`.
pub(crate) fn nodes(state: ApiState) -> ServerStream<v1::NodeEvent> {
    let (first, live) = state.hub.subscribe_nodes();
    let (tx, stream) = client_channel(&state, StreamKind::WatchNodes);
    tokio::spawn(async move {
        tx.run(follow_nodes(&state, first, live, &tx)).await;
    });
    stream
}

async fn follow_nodes(
    state: &ApiState,
    first: Vec<v1::Node>,
    mut live: broadcast::Receiver<Arc<v1::NodeEvent>>,
    tx: &Tx<v1::NodeEvent>,
) -> Result<(), Gone> {
    let mut known = std::collections::HashSet::new();
    send_all_nodes(first, &mut known, tx).await?;
    loop {
        match live.recv().await {
            Ok(event) => {
                if let Some(node) = &event.node {
                    if event.removed {
                        known.remove(&node.id);
                    } else {
                        known.insert(node.id.clone());
                    }
                }
                tx.send(Ok((*event).clone())).await?;
            }
            Err(RecvError::Lagged(_)) => {
                let (nodes, resubscribed) = state.hub.subscribe_nodes();
                live = resubscribed;
                send_all_nodes(nodes, &mut known, tx).await?;
            }
            Err(RecvError::Closed) => return Ok(()),
        }
    }
}

/// Sends `nodes`, `removed` for the ids in `known` not among them, then `synced`.
async fn send_all_nodes(
    nodes: Vec<v1::Node>,
    known: &mut std::collections::HashSet<String>,
    tx: &Tx<v1::NodeEvent>,
) -> Result<(), Gone> {
    let ids: std::collections::HashSet<String> = nodes.iter().map(|node| node.id.clone()).collect();
    for id in known.difference(&ids) {
        let gone = v1::Node {
            id: id.clone(),
            ..Default::default()
        };
        tx.send(Ok(v1::NodeEvent {
            node: Some(gone),
            removed: true,
            synced: false,
        }))
        .await?;
    }
    for node in nodes {
        tx.send(Ok(v1::NodeEvent {
            node: Some(node),
            removed: false,
            synced: false,
        }))
        .await?;
    }
    *known = ids;
    tx.send(Ok(v1::NodeEvent {
        node: None,
        removed: false,
        synced: true,
    }))
    .await
}
