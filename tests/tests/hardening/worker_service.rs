//! WorkerService, called directly as the coordinator would: job ids that must never become paths,
//! starts this node cannot run, cursors past the end of its log, oversized and undecodable
//! requests.

use reelay_proto::v1::{
    DownloadOutputRequest, GetInfoRequest, JobSpec, ListOutputsRequest, StartJobRequest,
    StreamEventsRequest, TrimEventsRequest, WorkerCancelJobRequest, WorkerDeleteJobRequest,
    WorkerGetJobRequest, WorkerInfo, WorkerJob, WorkerListJobsRequest,
};
use reelay_tests::{TestCluster, spec};
use tonic::Code;
use tonic::transport::Channel;

use super::{
    LIMIT, Table, assert_still_runs_jobs, bad_strings, first, malformed, oversized, raw_call,
};

const INVALID: &[Code] = &[Code::InvalidArgument];
/// A job id the worker has never seen.
const FRESH_ID: &str = "01a22300-0000-7000-8000-0000000000aa";

fn start(job_id: &str, attempt: u32, spec: Option<JobSpec>) -> StartJobRequest {
    StartJobRequest {
        job_id: job_id.to_owned(),
        spec,
        attempt,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn worker_service_refuses_bad_arguments() {
    let cluster = TestCluster::builder().workers(1).start().await;
    let finished = cluster
        .submit("count", &[("steps", "1"), ("interval_ms", "1")])
        .await;
    cluster.wait_terminal(&finished.id).await;
    let mut worker = cluster.worker_client(0).await;
    let mut t = Table::default();
    let data_dir = cluster.workers[0].data_dir.clone();

    // Job ids, for every method that takes one: they name directories (outputs/<job id>/).
    for (what, id) in bad_strings() {
        let case = |method: &str| format!("{method} with a {what} job id");
        let id = || id.clone();
        t.expect(INVALID, "job_id");
        t.case(
            case("StartJob"),
            worker
                .start_job(start(&id(), 1, Some(spec("count", &[]))))
                .await,
        );
        let cancel = WorkerCancelJobRequest {
            job_id: id(),
            attempt: 1,
            reason: String::new(),
        };
        t.case(case("CancelJob"), worker.cancel_job(cancel).await);
        t.case(
            case("GetJob"),
            worker.get_job(WorkerGetJobRequest { job_id: id() }).await,
        );
        t.case(
            case("DeleteJob"),
            worker
                .delete_job(WorkerDeleteJobRequest { job_id: id() })
                .await,
        );
        t.expect(INVALID, "id");
        t.case(
            case("ListOutputs"),
            worker.list_outputs(ListOutputsRequest { id: id() }).await,
        );
        let download = DownloadOutputRequest {
            id: id(),
            name: "count.txt".into(),
            offset: 0,
        };
        t.case(
            case("DownloadOutput"),
            first(worker.download_output(download).await).await,
        );
    }
    let kept = data_dir.join("state/db").is_file()
        && data_dir.join("outputs").is_dir()
        && data_dir.join("cache").is_dir();
    t.check(
        "the worker's files after DeleteJob of '' and '../..'",
        kept,
        || format!("{} lost files", data_dir.display()),
    );

    // Starts this node cannot take.
    t.expect(INVALID, "attempt");
    t.case(
        "StartJob of attempt 0",
        worker
            .start_job(start(FRESH_ID, 0, Some(spec("count", &[]))))
            .await,
    );
    t.case(
        "StartJob of attempt 0 of a known job",
        worker
            .start_job(start(&finished.id, 0, Some(spec("count", &[]))))
            .await,
    );
    t.expect(INVALID, "spec");
    t.case(
        "StartJob without a spec",
        worker.start_job(start(FRESH_ID, 1, None)).await,
    );
    t.expect(&[Code::FailedPrecondition], "spec.pipeline");
    t.case(
        "StartJob of an unknown pipeline",
        worker
            .start_job(start(FRESH_ID, 1, Some(spec("nope", &[]))))
            .await,
    );
    t.expect(&[Code::FailedPrecondition], "spec.params.colour");
    let colour = spec("count", &[("colour", "red")]);
    t.case(
        "StartJob with an unknown param",
        worker.start_job(start(FRESH_ID, 1, Some(colour))).await,
    );
    t.expect(&[Code::NotFound], FRESH_ID);
    t.case(
        "GetJob of the refused job",
        worker
            .get_job(WorkerGetJobRequest {
                job_id: FRESH_ID.into(),
            })
            .await,
    );
    let cancel = WorkerCancelJobRequest {
        job_id: FRESH_ID.into(),
        attempt: u32::MAX,
        reason: "r".repeat(100_000),
    };
    t.case(
        "CancelJob of an unknown job",
        worker.cancel_job(cancel).await,
    );

    // Offsets and cursors past the end.
    t.expect(INVALID, "offset");
    let past = DownloadOutputRequest {
        id: finished.id.clone(),
        name: "count.txt".into(),
        offset: u64::MAX,
    };
    t.case(
        "DownloadOutput offset u64::MAX",
        first(worker.download_output(past).await).await,
    );
    t.expect(&[Code::OutOfRange], "through_seq");
    t.case(
        "TrimEvents through u64::MAX",
        worker
            .trim_events(TrimEventsRequest {
                through_seq: u64::MAX,
            })
            .await,
    );
    t.expect(&[Code::FailedPrecondition], "w0");
    let other = StreamEventsRequest {
        after_seq: 0,
        node_id: "w0\0".into(),
    };
    t.case(
        "StreamEvents for another node",
        first(worker.stream_events(other).await).await,
    );
    // A cursor ahead of the log gets the node's info first (last seq and log id): from it the
    // coordinator sees that the log is another one.
    let ahead = StreamEventsRequest {
        after_seq: u64::MAX,
        node_id: "w0".into(),
    };
    if let Some(event) = t.ok(
        "StreamEvents after u64::MAX",
        first(worker.stream_events(ahead).await).await,
    ) {
        let info = event.and_then(|event| event.info);
        t.check(
            "StreamEvents after u64::MAX sends the node's info",
            info.as_ref().is_some_and(|info| info.node_id == "w0"),
            || format!("{info:?}"),
        );
    }

    // Oversized and undecodable requests; the worker still answers and runs nothing.
    let url = format!("http://127.0.0.1:{}", cluster.workers[0].port);
    let channel = Channel::from_shared(url).unwrap().connect().await.unwrap();
    let mut big = spec("count", &[]);
    big.params.insert("steps".into(), "1".repeat(LIMIT + 1024));
    t.too_big(
        "StartJob of 4 MiB + 1 KiB",
        "/reelay.v1.WorkerService/StartJob",
        worker.start_job(start(FRESH_ID, 1, Some(big))).await,
    );
    let path = "/reelay.v1.WorkerService/GetInfo";
    t.too_big(
        "GetInfo of 4 MiB + 1 KiB",
        path,
        raw_call::<_, WorkerInfo>(channel.clone(), path, oversized()).await,
    );
    t.expect(&[Code::Internal], "decode");
    let path = "/reelay.v1.WorkerService/StartJob";
    t.case(
        "StartJob of bytes that are no StartJobRequest",
        raw_call::<_, WorkerJob>(channel, path, malformed()).await,
    );
    if let Some(info) = t.ok(
        "GetInfo after all that",
        worker.get_info(GetInfoRequest {}).await,
    ) {
        t.check(
            "the worker runs nothing",
            info.get_ref().running == 0,
            || format!("{info:?}"),
        );
    }
    let listed = worker
        .list_jobs(WorkerListJobsRequest { active_only: false })
        .await
        .unwrap()
        .into_inner()
        .jobs;
    let only_finished = listed.len() == 1 && listed[0].job_id == finished.id;
    t.check(
        "the worker holds only the finished job",
        only_finished,
        || format!("{listed:#?}"),
    );
    t.finish(&cluster);
    assert_still_runs_jobs(&cluster).await;
}
