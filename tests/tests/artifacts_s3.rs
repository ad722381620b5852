//! A fleet on a real S3 server (SeaweedFS, from the test set-up): the coordinator is told
//! `--artifacts s3://BUCKET/PREFIX` and the `AWS_*` settings; its workers are not — they learn
//! where the store is from the coordinator and go to it directly.

use std::time::Duration;

use reelay_proto::v1;
use reelay_tests::artifacts::{download, input_spec, random_bytes, sha256_hex, upload};
use reelay_tests::docker::ffprobe;
use reelay_tests::proxy::FaultProxy;
use reelay_tests::s3::S3Server;
use reelay_tests::{TestCluster, WorkerSpec, job_state};

const BUCKET: &str = "reelay";
const PREFIX: &str = "fleet";
const TIMEOUT: Duration = Duration::from_secs(180);

/// The transcode pipeline as a local process, and one that writes a big output after a pause.
fn config() -> String {
    let transcode = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/pipeline/reelay-transcode")
        .canonicalize()
        .expect("deploy/pipeline/reelay-transcode");
    format!(
        r#"
[[pipeline]]
name = "transcode"
command = ["{}"]
input_required = true
outputs = ["final_without_post_process__*.mp4", "thumbnail.jpg"]
params = [ {{ name = "height", default = "360", pattern = "[0-9]{{2,4}}" }},
           {{ name = "crf", default = "30", pattern = "[0-9]{{1,2}}" }},
           {{ name = "preset", default = "ultrafast", pattern = "[a-z]+" }} ]

[[pipeline]]
name = "big"
command = ["sh", "-c", "sleep $REELAY_PARAM_PAUSE; head -c $((REELAY_PARAM_MB * 1048576)) /dev/urandom > \"$REELAY_OUTPUT_DIR/big.bin\""]
outputs = ["big.bin"]
params = [ {{ name = "mb", default = "1", pattern = "[0-9]{{1,4}}" }},
           {{ name = "pause", default = "0", pattern = "[0-9]{{1,3}}" }} ]
"#,
        transcode.display()
    )
}

/// A cluster whose coordinator (only) knows the S3 server; no worker yet.
async fn s3_cluster(s3: &S3Server) -> TestCluster {
    s3.create_bucket(BUCKET).await;
    let mut builder = TestCluster::builder()
        .extra_config(&config())
        .coordinator_arg("--artifacts")
        .coordinator_arg(&format!("s3://{BUCKET}/{PREFIX}"));
    for (key, value) in s3.env() {
        builder = builder.coordinator_env(&key, &value);
    }
    builder.start().await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_200_mb_video_is_uploaded_transcoded_and_downloaded_after_its_worker_is_gone() {
    let s3 = S3Server::start().await;
    let mut cluster = s3_cluster(&s3).await;
    cluster.add_worker(WorkerSpec::default());
    cluster.wait_ready_nodes(1).await;

    // The submitter's file lives in a folder of its own, which no worker is told about, and is
    // gone before the job runs: the worker can only get it from the store.
    let submitter = tempfile::tempdir().expect("submitter dir");
    let video = submitter.path().join("long take.mkv");
    let made = std::process::Command::new("ffmpeg")
        .args(["-y", "-v", "error", "-f", "lavfi", "-i"])
        .arg("testsrc=duration=20:size=640x360:rate=30")
        .args(["-c:v", "rawvideo", "-pix_fmt", "yuv420p"])
        .arg(&video)
        .status()
        .expect("ffmpeg");
    assert!(made.success());
    let data = std::fs::read(&video).expect("the video");
    assert!(data.len() > 200_000_000, "{} bytes", data.len());
    let uploaded = upload(&cluster, "long take.mkv", &data).await;
    drop(data);
    drop(submitter);
    let objects = s3.list(BUCKET, &format!("{PREFIX}/uploads/")).await;
    assert_eq!(objects.len(), 1, "{objects:?}");

    let job = cluster
        .submit_spec(input_spec(
            "transcode",
            &[],
            &format!("upload:{}", uploaded.id),
        ))
        .await;
    let job = cluster.wait_finished_within(&job.id, TIMEOUT).await;
    assert_eq!(
        job_state(&job),
        v1::JobState::Succeeded,
        "{job:#?}\n{}",
        cluster.logs()
    );
    let names: Vec<&str> = job.outputs.iter().map(|file| file.name.as_str()).collect();
    assert_eq!(
        names,
        ["final_without_post_process__long take.mp4", "thumbnail.jpg"]
    );

    // The outputs are in the bucket, under the job and its attempt.
    let stored = s3
        .list(BUCKET, &format!("{PREFIX}/outputs/{}/1/", job.id))
        .await;
    assert_eq!(stored.len(), 2, "{stored:?}");

    // The worker is gone for good; the outputs come from the store, intact.
    cluster.workers[0].process.kill9();
    let dir = tempfile::tempdir().expect("downloads");
    for file in &job.outputs {
        let bytes = download(&cluster, &job.id, &file.name).await;
        assert_eq!(sha256_hex(&bytes), file.sha256, "{}", file.name);
        std::fs::write(dir.path().join(&file.name), bytes).expect("write");
    }
    let probe = ffprobe(&dir.path().join("final_without_post_process__long take.mp4"));
    assert_eq!(
        (probe.codec.as_str(), probe.height),
        ("h264", 360),
        "{probe:?}"
    );
    assert!((probe.duration - 20.0).abs() < 0.5, "{probe:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_inputs_are_staged_once_per_node_and_a_missing_one_is_refused() {
    let s3 = S3Server::start().await;
    let mut cluster = s3_cluster(&s3).await;
    cluster.add_worker(WorkerSpec::default());
    cluster.wait_ready_nodes(1).await;
    s3.create_bucket("media").await;
    let data = random_bytes(3 << 20, 11);
    s3.put_object("media", "in/clip.bin", data.clone()).await;

    let spec = || input_spec("copy", &[], "s3://media/in/clip.bin");
    let first = cluster.submit_spec(spec()).await;
    assert_eq!(first.input.as_ref().map(|input| input.size), Some(3 << 20));
    let first = cluster.wait_finished_within(&first.id, TIMEOUT).await;
    assert_eq!(job_state(&first), v1::JobState::Succeeded, "{first:#?}");
    assert_eq!(first.outputs[0].sha256, sha256_hex(&data));
    let second = cluster.submit_spec(spec()).await;
    let second = cluster.wait_finished_within(&second.id, TIMEOUT).await;
    assert_eq!(job_state(&second), v1::JobState::Succeeded, "{second:#?}");
    let log = cluster.workers[0].process.log_text();
    assert_eq!(
        log.matches("input found in the node's cache").count(),
        1,
        "{log}"
    );

    let missing = cluster
        .jobs()
        .await
        .create_job(v1::CreateJobRequest {
            spec: Some(input_spec("copy", &[], "s3://media/in/nope.bin")),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound, "{missing:?}");
    assert_eq!(missing.message(), "input not found: s3://media/in/nope.bin");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_s3_upload_survives_the_store_going_down_and_a_kill9_of_its_worker() {
    let mut s3 = S3Server::start().await;
    let mut cluster = s3_cluster(&s3).await;
    // This worker reaches S3 through a fault proxy: its own AWS_ENDPOINT_URL wins over the one
    // the coordinator hands out.
    let proxy = FaultProxy::start(
        s3.endpoint()
            .trim_start_matches("http://")
            .parse()
            .expect("S3 address"),
    )
    .await;
    cluster.add_worker(WorkerSpec {
        env: vec![("AWS_ENDPOINT_URL".into(), proxy.url())],
        extra_args: vec!["--transfer-deadline".into(), "5m".into()],
        ..WorkerSpec::default()
    });
    cluster.wait_ready_nodes(1).await;

    // The store is down when the pipeline ends: the job waits, saying so, then finishes.
    let job = cluster.submit("big", &[("mb", "2"), ("pause", "2")]).await;
    cluster
        .wait_job(&job.id, TIMEOUT, |job| {
            job.state == v1::JobState::Running as i32
        })
        .await;
    s3.stop();
    cluster
        .wait_job(&job.id, TIMEOUT, |job| {
            job.message.contains("does not answer")
        })
        .await;
    s3.restart().await;
    let job = cluster.wait_finished_within(&job.id, TIMEOUT).await;
    assert_eq!(job_state(&job), v1::JobState::Succeeded, "{job:#?}");

    // Killed in the middle of an upload (a slow link): the restarted worker resumes it.
    proxy.throttle(4 << 20);
    let job = cluster.submit("big", &[("mb", "40")]).await;
    let under_way = reelay_tests::faults::poll(Duration::from_secs(90), async || {
        let job = cluster.get(&job.id).await;
        job.transfer
            .as_ref()
            .is_some_and(|t| job.stage == "uploading" && t.done_bytes >= 24 << 20)
            .then_some(())
    })
    .await;
    assert!(under_way.is_some(), "{:#?}", cluster.get(&job.id).await);
    cluster.workers[0].process.kill9();
    proxy.throttle(0);
    cluster.workers[0].process.restart();
    let job = cluster.wait_finished_within(&job.id, TIMEOUT).await;
    assert_eq!(job_state(&job), v1::JobState::Succeeded, "{job:#?}");
    let stored = s3
        .list(BUCKET, &format!("{PREFIX}/outputs/{}/", job.id))
        .await;
    assert_eq!(stored.len(), 1, "one object, no duplicate: {stored:?}");
    assert_eq!(stored[0].1, 40 << 20);
    let bytes = download(&cluster, &job.id, "big.bin").await;
    assert_eq!(sha256_hex(&bytes), job.outputs[0].sha256);
}
