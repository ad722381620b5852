//! The Docker engine going away is a node condition, not a crash: the worker keeps serving, says
//! why it cannot start jobs, the coordinator stops giving it jobs, and everything resumes when the
//! engine answers again. The worker talks to the real engine through a Unix-socket proxy of the
//! test's own (`DOCKER_HOST`), which the test cuts and restores — the shared daemon is untouched.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use reelay_proto::v1;
use reelay_tests::docker::{JobContainers, require_engine};
use reelay_tests::{TestCluster, WorkerSpec};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Notify;

const PIPELINE: &str = r#"
[[pipeline]]
name = "dquick"
image = "reelay/busybox:latest"
command = ["sh", "-c", "echo '::progress 50 half'; sleep 0.2; echo '::progress 100 done'"]
pull = "never"
input_required = false
"#;

/// A Unix-socket proxy to the Docker engine that can be cut (every connection closed, the socket
/// removed) and restored.
struct EngineProxy {
    path: PathBuf,
    cut: Arc<Notify>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl EngineProxy {
    fn start(path: &Path) -> Self {
        let mut proxy = EngineProxy {
            path: path.to_owned(),
            cut: Arc::new(Notify::new()),
            task: None,
        };
        proxy.restore();
        proxy
    }

    fn restore(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let listener = UnixListener::bind(&self.path).expect("bind proxy socket");
        let cut = Arc::clone(&self.cut);
        self.task = Some(tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((mut client, _)) = accepted else { continue };
                        connections.spawn(async move {
                            if let Ok(mut engine) = UnixStream::connect("/var/run/docker.sock").await {
                                let _ = tokio::io::copy_bidirectional(&mut client, &mut engine).await;
                            }
                        });
                    }
                    () = cut.notified() => return,
                }
            }
        }));
    }

    async fn cut(&mut self) {
        self.cut.notify_one();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_engine_outage_is_a_node_condition_and_jobs_wait_for_it() {
    require_engine(&["reelay/busybox:latest"]);
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("docker.sock");
    let mut proxy = EngineProxy::start(&socket);
    let cluster = TestCluster::builder()
        .node_prefix("engine-outage-")
        .extra_config(PIPELINE)
        .env("DOCKER_HOST", &format!("unix://{}", socket.display()))
        .worker(WorkerSpec {
            executor: "docker".into(),
            slots: 2,
            ..Default::default()
        })
        .start()
        .await;
    let node = cluster.workers[0].node_id.clone();
    let mut containers = JobContainers::new();
    containers.track_node(&node);

    let first = cluster.submit("dquick", &[]).await;
    let done = cluster.wait_finished(&first.id).await;
    assert_eq!(
        done.state,
        v1::JobState::Succeeded as i32,
        "{done:#?}\n{}",
        cluster.logs()
    );

    proxy.cut().await;
    let waiting = cluster.submit("dquick", &[]).await;
    // The worker finds the engine gone when it tries to start: the attempt waits, saying why.
    let assigned = cluster
        .wait_job(&waiting.id, Duration::from_secs(30), |job| {
            job.message.contains("docker engine does not answer")
        })
        .await;
    assert_eq!(
        assigned.state,
        v1::JobState::Assigned as i32,
        "{assigned:#?}"
    );
    // The node shows the condition and gets no more jobs meanwhile.
    let mut nodes = cluster.nodes().await;
    let mut condition = String::new();
    for _ in 0..100 {
        let shown = nodes
            .get_node(v1::GetNodeRequest { id: node.clone() })
            .await
            .unwrap()
            .into_inner();
        condition = shown.condition;
        if condition.contains("docker engine") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        condition.contains("docker engine"),
        "node condition: {condition:?}"
    );
    let held = cluster.submit("dquick", &[]).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let held_now = cluster.get(&held.id).await;
    assert_eq!(held_now.state, v1::JobState::Queued as i32, "{held_now:#?}");
    assert!(
        held_now
            .pending_reason
            .contains("cannot start jobs (docker engine does not answer"),
        "{}",
        held_now.pending_reason
    );
    assert!(
        cluster.workers[0].process.pid().is_some(),
        "the worker did not crash"
    );

    proxy.restore();
    for id in [&waiting.id, &held.id] {
        let done = cluster
            .wait_finished_within(id, Duration::from_secs(60))
            .await;
        assert_eq!(
            done.state,
            v1::JobState::Succeeded as i32,
            "{done:#?}\n{}",
            cluster.logs()
        );
        assert_eq!(
            done.attempt, 1,
            "waiting for the engine is not a failed attempt"
        );
    }
    let shown = nodes
        .get_node(v1::GetNodeRequest { id: node.clone() })
        .await
        .unwrap()
        .into_inner();
    assert!(
        !shown.condition.contains("docker engine"),
        "the condition cleared: {:?}",
        shown.condition
    );
    drop(cluster);
    containers.assert_none_left(Duration::from_secs(20));
}
