//! Bad input, RPC by RPC: every method of JobService, NodeService, PipelineService and (called
//! directly) WorkerService gets empty, oversized, malformed and out-of-range arguments. Each must
//! answer the right status code with a short message naming the field, and the server must keep
//! working: every test ends with a job run end to end. grpc-web requests with broken framing get
//! a clear error, never a hang.
//!
//! The cases of a test are a [`Table`]: every case is checked, and a failure lists all cases that
//! went wrong. `tests/bad_input.rs` has the first bad-input tests (unknown ids, invalid specs,
//! output names that leave the directory); these do not repeat them.
//!
//! - [`job_service`], [`node_service`] (with PipelineService), [`worker_service`]: the tables.
//! - [`grpc_web`]: raw HTTP/1.1 requests with broken grpc-web framing.

#[path = "hardening/grpc_web.rs"]
mod grpc_web;
#[path = "hardening/job_service.rs"]
mod job_service;
#[path = "hardening/node_service.rs"]
mod node_service;
#[path = "hardening/worker_service.rs"]
mod worker_service;

use std::fmt::Debug;
use std::time::Duration;

use reelay_proto::v1;
use reelay_tests::TestCluster;
use tonic::codec::Streaming;
use tonic::transport::Channel;
use tonic::{Code, Response, Status};

/// Requests above this are refused by every server.
const LIMIT: usize = 4 * 1024 * 1024;
/// Error messages quote at most a short excerpt of what they refuse.
const MAX_MESSAGE: usize = 2048;
const MISSING_ID: &str = "01a22300-0000-7000-8000-000000000000";
/// A request over the limit: gRPC's code for it (tonic's own answer, OUT_OF_RANGE, is rewritten:
/// clients take OUT_OF_RANGE for the application's).
const TOO_BIG: &[Code] = &[Code::ResourceExhausted];

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

/// Cases checked so far, the ones that went wrong, and what the next cases expect.
#[derive(Default)]
struct Table {
    checked: usize,
    failures: Vec<String>,
    codes: Vec<Code>,
    mentions: String,
}

fn shorten(text: &str) -> String {
    if text.len() <= 300 {
        return text.to_owned();
    }
    let cut = (0..=300).rev().find(|&i| text.is_char_boundary(i));
    format!("{}… ({} bytes)", &text[..cut.unwrap_or(0)], text.len())
}

impl Table {
    /// The cases that follow must fail with one of `codes` and a message that mentions `mentions`.
    fn expect(&mut self, codes: &[Code], mentions: &str) {
        codes.clone_into(&mut self.codes);
        mentions.clone_into(&mut self.mentions);
    }

    /// Checks one call against what is expected.
    fn case<T: Debug>(&mut self, case: impl AsRef<str>, result: Result<T, Status>) {
        self.checked += 1;
        let (case, codes, mentions) = (case.as_ref(), &self.codes, &self.mentions);
        let failure = match result {
            Ok(value) => Some(format!("got Ok({})", shorten(&format!("{value:?}")))),
            Err(status)
                if !codes.contains(&status.code()) || !status.message().contains(mentions) =>
            {
                Some(format!(
                    "got {:?}: {}",
                    status.code(),
                    shorten(status.message())
                ))
            }
            Err(status) if status.message().len() > MAX_MESSAGE => {
                Some(format!("a {} byte message", status.message().len()))
            }
            Err(_) => None,
        };
        if let Some(failure) = failure {
            self.failures.push(format!(
                "{case}: expected {codes:?} mentioning {mentions:?}, {failure}"
            ));
        }
    }

    /// The call was refused as over the message limit: `RESOURCE_EXHAUSTED`, naming `call` and
    /// the limit.
    fn too_big<T: Debug>(&mut self, case: &str, call: &str, result: Result<T, Status>) {
        self.expect(TOO_BIG, &format!("{call}: the request message is "));
        let limit = format!("limit of {LIMIT} bytes (4 MiB)");
        if let Err(status) = &result
            && !status.message().contains(&limit)
        {
            self.failures.push(format!(
                "{case}: the message does not name the limit ({limit:?}): {}",
                shorten(status.message())
            ));
        }
        self.case(case, result);
    }

    /// The call succeeded; returns its value.
    fn ok<T: Debug>(&mut self, case: impl AsRef<str>, result: Result<T, Status>) -> Option<T> {
        self.checked += 1;
        result
            .inspect_err(|status| {
                let (code, message) = (status.code(), shorten(status.message()));
                let case = case.as_ref();
                self.failures
                    .push(format!("{case}: expected success, got {code:?}: {message}"));
            })
            .ok()
    }

    fn check(&mut self, case: &str, holds: bool, detail: impl FnOnce() -> String) {
        self.checked += 1;
        if !holds {
            self.failures.push(format!("{case}: {}", detail()));
        }
    }

    fn finish(self, cluster: &TestCluster) {
        let (failed, checked) = (self.failures.len(), self.checked);
        let failures = self.failures.join("\n  ");
        assert!(
            failed == 0,
            "{failed} of {checked} cases failed:\n  {failures}\n{}",
            cluster.logs()
        );
        eprintln!("{checked} cases passed");
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

/// A job runs from start to success: the server still works after everything above.
async fn assert_still_runs_jobs(cluster: &TestCluster) {
    let job = cluster
        .submit("count", &[("steps", "2"), ("interval_ms", "1")])
        .await;
    let done = cluster.wait_finished(&job.id).await;
    assert_eq!(done.state, v1::JobState::Succeeded as i32, "{done:#?}");
    assert_eq!(done.outputs.len(), 1, "{done:#?}");
}
