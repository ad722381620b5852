//! Following jobs through WatchJob the way a client should: resume with `after_version` when the
//! stream breaks (a coordinator restart), never see a version twice.

use std::time::Duration;

use reelay_proto::v1;
use reelay_proto::v1::job_service_client::JobServiceClient;

use crate::connect::{AuthChannel, Connect};

pub fn is_terminal(state: i32) -> bool {
    [
        v1::JobState::Succeeded,
        v1::JobState::Failed,
        v1::JobState::Cancelled,
    ]
    .iter()
    .any(|s| *s as i32 == state)
}

async fn connect(target: &Connect) -> Option<JobServiceClient<AuthChannel>> {
    let channel = target.try_channel().await.ok()?;
    Some(JobServiceClient::with_interceptor(channel, target.auth()))
}

/// Events of job `id` until it is terminal, resuming across broken streams.
pub async fn until_terminal(url: String, id: String) -> Vec<v1::JobEvent> {
    until_terminal_at(Connect::plain(&url), id).await
}

/// [`until_terminal`] with a token or TLS.
pub async fn until_terminal_at(target: Connect, id: String) -> Vec<v1::JobEvent> {
    let mut events = Vec::new();
    follow(&target, &id, |event| {
        events.push(event.clone());
        event.job.as_ref().is_some_and(|job| is_terminal(job.state))
    })
    .await;
    events
}

/// The job once `predicate` holds.
pub async fn until(url: String, id: String, predicate: impl Fn(&v1::Job) -> bool) -> v1::Job {
    until_at(Connect::plain(&url), id, predicate).await
}

/// [`until`] with a token or TLS.
pub async fn until_at(
    target: Connect,
    id: String,
    predicate: impl Fn(&v1::Job) -> bool,
) -> v1::Job {
    let mut found = None;
    follow(&target, &id, |event| match &event.job {
        Some(job) if predicate(job) => {
            found = Some(job.clone());
            true
        }
        _ => false,
    })
    .await;
    found.unwrap_or_default()
}

/// Calls `on_event` for each event (snapshot first) until it returns true. Versions never repeat:
/// after a break the watch resumes after the last version seen.
async fn follow(target: &Connect, id: &str, mut on_event: impl FnMut(&v1::JobEvent) -> bool) {
    let mut last = 0;
    loop {
        if let Some(mut client) = connect(target).await {
            let request = v1::WatchJobRequest {
                id: id.to_owned(),
                after_version: last,
            };
            if let Ok(response) = client.watch_job(request).await {
                let mut stream = response.into_inner();
                while let Ok(Some(event)) = stream.message().await {
                    assert!(
                        event.version > last
                            || (last == 0 && event.change == v1::JobChange::Snapshot as i32),
                        "version {} after {last}: a repeat",
                        event.version
                    );
                    last = event.version;
                    if on_event(&event) {
                        return;
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The versions of a job's history must be 1, 2, 3 … without gaps or repeats.
pub fn assert_contiguous(history: &[v1::JobEvent]) {
    for (index, event) in history.iter().enumerate() {
        assert_eq!(
            event.version,
            index as u64 + 1,
            "history of job {} has a gap or repeat at {index}: {history:#?}",
            event.job_id
        );
    }
}
