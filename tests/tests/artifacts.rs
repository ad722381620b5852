//! Files that travel with the job, on the default artifact store (a directory on the coordinator,
//! which workers reach through it): uploads, staging into the node's cache, durable outputs, and
//! what happens when the store, the worker or the bytes fail.

use std::time::Duration;

use reelay_proto::v1;
use reelay_tests::artifacts::{
    download, input_spec, local_objects, local_store, random_bytes, sha256_hex, unfinished_writes,
    upload,
};
use reelay_tests::proxy::FaultProxy;
use reelay_tests::{TestCluster, WorkerSpec, job_state};

/// Pipelines of these tests: one that writes a big output, one that reads its input slowly.
const CONFIG: &str = r#"
[[pipeline]]
name = "big"
description = "writes mb MiB of random bytes to big.bin"
command = ["sh", "-c", "head -c $((REELAY_PARAM_MB * 1048576)) /dev/urandom > \"$REELAY_OUTPUT_DIR/big.bin\"; echo wrote"]
outputs = ["big.bin"]
params = [ { name = "mb", default = "1", pattern = "[0-9]{1,4}" } ]
"#;

const TIMEOUT: Duration = Duration::from_secs(90);

/// A worker whose way to the coordinator (registration, the artifact store) goes through `proxy`.
fn through(proxy: &FaultProxy, extra: &[&str]) -> WorkerSpec {
    WorkerSpec {
        coordinator: Some(proxy.url()),
        extra_args: extra.iter().map(|arg| (*arg).to_owned()).collect(),
        ..WorkerSpec::default()
    }
}

async fn proxied_cluster(extra: &[&str]) -> (TestCluster, FaultProxy) {
    let mut cluster = TestCluster::builder().extra_config(CONFIG).start().await;
    let proxy = FaultProxy::start(
        format!("127.0.0.1:{}", cluster.coordinator_port)
            .parse()
            .expect("address"),
    )
    .await;
    cluster.add_worker(through(&proxy, extra));
    cluster.wait_ready_nodes(1).await;
    (cluster, proxy)
}

#[tokio::test(flavor = "multi_thread")]
async fn outputs_outlive_their_worker_and_inputs_are_fetched_once_per_node() {
    let mut cluster = TestCluster::builder()
        .workers(1)
        .extra_config(CONFIG)
        .start()
        .await;
    let data = random_bytes(5 << 20, 1);
    let uploaded = upload(&cluster, "clip.bin", &data).await;
    assert_eq!(uploaded.sha256, sha256_hex(&data));
    let uri = format!("upload:{}", uploaded.id);

    let first = cluster.submit_spec(input_spec("copy", &[], &uri)).await;
    let first = cluster.wait_finished_within(&first.id, TIMEOUT).await;
    assert_eq!(job_state(&first), v1::JobState::Succeeded, "{first:#?}");
    let input = first.input.clone().expect("the job shows its input");
    assert_eq!(
        (input.name.as_str(), input.size),
        ("clip.bin", data.len() as u64)
    );
    assert_eq!(first.outputs.len(), 1);
    assert_eq!(first.outputs[0].sha256, sha256_hex(&data));
    // The history shows the transfers: staging the input, uploading the output.
    let stages: Vec<String> = cluster
        .history(&first.id)
        .await
        .iter()
        .filter_map(|event| event.job.as_ref().map(|job| job.stage.clone()))
        .collect();
    assert!(stages.iter().any(|stage| stage == "staging"), "{stages:?}");
    assert!(
        stages.iter().any(|stage| stage == "uploading"),
        "{stages:?}"
    );

    // A second job on the same input fetches nothing: the node's cache has it.
    let second = cluster.submit_spec(input_spec("copy", &[], &uri)).await;
    let second = cluster.wait_finished_within(&second.id, TIMEOUT).await;
    assert_eq!(job_state(&second), v1::JobState::Succeeded, "{second:#?}");
    let worker_log = cluster.workers[0].process.log_text();
    assert_eq!(
        worker_log
            .matches("input found in the node's cache")
            .count(),
        1,
        "{worker_log}"
    );

    // The outputs are in the store under the job and attempt, not on the worker any more.
    let objects = local_objects(&local_store(&cluster));
    let key = format!("outputs/{}/1/copy.bin", first.id);
    assert!(
        objects.contains(&(key.clone(), data.len() as u64)),
        "{objects:?}"
    );
    assert_eq!(unfinished_writes(&local_store(&cluster)), 0);
    let worker_outputs = cluster.workers[0].data_dir.join("outputs").join(&first.id);
    assert!(!worker_outputs.exists(), "{}", worker_outputs.display());

    // The worker is gone for good: its outputs download all the same.
    cluster.workers[0].process.kill9();
    assert!(download(&cluster, &first.id, "copy.bin").await == data);

    // Deleting the job removes its objects from the store.
    cluster
        .jobs()
        .await
        .delete_job(v1::DeleteJobRequest {
            id: first.id.clone(),
        })
        .await
        .expect("DeleteJob");
    let store = local_store(&cluster);
    let gone = reelay_tests::faults::poll(Duration::from_secs(10), async || {
        (!local_objects(&store).iter().any(|(k, _)| *k == key)).then_some(())
    })
    .await;
    assert!(gone.is_some(), "{:?}", local_objects(&store));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_inputs_are_refused_at_submit_with_what_to_do() {
    let cluster = TestCluster::builder().workers(1).start().await;
    let mut jobs = cluster.jobs().await;
    let create = |spec: v1::JobSpec| v1::CreateJobRequest {
        spec: Some(spec),
        request_id: String::new(),
    };
    // An upload that does not exist.
    let missing = jobs
        .create_job(create(input_spec(
            "copy",
            &[],
            "upload:01a24389-0efd-7647-8346-634485c6478e",
        )))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound, "{missing:?}");
    // An s3:// input with a local store.
    let s3 = jobs
        .create_job(create(input_spec("copy", &[], "s3://media/in.mp4")))
        .await
        .unwrap_err();
    assert_eq!(s3.code(), tonic::Code::InvalidArgument, "{s3:?}");
    assert!(
        s3.message().contains("--artifacts s3://"),
        "{}",
        s3.message()
    );
    // Both an input path and an input URI.
    let mut both = input_spec("copy", &[], "s3://media/in.mp4");
    both.input_path = "/tmp/in.mp4".into();
    let both = jobs.create_job(create(both)).await.unwrap_err();
    assert_eq!(both.code(), tonic::Code::InvalidArgument);
    assert!(both.message().contains("not both"), "{}", both.message());
    // A pipeline that needs an input, given none: the error says how to give one.
    let none = jobs
        .create_job(create(input_spec("copy", &[], "")))
        .await
        .unwrap_err();
    assert!(none.message().contains("--upload"), "{}", none.message());
    // A half-finished upload cannot feed a job.
    let data = random_bytes(3 << 20, 2);
    let id = "01a24389-0efd-7647-8346-000000000001";
    let mut messages = reelay_tests::artifacts::upload_messages("x.bin", &data, id, 0);
    messages.truncate(2);
    let cut = jobs
        .upload_input(futures::stream::iter(messages))
        .await
        .unwrap_err();
    assert_eq!(cut.code(), tonic::Code::InvalidArgument, "{cut:?}");
    assert!(
        cut.message().contains("resume with offset 0"),
        "{}",
        cut.message()
    );
    let partial = jobs
        .create_job(create(input_spec("copy", &[], &format!("upload:{id}"))))
        .await
        .unwrap_err();
    assert_eq!(
        partial.code(),
        tonic::Code::FailedPrecondition,
        "{partial:?}"
    );
    assert!(
        partial.message().contains("of 3145728 bytes"),
        "{}",
        partial.message()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupted_input_is_fetched_again_then_the_job_fails_saying_so() {
    let cluster = TestCluster::builder().workers(1).start().await;
    let data = random_bytes(1 << 20, 3);
    let uploaded = upload(&cluster, "in.bin", &data).await;
    // Somebody changes the stored bytes (same size): the worker's check catches it.
    let object = local_store(&cluster).join("uploads").join(&uploaded.id);
    std::fs::write(&object, random_bytes(1 << 20, 4)).expect("corrupt the object");
    let job = cluster
        .submit_spec(input_spec("copy", &[], &format!("upload:{}", uploaded.id)))
        .await;
    let job = cluster.wait_finished_within(&job.id, TIMEOUT).await;
    assert_eq!(job_state(&job), v1::JobState::Failed, "{job:#?}");
    assert!(
        job.error.contains("not what was uploaded, twice"),
        "{}",
        job.error
    );
    assert!(job.error.contains(&uploaded.sha256), "{}", job.error);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_input_larger_than_the_cache_fails_clearly_and_the_node_stays_usable() {
    let cluster = TestCluster::builder()
        .worker(WorkerSpec {
            extra_args: vec!["--cache-size".into(), "1MB".into()],
            ..WorkerSpec::default()
        })
        .start()
        .await;
    let data = random_bytes(2 << 20, 5);
    let uploaded = upload(&cluster, "big.bin", &data).await;
    let job = cluster
        .submit_spec(input_spec("copy", &[], &format!("upload:{}", uploaded.id)))
        .await;
    let job = cluster.wait_finished_within(&job.id, TIMEOUT).await;
    assert_eq!(job_state(&job), v1::JobState::Failed, "{job:#?}");
    assert!(job.error.contains("--cache-size"), "{}", job.error);
    let count = cluster.submit("count", &[("steps", "2")]).await;
    let count = cluster.wait_finished_within(&count.id, TIMEOUT).await;
    assert_eq!(job_state(&count), v1::JobState::Succeeded, "{count:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn kill9_while_staging_resumes_the_fetch_and_the_job_ends_once() {
    let (mut cluster, proxy) = proxied_cluster(&[]).await;
    let data = random_bytes(24 << 20, 6);
    let uploaded = upload(&cluster, "in.bin", &data).await;
    // A slow link: the fetch takes seconds, long enough to kill the worker in the middle.
    proxy.throttle(4 << 20);
    let job = cluster
        .submit_spec(input_spec("copy", &[], &format!("upload:{}", uploaded.id)))
        .await;
    let partial = cluster.workers[0]
        .data_dir
        .join("cache/partial")
        .join(&uploaded.sha256);
    let fetching = reelay_tests::faults::poll(Duration::from_secs(30), async || {
        let size = std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
        (size > 4 << 20).then_some(size)
    })
    .await
    .expect("the fetch got under way");
    cluster.workers[0].process.kill9();
    let kept = std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
    assert!(kept >= fetching, "the partial fetch stays on disk");
    proxy.throttle(0);
    let before = proxy.bytes();
    cluster.workers[0].process.restart();
    let job = cluster.wait_finished_within(&job.id, TIMEOUT).await;
    assert_eq!(job_state(&job), v1::JobState::Succeeded, "{job:#?}");
    assert_eq!(job.attempt, 1, "the same attempt finished: {job:#?}");
    // Resumed, not started over: less than the whole input crossed the link after the restart
    // (the output's upload goes the same way, so count both).
    let after = proxy.bytes() - before;
    assert!(
        after < 2 * data.len() as u64 - kept / 2,
        "{after} bytes after the restart, {kept} were kept"
    );
    assert!(download(&cluster, &job.id, "copy.bin").await == data);
    assert_once(&cluster, &job.id).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kill9_while_uploading_outputs_resumes_and_leaves_no_torn_object() {
    let (mut cluster, proxy) = proxied_cluster(&[]).await;
    proxy.throttle(4 << 20);
    let job = cluster.submit("big", &[("mb", "40")]).await;
    let store = local_store(&cluster);
    // Kill the worker once parts of the upload are in the store, before it is complete.
    let parts = reelay_tests::faults::poll(Duration::from_secs(60), async || {
        let job = cluster.get(&job.id).await;
        let uploading = job.stage == "uploading"
            && job
                .transfer
                .as_ref()
                .is_some_and(|t| t.done_bytes >= 12 << 20);
        (uploading && unfinished_writes(&store) == 1).then_some(())
    })
    .await;
    assert!(
        parts.is_some(),
        "the upload got under way: {:#?}",
        cluster.get(&job.id).await
    );
    cluster.workers[0].process.kill9();
    let key = format!("outputs/{}/1/big.bin", job.id);
    assert!(
        !local_objects(&store).iter().any(|(k, _)| *k == key),
        "no object before the upload completes"
    );
    proxy.throttle(0);
    cluster.workers[0].process.restart();
    let job = cluster.wait_finished_within(&job.id, TIMEOUT).await;
    assert_eq!(job_state(&job), v1::JobState::Succeeded, "{job:#?}");
    let output = &job.outputs[0];
    assert_eq!(output.size, 40 << 20);
    let objects = local_objects(&store);
    assert_eq!(
        objects
            .iter()
            .filter(|(k, _)| k.starts_with(&format!("outputs/{}/", job.id)))
            .count(),
        1,
        "one object, no duplicate: {objects:?}"
    );
    assert_eq!(unfinished_writes(&store), 0, "the resumed write completed");
    let bytes = download(&cluster, &job.id, "big.bin").await;
    assert_eq!(sha256_hex(&bytes), output.sha256);
    assert_once(&cluster, &job.id).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_store_that_does_not_answer_is_waited_out_then_fails_after_the_deadline() {
    let (cluster, proxy) = proxied_cluster(&["--transfer-deadline", "4s"]).await;
    let data = random_bytes(1 << 20, 7);
    let uploaded = upload(&cluster, "in.bin", &data).await;
    let uri = format!("upload:{}", uploaded.id);

    // Down for a moment: the job waits, says so, and succeeds when the store is back.
    proxy.drop_all();
    let job = cluster.submit_spec(input_spec("copy", &[], &uri)).await;
    let waiting = cluster
        .wait_job(&job.id, TIMEOUT, |job| {
            job.message.contains("does not answer")
        })
        .await;
    assert_eq!(job_state(&waiting), v1::JobState::Assigned, "{waiting:#?}");
    proxy.restore();
    let job = cluster.wait_finished_within(&job.id, TIMEOUT).await;
    assert_eq!(job_state(&job), v1::JobState::Succeeded, "{job:#?}");

    // Down for longer than --transfer-deadline: the job fails, saying why.
    let other = random_bytes(1 << 20, 8);
    let uploaded = upload(&cluster, "other.bin", &other).await;
    proxy.drop_all();
    let job = cluster
        .submit_spec(input_spec("copy", &[], &format!("upload:{}", uploaded.id)))
        .await;
    let job = cluster.wait_finished_within(&job.id, TIMEOUT).await;
    assert_eq!(job_state(&job), v1::JobState::Failed, "{job:#?}");
    assert!(job.error.contains("did not answer for 4s"), "{}", job.error);
    proxy.restore();
}

/// The job reached a final state once, and its versions have no gap.
async fn assert_once(cluster: &TestCluster, id: &str) {
    let history = cluster.history(id).await;
    let finals = history
        .iter()
        .filter(|event| {
            event.change == v1::JobChange::State as i32
                && event
                    .job
                    .as_ref()
                    .is_some_and(|job| job.state >= v1::JobState::Succeeded as i32)
        })
        .count();
    assert_eq!(finals, 1, "{history:#?}");
    for (index, event) in history.iter().enumerate() {
        assert_eq!(event.version, index as u64 + 1, "{history:#?}");
    }
}
