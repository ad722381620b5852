//! The Docker executor through the whole system: real `reelay` processes, a real Docker engine,
//! the reference pipeline image with a real ffmpeg.
//!
//! A real transcode checked with ffprobe; kill -9 of the worker mid-transcode and re-attach (same
//! attempt, same container, logs without gap or repeat); what a restarted worker finds (a
//! container that finished, one that vanished, an orphan); cancel and timeout stop the container;
//! missing image; missing input; the container's limits, labels, network and user. No test
//! leaves a container of its jobs (or of its nodes) behind.
//!
//! Needs the engine and the images: `scripts/setup-test-env.sh`. The tests of this file run one at
//! a time (the machine has 2 cores; the kill test needs the transcode to be mid-run), and each
//! cluster's workers have node ids unique on the machine, because a starting worker removes the
//! containers labelled with its node id that it does not know.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime};

use reelay_proto::v1;
use reelay_tests::docker::{self, JobContainers};
use reelay_tests::watch::assert_contiguous;
use reelay_tests::{TestCluster, WorkerSpec, spec};
use sha2::{Digest, Sha256};

const PIPELINE_IMAGE: &str = "reelay/pipeline:latest";
const BUSYBOX_IMAGE: &str = "reelay/busybox:latest";
/// An image no test machine has (and none is pulled: `pull = "never"`).
const MISSING_IMAGE: &str = "reelay/no-such-image:never";

/// Grace period of `dsleep` (cancel and timeout must stop it well within it).
const DSLEEP_GRACE: Duration = Duration::from_secs(10);
/// Grace period of `dstubborn` (it ignores SIGTERM: only the kill after the grace stops it).
const DSTUBBORN_GRACE: Duration = Duration::from_secs(2);

const DOCKER_PIPELINES: &str = r#"
[[pipeline]]
name = "transcode"
description = "the reference pipeline: H.264 with a thumbnail, in reelay/pipeline:latest"
image = "reelay/pipeline:latest"
command = ["reelay-transcode"]
pull = "never"
resources = { cpus = 1.0, memory_mb = 512 }
grace_seconds = 5
params = [
  { name = "height", default = "720", pattern = "[0-9]{2,4}" },
  { name = "preset", default = "veryfast", pattern = "[a-z]+" },
]

[[pipeline]]
name = "dsleep"
description = "sleeps in a busybox container, stops on TERM"
image = "reelay/busybox:latest"
command = ["sh", "-c", """
trap 'echo "got TERM" >&2; exit 143' TERM
echo "sleeping $REELAY_PARAM_SECONDS s"
echo "::progress 10 sleeping"
sleep "$REELAY_PARAM_SECONDS" & wait $!
echo "woke up"
"""]
pull = "never"
input_required = false
grace_seconds = 10
resources = { cpus = 0.5, memory_mb = 64 }
params = [ { name = "seconds", default = "30", pattern = "[0-9]{1,5}" } ]

[[pipeline]]
name = "dstubborn"
description = "ignores TERM in a busybox container: only KILL stops it"
image = "reelay/busybox:latest"
command = ["sh", "-c", "trap '' TERM; echo '::progress 10 ignoring TERM'; sleep 300 & wait $!; sleep 300 & wait $!"]
pull = "never"
input_required = false
grace_seconds = 2

[[pipeline]]
name = "ghost"
description = "names an image that does not exist and may not be pulled"
image = "reelay/no-such-image:never"
command = ["sh", "-c", "echo never runs"]
pull = "never"
input_required = false
"#;

/// One test at a time (see the module doc). A tokio mutex: held across awaits, never poisoned.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A cluster with one Docker worker (2 slots) whose node id is unique on this machine; the
/// worker's node is tracked by `containers`.
async fn docker_cluster(containers: &mut JobContainers) -> TestCluster {
    docker::require_engine(&[PIPELINE_IMAGE, BUSYBOX_IMAGE]);
    static CLUSTERS: AtomicU32 = AtomicU32::new(0);
    let prefix = format!(
        "dk{}-{}-",
        std::process::id(),
        CLUSTERS.fetch_add(1, Ordering::Relaxed)
    );
    let cluster = TestCluster::builder()
        .node_prefix(&prefix)
        .extra_config(DOCKER_PIPELINES)
        .worker(WorkerSpec {
            slots: 2,
            executor: "docker".into(),
            ..Default::default()
        })
        .start()
        .await;
    containers.track_node(&cluster.workers[0].node_id);
    cluster
}

/// The end of a test: no container of its jobs or node is left while the cluster runs, nor once
/// its processes stopped.
fn no_containers_left(cluster: TestCluster, containers: &JobContainers) {
    containers.assert_none_left(Duration::from_secs(30));
    drop(cluster);
    containers.assert_none_left(Duration::from_secs(5));
}

/// Submits `spec`, tracking its containers.
async fn submit(
    cluster: &TestCluster,
    containers: &mut JobContainers,
    spec: v1::JobSpec,
) -> String {
    let job = cluster.submit_spec(spec).await;
    containers.track(&job.id);
    job.id
}

fn with_input(mut spec: v1::JobSpec, input: &Path) -> v1::JobSpec {
    spec.input_path = input.display().to_string();
    spec
}

fn state_name(state: i32) -> String {
    v1::JobState::try_from(state).map_or_else(|_| state.to_string(), |s| format!("{s:?}"))
}

fn assert_state(cluster: &TestCluster, job: &v1::Job, state: v1::JobState) {
    assert_eq!(
        job.state,
        state as i32,
        "job {} is {}, expected {state:?}: {job:#?}\n{}",
        job.id,
        state_name(job.state),
        cluster.logs()
    );
}

fn assert_numbered(lines: &[v1::LogLine]) {
    let numbers: Vec<u64> = lines.iter().map(|line| line.number).collect();
    assert_eq!(
        numbers,
        (1..=lines.len() as u64).collect::<Vec<_>>(),
        "log lines are numbered 1..N without gap or repeat"
    );
}

/// The value of each `::progress` line, in order.
fn progress_values(lines: &[v1::LogLine]) -> Vec<u32> {
    lines
        .iter()
        .filter_map(|line| line.text.strip_prefix("::progress "))
        .map(|rest| {
            rest.split_whitespace()
                .next()
                .and_then(|value| value.parse().ok())
                .unwrap_or_else(|| panic!("bad progress line: ::progress {rest}"))
        })
        .collect()
}

async fn list_outputs(cluster: &TestCluster, id: &str) -> Vec<v1::OutputFile> {
    let mut files = cluster
        .jobs()
        .await
        .list_outputs(v1::ListOutputsRequest { id: id.to_owned() })
        .await
        .expect("list outputs")
        .into_inner()
        .files;
    files.sort_by(|a, b| a.name.cmp(&b.name));
    files
}

async fn download(cluster: &TestCluster, id: &str, name: &str) -> Vec<u8> {
    let request = v1::DownloadOutputRequest {
        id: id.to_owned(),
        name: name.to_owned(),
        offset: 0,
    };
    let mut stream = cluster
        .jobs()
        .await
        .download_output(request)
        .await
        .expect("download output")
        .into_inner();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.message().await.expect("chunk") {
        assert_eq!(chunk.offset, bytes.len() as u64, "chunks arrive in order");
        bytes.extend_from_slice(&chunk.data);
    }
    bytes
}

/// Checks a finished transcode's outputs, downloaded through the coordinator: the listed size
/// and sha256, the video's codec, height and duration (ffprobe), the thumbnail's JPEG markers.
async fn check_transcode_outputs(
    cluster: &TestCluster,
    id: &str,
    stem: &str,
    (width, height): (u32, u32),
    seconds: f64,
) {
    let video_name = format!("final_without_post_process__{stem}.mp4");
    let files = list_outputs(cluster, id).await;
    let names: Vec<&str> = files.iter().map(|file| file.name.as_str()).collect();
    assert_eq!(
        names,
        [video_name.as_str(), "thumbnail.jpg"],
        "the outputs: {files:#?}"
    );
    let downloads = cluster.path().join("downloads").join(id);
    std::fs::create_dir_all(&downloads).expect("make the downloads directory");
    for file in &files {
        let bytes = download(cluster, id, &file.name).await;
        assert_eq!(bytes.len() as u64, file.size, "{} size", file.name);
        assert_eq!(
            hex::encode(Sha256::digest(&bytes)),
            file.sha256,
            "{} sha256",
            file.name
        );
        std::fs::write(downloads.join(&file.name), &bytes).expect("write a downloaded file");
    }

    let probe = docker::ffprobe(&downloads.join(&video_name));
    assert_eq!(probe.codec, "h264", "{probe:?}");
    assert_eq!((probe.width, probe.height), (width, height), "{probe:?}");
    assert!(
        (probe.duration - seconds).abs() < 0.5,
        "the output lasts {seconds} s: {probe:?}"
    );

    let thumbnail = std::fs::read(downloads.join("thumbnail.jpg")).expect("read the thumbnail");
    assert!(
        thumbnail.len() > 1000 && thumbnail.starts_with(&[0xff, 0xd8, 0xff]),
        "the thumbnail is a JPEG ({} bytes, starts with {:02x?})",
        thumbnail.len(),
        &thumbnail[..thumbnail.len().min(4)]
    );
    assert!(
        thumbnail.ends_with(&[0xff, 0xd9]),
        "the thumbnail JPEG is complete"
    );
}

/// A 10-second 1280x720 testsrc video transcoded to 360p by the reference pipeline in its image.
#[tokio::test(flavor = "multi_thread")]
async fn a_10_second_720p_video_is_transcoded_to_360p() {
    let _serial = SERIAL.lock().await;
    let mut containers = JobContainers::new();
    let cluster = docker_cluster(&mut containers).await;
    let video = docker::make_test_video(&cluster.path().join("in/clip.mp4"), 10, "1280x720");

    let id = submit(
        &cluster,
        &mut containers,
        with_input(spec("transcode", &[("height", "360")]), &video),
    )
    .await;
    let events = cluster
        .wait_terminal_within(&id, Duration::from_secs(180))
        .await;
    let done = events.last().and_then(|e| e.job.clone()).unwrap();
    assert_state(&cluster, &done, v1::JobState::Succeeded);
    assert_eq!(
        (done.exit_code, done.progress, done.attempt),
        (Some(0), 100, 1),
        "{done:#?}"
    );

    // Progress arrived as a stream of increasing values while the job ran.
    let mut seen: Vec<u32> = events
        .iter()
        .filter_map(|event| event.job.as_ref())
        .filter(|job| job.state == v1::JobState::Running as i32)
        .map(|job| job.progress)
        .collect();
    seen.dedup();
    assert!(
        seen.windows(2).all(|pair| pair[0] < pair[1]),
        "progress only increases: {seen:?}"
    );
    assert!(
        seen.len() >= 4 && seen.iter().any(|p| (1..90).contains(p)),
        "several distinct progress values, some mid-transcode: {seen:?}"
    );

    check_transcode_outputs(&cluster, &id, "clip", (640, 360), 10.0).await;

    let lines = cluster.job_logs(&id).await;
    assert_numbered(&lines);
    let values = progress_values(&lines);
    assert_eq!(values.first(), Some(&0), "{values:?}");
    assert_eq!(values.last(), Some(&100), "{values:?}");
    assert!(
        values.windows(2).all(|pair| pair[0] <= pair[1]),
        "{values:?}"
    );

    no_containers_left(cluster, &containers);
}

/// `docker logs -f ID`, its stdout and stderr into files: what the container printed, as the
/// engine kept it, to compare the job's log with.
struct LogCapture {
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl LogCapture {
    fn start(id: &str, dir: &Path) -> Self {
        let stdout = dir.join("docker-logs.stdout");
        let stderr = dir.join("docker-logs.stderr");
        let child = Command::new("docker")
            .args(["logs", "--follow", id])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).expect("create a capture file"))
            .stderr(std::fs::File::create(&stderr).expect("create a capture file"))
            .spawn()
            .expect("run docker logs");
        LogCapture {
            child,
            stdout,
            stderr,
        }
    }

    /// How many complete lines the container printed on stdout so far.
    fn stdout_lines(&self) -> usize {
        std::fs::read(&self.stdout).map_or(0, |bytes| bytes.iter().filter(|b| **b == b'\n').count())
    }

    /// The lines of each stream once the container stopped (`docker logs -f` then ends).
    fn finish(mut self, timeout: Duration) -> (Vec<String>, Vec<String>) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.child.try_wait().expect("wait docker logs").is_some() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "docker logs -f did not end with the container"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let lines = |path: &Path| -> Vec<String> {
            std::fs::read_to_string(path)
                .expect("read a capture file")
                .lines()
                .map(str::to_owned)
                .collect()
        };
        (lines(&self.stdout), lines(&self.stderr))
    }
}

impl Drop for LogCapture {
    fn drop(&mut self) {
        // Only our own child, by its PID.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn texts(lines: &[v1::LogLine], stream: v1::LogStream) -> Vec<String> {
    lines
        .iter()
        .filter(|line| line.stream == stream as i32)
        .map(|line| line.text.clone())
        .collect()
}

fn time_of(line: &v1::LogLine) -> SystemTime {
    time_of_ts(line.time.as_ref())
}

/// Kill -9 of the worker mid-transcode: the container goes on; the restarted worker re-attaches
/// to it, follows its logs from where it stopped and records its exit and outputs. Same attempt,
/// same container, every line once.
#[tokio::test(flavor = "multi_thread")]
async fn kill_9_of_the_worker_mid_transcode_then_restart_reattaches() {
    let _serial = SERIAL.lock().await;
    let mut containers = JobContainers::new();
    let mut cluster = docker_cluster(&mut containers).await;
    // 30 s of video with x264's "slower" preset on 1 CPU: ~12 s of transcoding here, so that the
    // kill lands mid-run and the container prints while the worker is down.
    let video = docker::make_test_video(&cluster.path().join("in/long.mp4"), 30, "1280x720");
    let id = submit(
        &cluster,
        &mut containers,
        with_input(
            spec("transcode", &[("height", "360"), ("preset", "slower")]),
            &video,
        ),
    )
    .await;
    let running = cluster
        .wait_job(&id, Duration::from_secs(120), |job| {
            job.state == v1::JobState::Running as i32 && job.progress >= 10
        })
        .await;
    assert!(running.progress < 90, "mid-transcode: {running:#?}");
    let container = docker::wait_container_of_job(&id, Duration::from_secs(10));
    let mut worker = cluster.worker_client(0).await;
    let recorded = worker
        .get_job(v1::WorkerGetJobRequest { job_id: id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        recorded.run_ref, container,
        "the worker recorded the container"
    );
    let capture = LogCapture::start(&container, cluster.path());
    // The capture has caught up with what the worker recorded (its count is then the container's
    // at the kill, give or take the lines printed meanwhile).
    let recorded_lines = usize::try_from(recorded.log_lines).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while capture.stdout_lines() < recorded_lines {
        assert!(Instant::now() < deadline, "docker logs -f printed nothing");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    cluster.workers[0].process.kill9();
    let killed_at = SystemTime::now();
    // The worker stays down until the container has printed more lines, which only a re-attach
    // that resumes from the container's logs can record.
    let printed_at_kill = capture.stdout_lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    while capture.stdout_lines() < printed_at_kill + 3 {
        assert!(
            Instant::now() < deadline,
            "the container printed nothing more while its worker was down"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        docker::is_running(&container),
        "the container keeps running without its worker: {:?}",
        docker::inspect(&container, "{{.State.Status}} exit {{.State.ExitCode}}")
    );
    let restarted_at = SystemTime::now();
    cluster.workers[0].process.restart();

    let done = cluster
        .wait_finished_within(&id, Duration::from_secs(300))
        .await;
    assert_state(&cluster, &done, v1::JobState::Succeeded);
    assert_eq!(
        (done.exit_code, done.attempt, done.progress),
        (Some(0), 1, 100),
        "the same attempt succeeded, no retry: {done:#?}"
    );
    let mut worker = cluster.worker_client(0).await;
    let recorded = worker
        .get_job(v1::WorkerGetJobRequest { job_id: id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (recorded.run_ref.as_str(), recorded.attempt),
        (container.as_str(), 1),
        "re-attached to the same container"
    );
    assert!(
        cluster.workers[0]
            .process
            .log_text()
            .contains("re-attached"),
        "the restarted worker says it re-attached"
    );

    // The job's history: one run, no second attempt.
    let history = cluster
        .jobs()
        .await
        .get_job_history(v1::GetJobHistoryRequest {
            id: id.clone(),
            after_version: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    assert_contiguous(&history);
    let mut states: Vec<i32> = history
        .iter()
        .map(|event| event.job.as_ref().unwrap().state)
        .collect();
    states.dedup();
    assert_eq!(
        states,
        [
            v1::JobState::Queued,
            v1::JobState::Assigned,
            v1::JobState::Running,
            v1::JobState::Succeeded,
        ]
        .map(|s| s as i32),
        "queued, assigned and ran once"
    );
    assert!(
        history
            .iter()
            .all(|event| event.job.as_ref().unwrap().attempt <= 1),
        "no event of a second attempt"
    );

    check_transcode_outputs(&cluster, &id, "long", (640, 360), 30.0).await;

    // The logs: numbered without gap, every line the container printed exactly once, in order.
    let lines = cluster.job_logs(&id).await;
    assert_numbered(&lines);
    let (stdout, stderr) = capture.finish(Duration::from_secs(60));
    assert!(stdout.len() > 10, "the container printed: {stdout:?}");
    let job_stdout = texts(&lines, v1::LogStream::Stdout);
    if job_stdout != stdout {
        let first_difference = job_stdout
            .iter()
            .zip(&stdout)
            .position(|(a, b)| a != b)
            .unwrap_or(job_stdout.len().min(stdout.len()));
        panic!(
            "the job's stdout lines differ from the container's at line {first_difference} \
             ({} lines recorded, {} printed):\nrecorded: {:?}\nprinted:  {:?}",
            job_stdout.len(),
            stdout.len(),
            &job_stdout[first_difference.saturating_sub(2)..],
            &stdout[first_difference.saturating_sub(2)..]
        );
    }
    assert_eq!(
        texts(&lines, v1::LogStream::Stderr),
        stderr,
        "the job's stderr lines are the container's"
    );
    let values = progress_values(&lines);
    assert!(
        values.windows(2).all(|pair| pair[0] <= pair[1]),
        "progress lines never go back: {values:?}"
    );
    for pair in lines.windows(2) {
        assert!(
            pair[0].text != pair[1].text
                || stdout
                    .windows(2)
                    .any(|printed| printed[0] == pair[0].text && printed[1] == pair[1].text),
            "line {} repeats line {}: {:?}",
            pair[1].number,
            pair[0].number,
            pair[1].text
        );
    }
    assert_eq!(values.last(), Some(&100));
    // Lines were recorded both before the kill and after the restart: the kill cut the run.
    let before = lines.iter().filter(|l| time_of(l) < killed_at).count();
    let after = lines.iter().filter(|l| time_of(l) > restarted_at).count();
    assert!(
        before > 0 && after > 0,
        "{before} lines recorded before the kill, {after} after the restart"
    );

    no_containers_left(cluster, &containers);
}

/// What the worker finds when it comes back after kill -9: a container that finished meanwhile is
/// finalized from its exit status and logs; one that vanished fails its job with "container
/// lost"; a container with its node's label that belongs to no known job is removed.
#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_worker_finalizes_finished_containers_fails_vanished_ones_removes_orphans() {
    let _serial = SERIAL.lock().await;
    let mut containers = JobContainers::new();
    let mut cluster = docker_cluster(&mut containers).await;
    let node_id = cluster.workers[0].node_id.clone();
    let short = submit(
        &cluster,
        &mut containers,
        spec("dsleep", &[("seconds", "2")]),
    )
    .await;
    let long = submit(
        &cluster,
        &mut containers,
        spec("dsleep", &[("seconds", "300")]),
    )
    .await;
    for id in [&short, &long] {
        cluster
            .wait_job(id, Duration::from_secs(60), |job| {
                job.state == v1::JobState::Running as i32 && job.progress == 10
            })
            .await;
    }
    let short_container = docker::wait_container_of_job(&short, Duration::from_secs(10));
    let long_container = docker::wait_container_of_job(&long, Duration::from_secs(10));

    cluster.workers[0].process.kill9();
    // While the worker is down: the short job's container exits by itself, the long job's is
    // removed behind Reelay's back, and a container appears that no job of the node knows.
    time_to_stop(&short_container, Instant::now(), Duration::from_secs(60));
    assert_eq!(
        docker::inspect(&short_container, "{{.State.ExitCode}}").as_deref(),
        Some("0"),
        "the container finished while its worker was down, and is still there"
    );
    docker::docker(&["rm", "-f", &long_container]);
    let stranger = format!("{}-orphan", short);
    containers.track(&stranger);
    let orphan = docker::docker(&[
        "run",
        "-d",
        "--network",
        "none",
        "--label",
        "reelay.managed=true",
        "--label",
        &format!("reelay.node-id={node_id}"),
        "--label",
        &format!("reelay.job-id={stranger}"),
        "--label",
        "reelay.attempt=1",
        BUSYBOX_IMAGE,
        "sleep",
        "300",
    ])
    .trim()
    .to_owned();
    assert!(docker::is_running(&orphan));
    cluster.workers[0].process.restart();

    let done = cluster
        .wait_finished_within(&short, Duration::from_secs(60))
        .await;
    assert_state(&cluster, &done, v1::JobState::Succeeded);
    assert_eq!((done.exit_code, done.attempt), (Some(0), 1), "{done:#?}");
    let lines = cluster.job_logs(&short).await;
    assert_numbered(&lines);
    let texts: Vec<&str> = lines.iter().map(|line| line.text.as_str()).collect();
    assert_eq!(
        texts,
        ["sleeping 2 s", "::progress 10 sleeping", "woke up"],
        "every line once, the ones printed while the worker was down too"
    );

    let done = cluster
        .wait_finished_within(&long, Duration::from_secs(60))
        .await;
    assert_state(&cluster, &done, v1::JobState::Failed);
    assert_eq!(done.error, "container lost", "{done:#?}");

    docker::wait_none_labelled(docker::LABEL_JOB_ID, &stranger, Duration::from_secs(30))
        .unwrap_or_else(|left| panic!("the orphan container is removed: {left}"));
    let worker_log = cluster.workers[0].process.log_text();
    assert!(
        worker_log
            .lines()
            .any(|line| line.contains("removed a leftover run") && line.contains(&stranger)),
        "the worker reports the orphan it removed:\n{}",
        cluster.logs()
    );
    no_containers_left(cluster, &containers);
}

/// Waits until container `id` is gone or no longer running; how long that took.
fn time_to_stop(id: &str, started: Instant, timeout: Duration) -> Duration {
    loop {
        if !docker::is_running(id) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < timeout,
            "container {id} still runs after {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Cancel sends SIGTERM to the container: a program that stops on it is gone well within the grace
/// period; one that ignores it is killed when the grace period ends.
#[tokio::test(flavor = "multi_thread")]
async fn cancel_stops_the_container_within_the_grace_period() {
    let _serial = SERIAL.lock().await;
    let mut containers = JobContainers::new();
    let cluster = docker_cluster(&mut containers).await;
    let polite = submit(
        &cluster,
        &mut containers,
        spec("dsleep", &[("seconds", "300")]),
    )
    .await;
    let stubborn = submit(&cluster, &mut containers, spec("dstubborn", &[])).await;
    for id in [&polite, &stubborn] {
        cluster
            .wait_job(id, Duration::from_secs(60), |job| {
                job.state == v1::JobState::Running as i32 && job.progress == 10
            })
            .await;
    }
    let polite_container = docker::wait_container_of_job(&polite, Duration::from_secs(10));
    let stubborn_container = docker::wait_container_of_job(&stubborn, Duration::from_secs(10));
    assert!(docker::is_running(&polite_container) && docker::is_running(&stubborn_container));

    let mut jobs = cluster.jobs().await;
    let started = Instant::now();
    let asked = jobs
        .cancel_job(v1::CancelJobRequest { id: polite.clone() })
        .await
        .unwrap()
        .into_inner();
    assert!(asked.cancel_requested, "{asked:#?}");
    let stopped_in = time_to_stop(&polite_container, started, Duration::from_secs(60));
    let done = cluster
        .wait_finished_within(&polite, Duration::from_secs(60))
        .await;
    assert_state(&cluster, &done, v1::JobState::Cancelled);
    assert_eq!(
        done.message, "cancelled by user (stopped with SIGTERM)",
        "{done:#?}"
    );
    assert!(
        stopped_in < DSLEEP_GRACE,
        "the container stopped on SIGTERM within the grace period ({DSLEEP_GRACE:?}): {stopped_in:?}"
    );
    let printed = cluster.job_logs(&polite).await;
    assert!(
        printed.iter().any(|line| line.text == "got TERM"),
        "the program got SIGTERM: {printed:#?}"
    );

    let started = Instant::now();
    jobs.cancel_job(v1::CancelJobRequest {
        id: stubborn.clone(),
    })
    .await
    .unwrap();
    let stopped_in = time_to_stop(&stubborn_container, started, Duration::from_secs(60));
    let done = cluster
        .wait_finished_within(&stubborn, Duration::from_secs(60))
        .await;
    assert_state(&cluster, &done, v1::JobState::Cancelled);
    assert_eq!(
        done.message, "cancelled by user (killed after the grace period)",
        "{done:#?}"
    );
    assert!(
        stopped_in >= DSTUBBORN_GRACE - Duration::from_millis(200),
        "a container that ignores SIGTERM runs until the grace period ends: {stopped_in:?}"
    );

    no_containers_left(cluster, &containers);
}

/// A docker job's timeout stops its container and fails the job saying so.
#[tokio::test(flavor = "multi_thread")]
async fn timeout_stops_the_container_and_fails_the_job() {
    let _serial = SERIAL.lock().await;
    let mut containers = JobContainers::new();
    let cluster = docker_cluster(&mut containers).await;
    let mut sleeper = spec("dsleep", &[("seconds", "300")]);
    sleeper.timeout_seconds = 2;
    let id = submit(&cluster, &mut containers, sleeper).await;
    cluster
        .wait_job(&id, Duration::from_secs(60), |job| job.progress == 10)
        .await;
    let container = docker::wait_container_of_job(&id, Duration::from_secs(10));

    let done = cluster
        .wait_finished_within(&id, Duration::from_secs(60))
        .await;
    assert_state(&cluster, &done, v1::JobState::Failed);
    assert_eq!(
        done.error, "timed out after 2s (stopped with SIGTERM)",
        "{done:#?}"
    );
    let ran = time_of_ts(done.finished_at.as_ref())
        .duration_since(time_of_ts(done.started_at.as_ref()))
        .unwrap();
    assert!(
        ran >= Duration::from_secs(2) && ran < Duration::from_secs(2) + DSLEEP_GRACE,
        "stopped after its 2 s timeout, within the grace period: {ran:?}"
    );
    assert!(!docker::is_running(&container), "the container stopped");
    assert!(
        cluster
            .job_logs(&id)
            .await
            .iter()
            .any(|line| line.text == "got TERM"),
        "the program got SIGTERM"
    );

    no_containers_left(cluster, &containers);
}

fn time_of_ts(time: Option<&prost_types::Timestamp>) -> SystemTime {
    let time = time.expect("a timestamp");
    SystemTime::UNIX_EPOCH
        + Duration::new(
            u64::try_from(time.seconds).expect("a time after 1970"),
            u32::try_from(time.nanos).expect("valid nanoseconds"),
        )
}

/// `pull = "never"` and an image the engine does not have: the job fails naming the image, no
/// container is made, and the node goes on running jobs.
#[tokio::test(flavor = "multi_thread")]
async fn a_missing_image_fails_the_job() {
    let _serial = SERIAL.lock().await;
    let mut containers = JobContainers::new();
    let cluster = docker_cluster(&mut containers).await;
    let absent = std::process::Command::new("docker")
        .args(["image", "inspect", MISSING_IMAGE])
        .output()
        .unwrap();
    assert!(
        !absent.status.success(),
        "{MISSING_IMAGE} must not exist on this machine"
    );

    let id = submit(&cluster, &mut containers, spec("ghost", &[])).await;
    let done = cluster
        .wait_finished_within(&id, Duration::from_secs(60))
        .await;
    assert_state(&cluster, &done, v1::JobState::Failed);
    assert_eq!(
        done.error,
        format!("image not found: {MISSING_IMAGE}"),
        "{done:#?}"
    );
    assert_eq!(done.attempt, 1);
    assert!(
        docker::containers_of_job(&id).is_empty(),
        "no container was made"
    );
    assert!(
        std::process::Command::new("docker")
            .args(["image", "inspect", MISSING_IMAGE])
            .output()
            .is_ok_and(|output| !output.status.success()),
        "pull = never pulled nothing"
    );

    // The node is fine: the next job runs.
    let next = submit(
        &cluster,
        &mut containers,
        spec("dsleep", &[("seconds", "0")]),
    )
    .await;
    let done = cluster
        .wait_finished_within(&next, Duration::from_secs(60))
        .await;
    assert_state(&cluster, &done, v1::JobState::Succeeded);

    no_containers_left(cluster, &containers);
}

/// A job whose input file is not on the worker fails saying which file, before any container.
#[tokio::test(flavor = "multi_thread")]
async fn a_missing_input_fails_the_job() {
    let _serial = SERIAL.lock().await;
    let mut containers = JobContainers::new();
    let cluster = docker_cluster(&mut containers).await;
    let missing = cluster.path().join("in/not-there.mp4");
    assert!(!missing.exists());

    let id = submit(
        &cluster,
        &mut containers,
        with_input(spec("transcode", &[("height", "360")]), &missing),
    )
    .await;
    let done = cluster
        .wait_finished_within(&id, Duration::from_secs(60))
        .await;
    assert_state(&cluster, &done, v1::JobState::Failed);
    assert_eq!(
        done.error,
        format!("input not found: {}", missing.display()),
        "{done:#?}"
    );
    assert!(
        docker::containers_of_job(&id).is_empty(),
        "no container was made"
    );

    no_containers_left(cluster, &containers);
}

/// The container as configured: CPU and memory limits from `resources`, no network, Reelay's
/// labels, a non-root user (the process really runs as one), the input read-only.
#[tokio::test(flavor = "multi_thread")]
async fn the_container_has_limits_labels_no_network_and_a_non_root_user() {
    let _serial = SERIAL.lock().await;
    let mut containers = JobContainers::new();
    let cluster = docker_cluster(&mut containers).await;
    let input = cluster.path().join("in/input.txt");
    std::fs::create_dir_all(input.parent().unwrap()).unwrap();
    std::fs::write(&input, "some input\n").unwrap();
    docker::readable_by_all(&input);

    let id = submit(
        &cluster,
        &mut containers,
        with_input(spec("dsleep", &[("seconds", "300")]), &input),
    )
    .await;
    cluster
        .wait_job(&id, Duration::from_secs(60), |job| {
            job.state == v1::JobState::Running as i32 && job.progress == 10
        })
        .await;
    let container = docker::wait_container_of_job(&id, Duration::from_secs(10));
    let field = |template: &str| {
        docker::inspect(&container, template)
            .unwrap_or_else(|| panic!("container {container} is gone"))
    };

    assert_eq!(field("{{.HostConfig.NanoCpus}}"), "500000000", "cpus = 0.5");
    assert_eq!(
        field("{{.HostConfig.Memory}}"),
        (64 * 1024 * 1024).to_string(),
        "memory_mb = 64"
    );
    assert_eq!(
        field("{{.HostConfig.MemorySwap}}"),
        (64 * 1024 * 1024).to_string(),
        "no swap beyond the memory limit"
    );
    assert_eq!(field("{{.HostConfig.NetworkMode}}"), "none");
    let label = |name: &str| field(&format!("{{{{index .Config.Labels \"{name}\"}}}}"));
    assert_eq!(label("reelay.job-id"), id);
    assert_eq!(label("reelay.node-id"), cluster.workers[0].node_id);
    assert_eq!(label("reelay.attempt"), "1");

    let user = field("{{.Config.User}}");
    let uid = user.split(':').next().unwrap_or_default();
    assert!(
        !uid.is_empty() && uid != "0" && uid != "root",
        "the container's user is not root: {user:?}"
    );
    let pid = field("{{.State.Pid}}");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let real_uid = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().next())
        .unwrap()
        .to_owned();
    assert_ne!(
        real_uid, "0",
        "the container's process does not run as root"
    );

    let mounts = field("{{range .Mounts}}{{.Destination}}:{{.RW}} {{end}}");
    let mut mounts: Vec<&str> = mounts.split_whitespace().collect();
    mounts.sort_unstable();
    assert_eq!(
        mounts,
        ["/input/input.txt:false", "/output:true"],
        "the input read-only, the output directory writable"
    );

    cluster
        .jobs()
        .await
        .cancel_job(v1::CancelJobRequest { id: id.clone() })
        .await
        .unwrap();
    let done = cluster
        .wait_finished_within(&id, Duration::from_secs(60))
        .await;
    assert_state(&cluster, &done, v1::JobState::Cancelled);

    no_containers_left(cluster, &containers);
}
