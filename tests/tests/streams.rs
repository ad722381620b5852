//! Server streams end with their client. A client that cancels, is killed, or closes its
//! connection (a browser tab on grpc-web) is noticed within a second, on a job and a cluster where
//! nothing happens, and the stream's task and subscriptions go with it: each kind's
//! `reelay_open_streams` gauge (and the worker's `reelay_worker_open_streams`) is back at its
//! baseline within [`WITHIN`]. Many rounds of opening and cancelling leave the coordinator's
//! memory flat.

use std::any::Any;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::future::join_all;
use prost::Message;
use reelay_proto::v1;
use reelay_tests::TestCluster;
use reelay_tests::gauges::{gauge, open_streams_sample, wait_gauge};
use reelay_tests::process::{reelay_bin, rss_mib};

/// A pipeline whose output is big enough to still be in flight when a download is left.
const BIG_PIPELINE: &str = r#"
[[pipeline]]
name = "big"
description = "writes a 32 MiB output"
command = ["sh", "-c", "head -c 33554432 /dev/zero > \"$REELAY_OUTPUT_DIR/big.bin\""]
input_required = false
"#;

/// Streams opened per kind.
const N: usize = 25;
/// Downloads left unread per kind (see where they are opened).
const DOWNLOADS: usize = 4;
/// How soon a departed client's stream must be gone, gauge read included.
const WITHIN: Duration = Duration::from_secs(1);
/// How long streams may take to be counted once opened (they are counted before the first
/// message, so this is only the gauge's read).
const COUNTED_WITHIN: Duration = Duration::from_secs(10);

const COORDINATOR_KINDS: [&str; 6] = [
    "WatchJob",
    "WatchJobs",
    "GetJobLogs",
    "WatchNodes",
    "DownloadOutput",
    "http_download",
];
const WORKER_KINDS: [&str; 2] = ["StreamEvents", "DownloadOutput"];

/// A cluster where nothing happens: one finished job with a 32 MiB output, one job that stays
/// queued (its only node is drained), no job running.
struct Quiet {
    cluster: TestCluster,
    queued: String,
    finished: String,
}

impl Quiet {
    async fn start() -> Quiet {
        let cluster = TestCluster::builder()
            .workers(1)
            .extra_config(BIG_PIPELINE)
            .start()
            .await;
        let finished = cluster.submit("big", &[]).await.id;
        let done = cluster.wait_finished(&finished).await;
        assert_eq!(done.state, v1::JobState::Succeeded as i32, "{done:#?}");
        // The output is in the artifact store; the worker keeps no copy. For the worker's own
        // DownloadOutput streams, put one back where the worker serves its outputs from.
        let local = cluster.workers[0].data_dir.join("outputs").join(&finished);
        // The worker removes its copy right after the job's final state: wait for that first.
        let removed = reelay_tests::faults::poll(Duration::from_secs(10), async || {
            (!local.exists()).then_some(())
        })
        .await;
        assert!(
            removed.is_some(),
            "the worker removed its copy of the stored output"
        );
        std::fs::create_dir_all(&local).unwrap();
        std::fs::write(local.join("big.bin"), vec![0u8; 32 << 20]).unwrap();
        cluster
            .nodes()
            .await
            .drain_node(v1::DrainNodeRequest { id: "w0".into() })
            .await
            .unwrap();
        let queued = cluster.submit("count", &[]).await;
        assert_eq!(queued.state, v1::JobState::Queued as i32);
        Quiet {
            cluster,
            queued: queued.id,
            finished,
        }
    }

    fn worker_address(&self) -> String {
        format!("127.0.0.1:{}", self.cluster.workers[0].port)
    }

    /// Where gauge `kind` is read: the coordinator's or the worker's `/metrics`.
    fn gauge_of(&self, worker: bool, kind: &str) -> (String, String) {
        let address = if worker {
            self.worker_address()
        } else {
            self.cluster.address()
        };
        (address, open_streams_sample(kind, worker))
    }

    /// Every stream gauge (and `reelay_job_watchers`) as it is now, when nothing is open but the
    /// coordinator's own link to the worker.
    fn baseline(&self) -> Vec<(String, String, f64)> {
        let mut gauges: Vec<(String, String)> = COORDINATOR_KINDS
            .iter()
            .map(|kind| self.gauge_of(false, kind))
            .chain(WORKER_KINDS.iter().map(|kind| self.gauge_of(true, kind)))
            .collect();
        gauges.push((self.cluster.address(), "reelay_job_watchers".into()));
        gauges
            .into_iter()
            .map(|(address, sample)| {
                let value = gauge(&address, &sample);
                (address, sample, value)
            })
            .collect()
    }

    /// Waits until gauge `kind` is `opened` above its baseline.
    async fn wait_counted(
        &self,
        base: &[(String, String, f64)],
        worker: bool,
        kind: &str,
        opened: usize,
    ) {
        let (address, sample) = self.gauge_of(worker, kind);
        let start = base
            .iter()
            .find(|(a, s, _)| *a == address && *s == sample)
            .map(|(_, _, value)| *value)
            .unwrap();
        wait_gauge(&address, &sample, start + opened as f64, COUNTED_WITHIN).await;
    }

    /// Checks that every gauge is back at `base` within [`WITHIN`] of `left`.
    async fn assert_back_within(&self, base: &[(String, String, f64)], left: Instant) {
        for (address, sample, value) in base {
            wait_gauge(address, sample, *value, Duration::from_secs(10)).await;
            let took = left.elapsed();
            assert!(
                took <= WITHIN,
                "{sample} came back to {value} only {took:?} after the clients left\n{}",
                self.cluster.logs()
            );
            eprintln!("{sample} back at {value} {took:?} after the clients left");
        }
    }
}

/// Opens `n` streams with `open` at once; holds what each returned.
async fn open_n<F, Fut>(n: usize, open: F) -> Vec<Box<dyn Any + Send>>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Box<dyn Any + Send>>,
{
    join_all((0..n).map(|_| open())).await
}

#[tokio::test(flavor = "multi_thread")]
async fn every_kind_of_stream_ends_within_a_second_of_its_client_cancelling() {
    let quiet = Quiet::start().await;
    let base = quiet.baseline();
    let cluster = &quiet.cluster;
    let (queued, finished) = (quiet.queued.clone(), quiet.finished.clone());
    let mut held: Vec<Box<dyn Any + Send>> = Vec::new();

    // Each kind on its own connection (a server allows some hundred streams per connection).
    let jobs = cluster.jobs().await;
    held.extend(
        open_n(N, || {
            let (mut jobs, id) = (jobs.clone(), queued.clone());
            async move {
                let request = v1::WatchJobRequest {
                    id,
                    after_version: 0,
                };
                let mut stream = jobs.watch_job(request).await.unwrap().into_inner();
                stream.message().await.unwrap().expect("a snapshot");
                Box::new(stream) as Box<dyn Any + Send>
            }
        })
        .await,
    );
    let jobs = cluster.jobs().await;
    held.extend(
        open_n(N, || {
            let mut jobs = jobs.clone();
            async move {
                let request = v1::WatchJobsRequest {
                    states: vec![],
                    no_snapshot: false,
                };
                let mut stream = jobs.watch_jobs(request).await.unwrap().into_inner();
                stream
                    .message()
                    .await
                    .unwrap()
                    .expect("the queued job's snapshot");
                Box::new(stream) as Box<dyn Any + Send>
            }
        })
        .await,
    );
    let jobs = cluster.jobs().await;
    held.extend(
        open_n(N, || {
            let (mut jobs, id) = (jobs.clone(), queued.clone());
            async move {
                // A queued job has no line yet: the follower only waits.
                let request = v1::GetJobLogsRequest {
                    id,
                    follow: true,
                    after_line: 0,
                };
                let stream = jobs.get_job_logs(request).await.unwrap().into_inner();
                Box::new(stream) as Box<dyn Any + Send>
            }
        })
        .await,
    );
    let nodes = cluster.nodes().await;
    held.extend(
        open_n(N, || {
            let mut nodes = nodes.clone();
            async move {
                let mut stream = nodes
                    .watch_nodes(v1::WatchNodesRequest {})
                    .await
                    .unwrap()
                    .into_inner();
                stream.message().await.unwrap().expect("the node");
                Box::new(stream) as Box<dyn Any + Send>
            }
        })
        .await,
    );
    let download = v1::DownloadOutputRequest {
        id: finished.clone(),
        name: "big.bin".into(),
        offset: 0,
    };
    // Downloads each on a connection of their own: an unread stream holds its connection's
    // flow-control window, which would stall the next download on it. Fewer of them: every
    // download through the coordinator also pins up to a stream window (2 MiB) of the
    // coordinator's one connection to the worker, whose window is 16 MiB.
    for _ in 0..DOWNLOADS {
        let mut jobs = cluster.jobs().await;
        let mut stream = jobs
            .download_output(download.clone())
            .await
            .unwrap()
            .into_inner();
        stream.message().await.unwrap().expect("a first chunk");
        held.push(Box::new((jobs, stream)));
    }
    let path = format!("/download/{finished}/big.bin");
    for _ in 0..DOWNLOADS {
        held.push(Box::new(http_download_started(&cluster.address(), &path)));
    }
    let worker = cluster.worker_client(0).await;
    held.extend(
        open_n(N, || {
            let mut worker = worker.clone();
            async move {
                let request = v1::StreamEventsRequest {
                    after_seq: u64::MAX,
                    node_id: String::new(),
                };
                let mut stream = worker.stream_events(request).await.unwrap().into_inner();
                stream.message().await.unwrap().expect("the node's event");
                Box::new(stream) as Box<dyn Any + Send>
            }
        })
        .await,
    );
    for _ in 0..DOWNLOADS {
        let mut worker = cluster.worker_client(0).await;
        let mut stream = worker
            .download_output(download.clone())
            .await
            .unwrap()
            .into_inner();
        stream.message().await.unwrap().expect("a first chunk");
        held.push(Box::new((worker, stream)));
    }
    for kind in ["WatchJob", "WatchJobs", "GetJobLogs", "WatchNodes"] {
        quiet.wait_counted(&base, false, kind, N).await;
    }
    for kind in ["DownloadOutput", "http_download"] {
        quiet.wait_counted(&base, false, kind, DOWNLOADS).await;
    }
    quiet.wait_counted(&base, true, "StreamEvents", N).await;
    // The coordinator's downloads read the artifact store: only the direct ones are the worker's.
    let on_worker = DOWNLOADS;
    quiet
        .wait_counted(&base, true, "DownloadOutput", on_worker)
        .await;

    // Nothing happens on the job, the cluster or the files' streams: only the clients leave.
    let left = Instant::now();
    drop(held);
    quiet.assert_back_within(&base, left).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_clients_and_closed_connections_end_their_streams_within_a_second() {
    let quiet = Quiet::start().await;
    let base = quiet.baseline();
    let cluster = &quiet.cluster;
    let queued = quiet.queued.clone();
    // Clients on other stacks: the reelay CLI, grpcurl (Go), grpc-web over HTTP/1.1.
    let grpcurl = std::path::PathBuf::from(std::env::var("HOME").unwrap())
        .join(".cache/reelay-conformance/grpcurl");
    assert!(
        grpcurl.exists(),
        "{} is missing: run scripts/setup-test-env.sh",
        grpcurl.display()
    );
    let reelay = |args: &[&str]| {
        let mut command = Command::new(reelay_bin());
        command.args(args).env("REELAY_SERVER", cluster.url());
        command
    };
    let grpcurl_call = |address: String, data: String, method: &str| {
        let mut command = Command::new(&grpcurl);
        command.args(["-plaintext", "-d", &data, &address, method]);
        command
    };
    let mut clients = Clients(Vec::new());
    const K: usize = 3;
    for _ in 0..K {
        clients.spawn(reelay(&["job", "watch", &queued]));
        clients.spawn(reelay(&["job", "logs", &queued, "--follow"]));
        clients.spawn(grpcurl_call(
            cluster.address(),
            "{}".into(),
            "reelay.v1.JobService/WatchJobs",
        ));
        clients.spawn(grpcurl_call(
            cluster.address(),
            "{}".into(),
            "reelay.v1.NodeService/WatchNodes",
        ));
        clients.spawn(grpcurl_call(
            quiet.worker_address(),
            r#"{"after_seq": "18446744073709551615"}"#.into(),
            "reelay.v1.WorkerService/StreamEvents",
        ));
    }
    // Browser-style watchers: grpc-web over HTTP/1.1, one connection each.
    let mut browsers = Vec::new();
    for _ in 0..N {
        browsers.push(grpc_web_watch_started(&cluster.address(), &queued));
    }
    quiet.wait_counted(&base, false, "WatchJob", K + N).await;
    quiet.wait_counted(&base, false, "GetJobLogs", K).await;
    quiet.wait_counted(&base, false, "WatchJobs", K).await;
    quiet.wait_counted(&base, false, "WatchNodes", K).await;
    quiet.wait_counted(&base, true, "StreamEvents", K).await;

    // SIGKILL: the processes' connections close without a word; the browsers close theirs.
    let left = Instant::now();
    clients.kill_all();
    drop(browsers);
    quiet.assert_back_within(&base, left).await;
}

/// How much the coordinator may grow over the open/cancel rounds (see the test).
const RSS_GROWTH_BOUND_MIB: f64 = 8.0;

/// Rounds of 2,000 streams opened and cancelled on a quiet job and cluster: the coordinator's
/// RSS after the last round is within [`RSS_GROWTH_BOUND_MIB`] of what it was after the second.
///
/// The bound, measured here (debug build): with streams that noticed a departed client only at a
/// failed send (`Tx::wait` not watching the channel's closing), these rounds grew the coordinator
/// by 6–8 MiB each, 94.7 → 136.8 MiB over rounds 2–8 (the issue saw ~2.8 MiB per 1,000 streams);
/// with the fix it stays within 86–89 MiB. Memory the allocator keeps after the first rounds (h2
/// buffers, task slabs) stays; 8 MiB leaves room for that noise and still fails at a fifth of the
/// old growth.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_rounds_of_open_and_cancel_leave_the_coordinator_flat() {
    const ROUNDS: usize = 8;
    const CONNECTIONS: usize = 20;
    let quiet = Quiet::start().await;
    let base = quiet.baseline();
    let pid = quiet.cluster.coordinator.pid().unwrap();
    let mut clients = Vec::new();
    for _ in 0..CONNECTIONS {
        clients.push((quiet.cluster.jobs().await, quiet.cluster.nodes().await));
    }
    let mut rss = Vec::new();
    for round in 0..ROUNDS {
        let started = Instant::now();
        // Per connection: 50 WatchJob, 25 log follows, 12 WatchJobs, 13 WatchNodes = 2,000 in all.
        let opened = join_all(clients.iter().map(|(jobs, nodes)| {
            let (jobs, nodes, id) = (jobs.clone(), nodes.clone(), quiet.queued.clone());
            async move { open_mix(jobs, nodes, id).await }
        }))
        .await;
        let count: usize = opened.iter().map(Vec::len).sum();
        assert_eq!(count, 2000);
        quiet
            .wait_counted(&base, false, "WatchJob", 50 * CONNECTIONS)
            .await;
        let left = Instant::now();
        drop(opened);
        quiet.assert_back_within(&base, left).await;
        let now = rss_mib(pid);
        eprintln!(
            "round {round}: 2,000 streams opened and cancelled in {:?}; coordinator RSS {now:.1} MiB",
            started.elapsed()
        );
        rss.push(now);
    }
    let reference = rss[1];
    let last = rss[ROUNDS - 1];
    assert!(
        last - reference <= RSS_GROWTH_BOUND_MIB,
        "the coordinator grew from {reference:.1} to {last:.1} MiB over rounds 3-{ROUNDS}: {rss:?}"
    );
}

/// One connection's share of a round: its streams, each past its first message (or its
/// response, for log follows of a job without lines).
async fn open_mix(
    jobs: reelay_proto::v1::job_service_client::JobServiceClient<tonic::transport::Channel>,
    nodes: reelay_proto::v1::node_service_client::NodeServiceClient<tonic::transport::Channel>,
    id: String,
) -> Vec<Box<dyn Any + Send>> {
    let mut held: Vec<Box<dyn Any + Send>> = Vec::new();
    held.extend(
        open_n(50, || {
            let (mut jobs, id) = (jobs.clone(), id.clone());
            async move {
                let request = v1::WatchJobRequest {
                    id,
                    after_version: 0,
                };
                let mut stream = jobs.watch_job(request).await.unwrap().into_inner();
                stream.message().await.unwrap().unwrap();
                Box::new(stream) as Box<dyn Any + Send>
            }
        })
        .await,
    );
    held.extend(
        open_n(25, || {
            let (mut jobs, id) = (jobs.clone(), id.clone());
            async move {
                let request = v1::GetJobLogsRequest {
                    id,
                    follow: true,
                    after_line: 0,
                };
                Box::new(jobs.get_job_logs(request).await.unwrap().into_inner())
                    as Box<dyn Any + Send>
            }
        })
        .await,
    );
    held.extend(
        open_n(12, || {
            let mut jobs = jobs.clone();
            async move {
                let request = v1::WatchJobsRequest {
                    states: vec![],
                    no_snapshot: false,
                };
                let mut stream = jobs.watch_jobs(request).await.unwrap().into_inner();
                stream.message().await.unwrap().unwrap();
                Box::new(stream) as Box<dyn Any + Send>
            }
        })
        .await,
    );
    held.extend(
        open_n(13, || {
            let mut nodes = nodes.clone();
            async move {
                let request = v1::WatchNodesRequest {};
                let mut stream = nodes.watch_nodes(request).await.unwrap().into_inner();
                stream.message().await.unwrap().unwrap();
                Box::new(stream) as Box<dyn Any + Send>
            }
        })
        .await,
    );
    held
}

/// A `GET` of a big download whose first bytes have arrived; the connection is held open.
fn http_download_started(address: &str, path: &str) -> Box<dyn reelay_tests::http::Stream> {
    let mut stream = reelay_tests::http::connect(address, None).unwrap();
    reelay_tests::http::send(&mut *stream, address, "GET", path, &[], &[]).unwrap();
    let mut reader = BufReader::new(stream);
    let (status, _) = reelay_tests::http::read_head(&mut reader).unwrap();
    assert_eq!(status, 200);
    let mut first = vec![0; 64 * 1024];
    reader.read_exact(&mut first).unwrap();
    Box::new(reader.into_inner())
}

/// A grpc-web `WatchJob` of `id` over HTTP/1.1, as a browser makes it, past its first message;
/// the connection is held open.
fn grpc_web_watch_started(address: &str, id: &str) -> Box<dyn reelay_tests::http::Stream> {
    let request = v1::WatchJobRequest {
        id: id.to_owned(),
        after_version: 0,
    }
    .encode_to_vec();
    let mut body = vec![0];
    body.extend_from_slice(&(request.len() as u32).to_be_bytes());
    body.extend_from_slice(&request);
    let headers = [
        ("Content-Type", "application/grpc-web+proto"),
        ("X-Grpc-Web", "1"),
    ];
    let mut stream = reelay_tests::http::connect(address, None).unwrap();
    let path = "/reelay.v1.JobService/WatchJob";
    reelay_tests::http::send(&mut *stream, address, "POST", path, &headers, &body).unwrap();
    let mut reader = BufReader::new(stream);
    let (status, _) = reelay_tests::http::read_head(&mut reader).unwrap();
    assert_eq!(status, 200);
    // The body is chunked: a first chunk means the snapshot is on its way.
    let mut size = String::new();
    reader.read_line(&mut size).unwrap();
    assert!(
        usize::from_str_radix(size.trim(), 16).unwrap() > 0,
        "{size:?}"
    );
    Box::new(reader.into_inner())
}

/// Client processes, killed by PID when the test ends however it ends.
struct Clients(Vec<Child>);

impl Clients {
    fn spawn(&mut self, mut command: Command) {
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn a client");
        self.0.push(child);
    }

    /// SIGKILL to every client, by PID.
    fn kill_all(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
        }
        for child in &mut self.0 {
            let _ = child.wait();
        }
        self.0.clear();
    }
}

impl Drop for Clients {
    fn drop(&mut self) {
        self.kill_all();
    }
}
