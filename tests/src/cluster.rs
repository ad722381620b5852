//! A test cluster: a real coordinator and real workers on loopback ports, in a temp dir.
//!
//! ```no_run
//! # async fn demo() {
//! let cluster = reelay_tests::TestCluster::builder().workers(2).start().await;
//! let job = cluster.submit("count", &[("steps", "5")]).await;
//! cluster.wait_terminal(&job.id).await;
//! # }
//! ```
//!
//! With `.client_token(..)` the harness's own calls (waiting for nodes, submitting, watching)
//! send a bearer token; with `.tls(..)` every server serves TLS and the harness verifies them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reelay_proto::v1;
use reelay_proto::v1::job_service_client::JobServiceClient;
use reelay_proto::v1::node_service_client::NodeServiceClient;
use reelay_proto::v1::pipeline_service_client::PipelineServiceClient;
use reelay_proto::v1::worker_service_client::WorkerServiceClient;
use tonic::transport::Channel;

use crate::config::TEST_PIPELINES;
use crate::connect::Connect;
use crate::process::{ReelayProcess, free_port};
use crate::watch;

/// How a worker of the cluster is started.
#[derive(Debug, Clone)]
pub struct WorkerSpec {
    pub slots: u32,
    pub labels: String,
    pub executor: String,
    pub extra_args: Vec<String>,
    /// This worker's TLS files instead of the cluster's (a wrong CA, another certificate).
    pub tls: Option<TlsFiles>,
    /// The URL the worker registers at instead of the coordinator's (a fault proxy).
    pub coordinator: Option<String>,
    /// Environment of this worker on top of the cluster's.
    pub env: Vec<(String, String)>,
}

impl Default for WorkerSpec {
    fn default() -> Self {
        WorkerSpec {
            slots: 2,
            labels: String::new(),
            executor: "process".into(),
            extra_args: Vec::new(),
            tls: None,
            coordinator: None,
            env: Vec::new(),
        }
    }
}

/// TLS files of a cluster: the certificate and key every server serves, and the CA that peers
/// and the harness verify them with.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    fn args(&self) -> Vec<String> {
        vec![
            "--tls-cert".into(),
            self.cert.display().to_string(),
            "--tls-key".into(),
            self.key.display().to_string(),
            "--tls-ca".into(),
            self.ca.display().to_string(),
        ]
    }
}

/// Builds a [`TestCluster`].
#[derive(Debug, Default)]
pub struct ClusterBuilder {
    workers: Vec<WorkerSpec>,
    extra_config: String,
    coordinator_args: Vec<String>,
    env: Vec<(String, String)>,
    /// Environment of the coordinator only, on top of `env`.
    coordinator_env: Vec<(String, String)>,
    node_prefix: String,
    client_token: Option<String>,
    tls: Option<TlsFiles>,
    /// A data dir the coordinator starts on (copied), instead of an empty one.
    coordinator_data: Option<PathBuf>,
}

impl ClusterBuilder {
    /// `n` workers with 2 slots each, process executor.
    pub fn workers(mut self, n: usize) -> Self {
        self.workers.extend((0..n).map(|_| WorkerSpec::default()));
        self
    }

    /// One more worker as described.
    pub fn worker(mut self, spec: WorkerSpec) -> Self {
        self.workers.push(spec);
        self
    }

    /// More `[[pipeline]]` tables appended to the test config.
    pub fn extra_config(mut self, toml: &str) -> Self {
        self.extra_config.push_str(toml);
        self
    }

    pub fn coordinator_arg(mut self, arg: &str) -> Self {
        self.coordinator_args.push(arg.to_owned());
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// An environment variable of the coordinator only (its S3 settings, say).
    pub fn coordinator_env(mut self, key: &str, value: &str) -> Self {
        self.coordinator_env
            .push((key.to_owned(), value.to_owned()));
        self
    }

    /// The bearer token the harness's own calls send (a cluster started with `--api-token`).
    pub fn client_token(mut self, token: &str) -> Self {
        self.client_token = Some(token.to_owned());
        self
    }

    /// Every server serves TLS with these files; the harness connects over `https://`.
    pub fn tls(mut self, files: TlsFiles) -> Self {
        self.tls = Some(files);
        self
    }

    /// Names the workers `<prefix>w0`, `<prefix>w1`… instead of `w0`, `w1`…: node ids unique on
    /// the machine, for tests whose workers share a Docker engine (a worker removes the containers
    /// labelled with its node id that it does not know).
    pub fn node_prefix(mut self, prefix: &str) -> Self {
        prefix.clone_into(&mut self.node_prefix);
        self
    }

    /// The coordinator starts on a copy of the data dir `from` (a fixture made by an older
    /// version, say) instead of an empty one.
    pub fn coordinator_data(mut self, from: &Path) -> Self {
        self.coordinator_data = Some(from.to_owned());
        self
    }

    /// Starts the processes and waits until every worker is READY.
    pub async fn start(self) -> TestCluster {
        let dir = tempfile::Builder::new()
            .prefix("reelay-test-")
            .tempdir()
            .expect("temp dir");
        if let Some(from) = &self.coordinator_data {
            crate::process::copy_dir(from, &dir.path().join("coordinator"));
        }
        let config = dir.path().join("pipelines.toml");
        std::fs::write(&config, format!("{TEST_PIPELINES}\n{}", self.extra_config))
            .expect("write config");
        let port = free_port();
        let mut args = vec![
            "coordinator".to_owned(),
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--data-dir".into(),
            dir.path().join("coordinator").display().to_string(),
            "--config".into(),
            config.display().to_string(),
        ];
        if let Some(tls) = &self.tls {
            args.extend(tls.args());
        }
        args.extend(self.coordinator_args.iter().cloned());
        let coordinator = ReelayProcess::start(
            "coordinator",
            args,
            self.env
                .iter()
                .chain(&self.coordinator_env)
                .cloned()
                .collect(),
            dir.path().join("coordinator.log"),
        );
        let mut cluster = TestCluster {
            coordinator,
            coordinator_port: port,
            workers: Vec::new(),
            config,
            env: self.env,
            node_prefix: self.node_prefix,
            client_token: self.client_token,
            tls: self.tls,
            dir,
        };
        cluster.wait_serving().await;
        for spec in self.workers {
            cluster.add_worker(spec);
        }
        let expected = cluster.workers.len();
        cluster.wait_ready_nodes(expected).await;
        cluster
    }
}

/// A worker of the cluster.
#[derive(Debug)]
pub struct TestWorker {
    pub node_id: String,
    pub port: u16,
    pub data_dir: PathBuf,
    pub process: ReelayProcess,
}

/// A running coordinator and its workers.
#[derive(Debug)]
pub struct TestCluster {
    pub coordinator: ReelayProcess,
    pub coordinator_port: u16,
    pub workers: Vec<TestWorker>,
    pub config: PathBuf,
    env: Vec<(String, String)>,
    node_prefix: String,
    /// Sent by the harness's own calls.
    client_token: Option<String>,
    /// The cluster's TLS files, when it serves TLS.
    pub tls: Option<TlsFiles>,
    /// Dropped last: the processes stop before their files go.
    pub dir: tempfile::TempDir,
}

impl TestCluster {
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder::default()
    }

    pub fn url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme(), self.coordinator_port)
    }

    /// `https` when the cluster serves TLS.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// The coordinator as the harness calls it: its URL, the client token, the CA.
    pub fn connect(&self) -> Connect {
        Connect {
            url: self.url(),
            token: self.client_token.clone(),
            ca: self.tls.as_ref().map(|tls| tls.ca.clone()),
        }
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.coordinator_port)
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Starts another worker (`w<index>`, after the node prefix) as described.
    pub fn add_worker(&mut self, spec: WorkerSpec) -> usize {
        let index = self.workers.len();
        let node_id = format!("{}w{index}", self.node_prefix);
        let port = free_port();
        let data_dir = self.dir.path().join(&node_id);
        let mut args = vec![
            "worker".to_owned(),
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--data-dir".into(),
            data_dir.display().to_string(),
            "--config".into(),
            self.config.display().to_string(),
            "--coordinator".into(),
            spec.coordinator.clone().unwrap_or_else(|| self.url()),
            "--node-id".into(),
            node_id.clone(),
            "--slots".into(),
            spec.slots.to_string(),
            "--executor".into(),
            spec.executor.clone(),
            "--labels".into(),
            spec.labels.clone(),
            "--shutdown-grace".into(),
            "5s".into(),
        ];
        if let Some(tls) = spec.tls.as_ref().or(self.tls.as_ref()) {
            args.extend(tls.args());
        }
        args.extend(spec.extra_args);
        let log = self.dir.path().join(format!("{node_id}.log"));
        let env = self.env.iter().chain(&spec.env).cloned().collect();
        let process = ReelayProcess::start(&node_id, args, env, log);
        self.workers.push(TestWorker {
            node_id,
            port,
            data_dir,
            process,
        });
        index
    }

    /// A channel to the coordinator (TLS when the cluster serves it; no token: see [`Self::connect`]).
    pub async fn channel(&self) -> Channel {
        self.connect().channel().await
    }

    pub async fn jobs(&self) -> JobServiceClient<Channel> {
        JobServiceClient::new(self.channel().await).max_decoding_message_size(64 * 1024 * 1024)
    }

    pub async fn nodes(&self) -> NodeServiceClient<Channel> {
        NodeServiceClient::new(self.channel().await)
    }

    pub async fn pipelines(&self) -> PipelineServiceClient<Channel> {
        PipelineServiceClient::new(self.channel().await)
    }

    pub async fn worker_client(&self, index: usize) -> WorkerServiceClient<Channel> {
        WorkerServiceClient::new(self.worker_connect(index).channel().await)
    }

    /// Worker `index` as the harness calls it (TLS when the cluster serves it; no token).
    pub fn worker_connect(&self, index: usize) -> Connect {
        Connect {
            url: format!("{}://127.0.0.1:{}", self.scheme(), self.workers[index].port),
            token: None,
            ca: self.tls.as_ref().map(|tls| tls.ca.clone()),
        }
    }

    /// Waits until the coordinator answers ListNodes.
    pub async fn wait_serving(&mut self) {
        let connect = self.connect();
        for _ in 0..300 {
            if let Ok(channel) = connect.try_channel().await
                && NodeServiceClient::with_interceptor(channel, connect.auth())
                    .list_nodes(v1::ListNodesRequest {})
                    .await
                    .is_ok()
            {
                return;
            }
            if let Some(status) = self.coordinator.wait_exit(Duration::from_millis(50)) {
                panic!(
                    "the coordinator exited with {status}:\n{}",
                    self.coordinator.log_text()
                );
            }
        }
        panic!(
            "the coordinator did not start serving:\n{}",
            self.coordinator.log_text()
        );
    }

    /// Waits until at least `n` nodes are READY.
    pub async fn wait_ready_nodes(&self, n: usize) -> Vec<v1::Node> {
        let mut client = self.connect().nodes().await;
        let mut nodes = Vec::new();
        for _ in 0..400 {
            if let Ok(response) = client.list_nodes(v1::ListNodesRequest {}).await {
                nodes = response.into_inner().nodes;
                if nodes
                    .iter()
                    .filter(|node| node.state == v1::NodeState::Ready as i32)
                    .count()
                    >= n
                {
                    return nodes;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "{n} nodes did not become READY: {nodes:#?}\n{}",
            self.logs()
        );
    }

    /// Waits until node `id` is in `state`.
    pub async fn wait_node_state(
        &self,
        id: &str,
        state: v1::NodeState,
        timeout: Duration,
    ) -> v1::Node {
        let mut client = self.connect().nodes().await;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Ok(node) = client
                .get_node(v1::GetNodeRequest { id: id.to_owned() })
                .await
            {
                let node = node.into_inner();
                if node.state == state as i32 {
                    return node;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "node {id} is not {state:?}: {node:#?}"
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Creates a job of `pipeline` with `params`.
    pub async fn submit(&self, pipeline: &str, params: &[(&str, &str)]) -> v1::Job {
        self.submit_spec(spec(pipeline, params)).await
    }

    pub async fn submit_spec(&self, spec: v1::JobSpec) -> v1::Job {
        let request = v1::CreateJobRequest {
            spec: Some(spec),
            request_id: String::new(),
        };
        self.connect()
            .jobs()
            .await
            .create_job(request)
            .await
            .expect("create job")
            .into_inner()
    }

    /// Runs the `reelay` CLI with `args` in `dir` against this cluster.
    pub fn cli(&self, dir: &Path, args: &[&str]) -> std::process::Output {
        crate::process::reelay_cli(&self.url(), dir, args)
    }

    /// The steps of `parent`, in order (split, pieces, join).
    pub async fn steps_of(&self, parent: &str) -> Vec<v1::Job> {
        self.jobs()
            .await
            .list_jobs(v1::ListJobsRequest {
                parent_id: parent.to_owned(),
                page_size: 1000,
                ..Default::default()
            })
            .await
            .expect("ListJobs of a parent")
            .into_inner()
            .jobs
    }

    /// Every job stored, all pages, newest first.
    pub async fn all_jobs(&self) -> Vec<v1::Job> {
        let mut client = self.jobs().await;
        let mut jobs = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = client
                .list_jobs(v1::ListJobsRequest {
                    page_size: 1000,
                    page_token,
                    ..Default::default()
                })
                .await
                .expect("list jobs")
                .into_inner();
            jobs.extend(page.jobs);
            if page.next_page_token.is_empty() {
                return jobs;
            }
            page_token = page.next_page_token;
        }
    }

    pub async fn get(&self, id: &str) -> v1::Job {
        self.connect()
            .jobs()
            .await
            .get_job(v1::GetJobRequest { id: id.to_owned() })
            .await
            .expect("get job")
            .into_inner()
    }

    /// Follows the job until it is finished; returns every event seen.
    pub async fn wait_terminal(&self, id: &str) -> Vec<v1::JobEvent> {
        self.wait_terminal_within(id, Duration::from_secs(60)).await
    }

    /// Follows the job until it is finished; returns it as it ended.
    pub async fn wait_finished(&self, id: &str) -> v1::Job {
        self.wait_finished_within(id, Duration::from_secs(60)).await
    }

    pub async fn wait_finished_within(&self, id: &str, timeout: Duration) -> v1::Job {
        self.wait_terminal_within(id, timeout)
            .await
            .pop()
            .and_then(|event| event.job)
            .expect("the terminal event carries the job")
    }

    pub async fn wait_terminal_within(&self, id: &str, timeout: Duration) -> Vec<v1::JobEvent> {
        match tokio::time::timeout(
            timeout,
            watch::until_terminal_at(self.connect(), id.to_owned()),
        )
        .await
        {
            Ok(events) => events,
            Err(_) => panic!(
                "job {id} did not finish within {timeout:?}: {:#?}\n{}",
                self.get(id).await,
                self.logs()
            ),
        }
    }

    /// Follows the job until it is in `state`.
    pub async fn wait_state(&self, id: &str, state: v1::JobState, timeout: Duration) -> v1::Job {
        self.wait_job(id, timeout, |job| job.state == state as i32)
            .await
    }

    /// Follows the job until `predicate` holds for it.
    pub async fn wait_job(
        &self,
        id: &str,
        timeout: Duration,
        predicate: impl Fn(&v1::Job) -> bool,
    ) -> v1::Job {
        match tokio::time::timeout(
            timeout,
            watch::until_at(self.connect(), id.to_owned(), predicate),
        )
        .await
        {
            Ok(job) => job,
            Err(_) => panic!(
                "job {id} did not reach the expected state: {:#?}\n{}",
                self.get(id).await,
                self.logs()
            ),
        }
    }

    /// The job's change history (GetJobHistory), oldest first.
    pub async fn history(&self, id: &str) -> Vec<v1::JobEvent> {
        let request = v1::GetJobHistoryRequest {
            id: id.to_owned(),
            after_version: 0,
        };
        self.jobs()
            .await
            .get_job_history(request)
            .await
            .expect("job history")
            .into_inner()
            .events
    }

    /// The job's log lines so far (GetJobLogs without follow).
    pub async fn job_logs(&self, id: &str) -> Vec<v1::LogLine> {
        let request = v1::GetJobLogsRequest {
            id: id.to_owned(),
            follow: false,
            after_line: 0,
        };
        let mut stream = self
            .jobs()
            .await
            .get_job_logs(request)
            .await
            .expect("job logs")
            .into_inner();
        let mut lines = Vec::new();
        while let Some(line) = stream.message().await.expect("log line") {
            lines.push(line);
        }
        lines
    }

    /// The tails of every process's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut text = String::new();
        let tail = |log: String| {
            log.lines()
                .rev()
                .take(60)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n")
        };
        text.push_str(&format!(
            "--- coordinator log ---\n{}\n",
            tail(self.coordinator.log_text())
        ));
        for worker in &self.workers {
            text.push_str(&format!(
                "--- {} log ---\n{}\n",
                worker.node_id,
                tail(worker.process.log_text())
            ));
        }
        text
    }
}

/// The job id of a piece of `parent` running on `node` with at least `progress` percent done.
pub fn running_piece(parent: &v1::Job, node: &str, progress: u32) -> Option<String> {
    parent.steps.as_ref()?.pieces.iter().find_map(|piece| {
        (piece.state == v1::JobState::Running as i32
            && piece.node_id == node
            && piece.progress >= progress)
            .then(|| piece.job_id.clone())
    })
}

/// A job's state as the enum (`Unspecified` for a value this build does not know).
pub fn job_state(job: &v1::Job) -> v1::JobState {
    v1::JobState::try_from(job.state).unwrap_or(v1::JobState::Unspecified)
}

/// A job spec for `pipeline` with `params`.
pub fn spec(pipeline: &str, params: &[(&str, &str)]) -> v1::JobSpec {
    v1::JobSpec {
        pipeline: pipeline.to_owned(),
        params: params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    }
}
