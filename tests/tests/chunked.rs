//! One long video across the fleet: `transcode-chunked` (deploy/pipeline/reelay-chunk) on real
//! workers — split at keyframes, pieces encoded on several nodes, joined and checked frame by
//! frame — and what kill -9 and cancel do to it.

use std::path::Path;
use std::time::Duration;

use reelay_proto::v1;
use reelay_tests::artifacts::{download, input_spec, upload};
use reelay_tests::chunk::make_input;
use reelay_tests::media::{ffmpeg, stream};
use reelay_tests::{TestCluster, WorkerSpec, job_state, running_piece};

const TIMEOUT: Duration = Duration::from_secs(600);

/// transcode-chunked and its steps, with the script from deploy/ (process executor).
fn config() -> String {
    reelay_tests::chunk::pipelines_config()
}

/// The same config for Docker workers: the script as the image has it.
fn docker_config() -> String {
    let chunk = reelay_tests::chunk::script()
        .canonicalize()
        .expect("deploy/pipeline/reelay-chunk");
    config().replace(&format!("\"{}\"", chunk.display()), "\"reelay-chunk\"")
}

/// Uploads `input` under its file name and makes a `transcode-chunked` spec of it.
async fn chunked_spec(cluster: &TestCluster, input: &Path, params: &[(&str, &str)]) -> v1::JobSpec {
    let name = input.file_name().expect("a file name").to_string_lossy();
    let data = std::fs::read(input).expect("read the input");
    let uploaded = upload(cluster, &name, &data).await;
    input_spec(
        "transcode-chunked",
        params,
        &format!("upload:{}", uploaded.id),
    )
}

/// Whether the job reached a final state.
fn ended(job: &v1::Job) -> bool {
    matches!(
        job_state(job),
        v1::JobState::Succeeded | v1::JobState::Failed | v1::JobState::Cancelled
    )
}

/// Downloads the parent's video output and checks it against the input, frame by frame.
async fn assert_frame_exact(cluster: &TestCluster, job: &v1::Job, input: &Path, dir: &Path) {
    let name = job
        .outputs
        .iter()
        .find(|file| file.name.ends_with(".mp4"))
        .map(|file| file.name.clone())
        .unwrap_or_else(|| panic!("no video output: {:#?}", job.outputs));
    assert!(job.outputs.iter().any(|file| file.name == "thumbnail.jpg"));
    let output = dir.join(&name);
    std::fs::write(&output, download(cluster, &job.id, &name).await).expect("write output");
    let source = stream(input, "v:0").expect("input video");
    let result = stream(&output, "v:0").expect("output video");
    assert_eq!(result.codec, "h264");
    assert_eq!(result.frames, source.frames, "every frame, no more");
    let frame = 1.0 / 30.0;
    let (got, want) = (
        result.duration.unwrap_or(0.0),
        source.duration.unwrap_or(0.0),
    );
    assert!(
        (got - want).abs() <= frame + 1e-6,
        "duration {got} vs {want}"
    );
    if let Some(audio) = stream(&output, "a:0") {
        let audio = audio.duration.unwrap_or(0.0);
        assert!(
            (audio - got).abs() <= 0.05,
            "audio {audio} s vs video {got} s"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sixty_seconds_of_720p_across_three_workers_come_out_frame_exact() {
    let mut builder = TestCluster::builder().extra_config(&config());
    for _ in 0..3 {
        builder = builder.worker(WorkerSpec {
            slots: 1,
            ..WorkerSpec::default()
        });
    }
    let cluster = builder.start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("long take.mp4");
    make_input(&input, 60);
    let spec = chunked_spec(&cluster, &input, &[("segment_seconds", "10")]).await;
    let parent = cluster.submit_spec(spec).await;
    let done = cluster.wait_finished_within(&parent.id, TIMEOUT).await;
    assert_eq!(
        job_state(&done),
        v1::JobState::Succeeded,
        "{done:#?}\n{}",
        cluster.logs()
    );
    assert!(
        done.outputs
            .iter()
            .any(|file| file.name == "final_without_post_process__long take.mp4"),
        "{:#?}",
        done.outputs
    );
    let steps = cluster.steps_of(&done.id).await;
    let pieces: Vec<&v1::Job> = steps.iter().filter(|job| job.step == "map").collect();
    assert!(pieces.len() >= 5, "{} pieces", pieces.len());
    let nodes: std::collections::BTreeSet<&str> =
        pieces.iter().map(|job| job.node_id.as_str()).collect();
    assert!(nodes.len() >= 2, "pieces ran on {nodes:?}");
    assert_frame_exact(&cluster, &done, &input, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn short_and_variable_frame_rate_inputs_come_out_right() {
    let cluster = TestCluster::builder()
        .extra_config(&config())
        .workers(2)
        .start()
        .await;
    let dir = tempfile::tempdir().expect("temp dir");
    // One second: one piece.
    let short = dir.path().join("short.mp4");
    make_input(&short, 1);
    // Variable frame rate: frames kept at irregular times.
    let vfr = dir.path().join("vfr.mkv");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc=duration=12:size=640x360:rate=30",
        "-vf",
        "select='not(mod(n\\,3))+between(n\\,100\\,140)'",
        "-fps_mode",
        "vfr",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-g",
        "20",
        &vfr.display().to_string(),
    ]);
    for (input, pieces) in [(&short, Some(1)), (&vfr, None)] {
        let name = input.file_name().unwrap().to_string_lossy().into_owned();
        let spec = chunked_spec(&cluster, input, &[("segment_seconds", "3")]).await;
        let parent = cluster.submit_spec(spec).await;
        let done = cluster.wait_finished_within(&parent.id, TIMEOUT).await;
        assert_eq!(
            job_state(&done),
            v1::JobState::Succeeded,
            "{name}: {done:#?}"
        );
        let count = cluster
            .steps_of(&done.id)
            .await
            .iter()
            .filter(|job| job.step == "map")
            .count();
        if let Some(pieces) = pieces {
            assert_eq!(count, pieces, "{name}");
        }
        let output = done
            .outputs
            .iter()
            .find(|file| file.name.ends_with(".mp4"))
            .unwrap()
            .name
            .clone();
        let path = dir.path().join(format!("out-{output}"));
        std::fs::write(&path, download(&cluster, &done.id, &output).await).unwrap();
        let source = stream(input, "v:0").unwrap();
        let result = stream(&path, "v:0").unwrap();
        assert_eq!(result.frames, source.frames, "{name}: every frame");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kill9_of_a_worker_mid_encode_reruns_that_piece_and_only_it() {
    let mut builder = TestCluster::builder().extra_config(&config());
    for _ in 0..2 {
        builder = builder.worker(WorkerSpec {
            slots: 1,
            ..WorkerSpec::default()
        });
    }
    let mut cluster = builder.start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("in.mp4");
    make_input(&input, 30);
    let params = [
        ("segment_seconds", "6"),
        ("preset", "medium"),
        ("height", "480"),
    ];
    let mut spec = chunked_spec(&cluster, &input, &params).await;
    spec.max_attempts = 2;
    let parent = cluster.submit_spec(spec).await;
    let running = cluster
        .wait_job(&parent.id, TIMEOUT, |job| {
            // A parent that ends first fails the test below instead of waiting out the timeout.
            ended(job) || running_piece(job, "w0", 10).is_some()
        })
        .await;
    assert!(!ended(&running), "the parent ended first: {running:#?}");
    let victim = running_piece(&running, "w0", 10).expect("a piece running on w0");
    cluster.workers[0].process.kill9();
    cluster.workers[0].process.restart();
    let done = cluster.wait_finished_within(&parent.id, TIMEOUT).await;
    assert_eq!(
        job_state(&done),
        v1::JobState::Succeeded,
        "{done:#?}\n{}",
        cluster.logs()
    );
    for step in cluster.steps_of(&parent.id).await {
        let expected = if step.id == victim { 2 } else { 1 };
        assert_eq!(step.attempt, expected, "{} {}", step.step, step.piece);
    }
    assert_frame_exact(&cluster, &done, &input, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cancelling_the_parent_leaves_no_step_running_and_no_container() {
    reelay_tests::docker::require_engine(&["reelay/pipeline:latest"]);
    let docker = || WorkerSpec {
        executor: "docker".into(),
        slots: 1,
        ..WorkerSpec::default()
    };
    let cluster = TestCluster::builder()
        .extra_config(&docker_config())
        .node_prefix("chunked-cancel-")
        .worker(docker())
        .worker(docker())
        .start()
        .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("in.mp4");
    make_input(&input, 30);
    let params = [
        ("segment_seconds", "4"),
        ("preset", "slow"),
        ("height", "720"),
    ];
    let spec = chunked_spec(&cluster, &input, &params).await;
    let parent = cluster.submit_spec(spec).await;
    let running = cluster
        .wait_job(&parent.id, TIMEOUT, |job| {
            // A parent that ends first fails the test below instead of waiting out the timeout.
            ended(job)
                || job.steps.as_ref().is_some_and(|steps| {
                    steps
                        .pieces
                        .iter()
                        .filter(|piece| piece.state == v1::JobState::Running as i32)
                        .count()
                        >= 2
                })
        })
        .await;
    assert!(!ended(&running), "the parent ended first: {running:#?}");
    cluster
        .jobs()
        .await
        .cancel_job(v1::CancelJobRequest {
            id: parent.id.clone(),
        })
        .await
        .unwrap();
    let done = cluster.wait_finished_within(&parent.id, TIMEOUT).await;
    assert_eq!(job_state(&done), v1::JobState::Cancelled, "{done:#?}");
    for step in cluster.steps_of(&parent.id).await {
        assert!(job_state(&step) != v1::JobState::Running, "{step:#?}");
        let left = reelay_tests::docker::wait_none_labelled(
            "reelay.job-id",
            &step.id,
            Duration::from_secs(30),
        );
        assert!(left.is_ok(), "{}: {left:?}", step.id);
    }
}
