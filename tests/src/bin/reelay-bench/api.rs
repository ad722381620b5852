//! Reelay's figures, measured through its public API against real processes on loopback.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reelay_proto::v1;
use reelay_tests::process::rss_mib;
use reelay_tests::{TestCluster, spec};
use tokio::sync::Notify;

use crate::stats::quantile;

/// A pipeline that prints a progress line with the time it printed it (taken just before the
/// write), every 20 ms.
pub const TICK_PIPELINE: &str = r#"
[[pipeline]]
name = "tick"
command = ["python3", "-u", "-c", """
import os, sys, time
ticks = int(os.environ["REELAY_PARAM_TICKS"])
for i in range(1, ticks + 1):
    sys.stdout.write(f"::progress {i * 100 // ticks} tick t={time.time_ns()}\\n")
    sys.stdout.flush()
    time.sleep(0.02)
"""]
input_required = false
params = [ { name = "ticks", default = "200", pattern = "[0-9]{1,5}" } ]

[[pipeline]]
name = "noop"
command = ["true"]
input_required = false
"#;

fn request(n: usize) -> v1::CreateJobRequest {
    v1::CreateJobRequest {
        spec: Some(spec("noop", &[])),
        request_id: format!("bench-{n}"),
    }
}

/// Durable creates per second with `clients` concurrent clients, `jobs` in all.
pub async fn create_throughput(
    cluster: &TestCluster,
    jobs: usize,
    clients: usize,
    offset: usize,
) -> f64 {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..clients {
        let mut jobs_client = cluster.jobs().await;
        tasks.push(tokio::spawn(async move {
            for n in (client..jobs).step_by(clients) {
                jobs_client
                    .create_job(request(offset + n))
                    .await
                    .expect("create");
            }
        }));
    }
    for task in tasks {
        task.await.expect("client task");
    }
    jobs as f64 / started.elapsed().as_secs_f64()
}

/// p50 and p99 of one client's CreateJob calls in a row.
pub async fn create_latency(cluster: &TestCluster, calls: usize) -> (Duration, Duration) {
    let mut client = cluster.jobs().await;
    let mut samples = Vec::with_capacity(calls);
    for n in 0..calls {
        let started = Instant::now();
        client
            .create_job(request(10_000_000 + n))
            .await
            .expect("create");
        samples.push(started.elapsed());
    }
    (quantile(&mut samples, 0.5), quantile(&mut samples, 0.99))
}

/// p50 of one client's GetJob calls in a row (a job created for it): a call through the same
/// server that stores nothing.
pub async fn read_latency(cluster: &TestCluster, calls: usize) -> Duration {
    let mut client = cluster.jobs().await;
    let id = cluster.submit("noop", &[]).await.id;
    let mut samples = Vec::with_capacity(calls);
    for _ in 0..calls {
        let started = Instant::now();
        client
            .get_job(v1::GetJobRequest { id: id.clone() })
            .await
            .expect("get");
        samples.push(started.elapsed());
    }
    quantile(&mut samples, 0.5)
}

pub fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos()
}

/// The time a tick pipeline printed into `stage`, in ns since the epoch.
pub fn printed_at(stage: &str) -> Option<u128> {
    stage.split("t=").nth(1).and_then(|t| t.trim().parse().ok())
}

/// Time from `printed` (ns since the epoch) to `at`.
fn since(printed: u128, at: &prost_types::Timestamp) -> Duration {
    let at = at.seconds.max(0) as u128 * 1_000_000_000 + at.nanos.max(0) as u128;
    Duration::from_nanos(at.saturating_sub(printed) as u64)
}

/// Progress latencies: p50 and p99 at a WatchJob client of the coordinator and, to split the
/// path, p50s inside the worker (line read, event stored, event at a StreamEvents client).
pub struct ProgressFigures {
    pub watch: (Duration, Duration),
    pub worker_read: Duration,
    pub worker_stored: Duration,
    pub worker_streamed: Duration,
    pub count: usize,
}

/// Time from a pipeline printing `::progress` to a WatchJob client receiving it. With `split`, a
/// client of the worker's own StreamEvents also times each line inside the worker — a second
/// stream the worker serves, which delays the coordinator's (measure the WatchJob figure without).
pub async fn progress_latency(cluster: &TestCluster, ticks: usize, split: bool) -> ProgressFigures {
    let worker_stream = if split {
        let mut worker = cluster.worker_client(0).await;
        let last_seq = worker
            .get_info(v1::GetInfoRequest::default())
            .await
            .expect("worker info")
            .into_inner()
            .last_seq;
        let stream = worker
            .stream_events(v1::StreamEventsRequest {
                after_seq: last_seq,
                node_id: String::new(),
            })
            .await
            .expect("worker stream")
            .into_inner();
        Some(stream)
    } else {
        None
    };
    let job = cluster
        .submit("tick", &[("ticks", &ticks.to_string())])
        .await;
    let job_id = job.id.clone();
    let at_worker = tokio::spawn(async move {
        let Some(mut worker_stream) = worker_stream else {
            return (Vec::new(), Vec::new(), Vec::new());
        };
        let (mut streamed, mut read, mut stored) = (Vec::new(), Vec::new(), Vec::new());
        while let Ok(Some(event)) = worker_stream.message().await {
            let received = now_ns();
            // The line's own event says when the worker read the line and when it stored it.
            if let Some(log) = &event.log
                && let Some(printed) = printed_at(&log.text)
                && let (Some(read_at), Some(stored_at)) = (&log.time, &event.time)
            {
                read.push(since(printed, read_at));
                stored.push(since(printed, stored_at));
            }
            let Some(job) = event.job else { continue };
            if job.job_id != job_id {
                continue;
            }
            if let Some(printed) = printed_at(&job.stage) {
                streamed.push(Duration::from_nanos(received.saturating_sub(printed) as u64));
            }
            if job.state != v1::JobState::Running as i32
                && job.state != v1::JobState::Assigned as i32
            {
                break;
            }
        }
        (streamed, read, stored)
    });
    let request = v1::WatchJobRequest {
        id: job.id.clone(),
        after_version: 0,
    };
    let mut stream = cluster
        .jobs()
        .await
        .watch_job(request)
        .await
        .expect("watch")
        .into_inner();
    let mut samples = Vec::new();
    while let Some(event) = stream.message().await.expect("event") {
        let received = now_ns();
        let job = event.job.expect("job");
        if event.change == v1::JobChange::Progress as i32
            && let Some(printed) = printed_at(&job.stage)
        {
            samples.push(Duration::from_nanos(received.saturating_sub(printed) as u64));
        }
    }
    let (mut streamed, mut read, mut stored) = at_worker.await.expect("worker stream task");
    ProgressFigures {
        count: samples.len(),
        watch: (quantile(&mut samples, 0.5), quantile(&mut samples, 0.99)),
        worker_read: quantile(&mut read, 0.5),
        worker_stored: quantile(&mut stored, 0.5),
        worker_streamed: quantile(&mut streamed, 0.5),
    }
}

/// Time from a job's creation (coordinator clock) to the worker accepting its start: p50, p99.
pub async fn start_latency(cluster: &TestCluster, jobs: usize) -> (Duration, Duration) {
    let mut samples = Vec::new();
    let mut worker = cluster.worker_client(0).await;
    for _ in 0..jobs {
        let job = cluster.submit("noop", &[]).await;
        cluster.wait_terminal(&job.id).await;
        let accepted = worker
            .get_job(v1::WorkerGetJobRequest {
                job_id: job.id.clone(),
            })
            .await
            .expect("worker job")
            .into_inner()
            .accepted_at
            .expect("accepted_at");
        let created = job.created_at.expect("created_at");
        let nanos =
            |ts: &prost_types::Timestamp| ts.seconds as i128 * 1_000_000_000 + ts.nanos as i128;
        samples.push(Duration::from_nanos(
            (nanos(&accepted) - nanos(&created)).max(0) as u64,
        ));
    }
    (quantile(&mut samples, 0.5), quantile(&mut samples, 0.99))
}

/// Coordinator memory with `watchers` idle WatchJob streams open: (before MiB, after MiB).
pub async fn watchers_memory(cluster: &TestCluster, watchers: usize) -> (f64, f64) {
    let pid = cluster.coordinator.pid().expect("coordinator pid");
    let mut ids = Vec::new();
    for _ in 0..100 {
        ids.push(cluster.submit("noop", &[]).await.id);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_mib(pid);
    let release = Arc::new(Notify::new());
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(watchers);
    // At most ~200 streams on one HTTP/2 connection.
    let connections = (watchers / 200).max(50);
    let mut tasks = Vec::new();
    for connection in 0..connections {
        let client = cluster.jobs().await;
        for n in (connection..watchers).step_by(connections) {
            let mut client = client.clone();
            let id = ids[n % ids.len()].clone();
            let release = Arc::clone(&release);
            let ready = ready_tx.clone();
            tasks.push(tokio::spawn(async move {
                let request = v1::WatchJobRequest {
                    id,
                    after_version: 0,
                };
                let mut stream = client.watch_job(request).await.expect("watch").into_inner();
                stream.message().await.expect("snapshot").expect("snapshot");
                ready.send(()).await.expect("ready");
                release.notified().await;
                drop(stream);
            }));
        }
    }
    for _ in 0..watchers {
        ready_rx.recv().await.expect("a watcher");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_mib(pid);
    release.notify_waiters();
    for task in tasks {
        task.abort();
    }
    (before, after)
}

/// With `jobs` stored: ListJobs page-of-50 p50 (newest page, a state-filtered page, a page deep in
/// the history), and restart-to-serving times after SIGTERM and after SIGKILL.
pub struct StoredFigures {
    pub first_page: Duration,
    pub state_page: Duration,
    pub deep_page: Duration,
    /// SIGTERM → exited, right after the jobs were written (includes the storage checkpoint).
    pub stop_clean: Duration,
    pub restart_clean: Duration,
    pub restart_crash: Duration,
    pub rss_after_restart: f64,
}

async fn page_p50(cluster: &TestCluster, request: v1::ListJobsRequest) -> Duration {
    let mut client = cluster.jobs().await;
    let mut samples = Vec::new();
    for _ in 0..200 {
        let started = Instant::now();
        let page = client
            .list_jobs(request.clone())
            .await
            .expect("list")
            .into_inner();
        samples.push(started.elapsed());
        assert_eq!(page.jobs.len(), 50);
    }
    quantile(&mut samples, 0.5)
}

/// Stops the coordinator (SIGTERM, or SIGKILL when `crash`), starts it again and times how long
/// until it serves ListJobs.
/// Restart time after a kill -9 right after `jobs` creates on a fresh cluster: the start replays
/// what sled logged since the database was opened (a clean stop checkpoints; a crash cannot).
pub async fn crash_restart_after_writes(jobs: usize) -> Duration {
    let mut cluster = TestCluster::builder()
        .extra_config(TICK_PIPELINE)
        .start()
        .await;
    create_throughput(&cluster, jobs, 64, 60_000_000).await;
    time_restart(&mut cluster, true).await
}

pub async fn time_restart(cluster: &mut TestCluster, crash: bool) -> Duration {
    time_stop_and_restart(cluster, crash).await.1
}

/// [`time_restart`], also timing the stop: signal sent → process gone (a clean stop flushes and
/// checkpoints the database).
pub async fn time_stop_and_restart(cluster: &mut TestCluster, crash: bool) -> (Duration, Duration) {
    let stopping = Instant::now();
    if crash {
        cluster.coordinator.kill9();
    } else {
        cluster.coordinator.terminate(Duration::from_secs(60));
    }
    let stop = stopping.elapsed();
    let started = Instant::now();
    cluster.coordinator.restart();
    let url = cluster.url();
    loop {
        if let Ok(channel) = tonic::transport::Channel::from_shared(url.clone())
            .expect("url")
            .connect()
            .await
        {
            let mut jobs = reelay_proto::v1::job_service_client::JobServiceClient::new(channel);
            let request = v1::ListJobsRequest {
                page_size: 50,
                ..Default::default()
            };
            if jobs.list_jobs(request).await.is_ok() {
                return (stop, started.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub async fn stored_jobs(cluster: &mut TestCluster, jobs: usize) -> StoredFigures {
    create_throughput(cluster, jobs, 64, 50_000_000).await;
    let first = v1::ListJobsRequest {
        page_size: 50,
        ..Default::default()
    };
    let first_page = page_p50(cluster, first.clone()).await;
    let state = v1::ListJobsRequest {
        page_size: 50,
        states: vec![v1::JobState::Queued as i32],
        ..Default::default()
    };
    let state_page = page_p50(cluster, state).await;
    // A token from the middle of the history.
    let mut client = cluster.jobs().await;
    let mut token = String::new();
    for _ in 0..20 {
        let request = v1::ListJobsRequest {
            page_size: 1000,
            page_token: token.clone(),
            ..Default::default()
        };
        token = client
            .list_jobs(request)
            .await
            .expect("list")
            .into_inner()
            .next_page_token;
    }
    let deep = v1::ListJobsRequest {
        page_size: 50,
        page_token: token,
        ..Default::default()
    };
    let deep_page = page_p50(cluster, deep).await;
    let (stop_clean, restart_clean) = time_stop_and_restart(cluster, false).await;
    let restart_crash = time_restart(cluster, true).await;
    let rss_after_restart = rss_mib(cluster.coordinator.pid().expect("pid"));
    StoredFigures {
        first_page,
        state_page,
        deep_page,
        stop_clean,
        restart_clean,
        restart_crash,
        rss_after_restart,
    }
}
