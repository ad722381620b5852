//! Node loss semantics: a node that goes silent without closing its connection — a black-holed
//! network, a frozen process — is OFFLINE within seconds (HTTP/2 keepalive: ping every 2 s,
//! 3 s timeout) and its jobs keep their state with `node_reachable = false`; when it comes back
//! the job goes on as if nothing happened. After `--node-lost-after` its jobs fail that attempt
//! with "node lost" and are retried elsewhere; a node that comes back later has its old attempt
//! cancelled by the coordinator, and the job is never reported twice.
//!
//! Workers advertise a fault proxy's address (`--advertise`), so the coordinator's link to each
//! goes through a proxy the test controls; they register with the coordinator directly.

use std::time::{Duration, Instant};

use reelay_proto::v1;
use reelay_tests::faults::{Frozen, poll, process_group, proxied_cluster, run_ref_of, worker_job};
use reelay_tests::watch::assert_contiguous;
use reelay_tests::{TestCluster, WorkerSpec, spec};

/// Longest a silent node may take to be seen OFFLINE (keepalive says 5 s; the machine is shared).
const OFFLINE_WITHIN: Duration = Duration::from_secs(15);

fn is(job: &v1::Job, state: v1::JobState) -> bool {
    job.state == state as i32
}

fn state_name(state: i32) -> String {
    v1::JobState::try_from(state)
        .map(|state| state.as_str_name().to_owned())
        .unwrap_or_else(|_| state.to_string())
}

/// The process group of the attempt worker `index` runs for job `id`.
async fn process_group_of(cluster: &TestCluster, index: usize, id: &str) -> i32 {
    run_ref_of(cluster, index, id)
        .await
        .parse()
        .expect("a process group id")
}

/// Waits until `node` is OFFLINE; how long it took from `since`.
async fn offline_after(cluster: &TestCluster, node: &str, since: Instant) -> Duration {
    cluster
        .wait_node_state(node, v1::NodeState::Offline, Duration::from_secs(30))
        .await;
    since.elapsed()
}

/// The job is still running on `node`, marked unreachable, within a few seconds of its node going
/// OFFLINE (the mark is stored right after the node's state).
async fn assert_kept_unreachable(cluster: &TestCluster, id: &str, node: &str) -> v1::Job {
    let job = cluster
        .wait_job(id, Duration::from_secs(10), |job| !job.node_reachable)
        .await;
    assert!(
        is(&job, v1::JobState::Running),
        "node loss is not a job failure: {job:#?}"
    );
    assert_eq!(job.node_id, node);
    assert_eq!(job.attempt, 1);
    job
}

/// What a job that ran once through an outage must look like at the end: SUCCEEDED, attempt 1,
/// history contiguous with the outage in it (unreachable, then reachable again), every line once.
async fn assert_finished_once(cluster: &TestCluster, id: &str, steps: usize) {
    let done = cluster
        .wait_finished_within(id, Duration::from_secs(120))
        .await;
    assert!(
        is(&done, v1::JobState::Succeeded),
        "{done:#?}\n{}",
        cluster.logs()
    );
    assert_eq!(done.attempt, 1, "the job ran once");
    assert!(done.node_reachable);

    let history = cluster.history(id).await;
    assert_contiguous(&history);
    let jobs: Vec<&v1::Job> = history.iter().filter_map(|e| e.job.as_ref()).collect();
    let unreachable = jobs
        .iter()
        .position(|job| !job.node_reachable)
        .expect("the outage is in the history");
    assert!(
        jobs[unreachable..].iter().any(|job| job.node_reachable),
        "the node came back in the history"
    );
    assert_eq!(
        jobs.iter()
            .filter(|job| is(job, v1::JobState::Succeeded))
            .count(),
        1,
        "one SUCCEEDED"
    );
    assert!(jobs.iter().all(|job| job.attempt <= 1));

    // The progress printed during the outage arrived afterwards, each line once.
    let lines = cluster.job_logs(id).await;
    let progress: Vec<&str> = lines
        .iter()
        .map(|line| line.text.as_str())
        .filter(|text| text.starts_with("::progress"))
        .collect();
    let expected: Vec<String> = (1..=steps)
        .map(|i| format!("::progress {} counting step={i}", i * 100 / steps))
        .collect();
    assert_eq!(progress, expected, "every progress line once, in order");
    let numbers: Vec<u64> = lines.iter().map(|line| line.number).collect();
    assert_eq!(numbers, (1..=lines.len() as u64).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_black_holed_node_is_offline_within_seconds_and_its_job_goes_on_when_it_is_back() {
    let (cluster, proxies) =
        proxied_cluster(TestCluster::builder(), vec![WorkerSpec::default()]).await;
    const STEPS: usize = 80;
    let job = cluster
        .submit("count", &[("steps", "80"), ("interval_ms", "250")])
        .await;
    cluster
        .wait_job(&job.id, Duration::from_secs(30), |job| job.progress >= 5)
        .await;

    let cut = Instant::now();
    proxies[0].black_hole();
    let detected = offline_after(&cluster, "w0", cut).await;
    println!("black-holed node OFFLINE after {detected:?}");
    assert!(
        detected < OFFLINE_WITHIN,
        "a silent node is OFFLINE within seconds, took {detected:?}"
    );
    let node = cluster
        .nodes()
        .await
        .get_node(v1::GetNodeRequest { id: "w0".into() })
        .await
        .unwrap()
        .into_inner();
    assert!(!node.condition.is_empty(), "OFFLINE says why: {node:#?}");
    assert_kept_unreachable(&cluster, &job.id, "w0").await;
    // Longer than a keepalive round: the job still waits, its state kept.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let during = cluster.get(&job.id).await;
    assert!(is(&during, v1::JobState::Running) && !during.node_reachable);

    let restored = Instant::now();
    proxies[0].restore();
    cluster
        .wait_node_state("w0", v1::NodeState::Ready, Duration::from_secs(30))
        .await;
    println!("restored node READY after {:?}", restored.elapsed());
    let back = cluster
        .wait_job(&job.id, Duration::from_secs(10), |job| job.node_reachable)
        .await;
    assert_eq!(back.attempt, 1);
    assert_finished_once(&cluster, &job.id, STEPS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_frozen_worker_is_offline_within_seconds_and_recovers_when_thawed() {
    let (cluster, _proxies) =
        proxied_cluster(TestCluster::builder(), vec![WorkerSpec::default()]).await;
    const STEPS: usize = 60;
    let job = cluster
        .submit("count", &[("steps", "60"), ("interval_ms", "250")])
        .await;
    cluster
        .wait_job(&job.id, Duration::from_secs(30), |job| job.progress >= 5)
        .await;

    let pid = cluster.workers[0].process.pid().expect("worker pid");
    let frozen_at = Instant::now();
    let frozen = Frozen::freeze(pid);
    let detected = offline_after(&cluster, "w0", frozen_at).await;
    println!("frozen worker OFFLINE after {detected:?}");
    assert!(
        detected < OFFLINE_WITHIN,
        "a frozen node is OFFLINE within seconds, took {detected:?}"
    );
    assert_kept_unreachable(&cluster, &job.id, "w0").await;

    let thawed = Instant::now();
    frozen.thaw();
    cluster
        .wait_node_state("w0", v1::NodeState::Ready, Duration::from_secs(30))
        .await;
    println!("thawed worker READY after {:?}", thawed.elapsed());
    assert_finished_once(&cluster, &job.id, STEPS).await;
}

/// A node black-holed past `--node-lost-after` while attempt 1 of a job runs on it: the attempt
/// fails with "node lost", attempt 2 runs on the other node; when the lost node is back, the
/// coordinator cancels attempt 1 there, and the job ends once, from attempt 2.
async fn lost_node_comes_back(job_spec: v1::JobSpec) {
    let worker = WorkerSpec {
        slots: 1,
        ..Default::default()
    };
    let builder = TestCluster::builder()
        .coordinator_arg("--node-lost-after")
        .coordinator_arg("3s");
    let (cluster, proxies) = proxied_cluster(builder, vec![worker.clone(), worker]).await;
    let job = cluster.submit_spec(job_spec).await;
    let first = cluster
        .wait_job(&job.id, Duration::from_secs(30), |job| {
            is(job, v1::JobState::Running) && job.attempt == 1
        })
        .await;
    let lost = cluster
        .workers
        .iter()
        .position(|worker| worker.node_id == first.node_id)
        .expect("the job's node");
    let other = 1 - lost;
    let (lost_node, other_node) = (
        cluster.workers[lost].node_id.clone(),
        cluster.workers[other].node_id.clone(),
    );
    let pgid = process_group_of(&cluster, lost, &job.id).await;
    assert!(!process_group(pgid).is_empty(), "attempt 1 runs");

    let cut = Instant::now();
    proxies[lost].black_hole();
    let detected = offline_after(&cluster, &lost_node, cut).await;
    println!("black-holed node OFFLINE after {detected:?}");
    let retried = cluster
        .wait_job(&job.id, Duration::from_secs(40), |job| {
            job.attempt == 2 && is(job, v1::JobState::Running)
        })
        .await;
    println!("job retried after {:?}", cut.elapsed());
    assert_eq!(
        retried.node_id, other_node,
        "attempt 2 runs on the other node"
    );
    let history_now = cluster.history(&job.id).await;
    let failed = history_now
        .iter()
        .filter_map(|e| e.job.as_ref())
        .find(|job| job.attempt == 1 && is(job, v1::JobState::Queued))
        .expect("attempt 1 failed and the job was queued again");
    assert!(
        failed.error.starts_with("node lost: "),
        "the attempt failed with \"node lost\": {failed:#?}"
    );
    assert!(
        !process_group(pgid).is_empty(),
        "attempt 1 still runs on the unreachable node (nobody could tell it)"
    );

    let restored = Instant::now();
    proxies[lost].restore();
    cluster
        .wait_node_state(&lost_node, v1::NodeState::Ready, Duration::from_secs(30))
        .await;
    println!("lost node READY again after {:?}", restored.elapsed());
    // The coordinator reconciles: attempt 1 is stopped on the returning node.
    let stopped = poll(Duration::from_secs(20), async || {
        let record = worker_job(&cluster, lost, &job.id).await?;
        (record.attempt == 1
            && record.state != v1::JobState::Running as i32
            && record.state != v1::JobState::Assigned as i32)
            .then_some(record)
    })
    .await;
    let Some(stopped) = stopped else {
        let record = worker_job(&cluster, lost, &job.id).await;
        panic!(
            "attempt 1 is not stopped on the returning node {lost_node}: {record:#?}\n{}",
            cluster.logs()
        );
    };
    assert_eq!(
        stopped.state,
        v1::JobState::Cancelled as i32,
        "attempt 1 is cancelled on the returning node: {stopped:#?}"
    );
    assert!(
        stopped.message.contains("superseded"),
        "it says why: {stopped:#?}"
    );
    let left = process_group(pgid);
    assert!(left.is_empty(), "attempt 1's processes are gone: {left:?}");

    let done = cluster
        .wait_finished_within(&job.id, Duration::from_secs(120))
        .await;
    assert!(
        is(&done, v1::JobState::Succeeded),
        "{done:#?}\n{}",
        cluster.logs()
    );
    assert_eq!(
        (done.attempt, done.node_id.as_str()),
        (2, other_node.as_str())
    );

    // Never reported twice: one SUCCEEDED, and after the retry nothing from attempt 1.
    let history = cluster.history(&job.id).await;
    assert_contiguous(&history);
    let jobs: Vec<&v1::Job> = history.iter().filter_map(|e| e.job.as_ref()).collect();
    let summary: Vec<String> = jobs
        .iter()
        .map(|job| {
            format!(
                "v{} {} attempt {} on {:?} reachable {}",
                job.version,
                state_name(job.state),
                job.attempt,
                job.node_id,
                job.node_reachable
            )
        })
        .collect();
    assert_eq!(
        jobs.iter()
            .filter(|job| is(job, v1::JobState::Succeeded))
            .count(),
        1,
        "one SUCCEEDED: {summary:#?}"
    );
    let second = jobs
        .iter()
        .position(|job| job.attempt == 2)
        .expect("attempt 2 in the history");
    assert!(
        jobs[second..]
            .iter()
            .all(|job| job.attempt == 2 && job.node_id != lost_node),
        "nothing from attempt 1 or its node after the retry: {summary:#?}"
    );
    // Log lines: attempt 1's, then attempt 2's, none of attempt 1 after the retry began.
    let lines = cluster.job_logs(&job.id).await;
    let attempts: Vec<u32> = lines.iter().map(|line| line.attempt).collect();
    assert!(
        attempts.windows(2).all(|pair| pair[0] <= pair[1]),
        "no line of attempt 1 after attempt 2's: {attempts:?}"
    );
    assert!(attempts.contains(&2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_node_that_comes_back_has_its_old_attempt_cancelled_while_it_prints() {
    // Prints a progress line every 250 ms: the returning node has events of attempt 1 to send.
    let mut job = spec("count", &[("steps", "160"), ("interval_ms", "250")]);
    job.max_attempts = 2;
    lost_node_comes_back(job).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_node_that_comes_back_has_its_old_attempt_cancelled_while_it_is_quiet() {
    // Prints nothing after its first line: only the reconciliation can find attempt 1.
    let mut job = spec("sleep", &[("seconds", "40")]);
    job.max_attempts = 2;
    lost_node_comes_back(job).await;
}

/// A job cancelled while its node is unreachable is CANCELLED at once; its (quiet) attempt is
/// stopped on the node when the node is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_cancelled_while_its_node_is_unreachable_is_stopped_there_when_it_is_back() {
    let (cluster, proxies) =
        proxied_cluster(TestCluster::builder(), vec![WorkerSpec::default()]).await;
    let job = cluster.submit("sleep", &[("seconds", "60")]).await;
    cluster
        .wait_state(&job.id, v1::JobState::Running, Duration::from_secs(30))
        .await;
    let pgid = process_group_of(&cluster, 0, &job.id).await;

    proxies[0].black_hole();
    offline_after(&cluster, "w0", Instant::now()).await;
    assert_kept_unreachable(&cluster, &job.id, "w0").await;
    let cancelled = cluster
        .jobs()
        .await
        .cancel_job(v1::CancelJobRequest { id: job.id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert!(
        is(&cancelled, v1::JobState::Cancelled),
        "cancelled at once while the node is unreachable: {cancelled:#?}"
    );
    assert!(
        !process_group(pgid).is_empty(),
        "the node could not be told yet"
    );

    proxies[0].restore();
    cluster
        .wait_node_state("w0", v1::NodeState::Ready, Duration::from_secs(30))
        .await;
    let stopped = poll(Duration::from_secs(20), async || {
        let record = worker_job(&cluster, 0, &job.id).await?;
        (record.state == v1::JobState::Cancelled as i32).then_some(record)
    })
    .await;
    let Some(stopped) = stopped else {
        let record = worker_job(&cluster, 0, &job.id).await;
        panic!(
            "the attempt is not stopped on the returning node: {record:#?}\n{}",
            cluster.logs()
        );
    };
    assert_eq!(stopped.attempt, 1);
    let left = process_group(pgid);
    assert!(
        left.is_empty(),
        "the attempt's processes are gone: {left:?}"
    );
    // The job stays as the user left it: one terminal state, nothing after it.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let history = cluster.history(&job.id).await;
    assert_contiguous(&history);
    let last = history.last().and_then(|e| e.job.as_ref()).unwrap();
    assert!(is(last, v1::JobState::Cancelled), "{history:#?}");
    assert_eq!(
        history
            .iter()
            .filter_map(|e| e.job.as_ref())
            .filter(|job| reelay_tests::watch::is_terminal(job.state))
            .count(),
        1,
        "reported terminal once"
    );
}

/// A cancel asked while the link is silently black-holed — the node still counts as reachable, so
/// the job waits for the worker to confirm — is not lost with the call: when the node is back, the
/// cancel is sent again and the job ends CANCELLED, its processes gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancel_lost_in_a_silent_link_is_sent_again_when_the_node_is_back() {
    let (cluster, proxies) =
        proxied_cluster(TestCluster::builder(), vec![WorkerSpec::default()]).await;
    let job = cluster.submit("sleep", &[("seconds", "120")]).await;
    cluster
        .wait_state(&job.id, v1::JobState::Running, Duration::from_secs(30))
        .await;
    let pgid = process_group_of(&cluster, 0, &job.id).await;

    proxies[0].black_hole();
    let asked = cluster
        .jobs()
        .await
        .cancel_job(v1::CancelJobRequest { id: job.id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert!(
        asked.cancel_requested && is(&asked, v1::JobState::Running),
        "asked, not yet confirmed: {asked:#?}"
    );
    offline_after(&cluster, "w0", Instant::now()).await;
    assert!(
        !process_group(pgid).is_empty(),
        "the cancel did not get through the black hole"
    );

    proxies[0].restore();
    let done = cluster
        .wait_finished_within(&job.id, Duration::from_secs(60))
        .await;
    assert!(
        is(&done, v1::JobState::Cancelled),
        "{done:#?}\n{}",
        cluster.logs()
    );
    let left = poll(Duration::from_secs(10), async || {
        process_group(pgid).is_empty().then_some(())
    })
    .await;
    assert!(
        left.is_some(),
        "the attempt's processes are gone: {:?}",
        process_group(pgid)
    );
    assert_contiguous(&cluster.history(&job.id).await);
}

/// Runs `seconds` seconds printing a line every 200 ms; when told to stop, prints for 3 s more
/// before it exits (a pipeline that takes its time to stop).
const SLOW_STOP: &str = r#"
[[pipeline]]
name = "slowstop"
description = "prints while it runs; takes 3 s to stop, printing"
command = ["sh", "-c", """
trap 'for i in 1 2 3 4 5 6; do echo "stopping $i"; sleep 0.5; done; exit 143' TERM
i=0
while [ "$i" -lt $((REELAY_PARAM_SECONDS * 5)) ]; do
  i=$((i + 1))
  echo "tick $i"
  sleep 0.2 & wait $!
done
"""]
input_required = false
grace_seconds = 10
params = [ { name = "seconds", default = "20", pattern = "[0-9]{1,4}" } ]
"#;

/// The only node is lost while attempt 1 runs; when it comes back it gets attempt 2 of the same
/// job while attempt 1 is still stopping there (3 s, printing), and the link is cut meanwhile, so
/// the coordinator reconciles with the node in the middle of it. The node's record of the job
/// never goes back to attempt 1 once it accepted attempt 2, and the job ends once, from attempt 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_node_that_comes_back_runs_the_retry_while_the_old_attempt_stops() {
    let builder = TestCluster::builder()
        .extra_config(SLOW_STOP)
        .coordinator_arg("--node-lost-after")
        .coordinator_arg("3s");
    let (cluster, proxies) = proxied_cluster(builder, vec![WorkerSpec::default()]).await;
    let mut job_spec = spec("slowstop", &[("seconds", "20")]);
    job_spec.max_attempts = 2;
    let job = cluster.submit_spec(job_spec).await;
    let pgid = process_group_of(&cluster, 0, &job.id).await;

    proxies[0].black_hole();
    let queued = cluster
        .wait_job(&job.id, Duration::from_secs(40), |job| {
            is(job, v1::JobState::Queued) && job.attempt == 1
        })
        .await;
    assert!(queued.error.starts_with("node lost: "), "{queued:#?}");
    proxies[0].restore();

    // The node takes attempt 2 while attempt 1 prints its way out (3 s): its record of the job
    // must say attempt 2 from then on. Half a second into it the link is cut: the coordinator
    // reconnects and reconciles with the node (GetJob) while attempt 1 is still stopping.
    let mut seen: Vec<(u32, String)> = Vec::new();
    let mut cut_at = None;
    let mut cut = false;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if cut_at.is_none() && cluster.get(&job.id).await.attempt == 2 {
            cut_at = Some(Instant::now() + Duration::from_millis(500));
        }
        if !cut && cut_at.is_some_and(|at| Instant::now() >= at) {
            proxies[0].cut();
            cut = true;
        }
        if let Some(record) = worker_job(&cluster, 0, &job.id).await {
            let entry = (record.attempt, state_name(record.state));
            if seen.last() != Some(&entry) {
                seen.push(entry);
            }
            if cut
                && record.attempt == 2
                && record.state != v1::JobState::Assigned as i32
                && process_group(pgid).is_empty()
            {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("the node's record of the job: {seen:?}");
    assert!(
        cut,
        "the coordinator never gave attempt 2: {seen:?}\n{}",
        cluster.logs()
    );
    let accepted = seen
        .iter()
        .position(|entry| *entry == (2, state_name(v1::JobState::Assigned as i32)))
        .unwrap_or_else(|| {
            panic!(
                "the node's record never said attempt 2 while attempt 1 stopped: {seen:?}\n{}",
                cluster.logs()
            )
        });
    assert!(
        seen[accepted..].iter().all(|(attempt, _)| *attempt == 2),
        "the node's record went back to attempt 1 after it accepted attempt 2: {seen:?}"
    );
    assert!(
        process_group(pgid).is_empty(),
        "attempt 1 stopped: {seen:?}"
    );

    let done = cluster
        .wait_finished_within(&job.id, Duration::from_secs(120))
        .await;
    assert!(
        is(&done, v1::JobState::Succeeded),
        "{done:#?}\n{}",
        cluster.logs()
    );
    assert_eq!((done.attempt, done.node_id.as_str()), (2, "w0"));
    let history = cluster.history(&job.id).await;
    assert_contiguous(&history);
    let jobs: Vec<&v1::Job> = history.iter().filter_map(|e| e.job.as_ref()).collect();
    let second = jobs.iter().position(|job| job.attempt == 2).unwrap();
    assert!(jobs[second..].iter().all(|job| job.attempt == 2));
    assert_eq!(
        jobs.iter()
            .filter(|job| reelay_tests::watch::is_terminal(job.state))
            .count(),
        1
    );
    // No line of attempt 1 (its "stopping" lines) after attempt 2's first.
    let lines = cluster.job_logs(&job.id).await;
    let attempts: Vec<u32> = lines.iter().map(|line| line.attempt).collect();
    assert!(
        attempts.windows(2).all(|pair| pair[0] <= pair[1]),
        "{attempts:?}"
    );
}
