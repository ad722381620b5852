//! Bad input gets a status that says what is wrong, and nothing outside a job's directory is read.

use std::time::Duration;

use reelay_proto::v1;
use reelay_tests::process::{ReelayProcess, free_port};
use reelay_tests::{TestCluster, spec};
use tonic::{Code, Status};

const MISSING_ID: &str = "01a22300-0000-7000-8000-000000000000";

fn assert_status(result: Result<impl std::fmt::Debug, Status>, code: Code, mentions: &str) {
    let status = result.expect_err("the call must fail");
    assert_eq!(status.code(), code, "{status:?}");
    assert!(
        status.message().contains(mentions),
        "{:?} should mention {mentions:?}",
        status.message()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_and_malformed_ids() {
    let cluster = TestCluster::builder().workers(1).start().await;
    let mut jobs = cluster.jobs().await;
    let id = || MISSING_ID.to_owned();
    assert_status(
        jobs.get_job(v1::GetJobRequest { id: id() }).await,
        Code::NotFound,
        MISSING_ID,
    );
    assert_status(
        jobs.cancel_job(v1::CancelJobRequest { id: id() }).await,
        Code::NotFound,
        MISSING_ID,
    );
    assert_status(
        jobs.retry_job(v1::RetryJobRequest { id: id() }).await,
        Code::NotFound,
        MISSING_ID,
    );
    assert_status(
        jobs.delete_job(v1::DeleteJobRequest { id: id() }).await,
        Code::NotFound,
        MISSING_ID,
    );
    assert_status(
        jobs.list_outputs(v1::ListOutputsRequest { id: id() }).await,
        Code::NotFound,
        MISSING_ID,
    );
    let history = v1::GetJobHistoryRequest {
        id: id(),
        after_version: 0,
    };
    assert_status(
        jobs.get_job_history(history).await,
        Code::NotFound,
        MISSING_ID,
    );
    assert_status(
        jobs.watch_job(v1::WatchJobRequest {
            id: id(),
            after_version: 0,
        })
        .await,
        Code::NotFound,
        MISSING_ID,
    );
    let logs = v1::GetJobLogsRequest {
        id: id(),
        follow: true,
        after_line: 0,
    };
    assert_status(jobs.get_job_logs(logs).await, Code::NotFound, MISSING_ID);
    let download = v1::DownloadOutputRequest {
        id: id(),
        name: "a".into(),
        offset: 0,
    };
    assert_status(
        jobs.download_output(download).await,
        Code::NotFound,
        MISSING_ID,
    );

    assert_status(
        jobs.get_job(v1::GetJobRequest {
            id: "job_123".into(),
        })
        .await,
        Code::InvalidArgument,
        "id",
    );
    assert_status(
        jobs.get_job(v1::GetJobRequest { id: String::new() }).await,
        Code::InvalidArgument,
        "required",
    );

    let mut nodes = cluster.nodes().await;
    assert_status(
        nodes
            .get_node(v1::GetNodeRequest { id: "nope".into() })
            .await,
        Code::NotFound,
        "nope",
    );
    assert_status(
        nodes
            .drain_node(v1::DrainNodeRequest { id: "nope".into() })
            .await,
        Code::NotFound,
        "nope",
    );
    assert_status(
        nodes
            .undrain_node(v1::UndrainNodeRequest { id: "nope".into() })
            .await,
        Code::NotFound,
        "nope",
    );
    assert_status(
        nodes
            .remove_node(v1::RemoveNodeRequest { id: "nope".into() })
            .await,
        Code::NotFound,
        "nope",
    );
    assert_status(
        nodes
            .get_node(v1::GetNodeRequest { id: "a b".into() })
            .await,
        Code::InvalidArgument,
        "id",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_specs_name_the_field() {
    let cluster = TestCluster::builder()
        .extra_config("\n[[pipeline]]\nname = \"needs\"\ncommand = [\"true\"]\ninput_required = false\nparams = [ { name = \"quality\" } ]\n")
        .start()
        .await;
    let mut jobs = cluster.jobs().await;
    let create = |spec: v1::JobSpec| v1::CreateJobRequest {
        spec: Some(spec),
        request_id: String::new(),
    };

    assert_status(
        jobs.create_job(create(spec("nope", &[]))).await,
        Code::InvalidArgument,
        "spec.pipeline: unknown pipeline \"nope\"",
    );
    assert_status(
        jobs.create_job(create(spec("needs", &[]))).await,
        Code::InvalidArgument,
        "spec.params.quality: required",
    );
    assert_status(
        jobs.create_job(create(spec("count", &[("steps", "12a")])))
            .await,
        Code::InvalidArgument,
        "spec.params.steps",
    );
    assert_status(
        jobs.create_job(create(spec("count", &[("colour", "red")])))
            .await,
        Code::InvalidArgument,
        "spec.params.colour",
    );
    let mut relative = spec("copy", &[]);
    relative.input_path = "videos/in.mp4".into();
    assert_status(
        jobs.create_job(create(relative)).await,
        Code::InvalidArgument,
        "spec.input_path",
    );
    assert_status(
        jobs.create_job(create(spec("copy", &[]))).await,
        Code::InvalidArgument,
        "spec.input_uri",
    );
    let mut attempts = spec("count", &[]);
    attempts.max_attempts = 1000;
    assert_status(
        jobs.create_job(create(attempts)).await,
        Code::InvalidArgument,
        "spec.max_attempts",
    );
    let none = v1::CreateJobRequest {
        spec: None,
        request_id: String::new(),
    };
    assert_status(jobs.create_job(none).await, Code::InvalidArgument, "spec");
    let states = v1::ListJobsRequest {
        states: vec![99],
        ..Default::default()
    };
    assert_status(
        jobs.list_jobs(states).await,
        Code::InvalidArgument,
        "states",
    );
    let negative = v1::ListJobsRequest {
        page_size: -1,
        ..Default::default()
    };
    assert_status(
        jobs.list_jobs(negative).await,
        Code::InvalidArgument,
        "page_size",
    );

    // Nothing was created by any of these.
    let list = jobs
        .list_jobs(v1::ListJobsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(list.jobs.is_empty(), "{:#?}", list.jobs);
}

#[tokio::test(flavor = "multi_thread")]
async fn output_names_cannot_leave_the_job_directory() {
    let cluster = TestCluster::builder().workers(1).start().await;
    let job = cluster
        .submit("count", &[("steps", "1"), ("interval_ms", "1")])
        .await;
    cluster.wait_terminal(&job.id).await;
    // Something worth stealing next to the job's directory, and a symlink planted inside it.
    let outputs = cluster.workers[0].data_dir.join("outputs");
    std::fs::write(outputs.join("secret.txt"), "secret").unwrap();
    // The worker keeps no copy of outputs in the artifact store: the job's directory is made
    // again, as it would be while the job runs.
    std::fs::create_dir_all(outputs.join(&job.id)).unwrap();
    std::os::unix::fs::symlink(
        outputs.join("secret.txt"),
        outputs.join(&job.id).join("link.txt"),
    )
    .unwrap();

    let mut jobs = cluster.jobs().await;
    let mut worker = cluster.worker_client(0).await;
    for name in [
        "../secret.txt",
        "..",
        "a/b",
        "/etc/passwd",
        "count.txt\0x",
        "",
    ] {
        let request = v1::DownloadOutputRequest {
            id: job.id.clone(),
            name: name.to_owned(),
            offset: 0,
        };
        assert_status(
            jobs.download_output(request.clone()).await,
            Code::InvalidArgument,
            "name",
        );
        // The worker checks again, for callers that reach it directly.
        assert_status(
            worker.download_output(request).await,
            Code::InvalidArgument,
            "name",
        );
    }
    let link = v1::DownloadOutputRequest {
        id: job.id.clone(),
        name: "link.txt".into(),
        offset: 0,
    };
    assert_status(
        jobs.download_output(link.clone()).await,
        Code::NotFound,
        "link.txt",
    );
    let through_link = worker.download_output(link).await;
    assert!(
        through_link.is_err(),
        "a symlink is not followed: {through_link:?}"
    );
    let past_end = v1::DownloadOutputRequest {
        id: job.id.clone(),
        name: "count.txt".into(),
        offset: 1_000_000,
    };
    assert_status(
        jobs.download_output(past_end).await,
        Code::InvalidArgument,
        "offset",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_input_fails_the_job_with_its_path() {
    let cluster = TestCluster::builder().workers(1).start().await;
    let mut missing = spec("copy", &[]);
    missing.input_path = "/nonexistent/input.mp4".into();
    let job = cluster.submit_spec(missing).await;
    let done = cluster.wait_finished(&job.id).await;
    assert_eq!(done.state, v1::JobState::Failed as i32);
    assert_eq!(done.error, "input not found: /nonexistent/input.mp4");

    let input = cluster.path().join("in.bin");
    std::fs::write(&input, b"video bytes").unwrap();
    let mut present = spec("copy", &[]);
    present.input_path = input.display().to_string();
    let job = cluster.submit_spec(present).await;
    let done = cluster.wait_finished(&job.id).await;
    assert_eq!(done.state, v1::JobState::Succeeded as i32, "{done:#?}");
    assert_eq!(done.outputs[0].size, 11);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unparsable_config_stops_the_server_with_file_line_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("broken.toml");
    std::fs::write(&config, "[[pipeline]]\nname = \"a\"\ncommand = [\"x\"]\nparams = [ { name = \"h\", pattern = \"([\" } ]\n").unwrap();
    for role in ["coordinator", "worker"] {
        let args = vec![
            role.to_owned(),
            "--listen".into(),
            format!("127.0.0.1:{}", free_port()),
            "--data-dir".into(),
            dir.path().join(role).display().to_string(),
            "--config".into(),
            config.display().to_string(),
        ];
        let mut process =
            ReelayProcess::start(role, args, vec![], dir.path().join(format!("{role}.log")));
        let status = process
            .wait_exit(Duration::from_secs(20))
            .expect("the server stops by itself");
        assert!(!status.success());
        let log = process.log_text();
        let expected = format!("{}:4:", config.display());
        assert!(
            log.contains(&expected),
            "{role} names the file and line: {log}"
        );
        assert!(log.contains("bad pattern"), "{role} says why: {log}");
    }
}
