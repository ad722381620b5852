//! A job's whole life through real processes: create, stream, logs, outputs, download, history,
//! delete; idempotent creates; pagination; the contract names.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use reelay_proto::v1;
use reelay_tests::watch::{assert_contiguous, is_terminal};
use reelay_tests::{TestCluster, spec, tools};
use sha2::{Digest, Sha256};
use tonic::Code;

async fn download(cluster: &TestCluster, id: &str, name: &str, offset: u64) -> Vec<u8> {
    let request = v1::DownloadOutputRequest {
        id: id.to_owned(),
        name: name.to_owned(),
        offset,
    };
    let mut stream = cluster
        .jobs()
        .await
        .download_output(request)
        .await
        .expect("download")
        .into_inner();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.message().await.expect("chunk") {
        assert_eq!(
            chunk.offset,
            offset + bytes.len() as u64,
            "chunks arrive in order"
        );
        bytes.extend_from_slice(&chunk.data);
    }
    bytes
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_lives_its_whole_life() {
    let cluster = TestCluster::builder().workers(2).start().await;
    let job = cluster
        .submit("count", &[("steps", "5"), ("interval_ms", "20")])
        .await;
    assert_eq!(job.state, v1::JobState::Queued as i32);
    assert_eq!(job.version, 1);
    assert_eq!(
        job.spec.as_ref().unwrap().params["exit_code"],
        "0",
        "defaults are filled in"
    );

    let events = cluster.wait_terminal(&job.id).await;
    let done = events.last().unwrap().job.clone().unwrap();
    assert_eq!(
        done.state,
        v1::JobState::Succeeded as i32,
        "{done:#?}\n{}",
        cluster.logs()
    );
    assert_eq!(
        (done.progress, done.exit_code, done.attempt),
        (100, Some(0), 1)
    );
    assert!(done.started_at.is_some() && done.finished_at.is_some() && done.expires_at.is_some());
    let node = done.node_id.clone();
    assert!(node == "w0" || node == "w1", "ran on a worker: {node}");

    // Logs: every line once, numbered from 1 without gaps.
    let request = v1::GetJobLogsRequest {
        id: job.id.clone(),
        follow: false,
        after_line: 0,
    };
    let mut stream = cluster
        .jobs()
        .await
        .get_job_logs(request)
        .await
        .unwrap()
        .into_inner();
    let mut lines = Vec::new();
    while let Some(line) = stream.message().await.unwrap() {
        lines.push(line);
    }
    let numbers: Vec<u64> = lines.iter().map(|line| line.number).collect();
    assert_eq!(numbers, (1..=lines.len() as u64).collect::<Vec<_>>());
    assert_eq!(lines[0].text, "counting to 5");
    assert_eq!(
        lines
            .iter()
            .filter(|line| line.text.starts_with("::progress"))
            .count(),
        5
    );
    let after = v1::GetJobLogsRequest {
        id: job.id.clone(),
        follow: false,
        after_line: 3,
    };
    let mut stream = cluster
        .jobs()
        .await
        .get_job_logs(after)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        stream.message().await.unwrap().unwrap().number,
        4,
        "after_line resumes"
    );

    // Outputs: listed with size and hash, downloaded through the coordinator, equal to the file.
    let outputs = cluster
        .jobs()
        .await
        .list_outputs(v1::ListOutputsRequest { id: job.id.clone() })
        .await
        .unwrap();
    let files = outputs.into_inner().files;
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].name, "count.txt");
    // The output is in the artifact store (the coordinator's directory by default); the worker
    // keeps no copy of it.
    let worker = cluster.workers.iter().find(|w| w.node_id == node).unwrap();
    assert!(!worker.data_dir.join("outputs").join(&job.id).exists());
    let on_disk = std::fs::read(
        reelay_tests::artifacts::local_store(&cluster)
            .join("outputs")
            .join(&job.id)
            .join(done.attempt.to_string())
            .join("count.txt"),
    )
    .unwrap();
    let bytes = download(&cluster, &job.id, "count.txt", 0).await;
    assert_eq!(bytes, on_disk);
    assert_eq!(files[0].size, bytes.len() as u64);
    assert_eq!(files[0].sha256, hex::encode(Sha256::digest(&bytes)));
    assert_eq!(
        download(&cluster, &job.id, "count.txt", 7).await,
        on_disk[7..],
        "offset resumes"
    );

    // History: contiguous versions through every state.
    let request = v1::GetJobHistoryRequest {
        id: job.id.clone(),
        after_version: 0,
    };
    let history = cluster
        .jobs()
        .await
        .get_job_history(request)
        .await
        .unwrap()
        .into_inner()
        .events;
    assert_contiguous(&history);
    assert_eq!(history.last().unwrap().version, done.version);
    let states: Vec<i32> = history
        .iter()
        .map(|e| e.job.as_ref().unwrap().state)
        .collect();
    let mut distinct = states.clone();
    distinct.dedup();
    let expected = [
        v1::JobState::Queued,
        v1::JobState::Assigned,
        v1::JobState::Running,
        v1::JobState::Succeeded,
    ];
    assert_eq!(distinct, expected.map(|s| s as i32));

    // WatchJob after a version replays the history after it, then ends (the job is finished).
    let request = v1::WatchJobRequest {
        id: job.id.clone(),
        after_version: 2,
    };
    let mut stream = cluster
        .jobs()
        .await
        .watch_job(request)
        .await
        .unwrap()
        .into_inner();
    let mut replayed = Vec::new();
    while let Some(event) = stream.message().await.unwrap() {
        replayed.push(event.version);
    }
    assert_eq!(replayed, (3..=done.version).collect::<Vec<_>>());

    // Delete: gone from the API, its outputs gone from the worker.
    cluster
        .jobs()
        .await
        .delete_job(v1::DeleteJobRequest { id: job.id.clone() })
        .await
        .unwrap();
    let err = cluster
        .jobs()
        .await
        .get_job(v1::GetJobRequest { id: job.id.clone() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let dir = reelay_tests::artifacts::local_store(&cluster)
        .join("outputs")
        .join(&job.id);
    let deadline = Instant::now() + Duration::from_secs(10);
    while dir.exists() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !dir.exists(),
        "the deleted job's outputs left the artifact store"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn progress_reaches_watchers_while_the_job_runs() {
    let cluster = TestCluster::builder().workers(1).start().await;
    let job = cluster
        .submit("count", &[("steps", "20"), ("interval_ms", "100")])
        .await;
    let mut stream = cluster
        .jobs()
        .await
        .watch_job(v1::WatchJobRequest {
            id: job.id.clone(),
            after_version: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let mut running_progress = Vec::new();
    let mut arrivals = Vec::new();
    while let Some(event) = stream.message().await.unwrap() {
        let job = event.job.unwrap();
        // Progress from the pipeline's lines (not the upload of its outputs after it).
        if job.state == v1::JobState::Running as i32
            && event.change == v1::JobChange::Progress as i32
            && job.transfer.is_none()
        {
            running_progress.push(job.progress);
            arrivals.push(Instant::now());
            assert!(
                job.stage.starts_with("counting step="),
                "stage from the progress line: {:?}",
                job.stage
            );
        }
        if is_terminal(job.state) {
            assert_eq!(job.state, v1::JobState::Succeeded as i32);
            break;
        }
    }
    let distinct: HashSet<u32> = running_progress.iter().copied().collect();
    assert!(
        distinct.len() >= 10,
        "many distinct progress values while running: {running_progress:?}"
    );
    assert!(
        running_progress.windows(2).all(|w| w[0] < w[1]),
        "increasing: {running_progress:?}"
    );
    let spread = *arrivals.last().unwrap() - arrivals[0];
    assert!(
        spread >= Duration::from_millis(1000),
        "they arrived as the job ran, not at the end: {spread:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_contract_matches_the_design() {
    let cluster = TestCluster::builder().workers(1).start().await;
    let worker = format!("127.0.0.1:{}", cluster.workers[0].port);
    let (ok, output) = tools::check_contract(&cluster.address(), Some(&worker));
    assert!(ok, "check-contract failed:\n{output}");
    assert!(output.contains("contract: 0 mismatches"), "{output}");
    // Each port lists only what it serves (the checker fetched grpcurl into its cache).
    let grpcurl = std::path::PathBuf::from(std::env::var("HOME").unwrap())
        .join(".cache/reelay-conformance/grpcurl");
    let list = |address: &str| {
        let output = std::process::Command::new(&grpcurl)
            .args(["-plaintext", address, "list"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let coordinator = list(&cluster.address());
    assert!(
        coordinator.contains("reelay.v1.JobService") && !coordinator.contains("WorkerService"),
        "{coordinator}"
    );
    let worker_list = list(&worker);
    assert!(
        worker_list.contains("reelay.v1.WorkerService") && !worker_list.contains("JobService"),
        "{worker_list}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn create_is_idempotent_by_request_id() {
    let cluster = TestCluster::builder().start().await;
    let request = |id: &str| v1::CreateJobRequest {
        spec: Some(spec("count", &[])),
        request_id: id.to_owned(),
    };
    let first = cluster
        .jobs()
        .await
        .create_job(request("abc"))
        .await
        .unwrap()
        .into_inner();
    let again = cluster
        .jobs()
        .await
        .create_job(request("abc"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.id, again.id);
    assert_eq!(again.request_id, "abc");
    // Concurrent retries of one request: one job.
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let mut client = cluster.jobs().await;
        tasks.push(tokio::spawn(async move {
            client
                .create_job(request("concurrent"))
                .await
                .unwrap()
                .into_inner()
                .id
        }));
    }
    let mut ids = HashSet::new();
    for task in tasks {
        ids.insert(task.await.unwrap());
    }
    assert_eq!(ids.len(), 1, "{ids:?}");
    let other = cluster
        .jobs()
        .await
        .create_job(request("other"))
        .await
        .unwrap()
        .into_inner();
    assert_ne!(other.id, first.id);
    let list = cluster
        .jobs()
        .await
        .list_jobs(v1::ListJobsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.jobs.len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn list_pages_through_thousands_of_jobs_newest_first() {
    // No workers: every job stays queued.
    let cluster = TestCluster::builder().start().await;
    const JOBS: usize = 2500;
    let mut tasks = Vec::new();
    for task in 0..16 {
        let mut client = cluster.jobs().await;
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for n in (task..JOBS).step_by(16) {
                let request = v1::CreateJobRequest {
                    spec: Some(spec("count", &[])),
                    request_id: format!("r{n}"),
                };
                ids.push(client.create_job(request).await.unwrap().into_inner().id);
            }
            ids
        }));
    }
    let mut created = HashSet::new();
    for task in tasks {
        created.extend(task.await.unwrap());
    }
    assert_eq!(created.len(), JOBS);
    // Group commit: concurrent creates shared engine cycles (and so their flushes).
    let metrics = reelay_tests::http::get(&cluster.address(), "/metrics", &[]).text();
    let commands =
        reelay_tests::http::metric(&metrics, "reelay_engine_cycle_commands_sum").unwrap();
    let cycles =
        reelay_tests::http::metric(&metrics, "reelay_engine_cycle_commands_count").unwrap();
    assert!(commands >= JOBS as f64, "{metrics}");
    assert!(
        commands / cycles > 1.5,
        "creates from 16 clients should share cycles: {commands} in {cycles}"
    );

    let list =
        |states: Vec<v1::JobState>, node: &str, token: String, size: i32| v1::ListJobsRequest {
            page_size: size,
            page_token: token,
            states: states.into_iter().map(|s| s as i32).collect(),
            node_id: node.to_owned(),
            ..Default::default()
        };
    let mut client = cluster.jobs().await;
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = client
            .list_jobs(list(vec![], "", token, 100))
            .await
            .unwrap()
            .into_inner();
        assert!(page.jobs.len() <= 100);
        seen.extend(page.jobs.into_iter().map(|job| job.id));
        pages += 1;
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(pages, 25);
    assert_eq!(seen.len(), JOBS);
    assert_eq!(
        seen.iter().cloned().collect::<HashSet<_>>(),
        created,
        "every job once"
    );
    let mut sorted = seen.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(seen, sorted, "newest first (ids are UUIDv7)");

    // Filters.
    let queued = client
        .list_jobs(list(vec![v1::JobState::Queued], "", String::new(), 1000))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(queued.jobs.len(), 1000);
    assert!(!queued.next_page_token.is_empty());
    assert!(
        queued
            .jobs
            .iter()
            .all(|job| job.state == v1::JobState::Queued as i32 && !job.pending_reason.is_empty())
    );
    for id in seen.iter().take(10) {
        client
            .cancel_job(v1::CancelJobRequest { id: id.clone() })
            .await
            .unwrap();
    }
    let cancelled = client
        .list_jobs(list(vec![v1::JobState::Cancelled], "", String::new(), 50))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cancelled.jobs.len(), 10);
    assert!(cancelled.next_page_token.is_empty());
    let both = list(
        vec![v1::JobState::Cancelled, v1::JobState::Running],
        "",
        String::new(),
        50,
    );
    assert_eq!(
        client
            .list_jobs(both)
            .await
            .unwrap()
            .into_inner()
            .jobs
            .len(),
        10
    );
    let on_node = client
        .list_jobs(list(vec![], "nowhere", String::new(), 50))
        .await
        .unwrap()
        .into_inner();
    assert!(on_node.jobs.is_empty());
    let default_size = client
        .list_jobs(list(vec![], "", String::new(), 0))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(default_size.jobs.len(), 50);

    let bad = client
        .list_jobs(list(vec![], "", "garbage".into(), 10))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().contains("page_token"), "{}", bad.message());
}
