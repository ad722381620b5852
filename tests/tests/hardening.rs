//! Bad input, RPC by RPC: every method of JobService, NodeService, PipelineService and (called
//! directly) WorkerService gets empty, oversized, malformed and out-of-range arguments. Each must
//! answer the right status code with a short message naming the field, and the server must keep
//! working: every test ends with a job run end to end. grpc-web requests with broken framing get
//! a clear error, never a hang.
//!
//! The cases of a test are a table: every case is checked, and a failure lists all cases that went
//! wrong. `tests/bad_input.rs` has the first bad-input tests (unknown ids, invalid specs, output
//! names that leave the directory); this file does not repeat them.

use std::collections::HashMap;
use std::fmt::Debug;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use reelay_proto::v1;
use reelay_tests::{TestCluster, spec};
use tonic::codec::Streaming;
use tonic::transport::Channel;
use tonic::{Code, Response, Status};

/// Requests above this are refused by every server.
const LIMIT: usize = 4 * 1024 * 1024;
/// Error messages quote at most a short excerpt of what they refuse.
const MAX_MESSAGE: usize = 2048;
const MISSING_ID: &str = "01a22300-0000-7000-8000-000000000000";

/// Strings that are no id of anything: empty, NUL, unicode, very long, path-like.
fn bad_strings() -> Vec<(&'static str, String)> {
    vec![
        ("empty", String::new()),
        ("NUL", "a\0b".to_owned()),
        ("unicode", "ジョブ-🎬".to_owned()),
        ("100 KB", "x".repeat(100_000)),
        ("path", "../..".to_owned()),
    ]
}

// === the table ===

/// Cases checked so far and the ones that went wrong.
#[derive(Default)]
struct Table {
    checked: usize,
    failures: Vec<String>,
}

fn shorten(text: &str) -> String {
    if text.len() <= 300 {
        return text.to_owned();
    }
    let cut = (0..=300)
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    format!("{}… ({} bytes)", &text[..cut], text.len())
}

impl Table {
    /// The call failed with one of `codes`, with a short message that mentions `mentions`.
    fn expect_any<T: Debug>(
        &mut self,
        case: &str,
        result: Result<T, Status>,
        codes: &[Code],
        mentions: &str,
    ) {
        self.checked += 1;
        match result {
            Ok(value) => self.failures.push(format!(
                "{case}: expected {codes:?} mentioning {mentions:?}, got Ok({})",
                shorten(&format!("{value:?}"))
            )),
            Err(status) => {
                let message = status.message();
                if !codes.contains(&status.code()) || !message.contains(mentions) {
                    self.failures.push(format!(
                        "{case}: expected {codes:?} mentioning {mentions:?}, got {:?}: {}",
                        status.code(),
                        shorten(message)
                    ));
                } else if message.len() > MAX_MESSAGE {
                    self.failures.push(format!(
                        "{case}: a {} byte message: {}",
                        message.len(),
                        shorten(message)
                    ));
                }
            }
        }
    }

    fn expect<T: Debug>(
        &mut self,
        case: &str,
        result: Result<T, Status>,
        code: Code,
        mentions: &str,
    ) {
        self.expect_any(case, result, &[code], mentions);
    }

    /// The call succeeded; returns its value.
    fn expect_ok<T: Debug>(&mut self, case: &str, result: Result<T, Status>) -> Option<T> {
        self.checked += 1;
        match result {
            Ok(value) => Some(value),
            Err(status) => {
                self.failures.push(format!(
                    "{case}: expected success, got {:?}: {}",
                    status.code(),
                    shorten(status.message())
                ));
                None
            }
        }
    }

    fn check(&mut self, case: &str, holds: bool, detail: impl FnOnce() -> String) {
        self.checked += 1;
        if !holds {
            self.failures.push(format!("{case}: {}", detail()));
        }
    }

    fn finish(self, cluster: &TestCluster) {
        assert!(
            self.failures.is_empty(),
            "{} of {} cases failed:\n  {}\n{}",
            self.failures.len(),
            self.checked,
            self.failures.join("\n  "),
            cluster.logs()
        );
        eprintln!("{} cases passed", self.checked);
    }
}

/// The first message of a server stream (an error may come with the response or as the first
/// item); `Ok(None)` when the stream ends or stays quiet for 3 s.
async fn first<T>(result: Result<Response<Streaming<T>>, Status>) -> Result<Option<T>, Status> {
    let mut stream = result?.into_inner();
    match tokio::time::timeout(Duration::from_secs(3), stream.message()).await {
        Ok(item) => item,
        Err(_) => Ok(None),
    }
}

/// Calls `path` with any message as the request, decoding the reply as `Reply`: for requests the
/// typed clients cannot make (bytes of another message, oversized empty requests).
async fn raw_call<Request, Reply>(
    channel: Channel,
    path: &'static str,
    request: Request,
) -> Result<Reply, Status>
where
    Request: prost::Message + Send + Sync + 'static,
    Reply: prost::Message + Default + Send + Sync + 'static,
{
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|err| Status::unavailable(err.to_string()))?;
    let codec = tonic_prost::ProstCodec::<Request, Reply>::default();
    let path = http::uri::PathAndQuery::from_static(path);
    grpc.unary(tonic::Request::new(request), path, codec)
        .await
        .map(Response::into_inner)
}

/// A request bigger than the servers accept, as bytes of a GetJobRequest.
fn oversized() -> v1::GetJobRequest {
    v1::GetJobRequest {
        id: "x".repeat(LIMIT + 1024),
    }
}

/// Bytes that do not decode as the path's request (a varint where a string is expected).
fn malformed() -> v1::ListJobsRequest {
    v1::ListJobsRequest {
        page_size: 5,
        ..Default::default()
    }
}

fn create(spec: v1::JobSpec) -> v1::CreateJobRequest {
    v1::CreateJobRequest {
        spec: Some(spec),
        request_id: String::new(),
    }
}

/// A job runs from start to success: the server still works after everything above.
async fn assert_still_runs_jobs(cluster: &TestCluster) {
    let job = cluster
        .submit("count", &[("steps", "2"), ("interval_ms", "1")])
        .await;
    let done = cluster
        .wait_terminal(&job.id)
        .await
        .pop()
        .unwrap()
        .job
        .unwrap();
    assert_eq!(done.state, v1::JobState::Succeeded as i32, "{done:#?}");
    assert_eq!(done.outputs.len(), 1, "{done:#?}");
}

// === JobService ===

#[tokio::test(flavor = "multi_thread")]
async fn job_service_refuses_bad_arguments() {
    let cluster = TestCluster::builder().workers(1).start().await;
    let mut jobs = cluster.jobs().await;
    let mut table = Table::default();
    let finished = cluster
        .submit("count", &[("steps", "1"), ("interval_ms", "1")])
        .await;
    cluster.wait_terminal(&finished.id).await;
    let running = cluster.submit("sleep", &[("seconds", "60")]).await;
    cluster
        .wait_job(&running.id, Duration::from_secs(30), |job| {
            job.state == v1::JobState::Running as i32
        })
        .await;

    // Ids, for every method that takes one.
    for (what, id) in bad_strings() {
        let mention = if id.is_empty() {
            "id: a job id is required"
        } else {
            "id: "
        };
        let case = |method: &str| format!("{method} with a {what} id");
        table.expect(
            &case("GetJob"),
            jobs.get_job(v1::GetJobRequest { id: id.clone() }).await,
            Code::InvalidArgument,
            mention,
        );
        table.expect(
            &case("CancelJob"),
            jobs.cancel_job(v1::CancelJobRequest { id: id.clone() })
                .await,
            Code::InvalidArgument,
            mention,
        );
        table.expect(
            &case("RetryJob"),
            jobs.retry_job(v1::RetryJobRequest { id: id.clone() }).await,
            Code::InvalidArgument,
            mention,
        );
        table.expect(
            &case("DeleteJob"),
            jobs.delete_job(v1::DeleteJobRequest { id: id.clone() })
                .await,
            Code::InvalidArgument,
            mention,
        );
        table.expect(
            &case("ListOutputs"),
            jobs.list_outputs(v1::ListOutputsRequest { id: id.clone() })
                .await,
            Code::InvalidArgument,
            mention,
        );
        let watch = v1::WatchJobRequest {
            id: id.clone(),
            after_version: 0,
        };
        table.expect(
            &case("WatchJob"),
            first(jobs.watch_job(watch).await).await,
            Code::InvalidArgument,
            mention,
        );
        let logs = v1::GetJobLogsRequest {
            id: id.clone(),
            follow: true,
            after_line: 0,
        };
        table.expect(
            &case("GetJobLogs"),
            first(jobs.get_job_logs(logs).await).await,
            Code::InvalidArgument,
            mention,
        );
        let download = v1::DownloadOutputRequest {
            id: id.clone(),
            name: "count.txt".into(),
            offset: 0,
        };
        table.expect(
            &case("DownloadOutput"),
            first(jobs.download_output(download).await).await,
            Code::InvalidArgument,
            mention,
        );
        let history = v1::GetJobHistoryRequest {
            id: id.clone(),
            after_version: 0,
        };
        table.expect(
            &case("GetJobHistory"),
            jobs.get_job_history(history).await,
            Code::InvalidArgument,
            mention,
        );
    }

    // CreateJob: every field of the spec.
    let mut cases: Vec<(&str, v1::JobSpec, &str)> = Vec::new();
    let mut with =
        |what: &'static str, change: &dyn Fn(&mut v1::JobSpec), mention: &'static str| {
            let mut spec = spec("count", &[]);
            change(&mut spec);
            cases.push((what, spec, mention));
        };
    with(
        "thousands of unknown params",
        &|spec| spec.params = (0..5000).map(|i| (format!("p{i}"), "1".into())).collect(),
        "spec.params.",
    );
    with(
        "an empty param name",
        &|spec| {
            spec.params.insert(String::new(), "1".into());
        },
        "spec.params.",
    );
    with(
        "a 100 KB param name",
        &|spec| {
            spec.params.insert("p".repeat(100_000), "1".into());
        },
        "spec.params.",
    );
    with(
        "a huge param value",
        &|spec| {
            spec.params.insert("steps".into(), "1".repeat(100_000));
        },
        "spec.params.steps",
    );
    with(
        "a param value with NUL",
        &|spec| {
            spec.params.insert("steps".into(), "1\0".into());
        },
        "spec.params.steps",
    );
    with(
        "a label with an empty key",
        &|spec| {
            spec.labels.insert(String::new(), "x".into());
        },
        "spec.labels",
    );
    with(
        "a 200 byte label key",
        &|spec| {
            spec.labels.insert("k".repeat(200), "x".into());
        },
        "spec.labels",
    );
    with(
        "a 100 KB label value",
        &|spec| {
            spec.labels.insert("k".into(), "v".repeat(100_000));
        },
        "spec.labels",
    );
    with(
        "thousands of labels",
        &|spec| spec.labels = (0..5000).map(|i| (format!("k{i}"), "v".into())).collect(),
        "spec.labels",
    );
    with(
        "a timeout over 7 days",
        &|spec| spec.timeout_seconds = 7 * 24 * 3600 + 1,
        "spec.timeout_seconds",
    );
    with(
        "u32::MAX attempts",
        &|spec| spec.max_attempts = u32::MAX,
        "spec.max_attempts",
    );
    with(
        "no pipeline",
        &|spec| spec.pipeline.clear(),
        "spec.pipeline",
    );
    with(
        "a pipeline name with NUL",
        &|spec| spec.pipeline = "count\0".into(),
        "spec.pipeline",
    );
    with(
        "a unicode pipeline name",
        &|spec| spec.pipeline = "ジョブ".into(),
        "spec.pipeline",
    );
    with(
        "a 100 KB pipeline name",
        &|spec| spec.pipeline = "p".repeat(100_000),
        "spec.pipeline",
    );
    with(
        "an input path with NUL",
        &|spec| spec.input_path = "/in\0.mp4".into(),
        "spec.input_path",
    );
    with(
        "a 100 KB input path",
        &|spec| spec.input_path = format!("/{}", "a".repeat(100_000)),
        "spec.input_path",
    );
    with(
        "a pin to a bad node id",
        &|spec| spec.node_id = "a b".into(),
        "spec.node_id",
    );
    with(
        "a pin with NUL",
        &|spec| spec.node_id = "w0\0".into(),
        "spec.node_id",
    );
    with(
        "a 100 KB pin",
        &|spec| spec.node_id = "w".repeat(100_000),
        "spec.node_id",
    );
    for (what, spec, mention) in cases {
        table.expect(
            &format!("CreateJob with {what}"),
            jobs.create_job(create(spec)).await,
            Code::InvalidArgument,
            mention,
        );
    }
    for (what, request_id) in [
        ("a 257 byte", "r".repeat(257)),
        ("a 100 KB", "r".repeat(100_000)),
    ] {
        let request = v1::CreateJobRequest {
            spec: Some(spec("count", &[])),
            request_id,
        };
        table.expect(
            &format!("CreateJob with {what} request id"),
            jobs.create_job(request).await,
            Code::InvalidArgument,
            "request_id",
        );
    }
    // Extremes that are valid: accepted, and cancelled again.
    let mut extremes = Vec::new();
    for (what, change) in [
        (
            "priority i32::MAX",
            (|spec: &mut v1::JobSpec| spec.priority = i32::MAX) as fn(&mut v1::JobSpec),
        ),
        ("priority i32::MIN", |spec| spec.priority = i32::MIN),
        ("a timeout of exactly 7 days", |spec| {
            spec.timeout_seconds = 7 * 24 * 3600
        }),
        ("64 labels", |spec| {
            spec.labels = (0..64).map(|i| (format!("k{i}"), "v".into())).collect()
        }),
    ] {
        let mut spec = spec("sleep", &[("seconds", "60")]);
        spec.node_id = "nowhere".into();
        change(&mut spec);
        if let Some(job) = table.expect_ok(
            &format!("CreateJob with {what}"),
            jobs.create_job(create(spec)).await,
        ) {
            extremes.push(job.into_inner().id);
        }
    }
    for id in &extremes {
        table.expect_ok(
            "CancelJob of a queued job",
            jobs.cancel_job(v1::CancelJobRequest { id: id.clone() })
                .await,
        );
    }

    // ListJobs.
    let huge_page = v1::ListJobsRequest {
        page_size: i32::MAX,
        ..Default::default()
    };
    if let Some(page) = table.expect_ok(
        "ListJobs with page_size i32::MAX",
        jobs.list_jobs(huge_page).await,
    ) {
        let count = page.into_inner().jobs.len();
        table.check(
            "ListJobs with page_size i32::MAX",
            (2..=1000).contains(&count),
            || format!("{count} jobs"),
        );
    }
    let negative = v1::ListJobsRequest {
        page_size: i32::MIN,
        ..Default::default()
    };
    table.expect(
        "ListJobs with page_size i32::MIN",
        jobs.list_jobs(negative).await,
        Code::InvalidArgument,
        "page_size",
    );
    for (what, token) in [
        ("not hex", "zz".to_owned()),
        ("15 bytes", "00".repeat(15)),
        ("100 KB", "0".repeat(100_000)),
        ("NUL", "\0".to_owned()),
    ] {
        let request = v1::ListJobsRequest {
            page_token: token,
            ..Default::default()
        };
        table.expect(
            &format!("ListJobs with a {what} page token"),
            jobs.list_jobs(request).await,
            Code::InvalidArgument,
            "page_token",
        );
    }
    for state in [0, -1, i32::MAX] {
        let request = v1::ListJobsRequest {
            states: vec![state],
            ..Default::default()
        };
        table.expect(
            &format!("ListJobs with state {state}"),
            jobs.list_jobs(request).await,
            Code::InvalidArgument,
            "states",
        );
        let request = v1::WatchJobsRequest {
            states: vec![state],
            no_snapshot: false,
        };
        table.expect(
            &format!("WatchJobs with state {state}"),
            first(jobs.watch_jobs(request).await).await,
            Code::InvalidArgument,
            "states",
        );
    }
    for (what, node) in bad_strings()
        .into_iter()
        .filter(|(what, _)| *what != "empty")
    {
        let request = v1::ListJobsRequest {
            node_id: node,
            ..Default::default()
        };
        table.expect(
            &format!("ListJobs with a {what} node id"),
            jobs.list_jobs(request).await,
            Code::InvalidArgument,
            "node_id",
        );
    }

    // Cursors and offsets past the end.
    let watch = v1::WatchJobRequest {
        id: finished.id.clone(),
        after_version: u64::MAX,
    };
    table.expect(
        "WatchJob after_version u64::MAX",
        first(jobs.watch_job(watch).await).await,
        Code::OutOfRange,
        "after_version",
    );
    let history = v1::GetJobHistoryRequest {
        id: finished.id.clone(),
        after_version: u64::MAX,
    };
    table.expect(
        "GetJobHistory after_version u64::MAX",
        jobs.get_job_history(history).await,
        Code::OutOfRange,
        "after_version",
    );
    for (id, follow) in [
        (&finished.id, false),
        (&finished.id, true),
        (&running.id, true),
    ] {
        let logs = v1::GetJobLogsRequest {
            id: id.clone(),
            follow,
            after_line: u64::MAX,
        };
        table.expect(
            &format!("GetJobLogs after_line u64::MAX (follow {follow})"),
            first(jobs.get_job_logs(logs).await).await,
            Code::OutOfRange,
            "after_line",
        );
    }
    let past = v1::DownloadOutputRequest {
        id: finished.id.clone(),
        name: "count.txt".into(),
        offset: u64::MAX,
    };
    table.expect(
        "DownloadOutput offset u64::MAX",
        first(jobs.download_output(past).await).await,
        Code::InvalidArgument,
        "offset",
    );
    for (what, name) in [
        ("100 KB", "n".repeat(100_000)),
        ("unicode", "ジョブ.txt".to_owned()),
    ] {
        let request = v1::DownloadOutputRequest {
            id: finished.id.clone(),
            name,
            offset: 0,
        };
        let code = if what == "unicode" {
            Code::NotFound
        } else {
            Code::InvalidArgument
        };
        table.expect(
            &format!("DownloadOutput of a {what} name"),
            first(jobs.download_output(request).await).await,
            code,
            "name",
        );
    }

    // Actions the job's state does not allow.
    table.expect(
        "CancelJob of a finished job",
        jobs.cancel_job(v1::CancelJobRequest {
            id: finished.id.clone(),
        })
        .await,
        Code::FailedPrecondition,
        &finished.id,
    );
    table.expect(
        "RetryJob of a running job",
        jobs.retry_job(v1::RetryJobRequest {
            id: running.id.clone(),
        })
        .await,
        Code::FailedPrecondition,
        &running.id,
    );
    table.expect(
        "DeleteJob of a running job",
        jobs.delete_job(v1::DeleteJobRequest {
            id: running.id.clone(),
        })
        .await,
        Code::FailedPrecondition,
        &running.id,
    );

    // Undecodable and oversized requests; the next call is answered.
    let channel = cluster.channel().await;
    table.expect(
        "GetJob with bytes that are no GetJobRequest",
        raw_call::<_, v1::Job>(channel.clone(), "/reelay.v1.JobService/GetJob", malformed()).await,
        Code::Internal,
        "decode",
    );
    let mut big = spec("count", &[]);
    big.params.insert("steps".into(), "1".repeat(LIMIT + 1024));
    table.expect_any(
        "CreateJob of 4 MiB + 1 KiB",
        jobs.create_job(create(big)).await,
        &[Code::ResourceExhausted, Code::OutOfRange],
        "",
    );
    table.expect_ok(
        "GetJob after an oversized request",
        jobs.get_job(v1::GetJobRequest {
            id: finished.id.clone(),
        })
        .await,
    );
    table.expect_any(
        "CreateJob of 4 MiB + 1 KiB (raw)",
        raw_call::<_, v1::Job>(channel, "/reelay.v1.JobService/CreateJob", oversized()).await,
        &[Code::ResourceExhausted, Code::OutOfRange],
        "",
    );

    // Nothing was created by the refused calls: the two jobs, the extremes and nothing else.
    let all = jobs
        .list_jobs(v1::ListJobsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .jobs;
    table.check("jobs created", all.len() == 2 + extremes.len(), || {
        format!("{} jobs: {all:#?}", all.len())
    });
    table.expect(
        "GetJob of a missing job still NOT_FOUND",
        jobs.get_job(v1::GetJobRequest {
            id: MISSING_ID.into(),
        })
        .await,
        Code::NotFound,
        MISSING_ID,
    );
    jobs.cancel_job(v1::CancelJobRequest {
        id: running.id.clone(),
    })
    .await
    .unwrap();
    table.finish(&cluster);
    assert_still_runs_jobs(&cluster).await;
}

// === NodeService and PipelineService ===

#[tokio::test(flavor = "multi_thread")]
async fn node_and_pipeline_services_refuse_bad_arguments() {
    let cluster = TestCluster::builder().workers(1).start().await;
    let mut nodes = cluster.nodes().await;
    let mut table = Table::default();
    let registration = |change: &dyn Fn(&mut v1::RegisterNodeRequest)| {
        let mut request = v1::RegisterNodeRequest {
            id: "fake-node".into(),
            address: "http://127.0.0.1:9".into(),
            labels: HashMap::new(),
            slots: 2,
            version: "0.1.0".into(),
            executor: "process".into(),
        };
        change(&mut request);
        request
    };

    for (what, id) in bad_strings() {
        let case = |method: &str| format!("{method} with a {what} id");
        table.expect(
            &case("RegisterNode"),
            nodes
                .register_node(registration(&|r| r.id = id.clone()))
                .await,
            Code::InvalidArgument,
            "id",
        );
        table.expect(
            &case("GetNode"),
            nodes.get_node(v1::GetNodeRequest { id: id.clone() }).await,
            Code::InvalidArgument,
            "id",
        );
        table.expect(
            &case("DrainNode"),
            nodes
                .drain_node(v1::DrainNodeRequest { id: id.clone() })
                .await,
            Code::InvalidArgument,
            "id",
        );
        table.expect(
            &case("UndrainNode"),
            nodes
                .undrain_node(v1::UndrainNodeRequest { id: id.clone() })
                .await,
            Code::InvalidArgument,
            "id",
        );
        table.expect(
            &case("RemoveNode"),
            nodes
                .remove_node(v1::RemoveNodeRequest { id: id.clone() })
                .await,
            Code::InvalidArgument,
            "id",
        );
    }
    let addresses = [
        ("empty", String::new()),
        ("without a scheme", "127.0.0.1:7071".to_owned()),
        ("without a host", "http://".to_owned()),
        ("of another scheme", "ftp://127.0.0.1:7071".to_owned()),
        ("with a space", "http://a b:1".to_owned()),
        ("with NUL", "http://a\0:1".to_owned()),
        (
            "of 100 KB",
            format!("http://{}.example:1", "a".repeat(100_000)),
        ),
    ];
    for (what, address) in addresses {
        table.expect(
            &format!("RegisterNode with an address {what}"),
            nodes
                .register_node(registration(&|r| r.address = address.clone()))
                .await,
            Code::InvalidArgument,
            "address",
        );
    }
    for slots in [0, u32::MAX] {
        table.expect(
            &format!("RegisterNode with {slots} slots"),
            nodes
                .register_node(registration(&|r| r.slots = slots))
                .await,
            Code::InvalidArgument,
            "slots",
        );
    }
    type Labels = fn() -> HashMap<String, String>;
    let labels: [(&str, Labels); 4] = [
        ("an empty key", || {
            HashMap::from([(String::new(), "x".to_owned())])
        }),
        ("a 200 byte key", || {
            HashMap::from([("k".repeat(200), "x".to_owned())])
        }),
        ("a 100 KB value", || {
            HashMap::from([("k".to_owned(), "v".repeat(100_000))])
        }),
        ("thousands of entries", || {
            (0..5000)
                .map(|i| (format!("k{i}"), "v".to_owned()))
                .collect()
        }),
    ];
    for (what, make) in labels {
        table.expect(
            &format!("RegisterNode with labels of {what}"),
            nodes
                .register_node(registration(&|r| r.labels = make()))
                .await,
            Code::InvalidArgument,
            "labels",
        );
    }
    table.expect(
        "RegisterNode with a 100 KB version",
        nodes
            .register_node(registration(&|r| r.version = "1".repeat(100_000)))
            .await,
        Code::InvalidArgument,
        "version",
    );
    table.expect(
        "RegisterNode with a 100 KB executor",
        nodes
            .register_node(registration(&|r| r.executor = "e".repeat(100_000)))
            .await,
        Code::InvalidArgument,
        "executor",
    );

    // A node that runs a job cannot be removed while connected.
    let running = cluster.submit("sleep", &[("seconds", "60")]).await;
    cluster
        .wait_job(&running.id, Duration::from_secs(30), |job| {
            job.state == v1::JobState::Running as i32
        })
        .await;
    table.expect(
        "RemoveNode of a connected node with a job",
        nodes
            .remove_node(v1::RemoveNodeRequest { id: "w0".into() })
            .await,
        Code::FailedPrecondition,
        "w0",
    );
    table.expect_ok(
        "DrainNode twice (1)",
        nodes
            .drain_node(v1::DrainNodeRequest { id: "w0".into() })
            .await,
    );
    table.expect_ok(
        "DrainNode twice (2)",
        nodes
            .drain_node(v1::DrainNodeRequest { id: "w0".into() })
            .await,
    );
    table.expect_ok(
        "UndrainNode",
        nodes
            .undrain_node(v1::UndrainNodeRequest { id: "w0".into() })
            .await,
    );
    cluster
        .jobs()
        .await
        .cancel_job(v1::CancelJobRequest {
            id: running.id.clone(),
        })
        .await
        .unwrap();

    // Empty requests with bytes of another message, malformed and oversized.
    let channel = cluster.channel().await;
    let pipelines_path = "/reelay.v1.PipelineService/ListPipelines";
    let listed = raw_call::<_, v1::ListPipelinesResponse>(
        channel.clone(),
        pipelines_path,
        v1::GetJobRequest {
            id: "unknown fields".into(),
        },
    )
    .await;
    if let Some(listed) = table.expect_ok("ListPipelines with unknown fields", listed) {
        table.check(
            "ListPipelines lists the config",
            listed.pipelines.len() >= 5,
            || format!("{listed:#?}"),
        );
    }
    table.expect_any(
        "ListPipelines of 4 MiB + 1 KiB",
        raw_call::<_, v1::ListPipelinesResponse>(channel.clone(), pipelines_path, oversized())
            .await,
        &[Code::ResourceExhausted, Code::OutOfRange],
        "",
    );
    table.expect_ok(
        "ListPipelines after an oversized request",
        cluster
            .pipelines()
            .await
            .list_pipelines(v1::ListPipelinesRequest {})
            .await,
    );
    table.expect_any(
        "ListNodes of 4 MiB + 1 KiB",
        raw_call::<_, v1::ListNodesResponse>(
            channel.clone(),
            "/reelay.v1.NodeService/ListNodes",
            oversized(),
        )
        .await,
        &[Code::ResourceExhausted, Code::OutOfRange],
        "",
    );
    let huge = registration(&|r| r.version = "1".repeat(LIMIT + 1024));
    table.expect_any(
        "RegisterNode of 4 MiB + 1 KiB",
        nodes.register_node(huge).await,
        &[Code::ResourceExhausted, Code::OutOfRange],
        "",
    );
    table.expect(
        "RegisterNode with bytes that are no RegisterNodeRequest",
        raw_call::<_, v1::RegisterNodeResponse>(
            channel,
            "/reelay.v1.NodeService/RegisterNode",
            malformed(),
        )
        .await,
        Code::Internal,
        "decode",
    );

    // No node was made by any of it, and the worker is still READY.
    let listed = nodes
        .list_nodes(v1::ListNodesRequest {})
        .await
        .unwrap()
        .into_inner()
        .nodes;
    table.check(
        "nodes after the refusals",
        listed.len() == 1 && listed[0].id == "w0",
        || format!("{listed:#?}"),
    );
    table.finish(&cluster);
    cluster.wait_ready_nodes(1).await;
    assert_still_runs_jobs(&cluster).await;
}

// === WorkerService, called directly ===

#[tokio::test(flavor = "multi_thread")]
async fn worker_service_refuses_bad_arguments() {
    let cluster = TestCluster::builder().workers(1).start().await;
    let finished = cluster
        .submit("count", &[("steps", "1"), ("interval_ms", "1")])
        .await;
    cluster.wait_terminal(&finished.id).await;
    let mut worker = cluster.worker_client(0).await;
    let mut table = Table::default();
    let data_dir = cluster.workers[0].data_dir.clone();
    let start = |job_id: &str, attempt: u32, spec: Option<v1::JobSpec>| v1::StartJobRequest {
        job_id: job_id.to_owned(),
        spec,
        attempt,
    };
    let fresh_id = "01a22300-0000-7000-8000-0000000000aa";

    for (what, id) in bad_strings() {
        let case = |method: &str| format!("{method} with a {what} job id");
        table.expect(
            &case("StartJob"),
            worker
                .start_job(start(&id, 1, Some(spec("count", &[]))))
                .await,
            Code::InvalidArgument,
            "job_id",
        );
        let cancel = v1::WorkerCancelJobRequest {
            job_id: id.clone(),
            attempt: 1,
            reason: String::new(),
        };
        table.expect(
            &case("CancelJob"),
            worker.cancel_job(cancel).await,
            Code::InvalidArgument,
            "job_id",
        );
        table.expect(
            &case("GetJob"),
            worker
                .get_job(v1::WorkerGetJobRequest { job_id: id.clone() })
                .await,
            Code::InvalidArgument,
            "job_id",
        );
        table.expect(
            &case("DeleteJob"),
            worker
                .delete_job(v1::WorkerDeleteJobRequest { job_id: id.clone() })
                .await,
            Code::InvalidArgument,
            "job_id",
        );
        table.expect(
            &case("ListOutputs"),
            worker
                .list_outputs(v1::ListOutputsRequest { id: id.clone() })
                .await,
            Code::InvalidArgument,
            "id",
        );
        let download = v1::DownloadOutputRequest {
            id: id.clone(),
            name: "count.txt".into(),
            offset: 0,
        };
        table.expect(
            &case("DownloadOutput"),
            first(worker.download_output(download).await).await,
            Code::InvalidArgument,
            "id",
        );
    }
    // The worker's files are all still there.
    table.check(
        "data dir after DeleteJob of ../..",
        data_dir.join("state").join("db").is_file()
            && data_dir.join("outputs").join(&finished.id).is_dir(),
        || format!("{} lost files", data_dir.display()),
    );

    table.expect(
        "StartJob of attempt 0",
        worker
            .start_job(start(fresh_id, 0, Some(spec("count", &[]))))
            .await,
        Code::InvalidArgument,
        "attempt",
    );
    table.expect(
        "StartJob without a spec",
        worker.start_job(start(fresh_id, 1, None)).await,
        Code::InvalidArgument,
        "spec",
    );
    table.expect(
        "StartJob of an unknown pipeline",
        worker
            .start_job(start(fresh_id, 1, Some(spec("nope", &[]))))
            .await,
        Code::FailedPrecondition,
        "spec.pipeline",
    );
    table.expect(
        "StartJob with an unknown param",
        worker
            .start_job(start(
                fresh_id,
                1,
                Some(spec("count", &[("colour", "red")])),
            ))
            .await,
        Code::FailedPrecondition,
        "spec.params.colour",
    );
    table.expect(
        "StartJob of attempt 0 of a known job",
        worker
            .start_job(start(&finished.id, 0, Some(spec("count", &[]))))
            .await,
        Code::InvalidArgument,
        "attempt",
    );
    let unknown = v1::WorkerGetJobRequest {
        job_id: fresh_id.into(),
    };
    table.expect(
        "GetJob of the refused job",
        worker.get_job(unknown).await,
        Code::NotFound,
        fresh_id,
    );
    let cancel = v1::WorkerCancelJobRequest {
        job_id: fresh_id.into(),
        attempt: u32::MAX,
        reason: "r".repeat(100_000),
    };
    table.expect(
        "CancelJob of an unknown job",
        worker.cancel_job(cancel).await,
        Code::NotFound,
        fresh_id,
    );
    let past = v1::DownloadOutputRequest {
        id: finished.id.clone(),
        name: "count.txt".into(),
        offset: u64::MAX,
    };
    table.expect(
        "DownloadOutput offset u64::MAX",
        first(worker.download_output(past).await).await,
        Code::InvalidArgument,
        "offset",
    );
    table.expect(
        "TrimEvents through u64::MAX",
        worker
            .trim_events(v1::TrimEventsRequest {
                through_seq: u64::MAX,
            })
            .await,
        Code::OutOfRange,
        "through_seq",
    );
    let other = v1::StreamEventsRequest {
        after_seq: 0,
        node_id: "w0\0".into(),
    };
    table.expect(
        "StreamEvents for another node",
        first(worker.stream_events(other).await).await,
        Code::FailedPrecondition,
        "w0",
    );
    // A cursor ahead of the log is answered with the node's info (last seq and log id), from which
    // the coordinator sees that the log is another one.
    let ahead = v1::StreamEventsRequest {
        after_seq: u64::MAX,
        node_id: "w0".into(),
    };
    if let Some(event) = table.expect_ok(
        "StreamEvents after u64::MAX",
        first(worker.stream_events(ahead).await).await,
    ) {
        let info = event.and_then(|event| event.info);
        table.check(
            "StreamEvents after u64::MAX starts with the node's info",
            info.as_ref().is_some_and(|info| info.node_id == "w0"),
            || format!("{info:?}"),
        );
    }

    let channel = Channel::from_shared(format!("http://127.0.0.1:{}", cluster.workers[0].port))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut big = spec("count", &[]);
    big.params.insert("steps".into(), "1".repeat(LIMIT + 1024));
    table.expect_any(
        "StartJob of 4 MiB + 1 KiB",
        worker.start_job(start(fresh_id, 1, Some(big))).await,
        &[Code::ResourceExhausted, Code::OutOfRange],
        "",
    );
    table.expect_any(
        "GetInfo of 4 MiB + 1 KiB",
        raw_call::<_, v1::WorkerInfo>(
            channel.clone(),
            "/reelay.v1.WorkerService/GetInfo",
            oversized(),
        )
        .await,
        &[Code::ResourceExhausted, Code::OutOfRange],
        "",
    );
    table.expect(
        "StartJob with bytes that are no StartJobRequest",
        raw_call::<_, v1::WorkerJob>(channel, "/reelay.v1.WorkerService/StartJob", malformed())
            .await,
        Code::Internal,
        "decode",
    );
    if let Some(info) = table.expect_ok(
        "GetInfo after all that",
        worker.get_info(v1::GetInfoRequest {}).await,
    ) {
        table.check(
            "the worker runs nothing",
            info.get_ref().running == 0,
            || format!("{info:?}"),
        );
    }
    let listed = worker
        .list_jobs(v1::WorkerListJobsRequest { active_only: false })
        .await
        .unwrap()
        .into_inner()
        .jobs;
    table.check(
        "the worker holds only the finished job",
        listed.len() == 1 && listed[0].job_id == finished.id,
        || format!("{listed:#?}"),
    );
    table.finish(&cluster);
    assert_still_runs_jobs(&cluster).await;
}

// === grpc-web with broken framing ===

/// What a raw HTTP/1.1 exchange got back.
#[derive(Debug)]
struct RawReply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl RawReply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// `grpc-status` and `grpc-message` from the headers or from a trailer frame of the body.
    fn grpc_status(&self) -> Option<(i32, String)> {
        if let Some(status) = self.header("grpc-status") {
            return Some((
                status.parse().ok()?,
                self.header("grpc-message").unwrap_or_default().to_owned(),
            ));
        }
        let mut body = self.body.as_slice();
        while body.len() >= 5 {
            let flag = body[0];
            let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
            let frame = body.get(5..5 + len)?;
            if flag & 0x80 != 0 {
                let text = String::from_utf8_lossy(frame);
                let field = |name: &str| {
                    text.lines()
                        .find_map(|line| {
                            line.split_once(':')
                                .filter(|(key, _)| key.trim().eq_ignore_ascii_case(name))
                        })
                        .map(|(_, value)| value.trim().to_owned())
                };
                return Some((
                    field("grpc-status")?.parse().ok()?,
                    field("grpc-message").unwrap_or_default(),
                ));
            }
            body = &body[5 + len..];
        }
        None
    }
}

/// POSTs `body` to `path` with `headers` as raw HTTP/1.1; `content_length` overrides the real
/// length (a body that ends early: the write side is then closed). Fails after 10 s without an answer.
fn raw_post(
    address: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    content_length: Option<usize>,
) -> std::io::Result<RawReply> {
    let mut stream = TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut request = format!("POST {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!(
        "Content-Length: {}\r\n\r\n",
        content_length.unwrap_or(body.len())
    ));
    // A server may answer and close before the whole body is sent (a body over the limit): a
    // failed write is no failure as long as an answer comes.
    let sent = stream
        .write_all(request.as_bytes())
        .and_then(|()| stream.write_all(body));
    if sent.is_ok() && content_length.is_some() {
        stream.shutdown(std::net::Shutdown::Write)?;
    }
    let mut raw = Vec::new();
    if let Err(err) = stream.read_to_end(&mut raw)
        && raw.is_empty()
    {
        return Err(sent.err().unwrap_or(err));
    }
    let split = raw
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .ok_or_else(|| {
            std::io::Error::other(format!(
                "no complete response: {:?}",
                String::from_utf8_lossy(&raw)
            ))
        })?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(key, value)| (key.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(key, value)| key == "transfer-encoding" && value.contains("chunked"))
    {
        body = reelay_tests::http::dechunk(&body);
    }
    Ok(RawReply {
        status,
        headers,
        body,
    })
}

const TWO_MESSAGES: &str = "two messages for a unary call";

fn frame(flag: u8, payload: &[u8]) -> Vec<u8> {
    let mut framed = vec![flag];
    framed.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    framed.extend_from_slice(payload);
    framed
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_web_with_broken_framing_gets_a_clear_error() {
    let cluster = TestCluster::builder().workers(1).start().await;
    let address = cluster.address();
    let path = "/reelay.v1.JobService/GetJob";
    let web = [
        ("Content-Type", "application/grpc-web+proto"),
        ("X-Grpc-Web", "1"),
    ];
    let request = prost::Message::encode_to_vec(&v1::GetJobRequest {
        id: MISSING_ID.into(),
    });
    let valid = frame(0, &request);
    let mut long = frame(0, &request);
    long[1..5].copy_from_slice(&1000u32.to_be_bytes());
    let mut huge = frame(0, &request);
    huge[1..5].copy_from_slice(&u32::MAX.to_be_bytes());
    let over_limit = frame(0, &prost::Message::encode_to_vec(&oversized()));
    let mut two = valid.clone();
    two.extend_from_slice(&valid);
    let text = [
        ("Content-Type", "application/grpc-web-text"),
        ("X-Grpc-Web", "1"),
    ];

    // (case, headers, body, declared length)
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], Vec<u8>, Option<usize>);
    let cases: Vec<Case<'_>> = vec![
        ("an empty body", &web, Vec::new(), None),
        ("a truncated frame header", &web, vec![0, 0, 0], None),
        ("a frame longer than the body", &web, long, None),
        ("a frame of 4 GiB", &web, huge, None),
        (
            "the compressed flag without compression",
            &web,
            frame(1, &request),
            None,
        ),
        ("an unknown flag", &web, frame(0x42, &request), None),
        (
            "a trailer frame as the request",
            &web,
            frame(0x80, b"grpc-status: 0\r\n"),
            None,
        ),
        (
            "garbage bytes",
            &web,
            b"\xff\xfe garbage that is no frame at all".to_vec(),
            None,
        ),
        (
            "a frame of garbage",
            &web,
            frame(0, b"\xff\xff\xff\xff\xff"),
            None,
        ),
        (TWO_MESSAGES, &web, two, None),
        ("a body over 4 MiB", &web, over_limit, None),
        (
            "a body that ends before its Content-Length",
            &web,
            valid[..4].to_vec(),
            Some(valid.len() + 100),
        ),
        (
            "grpc-web-text that is no base64",
            &text,
            b"!!!! not base64 ****".to_vec(),
            None,
        ),
        (
            "a wrong content type",
            &[("Content-Type", "text/plain"), ("X-Grpc-Web", "1")],
            valid.clone(),
            None,
        ),
        (
            "no content type",
            &[("X-Grpc-Web", "1")],
            valid.clone(),
            None,
        ),
        (
            "a json content type",
            &[
                ("Content-Type", "application/grpc-web+json"),
                ("X-Grpc-Web", "1"),
            ],
            b"{\"id\": 1}".to_vec(),
            None,
        ),
    ];
    let mut failures = Vec::new();
    for (case, headers, body, declared) in cases {
        let started = std::time::Instant::now();
        let address = address.clone();
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let reply = tokio::task::spawn_blocking(move || {
            let headers: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            raw_post(&address, path, &headers, &body, declared)
        })
        .await
        .unwrap();
        let reply = match reply {
            Ok(reply) => reply,
            Err(err) => {
                failures.push(format!(
                    "{case}: no answer after {:?}: {err}",
                    started.elapsed()
                ));
                continue;
            }
        };
        let grpc = reply.grpc_status();
        let clear = match &grpc {
            // tonic answers the first message of a unary call and ignores the rest.
            Some((code, _)) if case == TWO_MESSAGES => *code == Code::NotFound as i32,
            // A gRPC error with a message.
            Some((code, message)) => *code != 0 && !message.is_empty(),
            // Or an HTTP client error.
            None => (400..500).contains(&reply.status),
        };
        eprintln!(
            "{case}: HTTP {} grpc {grpc:?} in {:?}",
            reply.status,
            started.elapsed()
        );
        if !clear {
            failures.push(format!(
                "{case}: HTTP {} grpc {grpc:?} headers {:?} body {:?}",
                reply.status,
                reply.headers,
                shorten(&String::from_utf8_lossy(&reply.body))
            ));
        }
    }

    // The same port still answers grpc-web and gRPC.
    let ok = raw_post(&address, path, &web, &valid, None).unwrap();
    assert_eq!(
        ok.grpc_status().map(|(code, _)| code),
        Some(Code::NotFound as i32),
        "{ok:?}"
    );
    assert!(
        failures.is_empty(),
        "{} cases without a clear error:\n  {}\n{}",
        failures.len(),
        failures.join("\n  "),
        cluster.logs()
    );
    assert_still_runs_jobs(&cluster).await;
}
