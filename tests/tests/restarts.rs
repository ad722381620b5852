//! kill -9 and restart of the coordinator and of workers while jobs run: nothing lost, nothing
//! applied twice, nothing left RUNNING forever.

use std::collections::HashSet;
use std::time::Duration;

use reelay_proto::v1;
use reelay_tests::watch::assert_contiguous;
use reelay_tests::{TestCluster, WorkerSpec, spec};

fn pid_alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| !stat.contains(") Z "))
}

#[tokio::test(flavor = "multi_thread")]
async fn coordinator_kill9_loses_nothing_and_repeats_nothing() {
    let mut cluster = TestCluster::builder().workers(2).start().await;
    const STEPS: usize = 30;
    let mut ids = Vec::new();
    for _ in 0..6 {
        ids.push(
            cluster
                .submit("count", &[("steps", "30"), ("interval_ms", "100")])
                .await
                .id,
        );
    }
    cluster
        .wait_job(&ids[0], Duration::from_secs(20), |job| job.progress >= 10)
        .await;

    cluster.coordinator.kill9();
    // The workers go on meanwhile: their events wait in their logs.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    cluster.coordinator.restart();
    cluster.wait_serving().await;

    for id in &ids {
        let done = cluster.wait_finished(id).await;
        assert_eq!(
            done.state,
            v1::JobState::Succeeded as i32,
            "{done:#?}\n{}",
            cluster.logs()
        );
        assert_eq!(done.attempt, 1, "no job ran twice");
        assert_eq!(done.progress, 100);

        let history = cluster.history(id).await;
        assert_contiguous(&history);
        // The pipeline's progress (not the transfer of its outputs after it).
        let progress: Vec<u32> = history
            .iter()
            .filter(|e| e.change == v1::JobChange::Progress as i32)
            .filter(|e| e.job.as_ref().unwrap().transfer.is_none())
            .map(|e| e.job.as_ref().unwrap().progress)
            .collect();
        assert!(
            progress.windows(2).all(|w| w[0] < w[1]),
            "no progress applied twice: {progress:?}"
        );

        let lines = cluster.job_logs(id).await;
        let numbers: Vec<u64> = lines.iter().map(|l| l.number).collect();
        assert_eq!(
            numbers,
            (1..=lines.len() as u64).collect::<Vec<_>>(),
            "log numbers without gaps"
        );
        let progress_lines: Vec<&str> = lines
            .iter()
            .map(|l| l.text.as_str())
            .filter(|t| t.starts_with("::progress"))
            .collect();
        assert_eq!(
            progress_lines.len(),
            STEPS,
            "every line once: {progress_lines:#?}"
        );
        assert_eq!(progress_lines.iter().collect::<HashSet<_>>().len(), STEPS);

        let files = cluster
            .jobs()
            .await
            .list_outputs(v1::ListOutputsRequest { id: id.clone() })
            .await
            .unwrap();
        let files = files.into_inner().files;
        assert_eq!(files.len(), 1);
        let expected: String = (1..=STEPS).map(|i| format!("step {i}\n")).collect();
        assert_eq!(files[0].size, expected.len() as u64, "the output arrived");
    }
}

/// What a watcher must see of an event, and the history hold: its version, change, state,
/// attempt and progress.
fn seen(event: &v1::JobEvent) -> (u64, i32, i32, u32, u32) {
    let job = event.job.clone().unwrap_or_default();
    (
        event.version,
        event.change,
        job.state,
        job.attempt,
        job.progress,
    )
}

/// `WatchJob` clients following jobs while their progress streams, across a kill -9 of the
/// coordinator and then of a worker (resuming after the last version they saw, as a client
/// should): each sees, after its snapshot, exactly the job's history — every version once, in
/// order, none missing — and within an attempt the pipeline's progress never goes back.
#[tokio::test(flavor = "multi_thread")]
async fn watchers_see_every_version_once_across_kill9_while_progress_streams() {
    let mut cluster = TestCluster::builder().workers(2).start().await;
    let mut ids = Vec::new();
    for _ in 0..4 {
        let mut job = spec("count", &[("steps", "60"), ("interval_ms", "100")]);
        job.max_attempts = 2;
        ids.push(cluster.submit_spec(job).await.id);
    }
    let watchers: Vec<_> = ids
        .iter()
        .map(|id| {
            tokio::spawn(reelay_tests::watch::until_terminal(
                cluster.url(),
                id.clone(),
            ))
        })
        .collect();
    cluster
        .wait_job(&ids[0], Duration::from_secs(20), |job| job.progress >= 10)
        .await;

    cluster.coordinator.kill9();
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster.coordinator.restart();
    cluster.wait_serving().await;
    cluster
        .wait_job(&ids[0], Duration::from_secs(20), |job| job.progress >= 30)
        .await;
    cluster.workers[0].process.kill9();
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster.workers[0].process.restart();

    for (id, watcher) in ids.iter().zip(watchers) {
        let events = tokio::time::timeout(Duration::from_secs(90), watcher)
            .await
            .unwrap_or_else(|_| panic!("job {id} never ended\n{}", cluster.logs()))
            .expect("watcher task");
        let (snapshot, after) = events.split_first().expect("a snapshot first");
        assert_eq!(snapshot.change, v1::JobChange::Snapshot as i32);
        let last = after.last().expect("events after the snapshot").version;
        let history = cluster.history(id).await;
        assert_contiguous(&history);
        let expected: Vec<_> = history
            .iter()
            .filter(|event| event.version > snapshot.version && event.version <= last)
            .map(seen)
            .collect();
        let watched: Vec<_> = after.iter().map(seen).collect();
        assert_eq!(
            watched, expected,
            "job {id}: the watcher saw exactly the history after its snapshot"
        );
        let progress: Vec<(u32, u32)> = after
            .iter()
            .filter(|event| event.change == v1::JobChange::Progress as i32)
            .filter_map(|event| event.job.as_ref())
            .filter(|job| job.transfer.is_none())
            .map(|job| (job.attempt, job.progress))
            .collect();
        assert!(
            progress
                .windows(2)
                .all(|w| w[0].0 != w[1].0 || w[0].1 <= w[1].1),
            "job {id}: progress went back within an attempt: {progress:?}"
        );
        assert!(
            progress.len() >= 10,
            "job {id}: progress streamed: {progress:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn worker_kill9_fails_the_lost_process_and_keeps_the_queue() {
    let mut cluster = TestCluster::builder()
        .worker(WorkerSpec {
            slots: 1,
            ..Default::default()
        })
        .start()
        .await;
    let mut first = spec("sleep", &[("seconds", "60")]);
    first.max_attempts = 2;
    let first = cluster.submit_spec(first).await;
    let queued = cluster
        .submit("count", &[("steps", "3"), ("interval_ms", "10")])
        .await;
    cluster
        .wait_state(&first.id, v1::JobState::Running, Duration::from_secs(20))
        .await;
    // A job is RUNNING a moment before the worker records its process group.
    let pid: i32 = reelay_tests::faults::run_ref_of(&cluster, 0, &first.id)
        .await
        .parse()
        .unwrap();
    assert!(pid_alive(pid));

    cluster.workers[0].process.kill9();
    cluster
        .wait_node_state("w0", v1::NodeState::Offline, Duration::from_secs(20))
        .await;
    let unreachable = cluster
        .wait_job(&first.id, Duration::from_secs(10), |job| {
            !job.node_reachable
        })
        .await;
    assert_eq!(
        unreachable.state,
        v1::JobState::Running as i32,
        "node loss is not a job failure"
    );
    assert_eq!(
        cluster.get(&queued.id).await.state,
        v1::JobState::Queued as i32,
        "queued work waits"
    );

    cluster.workers[0].process.restart();
    cluster
        .wait_node_state("w0", v1::NodeState::Ready, Duration::from_secs(20))
        .await;
    // Attempt 1 died with the worker: failed with a message that says so, and retried.
    let second = cluster
        .wait_job(&first.id, Duration::from_secs(20), |job| job.attempt == 2)
        .await;
    assert!(second.node_reachable);
    let history = cluster.history(&first.id).await;
    assert_contiguous(&history);
    let requeued = history
        .iter()
        .filter_map(|e| e.job.as_ref())
        .find(|job| job.state == v1::JobState::Queued as i32 && job.attempt == 1)
        .expect("attempt 1 ended and the job was queued again");
    assert!(
        requeued
            .error
            .contains("the worker restarted while the job ran"),
        "{}",
        requeued.error
    );
    assert!(
        !pid_alive(pid),
        "the restarted worker stopped the orphaned process group {pid}"
    );

    cluster
        .jobs()
        .await
        .cancel_job(v1::CancelJobRequest {
            id: first.id.clone(),
        })
        .await
        .unwrap();
    let cancelled = cluster.wait_finished(&first.id).await;
    assert_eq!(cancelled.state, v1::JobState::Cancelled as i32);
    let done = cluster.wait_finished(&queued.id).await;
    assert_eq!(
        done.state,
        v1::JobState::Succeeded as i32,
        "the queued job ran after all"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_without_attempts_left_fails_when_its_process_dies_with_the_worker() {
    let mut cluster = TestCluster::builder().workers(1).start().await;
    let job = cluster.submit("sleep", &[("seconds", "60")]).await;
    cluster
        .wait_state(&job.id, v1::JobState::Running, Duration::from_secs(20))
        .await;
    cluster.workers[0].process.kill9();
    cluster.workers[0].process.restart();
    let done = cluster.wait_finished(&job.id).await;
    assert_eq!(done.state, v1::JobState::Failed as i32);
    assert!(done.error.contains("cannot re-attach"), "{}", done.error);
}

/// The log position of the newest page-table snapshot sled wrote in `dir` (`snap.<lsn in hex>`).
fn newest_snapshot(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .expect("read the data dir")
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            let lsn = name.strip_prefix("snap.")?;
            u64::from_str_radix(lsn.split('.').next()?, 16).ok()
        })
        .max()
        .unwrap_or(0)
}

/// sled 0.34 replays at every open what it logged since its last snapshot, and writes one only when
/// it opens a database: a coordinator stopped with SIGTERM checkpoints (opens and closes its database
/// once more) so that its next start replays nothing; the jobs are all there after it.
#[tokio::test(flavor = "multi_thread")]
async fn a_clean_stop_checkpoints_storage_so_the_next_start_replays_nothing() {
    let mut cluster = TestCluster::builder().start().await;
    let data_dir = cluster.path().join("coordinator");
    let at_start = newest_snapshot(&data_dir);
    let mut jobs = cluster.jobs().await;
    let requests = (0..500)
        .map(|n| v1::CreateJobRequest {
            spec: Some(spec("count", &[("steps", "1")])),
            request_id: format!("checkpoint-{n}"),
        })
        .collect();
    let created = jobs
        .create_jobs(v1::CreateJobsRequest { requests })
        .await
        .expect("create jobs")
        .into_inner();
    assert_eq!(created.results.len(), 500);
    assert_eq!(
        newest_snapshot(&data_dir),
        at_start,
        "sled wrote a snapshot while running: the premise of the checkpoint is gone"
    );

    cluster.coordinator.terminate(Duration::from_secs(20));
    assert!(
        newest_snapshot(&data_dir) > at_start,
        "no snapshot written at the clean stop:\n{}",
        cluster.logs()
    );
    assert!(cluster.logs().contains("storage checkpointed"));

    cluster.coordinator.restart();
    cluster.wait_serving().await;
    assert_eq!(cluster.all_jobs().await.len(), 500);
}
