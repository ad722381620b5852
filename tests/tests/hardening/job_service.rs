//! JobService: ids, every field of a job spec, paging, filters, cursors past the end, actions the
//! job's state forbids, undecodable and oversized requests.

use std::time::Duration;

use reelay_proto::v1::{
    CancelJobRequest, CreateJobRequest, DeleteJobRequest, DownloadOutputRequest,
    GetJobHistoryRequest, GetJobLogsRequest, GetJobRequest, JobSpec, JobState, ListJobsRequest,
    ListOutputsRequest, RetryJobRequest, WatchJobRequest, WatchJobsRequest,
};
use reelay_tests::{TestCluster, spec};
use tonic::Code;

use super::{
    LIMIT, MISSING_ID, Table, assert_still_runs_jobs, bad_strings, first, malformed, oversized,
    raw_call,
};

const INVALID: &[Code] = &[Code::InvalidArgument];

fn create(spec: JobSpec) -> CreateJobRequest {
    CreateJobRequest {
        spec: Some(spec),
        request_id: String::new(),
    }
}

/// Specs of `count` with one field wrong, and the field the refusal must name.
fn bad_specs() -> Vec<(&'static str, JobSpec, &'static str)> {
    let with = |change: &dyn Fn(&mut JobSpec)| {
        let mut spec = spec("count", &[]);
        change(&mut spec);
        spec
    };
    let many = |prefix: &str| {
        (0..5000)
            .map(|i| (format!("{prefix}{i}"), "1".to_owned()))
            .collect()
    };
    vec![
        (
            "thousands of unknown params",
            with(&|s| s.params = many("p")),
            "spec.params.",
        ),
        (
            "an empty param name",
            with(&|s| s.params = [(String::new(), "1".into())].into()),
            "spec.params.",
        ),
        (
            "a 100 KB param name",
            with(&|s| s.params = [("p".repeat(100_000), "1".into())].into()),
            "spec.params.",
        ),
        (
            "a 100 KB param value",
            with(&|s| s.params = [("steps".into(), "1".repeat(100_000))].into()),
            "spec.params.steps",
        ),
        (
            "a param value with NUL",
            with(&|s| s.params = [("steps".into(), "1\0".into())].into()),
            "spec.params.steps",
        ),
        (
            "a label with an empty key",
            with(&|s| s.labels = [(String::new(), "x".into())].into()),
            "spec.labels",
        ),
        (
            "a 200 byte label key",
            with(&|s| s.labels = [("k".repeat(200), "x".into())].into()),
            "spec.labels",
        ),
        (
            "a 100 KB label value",
            with(&|s| s.labels = [("k".into(), "v".repeat(100_000))].into()),
            "spec.labels",
        ),
        (
            "thousands of labels",
            with(&|s| s.labels = many("k")),
            "spec.labels",
        ),
        (
            "a timeout over 7 days",
            with(&|s| s.timeout_seconds = 7 * 24 * 3600 + 1),
            "spec.timeout_seconds",
        ),
        (
            "u32::MAX attempts",
            with(&|s| s.max_attempts = u32::MAX),
            "spec.max_attempts",
        ),
        (
            "no pipeline",
            with(&|s| s.pipeline.clear()),
            "spec.pipeline",
        ),
        (
            "a pipeline name with NUL",
            with(&|s| s.pipeline = "count\0".into()),
            "spec.pipeline",
        ),
        (
            "a unicode pipeline name",
            with(&|s| s.pipeline = "ジョブ".into()),
            "spec.pipeline",
        ),
        (
            "a 100 KB pipeline name",
            with(&|s| s.pipeline = "p".repeat(100_000)),
            "spec.pipeline",
        ),
        (
            "an input path with NUL",
            with(&|s| s.input_path = "/in\0.mp4".into()),
            "spec.input_path",
        ),
        (
            "a 100 KB input path",
            with(&|s| s.input_path = format!("/{}", "a".repeat(100_000))),
            "spec.input_path",
        ),
        (
            "a pin to a bad node id",
            with(&|s| s.node_id = "a b".into()),
            "spec.node_id",
        ),
        (
            "a pin with NUL",
            with(&|s| s.node_id = "w0\0".into()),
            "spec.node_id",
        ),
        (
            "a 100 KB pin",
            with(&|s| s.node_id = "w".repeat(100_000)),
            "spec.node_id",
        ),
    ]
}

/// Valid extremes: accepted. Pinned to a node that does not exist, so they stay queued.
fn extreme_specs() -> Vec<(&'static str, JobSpec)> {
    let with = |change: &dyn Fn(&mut JobSpec)| {
        let mut spec = spec("sleep", &[("seconds", "60")]);
        spec.node_id = "nowhere".into();
        change(&mut spec);
        spec
    };
    vec![
        ("priority i32::MAX", with(&|s| s.priority = i32::MAX)),
        ("priority i32::MIN", with(&|s| s.priority = i32::MIN)),
        (
            "a timeout of exactly 7 days",
            with(&|s| s.timeout_seconds = 7 * 24 * 3600),
        ),
        (
            "64 labels",
            with(&|s| s.labels = (0..64).map(|i| (format!("k{i}"), "v".into())).collect()),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn job_service_refuses_bad_arguments() {
    let cluster = TestCluster::builder().workers(1).start().await;
    let mut jobs = cluster.jobs().await;
    let mut t = Table::default();
    let finished = cluster
        .submit("count", &[("steps", "1"), ("interval_ms", "1")])
        .await;
    cluster.wait_terminal(&finished.id).await;
    let running = cluster.submit("sleep", &[("seconds", "60")]).await;
    let is_running = |job: &reelay_proto::v1::Job| job.state == JobState::Running as i32;
    cluster
        .wait_job(&running.id, Duration::from_secs(30), is_running)
        .await;

    // Ids, for every method that takes one.
    for (what, id) in bad_strings() {
        t.expect(
            INVALID,
            if id.is_empty() {
                "id: a job id is required"
            } else {
                "id: "
            },
        );
        let case = |method: &str| format!("{method} with a {what} id");
        let id = || id.clone();
        t.case(
            case("GetJob"),
            jobs.get_job(GetJobRequest { id: id() }).await,
        );
        t.case(
            case("CancelJob"),
            jobs.cancel_job(CancelJobRequest { id: id() }).await,
        );
        t.case(
            case("RetryJob"),
            jobs.retry_job(RetryJobRequest { id: id() }).await,
        );
        t.case(
            case("DeleteJob"),
            jobs.delete_job(DeleteJobRequest { id: id() }).await,
        );
        t.case(
            case("ListOutputs"),
            jobs.list_outputs(ListOutputsRequest { id: id() }).await,
        );
        let watch = WatchJobRequest {
            id: id(),
            after_version: 0,
        };
        t.case(case("WatchJob"), first(jobs.watch_job(watch).await).await);
        let logs = GetJobLogsRequest {
            id: id(),
            follow: true,
            after_line: 0,
        };
        t.case(
            case("GetJobLogs"),
            first(jobs.get_job_logs(logs).await).await,
        );
        let download = DownloadOutputRequest {
            id: id(),
            name: "count.txt".into(),
            offset: 0,
        };
        t.case(
            case("DownloadOutput"),
            first(jobs.download_output(download).await).await,
        );
        let history = GetJobHistoryRequest {
            id: id(),
            after_version: 0,
        };
        t.case(case("GetJobHistory"), jobs.get_job_history(history).await);
    }

    // CreateJob: every field of the spec, then the valid extremes (cancelled again).
    for (what, spec, field) in bad_specs() {
        t.expect(INVALID, field);
        t.case(
            format!("CreateJob with {what}"),
            jobs.create_job(create(spec)).await,
        );
    }
    t.expect(INVALID, "request_id");
    for (what, request_id) in [
        ("a 257 byte", "r".repeat(257)),
        ("a 100 KB", "r".repeat(100_000)),
    ] {
        let request = CreateJobRequest {
            spec: Some(spec("count", &[])),
            request_id,
        };
        t.case(
            format!("CreateJob with {what} request id"),
            jobs.create_job(request).await,
        );
    }
    let mut extremes = Vec::new();
    for (what, spec) in extreme_specs() {
        if let Some(job) = t.ok(
            format!("CreateJob with {what}"),
            jobs.create_job(create(spec)).await,
        ) {
            extremes.push(job.into_inner().id);
        }
    }
    for id in &extremes {
        t.ok(
            "CancelJob of a queued job",
            jobs.cancel_job(CancelJobRequest { id: id.clone() }).await,
        );
    }

    // ListJobs and WatchJobs.
    let huge_page = ListJobsRequest {
        page_size: i32::MAX,
        ..Default::default()
    };
    if let Some(page) = t.ok(
        "ListJobs with page_size i32::MAX",
        jobs.list_jobs(huge_page).await,
    ) {
        let count = page.into_inner().jobs.len();
        t.check(
            "ListJobs with page_size i32::MAX",
            (2..=1000).contains(&count),
            || format!("{count} jobs"),
        );
    }
    t.expect(INVALID, "page_size");
    let negative = ListJobsRequest {
        page_size: i32::MIN,
        ..Default::default()
    };
    t.case(
        "ListJobs with page_size i32::MIN",
        jobs.list_jobs(negative).await,
    );
    t.expect(INVALID, "page_token");
    for (what, page_token) in [
        ("not hex", "zz".to_owned()),
        ("15 bytes", "00".repeat(15)),
        ("100 KB", "0".repeat(100_000)),
        ("NUL", "\0".to_owned()),
    ] {
        let request = ListJobsRequest {
            page_token,
            ..Default::default()
        };
        t.case(
            format!("ListJobs with a {what} page token"),
            jobs.list_jobs(request).await,
        );
    }
    t.expect(INVALID, "states");
    for state in [0, -1, i32::MAX] {
        let request = ListJobsRequest {
            states: vec![state],
            ..Default::default()
        };
        t.case(
            format!("ListJobs with state {state}"),
            jobs.list_jobs(request).await,
        );
        let request = WatchJobsRequest {
            states: vec![state],
            no_snapshot: false,
        };
        t.case(
            format!("WatchJobs with state {state}"),
            first(jobs.watch_jobs(request).await).await,
        );
    }
    t.expect(INVALID, "node_id");
    for (what, node_id) in bad_strings().into_iter().skip(1) {
        let request = ListJobsRequest {
            node_id,
            ..Default::default()
        };
        t.case(
            format!("ListJobs with a {what} node id"),
            jobs.list_jobs(request).await,
        );
    }

    // Cursors and offsets past the end.
    let id = || finished.id.clone();
    t.expect(&[Code::OutOfRange], "after_version");
    let watch = WatchJobRequest {
        id: id(),
        after_version: u64::MAX,
    };
    t.case(
        "WatchJob after_version u64::MAX",
        first(jobs.watch_job(watch).await).await,
    );
    let history = GetJobHistoryRequest {
        id: id(),
        after_version: u64::MAX,
    };
    t.case(
        "GetJobHistory after_version u64::MAX",
        jobs.get_job_history(history).await,
    );
    t.expect(&[Code::OutOfRange], "after_line");
    for (id, follow) in [(id(), false), (id(), true), (running.id.clone(), true)] {
        let logs = GetJobLogsRequest {
            id,
            follow,
            after_line: u64::MAX,
        };
        t.case(
            format!("GetJobLogs after_line u64::MAX (follow {follow})"),
            first(jobs.get_job_logs(logs).await).await,
        );
    }
    t.expect(INVALID, "offset");
    let past = DownloadOutputRequest {
        id: id(),
        name: "count.txt".into(),
        offset: u64::MAX,
    };
    t.case(
        "DownloadOutput offset u64::MAX",
        first(jobs.download_output(past).await).await,
    );
    t.expect(INVALID, "name");
    let long = DownloadOutputRequest {
        id: id(),
        name: "n".repeat(100_000),
        offset: 0,
    };
    t.case(
        "DownloadOutput of a 100 KB name",
        first(jobs.download_output(long).await).await,
    );
    t.expect(&[Code::NotFound], "ジョブ.txt");
    let unicode = DownloadOutputRequest {
        id: id(),
        name: "ジョブ.txt".into(),
        offset: 0,
    };
    t.case(
        "DownloadOutput of a unicode name",
        first(jobs.download_output(unicode).await).await,
    );

    // Actions the job's state does not allow.
    t.expect(&[Code::FailedPrecondition], &finished.id);
    t.case(
        "CancelJob of a finished job",
        jobs.cancel_job(CancelJobRequest { id: id() }).await,
    );
    t.expect(&[Code::FailedPrecondition], &running.id);
    let id = || running.id.clone();
    t.case(
        "RetryJob of a running job",
        jobs.retry_job(RetryJobRequest { id: id() }).await,
    );
    t.case(
        "DeleteJob of a running job",
        jobs.delete_job(DeleteJobRequest { id: id() }).await,
    );

    // Undecodable and oversized requests; the next call is answered.
    let channel = cluster.channel().await;
    t.expect(&[Code::Internal], "decode");
    let path = "/reelay.v1.JobService/GetJob";
    t.case(
        "GetJob of bytes that are no GetJobRequest",
        raw_call::<_, reelay_proto::v1::Job>(channel.clone(), path, malformed()).await,
    );
    let mut big = spec("count", &[]);
    big.params.insert("steps".into(), "1".repeat(LIMIT + 1024));
    let path = "/reelay.v1.JobService/CreateJob";
    t.too_big(
        "CreateJob of 4 MiB + 1 KiB",
        path,
        jobs.create_job(create(big)).await,
    );
    t.ok(
        "GetJob after an oversized request",
        jobs.get_job(GetJobRequest {
            id: finished.id.clone(),
        })
        .await,
    );
    t.too_big(
        "CreateJob of 4 MiB + 1 KiB (raw)",
        path,
        raw_call::<_, reelay_proto::v1::Job>(channel.clone(), path, oversized()).await,
    );
    // A server stream is refused the same way, before it starts.
    let path = "/reelay.v1.JobService/WatchJob";
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let codec = tonic_prost::ProstCodec::<_, reelay_proto::v1::JobEvent>::default();
    let watch = grpc
        .server_streaming(
            tonic::Request::new(oversized()),
            http::uri::PathAndQuery::from_static(path),
            codec,
        )
        .await;
    t.too_big("WatchJob of 4 MiB + 1 KiB", path, first(watch).await);

    // The refused calls created nothing: the two jobs, the extremes and no other.
    let all = jobs
        .list_jobs(ListJobsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .jobs;
    t.check("jobs created", all.len() == 2 + extremes.len(), || {
        format!("{} jobs: {all:#?}", all.len())
    });
    t.expect(&[Code::NotFound], MISSING_ID);
    t.case(
        "GetJob of a missing job",
        jobs.get_job(GetJobRequest {
            id: MISSING_ID.into(),
        })
        .await,
    );
    jobs.cancel_job(CancelJobRequest {
        id: running.id.clone(),
    })
    .await
    .unwrap();
    t.finish(&cluster);
    assert_still_runs_jobs(&cluster).await;
}
