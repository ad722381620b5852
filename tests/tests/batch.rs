//! CreateJobs, against real processes: one result per request in order (an invalid item does not
//! sink the others), idempotent by request id across calls and within a batch, refused whole over
//! the limit, every created job seen once by WatchJobs, nothing lost or doubled by a kill -9 of
//! the coordinator in a stream of batches; and `reelay job submit` with several inputs, `--from`
//! and `--watch` as a newcomer types them.

use std::collections::{HashMap, HashSet};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reelay_proto::v1;
use reelay_proto::v1::create_job_result::Result as Item;
use reelay_tests::process::reelay_bin;
use reelay_tests::{TestCluster, spec};
use tonic::Code;

fn request(spec: v1::JobSpec, request_id: &str) -> v1::CreateJobRequest {
    v1::CreateJobRequest {
        spec: Some(spec),
        request_id: request_id.to_owned(),
    }
}

fn quick(request_id: &str) -> v1::CreateJobRequest {
    request(
        spec("count", &[("steps", "1"), ("interval_ms", "1")]),
        request_id,
    )
}

async fn create_jobs(
    cluster: &TestCluster,
    requests: Vec<v1::CreateJobRequest>,
) -> Vec<v1::CreateJobResult> {
    cluster
        .jobs()
        .await
        .create_jobs(v1::CreateJobsRequest { requests })
        .await
        .expect("create jobs")
        .into_inner()
        .results
}

fn job_of(result: &v1::CreateJobResult) -> &v1::Job {
    match &result.result {
        Some(Item::Job(job)) => job,
        other => panic!("expected a job, got {other:?}"),
    }
}

fn error_of(result: &v1::CreateJobResult) -> &v1::ItemError {
    match &result.result {
        Some(Item::Error(error)) => error,
        other => panic!("expected an error, got {other:?}"),
    }
}

/// A WatchJobs stream without snapshots, open (subscribed) when this returns.
async fn watch_all(cluster: &TestCluster) -> tonic::Streaming<v1::JobEvent> {
    cluster
        .jobs()
        .await
        .watch_jobs(v1::WatchJobsRequest {
            states: Vec::new(),
            no_snapshot: true,
        })
        .await
        .expect("watch jobs")
        .into_inner()
}

/// Ids of the CREATED events on `stream` until `expected` of them came, then for `grace` more.
async fn created_events(
    stream: &mut tonic::Streaming<v1::JobEvent>,
    expected: usize,
    grace: Duration,
) -> Vec<String> {
    let mut ids = Vec::new();
    let collect = async {
        if expected == 0 {
            return;
        }
        while let Some(event) = stream.message().await.expect("event") {
            if event.change == v1::JobChange::Created as i32 {
                ids.push(event.job_id);
                if ids.len() == expected {
                    break;
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), collect)
        .await
        .expect("the created events arrive");
    // Anything more (a job announced twice) would arrive now.
    let _ = tokio::time::timeout(grace, async {
        while let Some(event) = stream.message().await.expect("event") {
            if event.change == v1::JobChange::Created as i32 {
                ids.push(event.job_id);
            }
        }
    })
    .await;
    ids
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mixed_batch_answers_each_item_in_order() {
    let cluster = TestCluster::builder().start().await;
    let mut watch = watch_all(&cluster).await;
    let mut long_id = quick(&"r".repeat(300));
    long_id.spec = Some(spec("count", &[]));
    let requests = vec![
        quick("a"),
        request(spec("no-such-pipeline", &[]), "bad-pipeline"),
        quick("b"),
        // The same request id as the first item, with another spec: the first item's job.
        request(spec("sleep", &[("seconds", "1")]), "a"),
        v1::CreateJobRequest {
            spec: None,
            request_id: "no-spec".into(),
        },
        long_id,
        request(spec("count", &[("steps", "x")]), "bad-param"),
        quick(""),
    ];
    let results = create_jobs(&cluster, requests).await;
    assert_eq!(results.len(), 8, "one result per request: {results:#?}");

    let a = job_of(&results[0]);
    assert!(results[0].created);
    assert_eq!(a.request_id, "a");
    assert_eq!(a.state, v1::JobState::Queued as i32);
    assert_eq!(
        a.queue_position, 0,
        "no queue positions in a batch's answer"
    );

    let bad_pipeline = error_of(&results[1]);
    assert_eq!(bad_pipeline.code, Code::InvalidArgument as i32);
    assert!(
        bad_pipeline.message.contains("no-such-pipeline"),
        "{bad_pipeline:?}"
    );
    assert!(!results[1].created);

    let b = job_of(&results[2]);
    assert!(results[2].created);
    assert_ne!(a.id, b.id);

    let again = job_of(&results[3]);
    assert_eq!(again.id, a.id, "a request id repeated within the batch");
    assert_eq!(
        again.spec.as_ref().unwrap().pipeline,
        "count",
        "the first item's job, whatever the second says"
    );
    assert!(!results[3].created);

    let no_spec = error_of(&results[4]);
    assert_eq!(no_spec.code, Code::InvalidArgument as i32);
    assert!(no_spec.message.contains("requests[4].spec"), "{no_spec:?}");

    let long = error_of(&results[5]);
    assert_eq!(long.code, Code::InvalidArgument as i32);
    assert!(long.message.contains("request_id"), "{long:?}");

    let bad_param = error_of(&results[6]);
    assert_eq!(bad_param.code, Code::InvalidArgument as i32);
    assert!(bad_param.message.contains("steps"), "{bad_param:?}");

    let anonymous = job_of(&results[7]);
    assert!(results[7].created);
    assert!(
        a.id < b.id && b.id < anonymous.id,
        "a batch's jobs queue in the order of its requests"
    );

    // Exactly three jobs exist, each readable, and watchers heard of each once.
    let created: HashSet<String> = [&a.id, &b.id, &anonymous.id].into_iter().cloned().collect();
    let stored: HashSet<String> = cluster
        .all_jobs()
        .await
        .into_iter()
        .map(|job| job.id)
        .collect();
    assert_eq!(stored, created);
    for id in &created {
        assert_eq!(&cluster.get(id).await.id, id);
    }
    let mut announced = created_events(&mut watch, 3, Duration::from_millis(300)).await;
    announced.sort();
    let mut expected: Vec<String> = created.into_iter().collect();
    expected.sort();
    assert_eq!(announced, expected, "each created job announced once");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_repeated_batch_creates_nothing() {
    let cluster = TestCluster::builder().start().await;
    let requests: Vec<v1::CreateJobRequest> =
        (0..50).map(|n| quick(&format!("again-{n}"))).collect();
    let first = create_jobs(&cluster, requests.clone()).await;
    assert!(first.iter().all(|result| result.created));
    let mut watch = watch_all(&cluster).await;
    let second = create_jobs(&cluster, requests).await;
    assert_eq!(second.len(), 50);
    for (one, two) in first.iter().zip(&second) {
        assert_eq!(job_of(one).id, job_of(two).id, "the same job again");
        assert!(!two.created, "nothing new: {two:?}");
    }
    assert_eq!(cluster.all_jobs().await.len(), 50);
    assert!(
        created_events(&mut watch, 0, Duration::from_millis(300))
            .await
            .is_empty(),
        "no job announced for the repeat"
    );
    // Its history is its creation, once (stored with the first change; the record until then).
    let history = cluster.history(&job_of(&first[0]).id).await;
    assert_eq!(history.len(), 1, "{history:#?}");
    assert_eq!(history[0].version, 1);
    assert_eq!(history[0].change, v1::JobChange::Created as i32);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_over_the_limit_is_refused_whole() {
    let cluster = TestCluster::builder().start().await;
    let requests: Vec<v1::CreateJobRequest> =
        (0..1001).map(|n| quick(&format!("over-{n}"))).collect();
    let status = cluster
        .jobs()
        .await
        .create_jobs(v1::CreateJobsRequest { requests })
        .await
        .expect_err("1,001 requests are over the limit");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("1001") && status.message().contains("1000"),
        "names the count and the limit: {}",
        status.message()
    );
    assert!(cluster.all_jobs().await.is_empty(), "nothing was created");
    let empty = create_jobs(&cluster, Vec::new()).await;
    assert!(empty.is_empty(), "an empty batch is an empty answer");
    let full: Vec<v1::CreateJobRequest> = (0..1000).map(|n| quick(&format!("full-{n}"))).collect();
    let results = create_jobs(&cluster, full).await;
    assert!(results.iter().all(|result| result.created));
    assert_eq!(cluster.all_jobs().await.len(), 1000);
}

#[tokio::test(flavor = "multi_thread")]
async fn watchers_see_every_created_job_once() {
    let cluster = TestCluster::builder().workers(1).start().await;
    let mut watch = watch_all(&cluster).await;
    // Two clients, four batches each, at once: batches share engine cycles.
    let mut tasks = Vec::new();
    for client in 0..2 {
        let mut jobs = cluster.jobs().await;
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for round in 0..4 {
                let requests = (0..100)
                    .map(|n| quick(&format!("watched-{client}-{round}-{n}")))
                    .collect();
                let results = jobs
                    .create_jobs(v1::CreateJobsRequest { requests })
                    .await
                    .expect("create jobs")
                    .into_inner()
                    .results;
                ids.extend(results.iter().map(|result| job_of(result).id.clone()));
            }
            ids
        }));
    }
    let mut created = Vec::new();
    for task in tasks {
        created.extend(task.await.unwrap());
    }
    assert_eq!(created.len(), 800);
    let announced = created_events(&mut watch, 800, Duration::from_millis(500)).await;
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for id in &announced {
        *counts.entry(id).or_default() += 1;
    }
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "announced twice: {twice:?}");
    let announced: HashSet<&str> = counts.keys().copied().collect();
    let created_set: HashSet<&str> = created.iter().map(String::as_str).collect();
    assert_eq!(announced, created_set, "every created job, and only those");
}

#[tokio::test(flavor = "multi_thread")]
async fn kill9_in_a_stream_of_batches_loses_no_acknowledged_job_and_doubles_none() {
    let mut cluster = TestCluster::builder().start().await;
    // request id -> job id, for every item whose batch was acknowledged.
    let acknowledged: Arc<Mutex<HashMap<String, String>>> = Arc::default();
    let batches_per_client = 400;
    let mut tasks = Vec::new();
    for client in 0..3 {
        let connect = cluster.connect();
        let acknowledged = Arc::clone(&acknowledged);
        tasks.push(tokio::spawn(async move {
            let mut jobs = connect.jobs().await;
            for round in 0..batches_per_client {
                let requests: Vec<v1::CreateJobRequest> = (0..50)
                    .map(|n| quick(&format!("k-{client}-{round}-{n}")))
                    .collect();
                let ids: Vec<String> = requests.iter().map(|r| r.request_id.clone()).collect();
                let Ok(response) = jobs.create_jobs(v1::CreateJobsRequest { requests }).await
                else {
                    // The coordinator is gone: whatever this batch did is unknown.
                    return round;
                };
                let mut acknowledged = acknowledged.lock().unwrap();
                for (id, result) in ids.into_iter().zip(response.into_inner().results) {
                    acknowledged.insert(id, job_of(&result).id.clone());
                }
            }
            batches_per_client
        }));
    }
    // Let batches flow, then kill the coordinator in the middle of them.
    tokio::time::timeout(Duration::from_secs(30), async {
        while acknowledged.lock().unwrap().len() < 2000 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("batches are acknowledged");
    cluster.coordinator.kill9();
    let mut sent_rounds = Vec::new();
    for task in tasks {
        sent_rounds.push(task.await.unwrap());
    }
    assert!(
        sent_rounds
            .iter()
            .any(|rounds| *rounds < batches_per_client),
        "the kill came while batches were being sent: {sent_rounds:?}"
    );
    cluster.coordinator.restart();
    cluster.wait_serving().await;

    let acknowledged = acknowledged.lock().unwrap().clone();
    let stored = cluster.all_jobs().await;
    let mut by_request: HashMap<&str, Vec<&str>> = HashMap::new();
    for job in &stored {
        by_request
            .entry(job.request_id.as_str())
            .or_default()
            .push(job.id.as_str());
    }
    let doubled: Vec<_> = by_request.iter().filter(|(_, ids)| ids.len() > 1).collect();
    assert!(doubled.is_empty(), "jobs made twice: {doubled:?}");
    let lost: Vec<_> = acknowledged
        .iter()
        .filter(|(request, id)| by_request.get(request.as_str()) != Some(&vec![id.as_str()]))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged jobs lost or changed, e.g. {:?}",
        lost.len(),
        acknowledged.len(),
        lost.first()
    );

    // Sending every batch again (as a client that did not hear back would) makes nothing twice:
    // each request id ends with exactly one job, the acknowledged ones with theirs.
    let mut jobs = cluster.jobs().await;
    for (client, rounds) in sent_rounds.iter().enumerate() {
        let resend = (*rounds + 1).min(batches_per_client);
        for round in 0..resend {
            let requests = (0..50)
                .map(|n| quick(&format!("k-{client}-{round}-{n}")))
                .collect();
            jobs.create_jobs(v1::CreateJobsRequest { requests })
                .await
                .expect("create jobs after the restart");
        }
    }
    let stored = cluster.all_jobs().await;
    let mut by_request: HashMap<&str, Vec<&str>> = HashMap::new();
    for job in &stored {
        by_request
            .entry(job.request_id.as_str())
            .or_default()
            .push(job.id.as_str());
    }
    let expected: usize = sent_rounds
        .iter()
        .map(|rounds| (*rounds + 1).min(batches_per_client) * 50)
        .sum();
    assert_eq!(by_request.len(), expected, "every request id once");
    assert!(by_request.values().all(|ids| ids.len() == 1));
    for (request, id) in &acknowledged {
        assert_eq!(by_request[request.as_str()], vec![id.as_str()]);
    }
}

// === the command line ===

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn json_lines(output: &Output) -> Vec<serde_json::Value> {
    text(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|err| panic!("{err}: {line}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn several_inputs_make_one_job_each_and_a_rerun_makes_none() {
    let cluster = TestCluster::builder().workers(1).start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.txt"), "first\n").unwrap();
    std::fs::write(dir.path().join("b.txt"), "second\n").unwrap();

    let submitted = cluster.cli(
        dir.path(),
        &[
            "job", "submit", "copy", "--input", "a.txt", "--input", "b.txt", "--watch",
        ],
    );
    let (out, err) = (text(&submitted.stdout), text(&submitted.stderr));
    assert!(submitted.status.success(), "{out}{err}");
    assert!(out.contains("submitted 2 jobs"), "{out}");
    assert!(out.contains("2 jobs: 2 succeeded"), "{out}");
    assert!(
        out.contains("a.txt (job ") && out.contains("b.txt (job "),
        "each job named by its file: {out}"
    );
    let jobs = cluster.all_jobs().await;
    assert_eq!(jobs.len(), 2);
    let mut inputs: Vec<String> = jobs
        .iter()
        .map(|job| job.spec.as_ref().unwrap().input_path.clone())
        .collect();
    inputs.sort();
    let expected: Vec<String> = ["a.txt", "b.txt"]
        .iter()
        .map(|name| dir.path().join(name).display().to_string())
        .collect();
    assert_eq!(inputs, expected, "absolute paths of the files");
    assert!(
        jobs.iter()
            .all(|job| job.state == v1::JobState::Succeeded as i32)
    );

    // The same command again (a glob this time: the shell passes the same two files).
    let again = cluster.cli(
        dir.path(),
        &["job", "submit", "copy", "--input", "a.txt", "b.txt"],
    );
    let out = text(&again.stdout);
    assert!(again.status.success(), "{out}{}", text(&again.stderr));
    assert!(
        out.contains("nothing new: all 2 jobs were submitted before"),
        "says nothing new was made: {out}"
    );
    assert_eq!(cluster.all_jobs().await.len(), 2, "no job twice");

    // A new prefix submits them anew; -q prints their ids, one per line.
    let anew = cluster.cli(
        dir.path(),
        &[
            "job",
            "submit",
            "copy",
            "--input",
            "a.txt",
            "b.txt",
            "--request-id",
            "run2",
            "-q",
        ],
    );
    let ids: Vec<String> = text(&anew.stdout).lines().map(str::to_owned).collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(ids.iter().all(|id| id.len() == 36), "{ids:?}");
    assert_eq!(cluster.all_jobs().await.len(), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn from_a_jsonl_file_and_a_failing_job_under_watch() {
    let cluster = TestCluster::builder()
        .worker(reelay_tests::WorkerSpec {
            slots: 3,
            ..Default::default()
        })
        .start()
        .await;
    let dir = tempfile::tempdir().unwrap();

    // A bad line: reported by number, nothing submitted.
    std::fs::write(
        dir.path().join("bad.jsonl"),
        "{\"params\": {\"steps\": 2}}\n{\"params\": {\"steps\": 2}, \"prority\": 3}\n",
    )
    .unwrap();
    let bad = cluster.cli(
        dir.path(),
        &["job", "submit", "count", "--from", "bad.jsonl"],
    );
    assert_eq!(bad.status.code(), Some(1));
    let err = text(&bad.stderr);
    assert!(
        err.contains("bad.jsonl line 2") && err.contains("prority"),
        "{err}"
    );
    assert!(err.contains("nothing was submitted"), "{err}");
    assert!(cluster.all_jobs().await.is_empty());

    // One job per line, as JSON; the pipeline from the command line for lines without one.
    std::fs::write(
        dir.path().join("jobs.jsonl"),
        "{\"params\": {\"steps\": 2, \"interval_ms\": 10}}\n\
         \n\
         {\"pipeline\": \"fail\", \"params\": {\"code\": \"7\"}}\n\
         {\"params\": {\"steps\": 3, \"interval_ms\": 10}, \"priority\": 5}\n",
    )
    .unwrap();
    let watched = cluster.cli(
        dir.path(),
        &["job", "submit", "count", "--from", "jobs.jsonl", "--watch"],
    );
    let (out, err) = (text(&watched.stdout), text(&watched.stderr));
    assert_eq!(watched.status.code(), Some(1), "one job failed: {out}{err}");
    let jobs = cluster.all_jobs().await;
    assert_eq!(jobs.len(), 3);
    let failed = jobs
        .iter()
        .find(|job| job.spec.as_ref().unwrap().pipeline == "fail")
        .unwrap();
    assert_eq!(failed.state, v1::JobState::Failed as i32);
    assert!(
        err.contains(&format!(
            "job {} (jobs.jsonl line 3) failed: exit code 7",
            failed.id
        )),
        "names the failed job and its error: {err}"
    );
    assert!(out.contains("3 jobs: 2 succeeded, 1 failed"), "{out}");
    assert!(
        jobs.iter()
            .filter(|job| job.id != failed.id)
            .all(|job| job.state == v1::JobState::Succeeded as i32),
        "{jobs:#?}"
    );
    let prioritised = jobs
        .iter()
        .find(|job| job.spec.as_ref().unwrap().priority == 5)
        .unwrap();
    assert_eq!(prioritised.spec.as_ref().unwrap().params["steps"], "3");

    // From stdin, -o json: one object per job, in the order of the lines.
    let mut child = Command::new(reelay_bin())
        .args(["job", "submit", "--from", "-", "-o", "json"])
        .env("REELAY_SERVER", cluster.url())
        .env_remove("REELAY_TOKEN")
        .current_dir(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        writeln!(
            stdin,
            "{{\"pipeline\": \"count\", \"params\": {{\"steps\": \"1\"}}}}"
        )
        .unwrap();
        writeln!(stdin, "{{\"pipeline\": \"nope\"}}").unwrap();
        writeln!(
            stdin,
            "{{\"pipeline\": \"sleep\", \"params\": {{\"seconds\": \"1\"}}}}"
        )
        .unwrap();
    }
    let piped = child.wait_with_output().unwrap();
    assert_eq!(
        piped.status.code(),
        Some(1),
        "an item was refused: {}",
        text(&piped.stderr)
    );
    let lines = json_lines(&piped);
    assert_eq!(lines.len(), 3, "{lines:#?}");
    assert_eq!(lines[0]["spec"]["pipeline"], "count");
    assert_eq!(lines[1]["error"]["code"], "INVALID_ARGUMENT");
    assert_eq!(lines[1]["source"], "stdin line 2");
    assert_eq!(lines[2]["spec"]["pipeline"], "sleep");
    assert!(
        text(&piped.stderr).contains("stdin line 2: "),
        "{}",
        text(&piped.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_watch_of_several_jobs_survives_a_coordinator_restart() {
    let mut cluster = TestCluster::builder()
        .worker(reelay_tests::WorkerSpec {
            slots: 3,
            ..Default::default()
        })
        .start()
        .await;
    let dir = tempfile::tempdir().unwrap();
    for name in ["a", "b", "c"] {
        std::fs::write(dir.path().join(name), name).unwrap();
    }
    let child = Command::new(reelay_bin())
        .args([
            "job",
            "submit",
            "count",
            "--input",
            "a",
            "b",
            "c",
            "-p",
            "steps=30",
            "-p",
            "interval_ms=100",
            "--watch",
            "-o",
            "json",
        ])
        .env("REELAY_SERVER", cluster.url())
        .env_remove("REELAY_TOKEN")
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Once the jobs run, the coordinator dies and comes back.
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let jobs = cluster.all_jobs().await;
            if jobs.len() == 3
                && jobs
                    .iter()
                    .all(|job| job.state == v1::JobState::Running as i32 && job.progress >= 10)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the jobs run");
    cluster.coordinator.kill9();
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster.coordinator.restart();
    cluster.wait_serving().await;

    let output = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "every job succeeded: {}",
        text(&output.stderr)
    );
    // Per job: versions only grow (nothing shown twice), and it ends SUCCEEDED.
    let mut last: HashMap<String, (u64, String)> = HashMap::new();
    for event in json_lines(&output) {
        let id = event["job_id"].as_str().unwrap().to_owned();
        let version = event["version"].as_u64().unwrap();
        let state = event["state"].as_str().unwrap().to_owned();
        if let Some((before, _)) = last.get(&id) {
            assert!(
                version > *before,
                "job {id}: version {version} after {before}"
            );
        }
        last.insert(id, (version, state));
    }
    assert_eq!(last.len(), 3, "{last:?}");
    assert!(
        last.values()
            .all(|(_, state)| state == "JOB_STATE_SUCCEEDED"),
        "{last:?}"
    );
}
