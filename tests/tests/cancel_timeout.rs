//! Stopping jobs: cancel (queued and running), timeouts, the grace period, retries of failures.

use std::time::{Duration, Instant};

use reelay_proto::v1;
use reelay_tests::{TestCluster, spec};
use tonic::Code;

fn pid_alive(pid: i32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|stat| !stat.contains(") Z "))
}

/// The process group id the worker recorded for a job's attempt.
async fn run_ref(cluster: &TestCluster, worker: usize, id: &str) -> i32 {
    // A job is RUNNING a moment before the worker records its process group.
    reelay_tests::faults::run_ref_of(cluster, worker, id)
        .await
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_stops_a_running_job_and_a_queued_one() {
    let cluster = TestCluster::builder()
        .worker(reelay_tests::WorkerSpec {
            slots: 1,
            ..Default::default()
        })
        .start()
        .await;
    let running = cluster.submit("sleep", &[("seconds", "60")]).await;
    let queued = cluster.submit("sleep", &[("seconds", "60")]).await;
    cluster
        .wait_state(&running.id, v1::JobState::Running, Duration::from_secs(20))
        .await;
    let pid = run_ref(&cluster, 0, &running.id).await;
    assert!(pid_alive(pid));

    // The queued one never started: cancelled at once.
    let mut jobs = cluster.jobs().await;
    let cancelled = jobs
        .cancel_job(v1::CancelJobRequest {
            id: queued.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cancelled.state, v1::JobState::Cancelled as i32);

    // The running one: asked, then confirmed by the worker once the process is gone.
    let started = Instant::now();
    let asked = jobs
        .cancel_job(v1::CancelJobRequest {
            id: running.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(asked.cancel_requested);
    let events = cluster.wait_terminal(&running.id).await;
    let done = events.last().unwrap().job.clone().unwrap();
    assert_eq!(done.state, v1::JobState::Cancelled as i32, "{done:#?}");
    assert!(
        done.message.contains("cancelled by user"),
        "{}",
        done.message
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "stopped within the grace period: {:?}",
        started.elapsed()
    );
    assert!(!pid_alive(pid), "the process group is gone");

    // Cancelling a finished job is refused.
    let again = jobs
        .cancel_job(v1::CancelJobRequest {
            id: running.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition);
    assert!(
        again.message().contains("already cancelled"),
        "{}",
        again.message()
    );

    // Retry runs it again as attempt 2.
    let retried = jobs
        .retry_job(v1::RetryJobRequest {
            id: queued.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retried.state, v1::JobState::Queued as i32);
    let running_again = cluster
        .wait_state(&queued.id, v1::JobState::Running, Duration::from_secs(20))
        .await;
    assert_eq!(
        running_again.attempt, 1,
        "the first run of a job cancelled while queued"
    );
    jobs.cancel_job(v1::CancelJobRequest {
        id: queued.id.clone(),
    })
    .await
    .unwrap();
    cluster.wait_terminal(&queued.id).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn timeout_fails_the_job_and_kill_follows_the_grace_period() {
    let cluster = TestCluster::builder().workers(1).start().await;
    let mut polite = spec("sleep", &[("seconds", "60")]);
    polite.timeout_seconds = 1;
    let polite = cluster.submit_spec(polite).await;
    let mut stubborn = spec("stubborn", &[]);
    stubborn.timeout_seconds = 1;
    let stubborn = cluster.submit_spec(stubborn).await;

    let done = cluster.wait_finished(&polite.id).await;
    assert_eq!(done.state, v1::JobState::Failed as i32);
    assert_eq!(
        done.error, "timed out after 1s (stopped with SIGTERM)",
        "{done:#?}"
    );

    let started = Instant::now();
    let done = cluster.wait_finished(&stubborn.id).await;
    assert_eq!(done.state, v1::JobState::Failed as i32);
    assert_eq!(
        done.error, "timed out after 1s (killed after the grace period)",
        "{done:#?}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread")]
async fn failures_are_retried_until_attempts_run_out() {
    let cluster = TestCluster::builder().workers(2).start().await;
    let mut failing = spec("fail", &[("code", "7")]);
    failing.max_attempts = 3;
    let job = cluster.submit_spec(failing).await;
    let done = cluster.wait_finished(&job.id).await;
    assert_eq!(done.state, v1::JobState::Failed as i32);
    assert_eq!((done.attempt, done.exit_code), (3, Some(7)));
    assert_eq!(
        done.error, "exit code 7: boom: bad frame",
        "the error carries the last stderr line"
    );

    let history = cluster
        .jobs()
        .await
        .get_job_history(v1::GetJobHistoryRequest {
            id: job.id.clone(),
            after_version: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    reelay_tests::watch::assert_contiguous(&history);
    let retries = history
        .iter()
        .filter(|e| e.job.as_ref().unwrap().state == v1::JobState::Queued as i32 && e.version > 1)
        .count();
    assert_eq!(retries, 2, "queued again after attempts 1 and 2");
}
