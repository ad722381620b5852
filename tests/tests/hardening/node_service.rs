//! NodeService and PipelineService: node ids, registrations with bad addresses, slots, labels and
//! fields, a node that cannot be removed, undecodable and oversized requests.

use std::collections::HashMap;
use std::time::Duration;

use reelay_proto::v1::{
    CancelJobRequest, DrainNodeRequest, GetNodeRequest, JobState, ListNodesRequest,
    ListNodesResponse, ListPipelinesRequest, ListPipelinesResponse, RegisterNodeRequest,
    RegisterNodeResponse, RemoveNodeRequest, UndrainNodeRequest,
};
use reelay_tests::TestCluster;
use tonic::Code;

use super::{LIMIT, Table, assert_still_runs_jobs, bad_strings, malformed, oversized, raw_call};

const INVALID: &[Code] = &[Code::InvalidArgument];

/// A valid registration of a node that does not exist, changed by `change`.
fn registration(change: impl FnOnce(&mut RegisterNodeRequest)) -> RegisterNodeRequest {
    let mut request = RegisterNodeRequest {
        id: "fake-node".into(),
        address: "http://127.0.0.1:9".into(),
        labels: HashMap::new(),
        slots: 2,
        version: "0.1.0".into(),
        executor: "process".into(),
    };
    change(&mut request);
    request
}

fn bad_addresses() -> Vec<(&'static str, String)> {
    vec![
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
    ]
}

fn bad_labels() -> Vec<(&'static str, HashMap<String, String>)> {
    vec![
        (
            "an empty key",
            HashMap::from([(String::new(), "x".to_owned())]),
        ),
        (
            "a 200 byte key",
            HashMap::from([("k".repeat(200), "x".to_owned())]),
        ),
        (
            "a 100 KB value",
            HashMap::from([("k".to_owned(), "v".repeat(100_000))]),
        ),
        (
            "thousands of entries",
            (0..5000)
                .map(|i| (format!("k{i}"), "v".to_owned()))
                .collect(),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn node_and_pipeline_services_refuse_bad_arguments() {
    let cluster = TestCluster::builder().workers(1).start().await;
    let mut nodes = cluster.nodes().await;
    let mut t = Table::default();

    t.expect(INVALID, "id");
    for (what, id) in bad_strings() {
        let case = |method: &str| format!("{method} with a {what} id");
        let id = || id.clone();
        t.case(
            case("RegisterNode"),
            nodes.register_node(registration(|r| r.id = id())).await,
        );
        t.case(
            case("GetNode"),
            nodes.get_node(GetNodeRequest { id: id() }).await,
        );
        t.case(
            case("DrainNode"),
            nodes.drain_node(DrainNodeRequest { id: id() }).await,
        );
        t.case(
            case("UndrainNode"),
            nodes.undrain_node(UndrainNodeRequest { id: id() }).await,
        );
        t.case(
            case("RemoveNode"),
            nodes.remove_node(RemoveNodeRequest { id: id() }).await,
        );
    }
    t.expect(INVALID, "address");
    for (what, address) in bad_addresses() {
        let request = registration(|r| r.address = address);
        t.case(
            format!("RegisterNode with an address {what}"),
            nodes.register_node(request).await,
        );
    }
    t.expect(INVALID, "slots");
    for slots in [0, u32::MAX] {
        let request = registration(|r| r.slots = slots);
        t.case(
            format!("RegisterNode with {slots} slots"),
            nodes.register_node(request).await,
        );
    }
    t.expect(INVALID, "labels");
    for (what, labels) in bad_labels() {
        let request = registration(|r| r.labels = labels);
        t.case(
            format!("RegisterNode with labels of {what}"),
            nodes.register_node(request).await,
        );
    }
    t.expect(INVALID, "version");
    let request = registration(|r| r.version = "1".repeat(100_000));
    t.case(
        "RegisterNode with a 100 KB version",
        nodes.register_node(request).await,
    );
    t.expect(INVALID, "executor");
    let request = registration(|r| r.executor = "e".repeat(100_000));
    t.case(
        "RegisterNode with a 100 KB executor",
        nodes.register_node(request).await,
    );

    // A connected node that runs a job cannot be removed; draining twice is no error.
    let running = cluster.submit("sleep", &[("seconds", "60")]).await;
    let is_running = |job: &reelay_proto::v1::Job| job.state == JobState::Running as i32;
    cluster
        .wait_job(&running.id, Duration::from_secs(30), is_running)
        .await;
    let w0 = || "w0".to_owned();
    t.expect(&[Code::FailedPrecondition], "w0");
    t.case(
        "RemoveNode of a connected node with a job",
        nodes.remove_node(RemoveNodeRequest { id: w0() }).await,
    );
    t.ok(
        "DrainNode",
        nodes.drain_node(DrainNodeRequest { id: w0() }).await,
    );
    t.ok(
        "DrainNode again",
        nodes.drain_node(DrainNodeRequest { id: w0() }).await,
    );
    t.ok(
        "UndrainNode",
        nodes.undrain_node(UndrainNodeRequest { id: w0() }).await,
    );
    let mut jobs = cluster.jobs().await;
    jobs.cancel_job(CancelJobRequest {
        id: running.id.clone(),
    })
    .await
    .unwrap();

    // Empty requests with bytes of another message, undecodable and oversized requests.
    let channel = || cluster.channel();
    let pipelines = "/reelay.v1.PipelineService/ListPipelines";
    let unknown = reelay_proto::v1::GetJobRequest {
        id: "unknown fields".into(),
    };
    let listed = raw_call::<_, ListPipelinesResponse>(channel().await, pipelines, unknown).await;
    if let Some(listed) = t.ok("ListPipelines with unknown fields", listed) {
        t.check(
            "ListPipelines lists the config",
            listed.pipelines.len() >= 5,
            || format!("{listed:#?}"),
        );
    }
    let big = raw_call::<_, ListPipelinesResponse>(channel().await, pipelines, oversized()).await;
    t.too_big("ListPipelines of 4 MiB + 1 KiB", pipelines, big);
    let after = cluster
        .pipelines()
        .await
        .list_pipelines(ListPipelinesRequest {})
        .await;
    t.ok("ListPipelines after an oversized request", after);
    let path = "/reelay.v1.NodeService/ListNodes";
    t.too_big(
        "ListNodes of 4 MiB + 1 KiB",
        path,
        raw_call::<_, ListNodesResponse>(channel().await, path, oversized()).await,
    );
    let huge = registration(|r| r.version = "1".repeat(LIMIT + 1024));
    t.too_big(
        "RegisterNode of 4 MiB + 1 KiB",
        "/reelay.v1.NodeService/RegisterNode",
        nodes.register_node(huge).await,
    );
    t.expect(&[Code::Internal], "decode");
    let path = "/reelay.v1.NodeService/RegisterNode";
    let garbage = raw_call::<_, RegisterNodeResponse>(channel().await, path, malformed()).await;
    t.case(
        "RegisterNode of bytes that are no RegisterNodeRequest",
        garbage,
    );

    // No node was made by any of it, and the worker is still READY.
    let listed = nodes
        .list_nodes(ListNodesRequest {})
        .await
        .unwrap()
        .into_inner()
        .nodes;
    t.check(
        "nodes after the refusals",
        listed.len() == 1 && listed[0].id == "w0",
        || format!("{listed:#?}"),
    );
    t.finish(&cluster);
    cluster.wait_ready_nodes(1).await;
    assert_still_runs_jobs(&cluster).await;
}
