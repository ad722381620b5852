//! Graceful shutdown on SIGTERM: the coordinator ends its streams, finishes what is in flight and
//! exits 0 with everything stored; a Docker worker leaves its containers running for the next start
//! to re-attach.

use std::time::{Duration, Instant};

use reelay_proto::v1;
use reelay_tests::docker::{JobContainers, is_running, require_engine, wait_container_of_job};
use reelay_tests::{TestCluster, WorkerSpec, spec};

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
    // The streams ended (cleanly or with the connection), they did not hang.
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while let Ok(Some(_)) = one.message().await {}
        while let Ok(Some(_)) = all.message().await {}
    })
    .await;
    assert!(ended.is_ok(), "streams ended with the server");

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
