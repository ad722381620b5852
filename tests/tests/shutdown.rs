//! Graceful shutdown on SIGTERM: the coordinator ends its streams with UNAVAILABLE, finishes what
//! is in flight and exits 0 with everything stored — within its drain grace even when a client
//! does not read; a Docker worker leaves its containers running for the next start to re-attach.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use reelay_proto::v1;
use reelay_tests::docker::{JobContainers, is_running, require_engine, wait_container_of_job};
use reelay_tests::gauges::{open_streams_sample, wait_gauge};
use reelay_tests::process::reelay_bin;
use reelay_tests::{TestCluster, WorkerSpec, spec};
use tonic::{Code, Status};

/// How a server stream ended: cleanly, or with the status.
async fn end_of<T>(stream: &mut tonic::Streaming<T>) -> Result<(), Status> {
    loop {
        if stream.message().await?.is_none() {
            return Ok(());
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_coordinator_stops_cleanly_with_open_streams_and_loses_nothing() {
    let mut cluster = TestCluster::builder().workers(1).start().await;
    let done = cluster
        .submit("count", &[("steps", "3"), ("interval_ms", "1")])
        .await;
    cluster.wait_terminal(&done.id).await;
    let running = cluster
        .submit("count", &[("steps", "60"), ("interval_ms", "100")])
        .await;
    cluster
        .wait_job(&running.id, Duration::from_secs(20), |job| {
            job.progress >= 5
        })
        .await;
    // Streams that would never end by themselves.
    let mut jobs = cluster.jobs().await;
    let request = v1::WatchJobsRequest {
        states: vec![],
        no_snapshot: false,
    };
    let mut all = jobs.watch_jobs(request).await.unwrap().into_inner();
    let mut one = jobs
        .watch_job(v1::WatchJobRequest {
            id: running.id.clone(),
            after_version: 0,
        })
        .await
        .unwrap()
        .into_inner();
    all.message().await.unwrap();
    one.message().await.unwrap();

    let started = Instant::now();
    let status = cluster
        .coordinator
        .terminate(Duration::from_secs(20))
        .expect("exits by itself on SIGTERM");
    assert!(status.success(), "{status}\n{}", cluster.logs());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    // The streams ended with a status that tells their clients to reconnect, they did not hang.
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        (end_of(&mut one).await, end_of(&mut all).await)
    })
    .await
    .expect("streams ended with the server");
    for end in [ended.0, ended.1] {
        let status = end.expect_err("an end with a status, not a clean one");
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        assert!(status.message().contains("shutting down"), "{status:?}");
    }

    cluster.coordinator.restart();
    cluster.wait_serving().await;
    assert_eq!(
        cluster.get(&done.id).await.state,
        v1::JobState::Succeeded as i32
    );
    let finished = cluster.wait_finished(&running.id).await;
    assert_eq!(
        finished.state,
        v1::JobState::Succeeded as i32,
        "{finished:#?}"
    );
    assert_eq!(finished.attempt, 1);
}

/// A client that does not read — stopped (SIGSTOP, a laptop lid closed) while it watches a job —
/// does not hold the coordinator: it exits within `--drain-grace` and a margin, having stored what
/// it acknowledged. Before the grace such a client held it until HTTP/2 keepalive gave up on the
/// connection (28.6 s, over Kubernetes' default 30 s grace with the flush).
#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_client_does_not_hold_the_coordinator_past_its_drain_grace() {
    const GRACE: Duration = Duration::from_secs(2);
    /// Engine stop, flush and process exit after the grace, on a shared 2-core machine.
    const MARGIN: Duration = Duration::from_secs(3);
    let mut cluster = TestCluster::builder()
        .workers(1)
        .coordinator_arg("--drain-grace")
        .coordinator_arg("2s")
        .start()
        .await;
    // A job that stays queued: the watcher's stream is quiet.
    cluster
        .nodes()
        .await
        .drain_node(v1::DrainNodeRequest { id: "w0".into() })
        .await
        .unwrap();
    let queued = cluster.submit("count", &[]).await.id;
    let mut watcher = Command::new(reelay_bin())
        .args(["job", "watch", &queued])
        .env("REELAY_SERVER", cluster.url())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let sample = open_streams_sample("WatchJob", false);
    wait_gauge(&cluster.address(), &sample, 1.0, Duration::from_secs(10)).await;
    let pid = Pid::from_raw(watcher.id() as i32);
    kill(pid, Signal::SIGSTOP).unwrap();
    // Acknowledged just before the signal: stored when the coordinator is back.
    let mut acknowledged = Vec::new();
    for _ in 0..20 {
        acknowledged.push(cluster.submit("count", &[]).await.id);
    }

    let started = Instant::now();
    let status = cluster
        .coordinator
        .terminate(Duration::from_secs(40))
        .expect("exits by itself on SIGTERM");
    let took = started.elapsed();
    eprintln!("the coordinator exited {took:?} after SIGTERM with a stopped client");
    let _ = watcher.kill();
    let _ = watcher.wait();
    assert!(status.success(), "{status}\n{}", cluster.logs());
    assert!(
        took < GRACE + MARGIN,
        "exited {took:?} after SIGTERM, grace {GRACE:?}\n{}",
        cluster.logs()
    );
    assert!(
        cluster
            .coordinator
            .log_text()
            .contains("connections still open after the drain grace"),
        "the stopped client's connection was what the grace cut\n{}",
        cluster.logs()
    );

    cluster.coordinator.restart();
    cluster.wait_serving().await;
    for id in acknowledged.iter().chain([&queued]) {
        assert_eq!(cluster.get(id).await.state, v1::JobState::Queued as i32);
    }
}

/// The same on a worker: a `StreamEvents` client that stopped reading does not hold it past its
/// `--drain-grace`.
#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_client_does_not_hold_a_worker_past_its_drain_grace() {
    const GRACE: Duration = Duration::from_secs(2);
    const MARGIN: Duration = Duration::from_secs(3);
    let mut cluster = TestCluster::builder()
        .worker(WorkerSpec {
            extra_args: vec!["--drain-grace".into(), "2s".into()],
            ..Default::default()
        })
        .start()
        .await;
    let worker = format!("127.0.0.1:{}", cluster.workers[0].port);
    let grpcurl = std::path::PathBuf::from(std::env::var("HOME").unwrap())
        .join(".cache/reelay-conformance/grpcurl");
    let mut client = Command::new(&grpcurl)
        .args([
            "-plaintext",
            "-d",
            r#"{"after_seq": "18446744073709551615"}"#,
        ])
        .args([worker.as_str(), "reelay.v1.WorkerService/StreamEvents"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The coordinator's link, and the client.
    let sample = open_streams_sample("StreamEvents", true);
    wait_gauge(&worker, &sample, 2.0, Duration::from_secs(10)).await;
    kill(Pid::from_raw(client.id() as i32), Signal::SIGSTOP).unwrap();

    let started = Instant::now();
    let status = cluster.workers[0]
        .process
        .terminate(Duration::from_secs(40))
        .expect("exits by itself on SIGTERM");
    let took = started.elapsed();
    eprintln!("the worker exited {took:?} after SIGTERM with a stopped client");
    let _ = client.kill();
    let _ = client.wait();
    assert!(status.success(), "{status}\n{}", cluster.logs());
    assert!(
        took < GRACE + MARGIN,
        "exited {took:?} after SIGTERM\n{}",
        cluster.logs()
    );
    assert!(
        cluster.workers[0]
            .process
            .log_text()
            .contains("connections still open after the drain grace"),
        "{}",
        cluster.logs()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_docker_worker_leaves_its_containers_running_and_reattaches() {
    require_engine(&["reelay/busybox:latest"]);
    let config = r#"
[[pipeline]]
name = "dcount"
image = "reelay/busybox:latest"
command = ["sh", "-c", "trap 'exit 143' TERM; i=0; while [ $i -lt 40 ]; do i=$((i+1)); echo \"::progress $((i * 100 / 40)) step=$i\"; sleep 0.1; done; echo done > /output/done.txt"]
pull = "never"
input_required = false
"#;
    let mut cluster = TestCluster::builder()
        .node_prefix("shutdown-")
        .extra_config(config)
        .worker(WorkerSpec {
            executor: "docker".into(),
            ..Default::default()
        })
        .start()
        .await;
    let mut containers = JobContainers::new();
    containers.track_node(&cluster.workers[0].node_id.clone());
    let job = cluster.submit_spec(spec("dcount", &[])).await;
    let running = cluster
        .wait_job(&job.id, Duration::from_secs(30), |job| job.progress >= 10)
        .await;
    let container = wait_container_of_job(&job.id, Duration::from_secs(10));

    let status = cluster.workers[0]
        .process
        .terminate(Duration::from_secs(20))
        .expect("exits on SIGTERM");
    assert!(status.success(), "{status}\n{}", cluster.logs());
    assert!(
        is_running(&container),
        "the container outlives the worker's clean stop"
    );

    cluster.workers[0].process.restart();
    let done = cluster.wait_finished(&job.id).await;
    assert_eq!(
        done.state,
        v1::JobState::Succeeded as i32,
        "{done:#?}\n{}",
        cluster.logs()
    );
    assert_eq!(done.attempt, running.attempt, "re-attached, not retried");
    assert_eq!(
        done.outputs
            .iter()
            .map(|f| f.name.as_str())
            .collect::<Vec<_>>(),
        ["done.txt"]
    );
    drop(cluster);
    containers.assert_none_left(Duration::from_secs(20));
}
