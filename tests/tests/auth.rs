//! Tokens, against real processes: the cluster token between the coordinator and its workers (both
//! directions), API and read tokens on every public RPC — gRPC and grpc-web — and on downloads;
//! health and reflection open for probes; no token ever in a log; no listening beyond loopback
//! without a token unless `--insecure`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use futures::StreamExt;
use prost::Message;
use reelay_proto::auth::ClusterAuth;
use reelay_proto::v1;
use reelay_tests::connect::Connect;
use reelay_tests::process::{ReelayProcess, free_port, reelay_bin};
use reelay_tests::{TestCluster, WorkerSpec, grpc_web, http, spec};
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const API: &str = "api-3f9c1d2b4a7e";
const API_2: &str = "api-second-8b1e0c";
const READ: &str = "read-5c8d2e1f0a9b";
const READ_2: &str = "read-second-4d7a91";
const CLUSTER: &str = "cluster-1a2b3c4d5e6f";
const OTHER_CLUSTER: &str = "cluster-other-77e1f0";
const WRONG: &str = "wrong-0e9d8c7b6a";
const SECRETS: [&str; 7] = [API, API_2, READ, READ_2, CLUSTER, OTHER_CLUSTER, WRONG];
const MISSING_ID: &str = "01a22300-0000-7000-8000-000000000000";

// === the table of public RPCs ===

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rpc {
    CreateJob,
    CreateJobs,
    GetJob,
    ListJobs,
    WatchJob,
    WatchJobs,
    CancelJob,
    RetryJob,
    DeleteJob,
    GetJobLogs,
    ListOutputs,
    DownloadOutput,
    GetJobHistory,
    ListNodes,
    GetNode,
    DrainNode,
    UndrainNode,
    RemoveNode,
    ListPipelines,
}

/// Every public RPC but RegisterNode (workers', checked on its own).
const RPCS: [Rpc; 19] = [
    Rpc::CreateJob,
    Rpc::CreateJobs,
    Rpc::GetJob,
    Rpc::ListJobs,
    Rpc::WatchJob,
    Rpc::WatchJobs,
    Rpc::CancelJob,
    Rpc::RetryJob,
    Rpc::DeleteJob,
    Rpc::GetJobLogs,
    Rpc::ListOutputs,
    Rpc::DownloadOutput,
    Rpc::GetJobHistory,
    Rpc::ListNodes,
    Rpc::GetNode,
    Rpc::DrainNode,
    Rpc::UndrainNode,
    Rpc::RemoveNode,
    Rpc::ListPipelines,
];

impl Rpc {
    fn mutating(self) -> bool {
        matches!(
            self,
            Rpc::CreateJob
                | Rpc::CreateJobs
                | Rpc::CancelJob
                | Rpc::RetryJob
                | Rpc::DeleteJob
                | Rpc::DrainNode
                | Rpc::UndrainNode
                | Rpc::RemoveNode
        )
    }

    fn path(self) -> String {
        let service = match self {
            Rpc::ListNodes | Rpc::GetNode | Rpc::DrainNode | Rpc::UndrainNode | Rpc::RemoveNode => {
                "NodeService"
            }
            Rpc::ListPipelines => "PipelineService",
            _ => "JobService",
        };
        format!("/reelay.v1.{service}/{self:?}")
    }

    /// Data frames a grpc-web call reads: a unary answer and its trailer, a stream's first message,
    /// or only the headers of WatchJobs (which may send nothing while no job is active).
    fn web_frames(self) -> usize {
        match self {
            Rpc::WatchJobs => 0,
            Rpc::WatchJob | Rpc::GetJobLogs | Rpc::DownloadOutput => 1,
            _ => 2,
        }
    }
}

/// What the calls refer to: reads name a real finished job and node; writes other than the creates
/// name a missing job or node, so an accepted call changes nothing (it answers NOT_FOUND).
struct Ids {
    job: String,
    node: String,
}

fn create_request() -> v1::CreateJobRequest {
    v1::CreateJobRequest {
        spec: Some(spec("count", &[("steps", "1"), ("interval_ms", "1")])),
        request_id: String::new(),
    }
}

/// The request of `rpc`, encoded (for grpc-web).
fn encoded(rpc: Rpc, ids: &Ids) -> Vec<u8> {
    let job = ids.job.clone();
    let node = ids.node.clone();
    let missing = MISSING_ID.to_owned();
    match rpc {
        Rpc::CreateJob => create_request().encode_to_vec(),
        Rpc::CreateJobs => v1::CreateJobsRequest {
            requests: vec![create_request()],
        }
        .encode_to_vec(),
        Rpc::GetJob => v1::GetJobRequest { id: job }.encode_to_vec(),
        Rpc::ListJobs => v1::ListJobsRequest::default().encode_to_vec(),
        Rpc::WatchJob => v1::WatchJobRequest {
            id: job,
            after_version: 0,
        }
        .encode_to_vec(),
        Rpc::WatchJobs => v1::WatchJobsRequest::default().encode_to_vec(),
        Rpc::CancelJob => v1::CancelJobRequest { id: missing }.encode_to_vec(),
        Rpc::RetryJob => v1::RetryJobRequest { id: missing }.encode_to_vec(),
        Rpc::DeleteJob => v1::DeleteJobRequest { id: missing }.encode_to_vec(),
        Rpc::GetJobLogs => v1::GetJobLogsRequest {
            id: job,
            follow: false,
            after_line: 0,
        }
        .encode_to_vec(),
        Rpc::ListOutputs => v1::ListOutputsRequest { id: job }.encode_to_vec(),
        Rpc::DownloadOutput => v1::DownloadOutputRequest {
            id: job,
            name: "count.txt".into(),
            offset: 0,
        }
        .encode_to_vec(),
        Rpc::GetJobHistory => v1::GetJobHistoryRequest {
            id: job,
            after_version: 0,
        }
        .encode_to_vec(),
        Rpc::ListNodes => v1::ListNodesRequest {}.encode_to_vec(),
        Rpc::GetNode => v1::GetNodeRequest { id: node }.encode_to_vec(),
        Rpc::DrainNode => v1::DrainNodeRequest { id: "ghost".into() }.encode_to_vec(),
        Rpc::UndrainNode => v1::UndrainNodeRequest { id: "ghost".into() }.encode_to_vec(),
        Rpc::RemoveNode => v1::RemoveNodeRequest { id: "ghost".into() }.encode_to_vec(),
        Rpc::ListPipelines => v1::ListPipelinesRequest {}.encode_to_vec(),
    }
}

/// The request of `rpc` as its type (the same bytes [`encoded`] gives grpc-web).
fn decoded<M: Message + Default>(rpc: Rpc, ids: &Ids) -> M {
    M::decode(encoded(rpc, ids).as_slice()).expect("the request decodes as its own type")
}

/// Calls `rpc` over gRPC on `channel` with `token`; `Ok` when the server accepted it (a stream
/// counts once it is open).
async fn call_grpc(
    rpc: Rpc,
    channel: &Channel,
    token: Option<&str>,
    ids: &Ids,
) -> Result<(), Status> {
    use v1::job_service_client::JobServiceClient;
    use v1::node_service_client::NodeServiceClient;
    use v1::pipeline_service_client::PipelineServiceClient;

    let auth = ClusterAuth::new(token).expect("a header-safe token");
    let mut jobs = JobServiceClient::with_interceptor(channel.clone(), auth.clone());
    let mut nodes = NodeServiceClient::with_interceptor(channel.clone(), auth.clone());
    let mut pipelines = PipelineServiceClient::with_interceptor(channel.clone(), auth);
    match rpc {
        Rpc::CreateJob => jobs.create_job(create_request()).await.map(drop),
        Rpc::CreateJobs => jobs
            .create_jobs(decoded::<v1::CreateJobsRequest>(rpc, ids))
            .await
            .map(drop),
        Rpc::GetJob => jobs
            .get_job(decoded::<v1::GetJobRequest>(rpc, ids))
            .await
            .map(drop),
        Rpc::ListJobs => jobs
            .list_jobs(decoded::<v1::ListJobsRequest>(rpc, ids))
            .await
            .map(drop),
        Rpc::WatchJob => jobs
            .watch_job(decoded::<v1::WatchJobRequest>(rpc, ids))
            .await
            .map(drop),
        Rpc::WatchJobs => jobs
            .watch_jobs(decoded::<v1::WatchJobsRequest>(rpc, ids))
            .await
            .map(drop),
        Rpc::CancelJob => jobs
            .cancel_job(decoded::<v1::CancelJobRequest>(rpc, ids))
            .await
            .map(drop),
        Rpc::RetryJob => jobs
            .retry_job(decoded::<v1::RetryJobRequest>(rpc, ids))
            .await
            .map(drop),
        Rpc::DeleteJob => jobs
            .delete_job(decoded::<v1::DeleteJobRequest>(rpc, ids))
            .await
            .map(drop),
        Rpc::GetJobLogs => jobs
            .get_job_logs(decoded::<v1::GetJobLogsRequest>(rpc, ids))
            .await
            .map(drop),
        Rpc::ListOutputs => jobs
            .list_outputs(decoded::<v1::ListOutputsRequest>(rpc, ids))
            .await
            .map(drop),
        Rpc::DownloadOutput => jobs
            .download_output(decoded::<v1::DownloadOutputRequest>(rpc, ids))
            .await
            .map(drop),
        Rpc::GetJobHistory => jobs
            .get_job_history(decoded::<v1::GetJobHistoryRequest>(rpc, ids))
            .await
            .map(drop),
        Rpc::ListNodes => nodes.list_nodes(v1::ListNodesRequest {}).await.map(drop),
        Rpc::GetNode => nodes
            .get_node(decoded::<v1::GetNodeRequest>(rpc, ids))
            .await
            .map(drop),
        Rpc::DrainNode => nodes
            .drain_node(decoded::<v1::DrainNodeRequest>(rpc, ids))
            .await
            .map(drop),
        Rpc::UndrainNode => nodes
            .undrain_node(decoded::<v1::UndrainNodeRequest>(rpc, ids))
            .await
            .map(drop),
        Rpc::RemoveNode => nodes
            .remove_node(decoded::<v1::RemoveNodeRequest>(rpc, ids))
            .await
            .map(drop),
        Rpc::ListPipelines => pipelines
            .list_pipelines(v1::ListPipelinesRequest {})
            .await
            .map(drop),
    }
}

/// The status `rpc` must get from a token that may do `may_write`: `None` is no valid client
/// token, `Some(false)` a read token, `Some(true)` an API token.
fn expected(rpc: Rpc, may_write: Option<bool>) -> Code {
    match may_write {
        None => Code::Unauthenticated,
        Some(false) if rpc.mutating() => Code::PermissionDenied,
        // Accepted writes other than the creates name missing things.
        Some(true) if rpc.mutating() && !matches!(rpc, Rpc::CreateJob | Rpc::CreateJobs) => {
            Code::NotFound
        }
        Some(_) => Code::Ok,
    }
}

/// Every RPC with every kind of token, over gRPC and grpc-web; a table of what differed.
async fn check_table(cluster: &TestCluster, ids: &Ids) {
    let channel = cluster.channel().await;
    let tokens: [(Option<&str>, Option<bool>, &str); 7] = [
        (None, None, "no token"),
        (Some(WRONG), None, "a wrong token"),
        (Some(CLUSTER), None, "the cluster token"),
        (Some(READ), Some(false), "read token 1"),
        (Some(READ_2), Some(false), "read token 2"),
        (Some(API), Some(true), "API token 1"),
        (Some(API_2), Some(true), "API token 2"),
    ];
    let mut wrong = Vec::new();
    for (token, may_write, label) in tokens {
        for rpc in RPCS {
            let want = expected(rpc, may_write);
            let got = match call_grpc(rpc, &channel, token, ids).await {
                Ok(()) => Code::Ok,
                Err(status) => status.code(),
            };
            if got != want {
                wrong.push(format!(
                    "gRPC     {rpc:?} with {label}: {got:?}, want {want:?}"
                ));
            }
            let address = cluster.address();
            let path = rpc.path();
            let payload = encoded(rpc, ids);
            let reply = tokio::task::spawn_blocking(move || {
                grpc_web::call(&address, None, &path, &payload, token, rpc.web_frames())
            })
            .await
            .unwrap()
            .unwrap_or_else(|err| panic!("grpc-web {rpc:?} with {label}: {err}"));
            if reply.code() != want {
                wrong.push(format!(
                    "grpc-web {rpc:?} with {label}: {:?} ({:?}), want {want:?}",
                    reply.code(),
                    reply.grpc_message
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} calls got the wrong status:\n{}",
        wrong.len(),
        tokens.len() * RPCS.len() * 2,
        wrong.join("\n")
    );
}

// === helpers ===

/// Fails when any log of the cluster's directory (or `extra` text) holds a token.
fn assert_no_secrets(dir: &Path, extra: &[&str]) {
    let mut texts: Vec<(String, String)> = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|ext| ext == "log") {
            let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
            texts.push((path.display().to_string(), text));
        }
    }
    assert!(!texts.is_empty(), "no log in {}", dir.display());
    for (index, text) in extra.iter().enumerate() {
        texts.push((format!("output {index}"), (*text).to_owned()));
    }
    for (name, text) in &texts {
        for secret in SECRETS {
            assert!(
                !text.contains(secret),
                "{name} contains the token {secret}:\n{text}"
            );
        }
    }
}

/// Waits until node `id` matches `predicate`.
async fn wait_node(
    cluster: &TestCluster,
    id: &str,
    timeout: Duration,
    predicate: impl Fn(&v1::Node) -> bool,
) -> v1::Node {
    let mut nodes = cluster.connect().nodes().await;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let node = nodes
            .get_node(v1::GetNodeRequest { id: id.to_owned() })
            .await
            .map(tonic::Response::into_inner);
        if let Ok(node) = &node
            && predicate(node)
        {
            return node.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "node {id} never matched: {node:#?}\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn node_ids(cluster: &TestCluster) -> Vec<String> {
    let nodes = cluster
        .connect()
        .nodes()
        .await
        .list_nodes(v1::ListNodesRequest {})
        .await
        .expect("list nodes")
        .into_inner()
        .nodes;
    nodes.into_iter().map(|node| node.id).collect()
}

fn worker_with_token(token: Option<&str>) -> WorkerSpec {
    WorkerSpec {
        extra_args: token
            .map(|token| vec!["--cluster-token".into(), token.into()])
            .unwrap_or_default(),
        ..Default::default()
    }
}

fn cli(cluster: &TestCluster, token: Option<&str>, args: &[&str]) -> std::process::Output {
    let mut command = Command::new(reelay_bin());
    command
        .args(args)
        .env("REELAY_SERVER", cluster.url())
        .env_remove("REELAY_TOKEN")
        .env_remove("REELAY_TLS_CA");
    if let Some(token) = token {
        command.env("REELAY_TOKEN", token);
    }
    command.output().expect("run reelay")
}

/// Whether a server on `port` answers health checks (no token) before `timeout`, or `process`
/// exits first.
async fn serves_health(process: &mut ReelayProcess, port: u16, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if let Ok(channel) = Connect::plain(&format!("http://127.0.0.1:{port}"))
            .try_channel()
            .await
            && let Ok(response) = HealthClient::new(channel)
                .check(tonic_health::pb::HealthCheckRequest {
                    service: String::new(),
                })
                .await
        {
            return response.into_inner().status == ServingStatus::Serving as i32;
        }
        if process.wait_exit(Duration::from_millis(100)).is_some() {
            return false;
        }
    }
    false
}

// === tests ===

#[tokio::test(flavor = "multi_thread")]
async fn every_public_rpc_checks_api_and_read_tokens_over_grpc_and_grpc_web() {
    // API tokens from the environment (comma-separated), read tokens from repeated flags; the
    // cluster token from the environment for the coordinator and its worker alike.
    let cluster = TestCluster::builder()
        .env("REELAY_API_TOKEN", &format!("{API},{API_2}"))
        .env("REELAY_CLUSTER_TOKEN", CLUSTER)
        .coordinator_arg("--read-token")
        .coordinator_arg(READ)
        .coordinator_arg("--read-token")
        .coordinator_arg(READ_2)
        .client_token(API)
        .workers(1)
        .start()
        .await;
    let job = cluster
        .submit("count", &[("steps", "3"), ("interval_ms", "1")])
        .await;
    let done = cluster.wait_terminal(&job.id).await.pop().unwrap();
    assert_eq!(
        done.job.unwrap().state,
        v1::JobState::Succeeded as i32,
        "jobs run when the tokens match"
    );
    let ids = Ids {
        job: job.id.clone(),
        node: "w0".into(),
    };

    check_table(&cluster, &ids).await;

    // RegisterNode is the workers' RPC: with a cluster token set, only that token registers.
    let register = |token: Option<&'static str>| {
        let target = cluster.connect().with_token(token);
        let request = v1::RegisterNodeRequest {
            id: "w0".into(),
            address: format!("http://127.0.0.1:{}", cluster.workers[0].port),
            labels: Default::default(),
            slots: 2,
            version: String::new(),
            executor: "process".into(),
        };
        async move { target.nodes().await.register_node(request).await }
    };
    for token in [None, Some(WRONG), Some(READ), Some(API)] {
        let status = register(token)
            .await
            .expect_err("RegisterNode without the cluster token");
        assert_eq!(
            status.code(),
            Code::Unauthenticated,
            "{token:?}: {status:?}"
        );
        assert!(status.message().contains("--cluster-token"), "{status:?}");
    }
    register(Some(CLUSTER))
        .await
        .expect("RegisterNode with the cluster token");

    // Downloads: a read token is enough; none or a wrong one gets 401 with a Bearer challenge.
    let path = format!("/download/{}/count.txt", job.id);
    for (token, want) in [
        (None, 401),
        (Some(WRONG), 401),
        (Some(READ), 200),
        (Some(API_2), 200),
    ] {
        let bearer = token.map(|token| format!("Bearer {token}"));
        let headers: Vec<(&str, &str)> = bearer
            .iter()
            .map(|value| ("Authorization", value.as_str()))
            .collect();
        let response = http::get(&cluster.address(), &path, &headers);
        assert_eq!(response.status, want, "{token:?}: {}", response.text());
        if want == 401 {
            assert_eq!(
                response.header("www-authenticate"),
                Some("Bearer realm=\"reelay\"")
            );
        } else {
            assert_eq!(response.text(), "step 1\nstep 2\nstep 3\n");
        }
    }

    // Health and reflection stay open, on the coordinator and on the worker.
    for port in [cluster.coordinator_port, cluster.workers[0].port] {
        let channel = Connect::plain(&format!("http://127.0.0.1:{port}"))
            .channel()
            .await;
        let health = HealthClient::new(channel.clone())
            .check(tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            })
            .await
            .expect("health without a token")
            .into_inner();
        assert_eq!(health.status, ServingStatus::Serving as i32);
        let services = list_services(channel).await;
        assert!(
            services.iter().any(|name| name.starts_with("reelay.v1.")),
            "{services:?}"
        );
    }
    let coordinator = Connect::plain(&cluster.url()).channel().await;
    let health = HealthClient::new(coordinator)
        .check(tonic_health::pb::HealthCheckRequest {
            service: "reelay.v1.JobService".into(),
        })
        .await
        .expect("health of JobService without a token")
        .into_inner();
    assert_eq!(health.status, ServingStatus::Serving as i32);

    // The worker's own service needs the cluster token, not an API token.
    let worker = cluster.worker_connect(0);
    for token in [None, Some(WRONG), Some(API), Some(READ)] {
        let status = worker
            .with_token(token)
            .worker()
            .await
            .get_info(v1::GetInfoRequest {})
            .await
            .expect_err("WorkerService without the cluster token");
        assert_eq!(status.code(), Code::Unauthenticated, "{token:?}");
    }
    let info = worker
        .with_token(Some(CLUSTER))
        .worker()
        .await
        .get_info(v1::GetInfoRequest {})
        .await
        .expect("WorkerService with the cluster token");
    assert_eq!(info.into_inner().node_id, "w0");

    // The CLI: a read token lists, cannot submit; no token is told to set one.
    let listed = cli(&cluster, Some(READ), &["job", "list", "-o", "json"]);
    assert!(listed.status.success(), "{listed:?}");
    let refused = cli(&cluster, Some(READ), &["job", "submit", "count"]);
    assert!(!refused.status.success());
    let refused_err = String::from_utf8_lossy(&refused.stderr).into_owned();
    assert!(refused_err.contains("API token"), "{refused_err}");
    let anonymous = cli(&cluster, None, &["job", "list"]);
    let anonymous_err = String::from_utf8_lossy(&anonymous.stderr).into_owned();
    assert!(!anonymous.status.success());
    assert!(anonymous_err.contains("--token"), "{anonymous_err}");
    let wrong = cli(&cluster, Some(WRONG), &["job", "list"]);
    let wrong_err = String::from_utf8_lossy(&wrong.stderr).into_owned();
    assert!(!wrong.status.success());

    // Hundreds of calls with right and wrong tokens later: no token in any log or output.
    assert_no_secrets(
        cluster.path(),
        &[
            &String::from_utf8_lossy(&listed.stdout),
            &refused_err,
            &anonymous_err,
            &wrong_err,
        ],
    );
}

/// The services a reflection `list` shows, asked without a token (v1, and v1alpha for grpcurl).
async fn list_services(channel: Channel) -> Vec<String> {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient as AlphaClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest as AlphaRequest;
    use tonic_reflection::pb::{v1 as reflection, v1alpha};

    let request = reflection::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = ServerReflectionClient::new(channel.clone())
        .server_reflection_info(futures::stream::iter([request]))
        .await
        .expect("reflection v1 without a token")
        .into_inner();
    let Some(Ok(reply)) = stream.next().await else {
        panic!("no reflection answer");
    };
    let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else {
        panic!("not a list: {reply:?}");
    };
    let alpha = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(AlphaRequest::ListServices(String::new())),
    };
    let mut alpha_stream = AlphaClient::new(channel)
        .server_reflection_info(futures::stream::iter([alpha]))
        .await
        .expect("reflection v1alpha without a token")
        .into_inner();
    assert!(
        matches!(alpha_stream.next().await, Some(Ok(_))),
        "v1alpha answers"
    );
    list.service
        .into_iter()
        .map(|service| service.name)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cluster_token_authenticates_workers_and_the_coordinator() {
    let read_tokens = format!("{READ},{READ_2}");
    let mut cluster = TestCluster::builder()
        .coordinator_arg("--cluster-token")
        .coordinator_arg(CLUSTER)
        .coordinator_arg("--api-token")
        .coordinator_arg(API)
        .env("REELAY_READ_TOKEN", &read_tokens)
        .client_token(API)
        .worker(worker_with_token(Some(CLUSTER)))
        .start()
        .await;
    // REELAY_READ_TOKEN holds two tokens, comma-separated: both read.
    for token in [READ, READ_2] {
        cluster
            .connect()
            .with_token(Some(token))
            .jobs()
            .await
            .list_jobs(v1::ListJobsRequest::default())
            .await
            .unwrap_or_else(|status| panic!("read token from the environment: {status:?}"));
    }

    // Workers with a wrong token, or none, are refused, say so, and never become nodes.
    let wrong = cluster.add_worker(worker_with_token(Some(WRONG)));
    let missing = cluster.add_worker(worker_with_token(None));
    for index in [wrong, missing] {
        let log = cluster.workers[index]
            .process
            .wait_log(
                "the coordinator refused this worker's cluster token",
                Duration::from_secs(30),
            )
            .await;
        assert!(log.contains("Unauthenticated"), "{log}");
    }
    cluster
        .coordinator
        .wait_log("RegisterNode refused", Duration::from_secs(5))
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        node_ids(&cluster).await,
        ["w0"],
        "refused workers are no nodes"
    );

    // Matching tokens: jobs run.
    let job = cluster
        .submit("count", &[("steps", "3"), ("interval_ms", "1")])
        .await;
    let done = cluster.wait_finished(&job.id).await;
    assert_eq!(done.state, v1::JobState::Succeeded as i32);
    assert_eq!(done.node_id, "w0");
    for index in [wrong, missing] {
        cluster.workers[index]
            .process
            .terminate(Duration::from_secs(10));
    }

    // A coordinator with another cluster token cannot call the worker it knows: the node stays
    // OFFLINE and says the token was refused; the worker is refused when it registers again.
    let restart = |cluster: &mut TestCluster, token: &str| {
        cluster.coordinator.terminate(Duration::from_secs(10));
        let args = vec![
            "coordinator".to_owned(),
            "--listen".into(),
            cluster.address(),
            "--data-dir".into(),
            cluster.path().join("coordinator").display().to_string(),
            "--config".into(),
            cluster.config.display().to_string(),
            "--cluster-token".into(),
            token.into(),
            "--api-token".into(),
            API.into(),
        ];
        cluster.coordinator = ReelayProcess::start(
            "coordinator",
            args,
            vec![("REELAY_READ_TOKEN".into(), read_tokens.clone())],
            cluster.path().join("coordinator.log"),
        );
    };
    let worker_log_before = cluster.workers[0].process.log_text().len();
    restart(&mut cluster, OTHER_CLUSTER);
    cluster.wait_serving().await;
    let node = wait_node(&cluster, "w0", Duration::from_secs(30), |node| {
        node.condition.contains("refused the cluster token")
    })
    .await;
    assert_eq!(node.state, v1::NodeState::Offline as i32, "{node:#?}");
    assert!(node.condition.contains("--cluster-token"), "{node:#?}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !cluster.workers[0].process.log_text()[worker_log_before..]
        .contains("the coordinator refused this worker's cluster token")
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the worker never said it was refused:\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let job = cluster.submit("count", &[("steps", "1")]).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        cluster.get(&job.id).await.state,
        v1::JobState::Queued as i32,
        "no job goes to a node the coordinator cannot authenticate to"
    );

    // The right token again: the node is back and the queued job runs.
    restart(&mut cluster, CLUSTER);
    cluster.wait_serving().await;
    cluster.wait_ready_nodes(1).await;
    let done = cluster.wait_finished(&job.id).await;
    assert_eq!(done.state, v1::JobState::Succeeded as i32);

    assert_no_secrets(cluster.path(), &[]);
}

#[tokio::test(flavor = "multi_thread")]
async fn no_token_beyond_loopback_unless_insecure() {
    let dir = tempfile::tempdir().unwrap();
    let mut started = 0;
    let mut start = |args: &[&str]| {
        started += 1;
        let port = free_port();
        let mut all: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
        let kind = all[0].clone();
        all.extend([
            "--listen".into(),
            format!("0.0.0.0:{port}"),
            "--data-dir".into(),
            dir.path()
                .join(format!("data-{started}"))
                .display()
                .to_string(),
        ]);
        if kind == "worker" {
            all.extend([
                "--advertise".into(),
                format!("http://127.0.0.1:{port}"),
                "--coordinator".into(),
                format!("http://127.0.0.1:{}", free_port()),
                "--executor".into(),
                "process".into(),
            ]);
        }
        let process = ReelayProcess::start(
            &format!("{kind}-{started}"),
            all,
            Vec::new(),
            dir.path().join(format!("{kind}-{started}.log")),
        );
        (process, port)
    };

    // Refused, saying why and what to do.
    for (args, flag) in [
        (&["coordinator"][..], "--api-token"),
        (&["worker"][..], "--cluster-token"),
        (&["dev"][..], "--api-token"),
    ] {
        let (mut process, _) = start(args);
        let status = process
            .wait_exit(Duration::from_secs(30))
            .unwrap_or_else(|| panic!("{args:?} on 0.0.0.0 without a token kept running"));
        assert!(!status.success());
        let log = process.log_text();
        assert!(log.contains("refusing to listen on 0.0.0.0"), "{log}");
        assert!(log.contains(flag) && log.contains("--insecure"), "{log}");
    }

    // `dev` has no tokens: its built-in worker's port stays on loopback too.
    let mut dev = ReelayProcess::start(
        "dev-worker-port",
        vec![
            "dev".into(),
            "--listen".into(),
            format!("127.0.0.1:{}", free_port()),
            "--worker-listen".into(),
            "0.0.0.0:0".into(),
            "--data-dir".into(),
            dir.path().join("dev-worker-port").display().to_string(),
        ],
        Vec::new(),
        dir.path().join("dev-worker-port.log"),
    );
    let status = dev
        .wait_exit(Duration::from_secs(30))
        .expect("dev with its worker on 0.0.0.0 kept running");
    assert!(!status.success());
    assert!(
        dev.log_text().contains("refusing to listen on 0.0.0.0:0"),
        "{}",
        dev.log_text()
    );

    // Allowed with a token, or when told --insecure.
    for args in [
        &["coordinator", "--insecure"][..],
        &["coordinator", "--api-token", API][..],
        &["coordinator", "--read-token", READ][..],
        &["worker", "--insecure"][..],
        &["worker", "--cluster-token", CLUSTER][..],
    ] {
        let (mut process, port) = start(args);
        assert!(
            serves_health(&mut process, port, Duration::from_secs(30)).await,
            "{args:?} on 0.0.0.0 does not serve:\n{}",
            process.log_text()
        );
        process.terminate(Duration::from_secs(10));
    }

    // Tokens that cannot work are refused at start, without echoing them.
    for (args, says) in [
        (&["coordinator", "--api-token="][..], "--api-token is empty"),
        (
            &["coordinator", "--api-token", "with space-1a2b"][..],
            "--api-token must be",
        ),
        (
            &["worker", "--cluster-token="][..],
            "--cluster-token is empty",
        ),
    ] {
        let (mut process, _) = start(args);
        let status = process
            .wait_exit(Duration::from_secs(30))
            .unwrap_or_else(|| panic!("{args:?} kept running"));
        assert!(!status.success());
        let log = process.log_text();
        assert!(log.contains(says), "{log}");
        assert!(!log.contains("with space-1a2b"), "{log}");
    }
    assert_no_secrets(dir.path(), &[]);
}
