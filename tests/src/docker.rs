//! Helpers for the system tests of the Docker executor: the `docker` CLI (containers found by
//! the labels Reelay puts on them), test videos made with ffmpeg, and `ffprobe`.
//!
//! Everything goes through the `docker`, `ffmpeg` and `ffprobe` commands, as an operator would;
//! `scripts/setup-test-env.sh` installs them, starts the engine and builds the images.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Label Reelay puts on every container: the job it runs an attempt of.
pub const LABEL_JOB_ID: &str = "reelay.job-id";
/// Label: the node that made the container.
pub const LABEL_NODE_ID: &str = "reelay.node-id";

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|err| {
            panic!("cannot run {program}: {err} (scripts/setup-test-env.sh installs it)")
        })
}

/// Runs `docker ARGS`; its stdout. Panics with its stderr when it fails.
pub fn docker(args: &[&str]) -> String {
    let output = run("docker", args);
    assert!(
        output.status.success(),
        "docker {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Panics unless the engine answers and `images` are present, saying how to get them.
pub fn require_engine(images: &[&str]) {
    let info = run("docker", &["info", "--format", "{{.ServerVersion}}"]);
    assert!(
        info.status.success(),
        "the Docker engine does not answer ({}): run scripts/setup-test-env.sh",
        String::from_utf8_lossy(&info.stderr).trim()
    );
    for image in images {
        let inspect = run(
            "docker",
            &["image", "inspect", "--format", "{{.Id}}", image],
        );
        assert!(
            inspect.status.success(),
            "image {image} is missing: run scripts/setup-test-env.sh (or deploy/pipeline/build-image.sh)"
        );
    }
}

/// Ids of the containers (running or not) with label `key=value`.
pub fn containers_labelled(key: &str, value: &str) -> Vec<String> {
    docker(&[
        "ps",
        "-a",
        "-q",
        "--no-trunc",
        "--filter",
        &format!("label={key}={value}"),
    ])
    .split_whitespace()
    .map(str::to_owned)
    .collect()
}

/// Ids of the containers (running or not) of job `job_id`.
pub fn containers_of_job(job_id: &str) -> Vec<String> {
    containers_labelled(LABEL_JOB_ID, job_id)
}

/// `docker inspect --format TEMPLATE ID`, trimmed; `None` when the container is gone.
pub fn inspect(id: &str, template: &str) -> Option<String> {
    let output = run(
        "docker",
        &["inspect", "--type", "container", "--format", template, id],
    );
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Whether container `id` exists and runs.
pub fn is_running(id: &str) -> bool {
    inspect(id, "{{.State.Running}}").as_deref() == Some("true")
}

/// The one container of job `job_id`, waiting up to `timeout` for it to exist.
pub fn wait_container_of_job(job_id: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let found = containers_of_job(job_id);
        match found.as_slice() {
            [id] => return id.clone(),
            [] if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            _ => panic!("job {job_id}: expected one container, found {found:?}"),
        }
    }
}

/// Waits up to `timeout` until no container has label `key=value`; the ones left (with their
/// state) when some are.
pub fn wait_none_labelled(key: &str, value: &str, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = containers_labelled(key, value);
        if left.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let described: Vec<String> = left
                .iter()
                .map(|id| {
                    let state = inspect(id, "{{.Name}} {{.State.Status}}").unwrap_or_default();
                    format!("{} ({state})", &id[..id.len().min(12)])
                })
                .collect();
            return Err(format!(
                "containers with label {key}={value} are left: {}",
                described.join(", ")
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The jobs a test created: at its end none may have a container left. Dropped while a test
/// panics, it removes what is left so that a failure does not leave containers running.
#[derive(Debug, Default)]
pub struct JobContainers {
    jobs: Vec<String>,
    node_ids: Vec<String>,
}

impl JobContainers {
    pub fn new() -> Self {
        Self::default()
    }

    /// Watches the containers of job `id` too.
    pub fn track(&mut self, id: &str) {
        self.jobs.push(id.to_owned());
    }

    /// Watches every container labelled with node `id` too.
    pub fn track_node(&mut self, id: &str) {
        self.node_ids.push(id.to_owned());
    }

    /// Panics unless, within `timeout`, no container of a tracked job or node is left.
    pub fn assert_none_left(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let labels = self
            .jobs
            .iter()
            .map(|id| (LABEL_JOB_ID, id))
            .chain(self.node_ids.iter().map(|id| (LABEL_NODE_ID, id)));
        let problems: Vec<String> = labels
            .filter_map(|(key, value)| {
                let left = deadline.saturating_duration_since(Instant::now());
                wait_none_labelled(key, value, left).err()
            })
            .collect();
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    fn remove_all(&self) {
        let labels = self
            .jobs
            .iter()
            .map(|id| (LABEL_JOB_ID, id))
            .chain(self.node_ids.iter().map(|id| (LABEL_NODE_ID, id)));
        for (key, value) in labels {
            for id in containers_labelled(key, value) {
                let _ = run("docker", &["rm", "-f", &id]);
            }
        }
    }
}

impl Drop for JobContainers {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.remove_all();
        }
    }
}

/// Makes a `seconds`-long `size` (`WxH`) testsrc video at `path` with scripts/make-test-video.sh,
/// readable by everyone (the pipeline runs as uid 1000), its directory too.
pub fn make_test_video(path: &Path, seconds: u32, size: &str) -> PathBuf {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/make-test-video.sh");
    let output = run(
        "sh",
        &[
            &script.display().to_string(),
            &path.display().to_string(),
            &seconds.to_string(),
            size,
        ],
    );
    assert!(
        output.status.success(),
        "make-test-video.sh failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    readable_by_all(path);
    path.to_owned()
}

/// Mode 0644 for `file`, 0755 for each directory above it up to the temp dir's parent.
pub fn readable_by_all(file: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o644)).expect("chmod file");
    let tmp = std::env::temp_dir();
    for dir in file.ancestors().skip(1) {
        if dir == tmp || dir.parent().is_none() || !dir.starts_with(&tmp) {
            break;
        }
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod dir");
    }
}

/// What `ffprobe` says of a video file's first video stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    pub codec: String,
    pub width: u32,
    pub height: u32,
    /// The container's duration in seconds.
    pub duration: f64,
}

/// `ffprobe` of `path`.
pub fn ffprobe(path: &Path) -> Probe {
    let output = run(
        "ffprobe",
        &[
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=codec_name,width,height:format=duration",
            "-of",
            "default=noprint_wrappers=1",
            &path.display().to_string(),
        ],
    );
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "ffprobe {} failed: {}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("ffprobe printed no {name}: {text}"))
            .to_owned()
    };
    Probe {
        codec: field("codec_name"),
        width: field("width").parse().expect("width"),
        height: field("height").parse().expect("height"),
        duration: field("duration").parse().expect("duration"),
    }
}
