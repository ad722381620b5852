//! Load: 1,000 concurrent watch streams (800 WatchJob, 200 WatchJobs) while 200 jobs run through
//! the system. No stream is dropped or errs, every watcher sees its job(s) through to the end with
//! versions in order, and the coordinator's memory stays bounded (printed, for the record).

use std::collections::HashSet;
use std::time::Duration;

use reelay_proto::v1;
use reelay_tests::process::rss_mib;
use reelay_tests::watch::is_terminal;
use reelay_tests::{TestCluster, WorkerSpec};

const JOBS: usize = 200;
const JOB_WATCHERS: usize = 800;
const ALL_WATCHERS: usize = 200;
const CONNECTIONS: usize = 20;
/// Generous: measured at ~140 MiB here (debug build); a leak per stream or per event blows past it.
const RSS_BOUND_MIB: f64 = 400.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_watchers_and_two_hundred_jobs() {
    let cluster = TestCluster::builder()
        .worker(WorkerSpec {
            slots: 4,
            ..Default::default()
        })
        .worker(WorkerSpec {
            slots: 4,
            ..Default::default()
        })
        .start()
        .await;
    let pid = cluster.coordinator.pid().unwrap();
    // Hold the jobs until every watcher is in place.
    let mut nodes = cluster.nodes().await;
    for node in ["w0", "w1"] {
        nodes
            .drain_node(v1::DrainNodeRequest { id: node.into() })
            .await
            .unwrap();
    }
    let mut ids = Vec::new();
    for _ in 0..JOBS {
        ids.push(
            cluster
                .submit("count", &[("steps", "8"), ("interval_ms", "40")])
                .await
                .id,
        );
    }

    let mut channels = Vec::new();
    for _ in 0..CONNECTIONS {
        channels.push(cluster.jobs().await);
    }
    let mut tasks = Vec::new();
    for n in 0..JOB_WATCHERS {
        let mut client = channels[n % CONNECTIONS].clone();
        let id = ids[n % JOBS].clone();
        tasks.push(tokio::spawn(async move {
            let request = v1::WatchJobRequest {
                id: id.clone(),
                after_version: 0,
            };
            let mut stream = client
                .watch_job(request)
                .await
                .map_err(|s| format!("watch {id}: {s}"))?
                .into_inner();
            let mut last = 0;
            let mut terminal = None;
            loop {
                match stream.message().await {
                    Ok(Some(event)) => {
                        if event.version <= last {
                            return Err(format!(
                                "job {id}: version {} after {last}",
                                event.version
                            ));
                        }
                        last = event.version;
                        terminal = event.job.filter(|job| is_terminal(job.state));
                    }
                    Ok(None) => break,
                    Err(status) => return Err(format!("job {id}: stream failed: {status}")),
                }
            }
            match terminal {
                Some(job) if job.state == v1::JobState::Succeeded as i32 => Ok(()),
                other => Err(format!(
                    "job {id}: the stream ended without success: {other:?}"
                )),
            }
        }));
    }
    let (done_tx, _) = tokio::sync::broadcast::channel::<()>(1);
    let mut all_tasks = Vec::new();
    for n in 0..ALL_WATCHERS {
        let mut client = channels[n % CONNECTIONS].clone();
        let mut done = done_tx.subscribe();
        let wanted: HashSet<String> = ids.iter().cloned().collect();
        all_tasks.push(tokio::spawn(async move {
            let request = v1::WatchJobsRequest { states: vec![], no_snapshot: false };
            let mut stream = client.watch_jobs(request).await.map_err(|s| format!("watch all: {s}"))?.into_inner();
            let mut succeeded = HashSet::new();
            loop {
                tokio::select! {
                    message = stream.message() => match message {
                        Ok(Some(event)) => {
                            let job = event.job.unwrap_or_default();
                            if job.state == v1::JobState::Succeeded as i32 && wanted.contains(&job.id) {
                                succeeded.insert(job.id);
                            }
                        }
                        Ok(None) => return Err("a WatchJobs stream ended".to_owned()),
                        Err(status) => return Err(format!("a WatchJobs stream failed: {status}")),
                    },
                    _ = done.recv() => return Ok(succeeded.len()),
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_before = rss_mib(pid);
    for node in ["w0", "w1"] {
        nodes
            .undrain_node(v1::UndrainNodeRequest { id: node.into() })
            .await
            .unwrap();
    }

    let mut rss_max = rss_before;
    let sampler = async {
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            rss_max = rss_max.max(rss_mib(pid));
        }
    };
    let watched = async {
        let mut failures = Vec::new();
        for task in tasks {
            if let Err(err) = task.await.unwrap() {
                failures.push(err);
            }
        }
        failures
    };
    let failures = tokio::select! {
        failures = watched => failures,
        () = sampler => unreachable!(),
        () = tokio::time::sleep(Duration::from_secs(180)) => panic!("the jobs did not finish in 3 minutes\n{}", cluster.logs()),
    };
    assert!(
        failures.is_empty(),
        "{} watchers failed: {:#?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
    // Every WatchJobs stream saw every job succeed.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = done_tx.send(());
    for task in all_tasks {
        let seen = task.await.unwrap().unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(seen, JOBS, "a WatchJobs watcher missed successes");
    }
    eprintln!(
        "load: {} streams, {JOBS} jobs; coordinator RSS {rss_before:.0} MiB with the streams open, {rss_max:.0} MiB at most while the jobs ran",
        JOB_WATCHERS + ALL_WATCHERS
    );
    assert!(
        rss_max < RSS_BOUND_MIB,
        "coordinator RSS reached {rss_max:.0} MiB"
    );
}
