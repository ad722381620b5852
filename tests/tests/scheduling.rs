//! Scheduling through real processes: slots, priority, pinning, labels, drain, remove.

use std::collections::HashMap;
use std::time::Duration;

use reelay_proto::v1;
use reelay_tests::watch::is_terminal;
use reelay_tests::{TestCluster, WorkerSpec, spec};
use tonic::Code;

fn worker(slots: u32, labels: &str) -> WorkerSpec {
    WorkerSpec {
        slots,
        labels: labels.to_owned(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_never_runs_more_jobs_than_it_has_slots() {
    let cluster = TestCluster::builder()
        .worker(worker(1, ""))
        .worker(worker(2, ""))
        .start()
        .await;
    let request = v1::WatchJobsRequest {
        states: vec![],
        no_snapshot: true,
    };
    let mut events = cluster
        .jobs()
        .await
        .watch_jobs(request)
        .await
        .unwrap()
        .into_inner();
    let mut ids = Vec::new();
    for _ in 0..12 {
        ids.push(
            cluster
                .submit("count", &[("steps", "6"), ("interval_ms", "50")])
                .await
                .id,
        );
    }
    // Replay the cluster's event feed: which job holds a slot where, at every moment.
    let slots = HashMap::from([("w0".to_owned(), 1usize), ("w1".to_owned(), 2usize)]);
    let mut holding: HashMap<String, String> = HashMap::new();
    let mut max_seen: HashMap<String, usize> = HashMap::new();
    let mut finished = 0;
    let mut ran_on = HashMap::new();
    while finished < ids.len() {
        let event = tokio::time::timeout(Duration::from_secs(60), events.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let job = event.job.unwrap();
        let holds =
            job.state == v1::JobState::Assigned as i32 || job.state == v1::JobState::Running as i32;
        if holds {
            holding.insert(job.id.clone(), job.node_id.clone());
            ran_on.insert(job.id.clone(), job.node_id.clone());
        } else {
            holding.remove(&job.id);
        }
        for node in slots.keys() {
            let count = holding.values().filter(|n| *n == node).count();
            assert!(
                count <= slots[node],
                "node {node} holds {count} jobs with {} slots",
                slots[node]
            );
            let max = max_seen.entry(node.clone()).or_default();
            *max = (*max).max(count);
        }
        if is_terminal(job.state) {
            assert_eq!(job.state, v1::JobState::Succeeded as i32);
            finished += 1;
        }
    }
    assert_eq!(
        max_seen["w0"], 1,
        "both nodes were used fully: {max_seen:?}"
    );
    assert_eq!(max_seen["w1"], 2, "{max_seen:?}");
    assert!(ran_on.values().any(|n| n == "w0") && ran_on.values().any(|n| n == "w1"));
}

#[tokio::test(flavor = "multi_thread")]
async fn higher_priority_runs_first_then_older() {
    let cluster = TestCluster::builder().worker(worker(1, "")).start().await;
    let blocker = cluster.submit("sleep", &[("seconds", "60")]).await;
    cluster
        .wait_state(&blocker.id, v1::JobState::Running, Duration::from_secs(20))
        .await;
    let with_priority = |priority| {
        let mut spec = spec("count", &[("steps", "2"), ("interval_ms", "10")]);
        spec.priority = priority;
        spec
    };
    let low_old = cluster.submit_spec(with_priority(0)).await;
    let low_new = cluster.submit_spec(with_priority(0)).await;
    let high = cluster.submit_spec(with_priority(10)).await;
    let negative = cluster.submit_spec(with_priority(-5)).await;
    let position = |job: &v1::Job| job.queue_position;
    let (a, b, c, d) = (
        cluster.get(&high.id).await,
        cluster.get(&low_old.id).await,
        cluster.get(&low_new.id).await,
        cluster.get(&negative.id).await,
    );
    assert_eq!(
        [position(&a), position(&b), position(&c), position(&d)],
        [1, 2, 3, 4]
    );
    assert!(
        b.pending_reason.contains("no node with a free slot"),
        "{}",
        b.pending_reason
    );

    cluster
        .jobs()
        .await
        .cancel_job(v1::CancelJobRequest {
            id: blocker.id.clone(),
        })
        .await
        .unwrap();
    let mut starts = Vec::new();
    for job in [&high, &low_old, &low_new, &negative] {
        let done = cluster.wait_finished(&job.id).await;
        let started = done.started_at.unwrap();
        starts.push((started.seconds, started.nanos, job.id.clone()));
    }
    let order: Vec<String> = {
        let mut sorted = starts.clone();
        sorted.sort();
        sorted.into_iter().map(|(_, _, id)| id).collect()
    };
    assert_eq!(
        order,
        [high.id, low_old.id, low_new.id, negative.id],
        "priority first, then age"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pins_and_labels_choose_the_node() {
    let cluster = TestCluster::builder()
        .worker(worker(2, "gpu=yes,zone=a"))
        .worker(worker(2, "zone=b"))
        .start()
        .await;
    let mut pinned = spec("count", &[("steps", "2"), ("interval_ms", "10")]);
    pinned.node_id = "w1".into();
    let mut gpu = spec("count", &[("steps", "2"), ("interval_ms", "10")]);
    gpu.labels.insert("gpu".into(), "yes".into());
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(("w1", cluster.submit_spec(pinned.clone()).await.id));
        ids.push(("w0", cluster.submit_spec(gpu.clone()).await.id));
    }
    for (node, id) in ids {
        let done = cluster.wait_finished(&id).await;
        assert_eq!(done.node_id, node, "{done:#?}");
        assert_eq!(done.state, v1::JobState::Succeeded as i32);
    }

    let mut nowhere = spec("count", &[]);
    nowhere.labels.insert("gpu".into(), "no".into());
    let nowhere = cluster.submit_spec(nowhere).await;
    let mut ghost = spec("count", &[]);
    ghost.node_id = "ghost".into();
    let ghost = cluster.submit_spec(ghost).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let nowhere = cluster.get(&nowhere.id).await;
    assert_eq!(nowhere.state, v1::JobState::Queued as i32);
    assert_eq!(nowhere.pending_reason, "no node has the labels gpu=no");
    let ghost = cluster.get(&ghost.id).await;
    assert_eq!(ghost.state, v1::JobState::Queued as i32);
    assert_eq!(
        ghost.pending_reason,
        "pinned to node ghost, which is not registered"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn drained_nodes_finish_their_jobs_and_get_no_new_ones() {
    let mut cluster = TestCluster::builder()
        .worker(worker(2, ""))
        .worker(worker(2, ""))
        .start()
        .await;
    let mut on_w0 = spec("count", &[("steps", "20"), ("interval_ms", "100")]);
    on_w0.node_id = "w0".into();
    let running = cluster.submit_spec(on_w0.clone()).await;
    cluster
        .wait_state(&running.id, v1::JobState::Running, Duration::from_secs(20))
        .await;

    let mut nodes = cluster.nodes().await;
    let drained = nodes
        .drain_node(v1::DrainNodeRequest { id: "w0".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(drained.state, v1::NodeState::Draining as i32);
    let mut later = Vec::new();
    for _ in 0..4 {
        later.push(
            cluster
                .submit("count", &[("steps", "2"), ("interval_ms", "10")])
                .await
                .id,
        );
    }
    let pinned_waits = cluster.submit_spec(on_w0.clone()).await;
    for id in &later {
        let done = cluster.wait_finished(id).await;
        assert_eq!(done.node_id, "w1", "a draining node gets no new job");
    }
    let finished = cluster.wait_finished(&running.id).await;
    assert_eq!(
        finished.state,
        v1::JobState::Succeeded as i32,
        "the drained node finished its job"
    );
    let waiting = cluster.get(&pinned_waits.id).await;
    assert_eq!(waiting.state, v1::JobState::Queued as i32);
    assert_eq!(
        waiting.pending_reason,
        "pinned to node w0, which is draining"
    );

    let undrained = nodes
        .undrain_node(v1::UndrainNodeRequest { id: "w0".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(undrained.state, v1::NodeState::Ready as i32);
    let done = cluster.wait_finished(&pinned_waits.id).await;
    assert_eq!(
        (done.state, done.node_id.as_str()),
        (v1::JobState::Succeeded as i32, "w0")
    );

    // Removing a connected node that runs jobs is refused; a stopped one goes, failing its jobs.
    let busy = cluster
        .submit_spec({
            let mut s = spec("sleep", &[("seconds", "60")]);
            s.node_id = "w0".into();
            s
        })
        .await;
    cluster
        .wait_state(&busy.id, v1::JobState::Running, Duration::from_secs(20))
        .await;
    let refused = nodes
        .remove_node(v1::RemoveNodeRequest { id: "w0".into() })
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        Code::FailedPrecondition,
        "{}",
        refused.message()
    );
    cluster.workers[0].process.kill9();
    cluster
        .wait_node_state("w0", v1::NodeState::Offline, Duration::from_secs(20))
        .await;
    nodes
        .remove_node(v1::RemoveNodeRequest { id: "w0".into() })
        .await
        .unwrap();
    let gone = nodes
        .get_node(v1::GetNodeRequest { id: "w0".into() })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    let failed = cluster.wait_finished(&busy.id).await;
    assert_eq!(failed.state, v1::JobState::Failed as i32);
    assert_eq!(failed.error, "node w0 was removed");
    // The killed worker's process group outlived it; a restart of the worker stops it.
    cluster.workers[0].process.restart();
}

/// The next node event on `stream` that `check` accepts (within 50 events and 20 s each).
async fn node_event(
    stream: &mut tonic::Streaming<v1::NodeEvent>,
    what: &str,
    check: impl Fn(&v1::NodeEvent) -> bool,
) -> v1::NodeEvent {
    for _ in 0..50 {
        let event = tokio::time::timeout(Duration::from_secs(20), stream.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if check(&event) {
            return event;
        }
    }
    panic!("no node event: {what}");
}

fn node_is(event: &v1::NodeEvent, id: &str, check: impl Fn(&v1::Node) -> bool) -> bool {
    event
        .node
        .as_ref()
        .is_some_and(|node| node.id == id && check(node))
}

#[tokio::test(flavor = "multi_thread")]
async fn node_changes_stream_to_watchers() {
    let mut cluster = TestCluster::builder()
        .worker(worker(1, ""))
        .worker(worker(1, ""))
        .start()
        .await;
    let mut nodes = cluster.nodes().await;
    let mut stream = nodes
        .watch_nodes(v1::WatchNodesRequest {})
        .await
        .unwrap()
        .into_inner();
    let mut ids = Vec::new();
    loop {
        let event = node_event(&mut stream, "a node or synced", |_| true).await;
        if event.synced {
            break;
        }
        ids.push(event.node.unwrap().id);
    }
    assert_eq!(ids, ["w0", "w1"], "every node first, then synced");

    // A job on w0 takes its slot: the node's `running` changes, live.
    let mut pinned = spec("sleep", &[("seconds", "60")]);
    pinned.node_id = "w0".into();
    let job = cluster.submit_spec(pinned).await;
    node_event(&mut stream, "w0 runs a job", |e| {
        node_is(e, "w0", |n| n.running == 1)
    })
    .await;
    nodes
        .drain_node(v1::DrainNodeRequest { id: "w1".into() })
        .await
        .unwrap();
    node_event(&mut stream, "w1 draining", |e| {
        node_is(e, "w1", |n| n.state == v1::NodeState::Draining as i32)
    })
    .await;
    cluster
        .jobs()
        .await
        .cancel_job(v1::CancelJobRequest { id: job.id.clone() })
        .await
        .unwrap();
    node_event(&mut stream, "w0 idle", |e| {
        node_is(e, "w0", |n| n.running == 0)
    })
    .await;
    cluster.workers[1].process.kill9();
    node_event(&mut stream, "w1 offline", |e| {
        node_is(e, "w1", |n| n.state == v1::NodeState::Offline as i32)
    })
    .await;
    nodes
        .remove_node(v1::RemoveNodeRequest { id: "w1".into() })
        .await
        .unwrap();
    let removed = node_event(&mut stream, "w1 removed", |e| e.removed).await;
    assert_eq!(removed.node.unwrap().id, "w1");
}
