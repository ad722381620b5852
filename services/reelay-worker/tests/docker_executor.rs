//! The Docker executor against a real Docker engine (`scripts/setup-test-env.sh` starts one and
//! builds `reelay/busybox:latest`). Each test labels its containers with its own node id and
//! removes them when it ends, failed or not.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard::Docker;
use reelay_core::pipeline::Pipelines;
use reelay_worker::executor::docker::DockerExecutor;
use reelay_worker::executor::{
    ExecError, ExecEvent, Executor, ResumePoint, RunExit, RunSpec, Stream,
};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const IMAGE: &str = "reelay/busybox:latest";

// === harness ===

/// One test's node: its own node id, its containers removed on drop.
struct TestNode {
    node_id: String,
    dir: tempfile::TempDir,
}

impl TestNode {
    fn new() -> Self {
        TestNode {
            node_id: format!("test-{}", uuid::Uuid::now_v7().simple()),
            dir: tempfile::tempdir().expect("a temp dir"),
        }
    }

    /// A run spec for `command` (a TOML array) with `extra` TOML lines in the pipeline.
    fn spec(&self, command: &str, extra: &str) -> RunSpec {
        let config = format!(
            "[[pipeline]]\nname = \"t\"\nimage = \"{IMAGE}\"\npull = \"never\"\n\
             command = {command}\ninput_required = false\n{extra}\n"
        );
        let pipelines = Pipelines::parse(&config, "test").expect("a valid pipeline");
        let job_id = uuid::Uuid::now_v7().simple().to_string();
        let output_dir = self.dir.path().join(&job_id);
        std::fs::create_dir_all(&output_dir).expect("an output dir");
        RunSpec {
            job_id,
            attempt: 1,
            node_id: self.node_id.clone(),
            pipeline: pipelines.get("t").expect("pipeline t").clone(),
            params: [("height".to_owned(), "360".to_owned())].into(),
            input_path: None,
            input_dir: None,
            output_dir,
            grace: Duration::from_secs(1),
        }
    }

    fn container_ids(&self) -> Vec<String> {
        let output = Command::new("docker")
            .args(["ps", "-aq", "--filter"])
            .arg(format!("label=reelay.node-id={}", self.node_id))
            .output()
            .expect("the docker command");
        String::from_utf8_lossy(&output.stdout)
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        let ids = self.container_ids();
        if !ids.is_empty() {
            let _ = Command::new("docker")
                .args(["rm", "-f"])
                .args(&ids)
                .output();
        }
    }
}

/// The executor, or a clear failure when there is no engine.
async fn executor() -> DockerExecutor {
    let executor = DockerExecutor::connect()
        .await
        .expect("a docker client (is DOCKER_HOST valid?)");
    if let Err(reason) = executor.check_ready().await {
        panic!("docker engine not reachable: run scripts/setup-test-env.sh ({reason})");
    }
    executor
}

async fn docker() -> Docker {
    Docker::connect_with_local_defaults()
        .expect("a docker client")
        .negotiate_version()
        .await
        .expect("docker engine not reachable: run scripts/setup-test-env.sh")
}

/// Runs `spec` to its end; returns the result and every event.
async fn run(
    executor: &DockerExecutor,
    spec: &RunSpec,
) -> (Result<RunExit, ExecError>, Vec<ExecEvent>) {
    let (tx, rx) = mpsc::channel(64);
    let (result, events) = tokio::join!(
        executor.run(spec, tx, CancellationToken::new()),
        collect(rx)
    );
    (result, events)
}

async fn collect(mut rx: mpsc::Receiver<ExecEvent>) -> Vec<ExecEvent> {
    let mut events = Vec::new();
    while let Some(event) = rx.recv().await {
        events.push(event);
    }
    events
}

fn run_ref(events: &[ExecEvent]) -> String {
    match events.first() {
        Some(ExecEvent::Started { run_ref }) => run_ref.clone(),
        other => panic!("the first event must be Started, got {other:?}"),
    }
}

/// The lines of `stream`, in order.
fn texts(events: &[ExecEvent], wanted: Stream) -> Vec<String> {
    events
        .iter()
        .filter_map(|event| match event {
            ExecEvent::Line { stream, text, .. } if *stream == wanted => Some(text.clone()),
            _ => None,
        })
        .collect()
}

fn times(events: &[ExecEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|event| match event {
            ExecEvent::Line { time, .. } => Some(time.clone().expect("every line has a time")),
            _ => None,
        })
        .collect()
}

fn exited(code: i32) -> RunExit {
    RunExit {
        code: Some(code),
        signal: None,
        stopped: false,
    }
}

// === running ===

#[tokio::test]
async fn lines_env_input_output_and_exit_code() {
    let executor = executor().await;
    let node = TestNode::new();
    let mut spec = node.spec(
        r#"["sh", "-c", "echo height=$REELAY_PARAM_HEIGHT out=$REELAY_OUTPUT_DIR in=$REELAY_INPUT; cat \"$REELAY_INPUT\"; echo oops >&2; printf 'a\rb\r\nc\n'; echo done > \"$REELAY_OUTPUT_DIR/result.txt\"; pwd; printf 'no newline'"]"#,
        "",
    );
    let input = node.dir.path().join("clip one.txt");
    std::fs::write(&input, "input text\n").expect("an input file");
    spec.input_path = Some(input);

    let (result, events) = run(&executor, &spec).await;
    assert_eq!(result, Ok(exited(0)), "{events:#?}");
    run_ref(&events);
    assert_eq!(
        texts(&events, Stream::Stdout),
        [
            "height=360 out=/output in=/input/clip one.txt",
            "input text",
            "a",
            "b",
            "c",
            "/output",
            "no newline"
        ]
    );
    assert_eq!(texts(&events, Stream::Stderr), ["oops"]);
    let output = std::fs::read_to_string(spec.output_dir.join("result.txt"));
    assert_eq!(output.expect("the output file"), "done\n");
    let times = times(&events);
    assert!(
        times
            .iter()
            .all(|time| time.len() == 30 && time.ends_with('Z')),
        "RFC 3339 with nanoseconds: {times:?}"
    );
}

#[tokio::test]
async fn progress_lines_arrive_in_order_with_increasing_times() {
    let executor = executor().await;
    let node = TestNode::new();
    let spec = node.spec(
        r#"["sh", "-c", "i=1; while [ $i -le 100 ]; do echo \"::progress $i encoding\"; i=$((i+1)); done"]"#,
        "",
    );
    let (result, events) = run(&executor, &spec).await;
    assert_eq!(result, Ok(exited(0)));
    let expected: Vec<String> = (1..=100)
        .map(|i| format!("::progress {i} encoding"))
        .collect();
    assert_eq!(texts(&events, Stream::Stdout), expected);
    let times = times(&events);
    assert!(
        times.windows(2).all(|pair| pair[0] < pair[1]),
        "times must increase: {times:?}"
    );
}

#[tokio::test]
async fn a_non_zero_exit_is_reported() {
    let executor = executor().await;
    let node = TestNode::new();
    let spec = node.spec(r#"["sh", "-c", "echo failing >&2; exit 7"]"#, "");
    let (result, events) = run(&executor, &spec).await;
    assert_eq!(result, Ok(exited(7)));
    assert_eq!(texts(&events, Stream::Stderr), ["failing"]);
}

#[tokio::test]
async fn a_missing_image_under_pull_never_fails_with_its_name() {
    let executor = executor().await;
    let node = TestNode::new();
    let spec = node.spec(
        r#"["true"]"#,
        "", // pull = "never" from the harness
    );
    let mut spec = spec;
    spec.pipeline.image = Some("reelay/no-such-image:latest".to_owned());
    let (result, events) = run(&executor, &spec).await;
    assert_eq!(
        result,
        Err(ExecError::Start(
            "image not found: reelay/no-such-image:latest".to_owned()
        ))
    );
    assert!(events.is_empty(), "{events:?}");
}

#[tokio::test]
async fn a_failed_pull_is_a_clear_start_error() {
    let executor = executor().await;
    let node = TestNode::new();
    let mut spec = node.spec(r#"["true"]"#, "");
    // A registry that refuses connections: the pull fails at once, with no network needed.
    spec.pipeline.image = Some("localhost:1/reelay/nope:latest".to_owned());
    spec.pipeline.pull = reelay_core::pipeline::PullPolicy::IfMissing;
    let (result, _) = run(&executor, &spec).await;
    match result {
        Err(ExecError::Start(message)) => assert!(
            message.starts_with(
                "image not found: localhost:1/reelay/nope:latest (pulling it failed: "
            ),
            "{message}"
        ),
        other => panic!("expected a start error, got {other:?}"),
    }
    spec.pipeline.pull = reelay_core::pipeline::PullPolicy::Always;
    let (result, _) = run(&executor, &spec).await;
    assert!(
        matches!(&result, Err(ExecError::Start(message)) if message.starts_with("cannot pull image localhost:1/reelay/nope:latest: ")),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_pipeline_without_an_image_cannot_start() {
    let executor = executor().await;
    let node = TestNode::new();
    let mut spec = node.spec(r#"["true"]"#, "");
    spec.pipeline.image = None;
    let (result, _) = run(&executor, &spec).await;
    assert_eq!(
        result,
        Err(ExecError::Start("pipeline t has no image".to_owned()))
    );
}

#[tokio::test]
async fn a_missing_program_exits_127_and_says_why() {
    let executor = executor().await;
    let node = TestNode::new();
    let spec = node.spec(r#"["/no/such/program"]"#, "");
    let (result, events) = run(&executor, &spec).await;
    // The init process (docker-init) starts the program, so the engine cannot refuse the start:
    // the container exits 127 like a shell would, with the reason on stderr.
    assert_eq!(result, Ok(exited(127)));
    let stderr = texts(&events, Stream::Stderr);
    assert!(
        stderr.iter().any(|line| line.contains("/no/such/program")),
        "{stderr:?}"
    );
}

#[tokio::test]
async fn the_container_has_limits_no_network_labels_and_a_non_root_user() {
    let executor = executor().await;
    let node = TestNode::new();
    let spec = node.spec(
        r#"["sh", "-c", "id -u; id -g; touch /output/written"]"#,
        "resources = { cpus = 0.5, memory_mb = 64 }",
    );
    let (result, events) = run(&executor, &spec).await;
    assert_eq!(result, Ok(exited(0)), "{events:#?}");
    assert_eq!(texts(&events, Stream::Stdout), ["1000", "1000"]);
    assert!(spec.output_dir.join("written").exists());
    let id = run_ref(&events);

    let inspect = docker()
        .await
        .inspect_container(&id, None)
        .await
        .expect("the container is kept until cleanup");
    let host = inspect.host_config.expect("a host config");
    assert_eq!(host.nano_cpus, Some(500_000_000));
    assert_eq!(host.memory, Some(64 * 1024 * 1024));
    assert_eq!(host.memory_swap, Some(64 * 1024 * 1024));
    assert_eq!(host.network_mode.as_deref(), Some("none"));
    assert_eq!(host.init, Some(true));
    assert_eq!(host.auto_remove, Some(false));
    let config = inspect.config.expect("a config");
    assert_eq!(config.user.as_deref(), Some("1000:1000"));
    let labels = config.labels.expect("labels");
    assert_eq!(labels["reelay.job-id"], spec.job_id);
    assert_eq!(labels["reelay.node-id"], node.node_id);
    assert_eq!(labels["reelay.attempt"], "1");
    assert_eq!(labels["reelay.managed"], "true");
    assert_eq!(
        inspect.name.as_deref(),
        Some(format!("/reelay-{}-1", spec.job_id).as_str())
    );

    executor.cleanup(&id).await;
    assert!(node.container_ids().is_empty(), "cleanup removes it");
    executor.cleanup(&id).await; // already gone: fine
}

#[tokio::test]
async fn the_pipeline_user_wins_and_owns_the_output_dir() {
    let executor = executor().await;
    let node = TestNode::new();
    let spec = node.spec(
        r#"["sh", "-c", "id -u; touch /output/written"]"#,
        r#"user = "4321:4321""#,
    );
    let (result, events) = run(&executor, &spec).await;
    assert_eq!(result, Ok(exited(0)), "{events:#?}");
    assert_eq!(texts(&events, Stream::Stdout), ["4321"]);
    use std::os::unix::fs::MetadataExt;
    let owner = std::fs::metadata(&spec.output_dir)
        .expect("the output dir")
        .uid();
    let writable_by_all = std::fs::metadata(&spec.output_dir)
        .expect("the output dir")
        .mode()
        & 0o777
        == 0o777;
    assert!(owner == 4321 || writable_by_all, "owner {owner}");
    assert!(spec.output_dir.join("written").exists());
}

// === stopping ===

/// Runs `spec` in a task; cancels `stop` once the line `ready` arrived.
async fn run_and_stop_when_ready(
    executor: DockerExecutor,
    spec: RunSpec,
) -> (Result<RunExit, ExecError>, Vec<ExecEvent>, Duration) {
    let (tx, mut rx) = mpsc::channel(64);
    let stop = CancellationToken::new();
    let running = {
        let stop = stop.clone();
        tokio::spawn(async move { executor.run(&spec, tx, stop).await })
    };
    let mut events = Vec::new();
    while let Some(event) = rx.recv().await {
        let ready = matches!(&event, ExecEvent::Line { text, .. } if text == "ready");
        events.push(event);
        if ready {
            break;
        }
    }
    let stopped_at = Instant::now();
    stop.cancel();
    events.extend(collect(rx).await);
    let result = running.await.expect("the run task");
    (result, events, stopped_at.elapsed())
}

#[tokio::test]
async fn stop_ends_a_program_with_sigterm() {
    let executor = executor().await;
    let node = TestNode::new();
    let spec = node.spec(r#"["sh", "-c", "echo ready; exec sleep 30"]"#, "");
    let (result, _, took) = run_and_stop_when_ready(executor, spec).await;
    assert_eq!(
        result,
        Ok(RunExit {
            code: None,
            signal: Some(15),
            stopped: true
        })
    );
    assert!(took < Duration::from_secs(1), "took {took:?}");
}

#[tokio::test]
async fn stop_lets_a_program_finish_its_term_handler() {
    let executor = executor().await;
    let node = TestNode::new();
    let spec = node.spec(
        r#"["sh", "-c", "trap 'echo cleaning up; exit 0' TERM; echo ready; while true; do sleep 0.1; done"]"#,
        "",
    );
    let (result, events, _) = run_and_stop_when_ready(executor, spec).await;
    assert_eq!(
        result,
        Ok(RunExit {
            code: Some(0),
            signal: None,
            stopped: true
        })
    );
    assert_eq!(texts(&events, Stream::Stdout), ["ready", "cleaning up"]);
}

#[tokio::test]
async fn stop_kills_a_program_that_ignores_sigterm_after_the_grace_period() {
    let executor = executor().await;
    let node = TestNode::new();
    let spec = node.spec(
        r#"["sh", "-c", "trap '' TERM; echo ready; while true; do sleep 0.1; done"]"#,
        "",
    );
    let grace = spec.grace;
    let (result, _, took) = run_and_stop_when_ready(executor, spec).await;
    assert_eq!(
        result,
        Ok(RunExit {
            code: None,
            signal: Some(9),
            stopped: true
        })
    );
    assert!(took >= grace, "killed before the grace period: {took:?}");
    assert!(took < grace + Duration::from_secs(2), "took {took:?}");
}

// === re-attaching ===

/// The resume point after `events` were recorded.
fn resume_after(events: &[ExecEvent]) -> ResumePoint {
    let times = times(events);
    ResumePoint {
        log_lines: times.len() as u64,
        last_log_time: times.last().cloned().unwrap_or_default(),
    }
}

#[tokio::test]
async fn reattach_after_the_worker_died_loses_and_repeats_no_line() {
    let node = TestNode::new();
    let spec = node.spec(
        r#"["sh", "-c", "i=1; while [ $i -le 40 ]; do echo \"line $i\"; echo \"err $i\" >&2; i=$((i+1)); sleep 0.05; done; exit 5"]"#,
        "",
    );

    // A worker runs it and dies (its task is aborted) after some lines.
    let (tx, mut rx) = mpsc::channel(4);
    let first = executor().await;
    let running = {
        let spec = spec.clone();
        tokio::spawn(async move { first.run(&spec, tx, CancellationToken::new()).await })
    };
    let mut recorded = Vec::new();
    while let Some(event) = rx.recv().await {
        recorded.push(event);
        if recorded.len() > 20 {
            break;
        }
    }
    running.abort();
    let _ = running.await;
    drop(rx); // what was sent but not recorded dies with the worker
    let id = run_ref(&recorded);
    tokio::time::sleep(Duration::from_millis(500)).await;

    // A new worker re-attaches from what it recorded.
    let second = executor().await;
    let resume = resume_after(&recorded);
    let (tx, rx) = mpsc::channel(64);
    let (result, rest) = tokio::join!(
        second.reattach(&spec, &id, &resume, tx, CancellationToken::new()),
        collect(rx)
    );
    assert_eq!(result, Ok(exited(5)));
    let all: Vec<ExecEvent> = recorded.into_iter().chain(rest).collect();
    let expected_out: Vec<String> = (1..=40).map(|i| format!("line {i}")).collect();
    let expected_err: Vec<String> = (1..=40).map(|i| format!("err {i}")).collect();
    assert_eq!(texts(&all, Stream::Stdout), expected_out);
    assert_eq!(texts(&all, Stream::Stderr), expected_err);
}

#[tokio::test]
async fn reattach_to_a_container_that_exited_meanwhile() {
    let executor = executor().await;
    let node = TestNode::new();
    let spec = node.spec(
        r#"["sh", "-c", "echo a; printf 'b\rc\n'; echo d >&2; printf e; exit 4"]"#,
        "",
    );
    let (result, events) = run(&executor, &spec).await;
    assert_eq!(result, Ok(exited(4)));
    let id = run_ref(&events);
    let lines: Vec<ExecEvent> = events[1..].to_vec();
    assert_eq!(lines.len(), 5, "{lines:#?}");

    // From every point a worker may have recorded up to, the rest arrives exactly once.
    for recorded in 0..=lines.len() {
        let resume = resume_after(&lines[..recorded]);
        let (tx, rx) = mpsc::channel(64);
        let (result, rest) = tokio::join!(
            executor.reattach(&spec, &id, &resume, tx, CancellationToken::new()),
            collect(rx)
        );
        assert_eq!(result, Ok(exited(4)), "after {recorded} lines");
        assert_eq!(rest, lines[recorded..], "after {recorded} lines");
    }

    // A resume time that is no line's (logs rotated away): the lines later than it arrive.
    let ExecEvent::Line {
        time: Some(first), ..
    } = &lines[0]
    else {
        panic!("a line with a time: {lines:?}");
    };
    let nanos: u32 = first[20..29].parse().expect("nine digits");
    let resume = ResumePoint {
        log_lines: 1,
        last_log_time: format!("{}{:09}Z", &first[..20], nanos.saturating_add(1)),
    };
    assert!(resume.last_log_time.as_str() > first.as_str());
    let (tx, rx) = mpsc::channel(64);
    let (result, rest) = tokio::join!(
        executor.reattach(&spec, &id, &resume, tx, CancellationToken::new()),
        collect(rx)
    );
    assert_eq!(result, Ok(exited(4)));
    let later: Vec<ExecEvent> = lines
        .iter()
        .filter(|line| matches!(line, ExecEvent::Line { time: Some(time), .. } if *time > resume.last_log_time))
        .cloned()
        .collect();
    assert_eq!(rest, later);
}

#[tokio::test]
async fn reattach_finds_the_container_by_its_labels() {
    let executor = executor().await;
    let node = TestNode::new();
    let spec = node.spec(r#"["sh", "-c", "echo only; exit 2"]"#, "");
    let (result, events) = run(&executor, &spec).await;
    assert_eq!(result, Ok(exited(2)));
    let id = run_ref(&events);

    let (tx, rx) = mpsc::channel(64);
    let from_start = ResumePoint::default();
    let (result, again) = tokio::join!(
        executor.reattach(&spec, "", &from_start, tx, CancellationToken::new()),
        collect(rx)
    );
    assert_eq!(result, Ok(exited(2)));
    assert_eq!(run_ref(&again), id, "the found container is reported");
    assert_eq!(texts(&again, Stream::Stdout), ["only"]);
}

#[tokio::test]
async fn reattach_to_an_attempt_whose_container_was_never_made_runs_it() {
    // The worker recorded the attempt as running, then died before it made the container: no
    // run_ref, no container with its labels. The attempt runs now; it is not lost.
    let executor = executor().await;
    let node = TestNode::new();
    let spec = node.spec(
        r#"["sh", "-c", "echo ran > /output/ran.txt; echo started"]"#,
        "",
    );
    assert!(node.container_ids().is_empty());
    let (tx, rx) = mpsc::channel(64);
    let from_start = ResumePoint::default();
    let (result, events) = tokio::join!(
        executor.reattach(&spec, "", &from_start, tx, CancellationToken::new()),
        collect(rx)
    );
    assert_eq!(result, Ok(exited(0)));
    let id = run_ref(&events);
    assert!(!id.is_empty(), "the container made is reported");
    assert_eq!(texts(&events, Stream::Stdout), ["started"]);
    assert_eq!(
        std::fs::read_to_string(spec.output_dir.join("ran.txt")).expect("ran.txt"),
        "ran\n"
    );
    executor.cleanup(&id).await;
}

#[tokio::test]
async fn reattach_to_a_removed_container_is_lost() {
    let executor = executor().await;
    let node = TestNode::new();
    let spec = node.spec(r#"["true"]"#, "");
    let (result, events) = run(&executor, &spec).await;
    assert_eq!(result, Ok(exited(0)));
    let id = run_ref(&events);
    executor.cleanup(&id).await;

    let (tx, _rx) = mpsc::channel(64);
    let result = executor
        .reattach(
            &spec,
            &id,
            &ResumePoint::default(),
            tx,
            CancellationToken::new(),
        )
        .await;
    assert_eq!(result, Err(ExecError::Lost("container lost".to_owned())));
}

#[tokio::test]
async fn reattach_with_stop_cancelled_stops_a_running_container() {
    let executor = executor().await;
    let node = TestNode::new();
    let spec = node.spec(r#"["sh", "-c", "echo ready; exec sleep 30"]"#, "");
    let (tx, mut rx) = mpsc::channel(64);
    let first = DockerExecutor::connect().await.expect("a docker client");
    let running = {
        let spec = spec.clone();
        tokio::spawn(async move { first.run(&spec, tx, CancellationToken::new()).await })
    };
    let mut recorded = Vec::new();
    while let Some(event) = rx.recv().await {
        let ready = matches!(&event, ExecEvent::Line { text, .. } if text == "ready");
        recorded.push(event);
        if ready {
            break;
        }
    }
    running.abort();
    let id = run_ref(&recorded);

    // The job was cancelled while no worker followed it.
    let stop = CancellationToken::new();
    stop.cancel();
    let (tx, rx) = mpsc::channel(64);
    let resume = resume_after(&recorded);
    let (result, rest) = tokio::join!(
        executor.reattach(&spec, &id, &resume, tx, stop),
        collect(rx)
    );
    assert_eq!(
        result,
        Ok(RunExit {
            code: None,
            signal: Some(15),
            stopped: true
        })
    );
    assert!(rest.is_empty(), "{rest:?}");
}

// === the engine going away ===

/// A forwarding proxy in front of the real engine's socket: cutting it is, for the executor
/// behind it, the engine going away (its connections drop, its socket disappears), without
/// disturbing the engine that other tests use.
struct EngineProxy {
    path: PathBuf,
    serving: Option<tokio::task::JoinHandle<()>>,
}

impl EngineProxy {
    fn new(path: PathBuf) -> Self {
        EngineProxy {
            path,
            serving: None,
        }
    }

    fn restore(&mut self) {
        let listener = UnixListener::bind(&self.path).expect("a proxy socket");
        self.serving = Some(tokio::spawn(forward(listener)));
    }

    async fn cut(&mut self) {
        if let Some(serving) = self.serving.take() {
            serving.abort();
            let _ = serving.await;
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Forwards each connection to the engine; dropping the task drops every connection.
async fn forward(listener: UnixListener) {
    let engine = std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|host| host.strip_prefix("unix://").map(str::to_owned))
        .unwrap_or_else(|| "/var/run/docker.sock".to_owned());
    let mut connections = tokio::task::JoinSet::new();
    while let Ok((mut inbound, _)) = listener.accept().await {
        let engine = engine.clone();
        connections.spawn(async move {
            if let Ok(mut outbound) = UnixStream::connect(&engine).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}

/// Receives until `count` lines arrived (or the channel closed).
async fn receive_lines(rx: &mut mpsc::Receiver<ExecEvent>, count: usize) -> Vec<ExecEvent> {
    let mut events = Vec::new();
    while let Some(event) = rx.recv().await {
        events.push(event);
        if times(&events).len() >= count {
            break;
        }
    }
    events
}

#[tokio::test]
async fn a_run_outlives_the_engine_going_away_and_coming_back() {
    executor().await; // the real engine answers
    let node = TestNode::new();
    let mut proxy = EngineProxy::new(node.dir.path().join("engine.sock"));
    proxy.restore();
    let socket = proxy.path.to_string_lossy().into_owned();
    let executor = Arc::new(
        DockerExecutor::with_socket(&socket)
            .await
            .expect("a client"),
    );
    assert_eq!(executor.check_ready().await, Ok(()));
    let spec = node.spec(
        r#"["sh", "-c", "i=1; while [ $i -le 60 ]; do echo \"line $i\"; i=$((i+1)); sleep 0.05; done; exit 3"]"#,
        "",
    );
    let (tx, mut rx) = mpsc::channel(64);
    let running = tokio::spawn({
        let (executor, spec) = (executor.clone(), spec.clone());
        async move { executor.run(&spec, tx, CancellationToken::new()).await }
    });
    let mut events = receive_lines(&mut rx, 5).await;

    proxy.cut().await;
    let down = executor.check_ready().await;
    assert!(
        down.as_ref()
            .is_err_and(|reason| reason.starts_with("docker engine does not answer: ")),
        "{down:?}"
    );
    // The container goes on meanwhile (and still runs when the engine is back).
    tokio::time::sleep(Duration::from_millis(1000)).await;
    proxy.restore();

    events.extend(collect(rx).await);
    let result = running.await.expect("the run task");
    assert_eq!(result, Ok(exited(3)));
    let expected: Vec<String> = (1..=60).map(|i| format!("line {i}")).collect();
    assert_eq!(texts(&events, Stream::Stdout), expected);
}

#[tokio::test]
async fn a_container_removed_while_the_engine_was_away_is_lost() {
    executor().await;
    let node = TestNode::new();
    let mut proxy = EngineProxy::new(node.dir.path().join("engine.sock"));
    proxy.restore();
    let socket = proxy.path.to_string_lossy().into_owned();
    let executor = Arc::new(
        DockerExecutor::with_socket(&socket)
            .await
            .expect("a client"),
    );
    let spec = node.spec(r#"["sh", "-c", "echo ready; exec sleep 30"]"#, "");
    let (tx, mut rx) = mpsc::channel(64);
    let running = tokio::spawn({
        let (executor, spec) = (executor.clone(), spec.clone());
        async move { executor.run(&spec, tx, CancellationToken::new()).await }
    });
    let events = receive_lines(&mut rx, 1).await;
    let id = run_ref(&events);

    proxy.cut().await;
    let removed = Command::new("docker").args(["rm", "-f", &id]).output();
    assert!(removed.is_ok_and(|output| output.status.success()));
    proxy.restore();

    let result = running.await.expect("the run task");
    assert_eq!(result, Err(ExecError::Lost("container lost".to_owned())));
}

#[tokio::test]
async fn an_executor_made_while_the_engine_is_down_works_once_it_answers() {
    executor().await;
    let node = TestNode::new();
    let mut proxy = EngineProxy::new(node.dir.path().join("engine.sock"));
    let socket = proxy.path.to_string_lossy().into_owned();
    let executor = DockerExecutor::with_socket(&socket)
        .await
        .expect("no error while the engine is down");
    let down = executor.check_ready().await;
    assert!(
        down.as_ref()
            .is_err_and(|reason| reason.starts_with("docker engine does not answer: ")),
        "{down:?}"
    );
    let spec = node.spec(r#"["echo", "hi"]"#, "");
    let (result, _) = run(&executor, &spec).await;
    assert!(
        matches!(&result, Err(ExecError::Unavailable(reason)) if reason.starts_with("docker engine does not answer: ")),
        "{result:?}"
    );

    proxy.restore();
    assert_eq!(executor.check_ready().await, Ok(()));
    let (result, events) = run(&executor, &spec).await;
    assert_eq!(result, Ok(exited(0)));
    assert_eq!(texts(&events, Stream::Stdout), ["hi"]);
    proxy.cut().await;
}

// === orphans ===

#[tokio::test]
async fn remove_orphans_removes_unknown_containers_and_keeps_known_ones() {
    let executor = executor().await;
    let node = TestNode::new();
    let known = node.spec(r#"["true"]"#, "");
    let orphan = node.spec(r#"["true"]"#, "");
    let (_, known_events) = run(&executor, &known).await;
    let (_, orphan_events) = run(&executor, &orphan).await;
    let known_id = run_ref(&known_events);
    let orphan_id = run_ref(&orphan_events);

    // Another node's containers are none of this node's business.
    let other_node = TestNode::new();
    let other = other_node.spec(r#"["true"]"#, "");
    let (_, other_events) = run(&executor, &other).await;

    let removed = executor
        .remove_orphans(&node.node_id, &[(known.job_id.clone(), 1)])
        .await;
    assert_eq!(removed.len(), 1, "{removed:?}");
    assert!(removed[0].contains(&orphan.job_id), "{removed:?}");
    let left = node.container_ids();
    assert_eq!(left.len(), 1);
    assert!(known_id.starts_with(&left[0]));
    assert!(!orphan_id.starts_with(&left[0]));
    assert!(run_ref(&other_events).starts_with(&other_node.container_ids()[0]));
}

#[tokio::test]
async fn running_the_same_attempt_again_replaces_its_container() {
    let executor = executor().await;
    let node = TestNode::new();
    let spec = node.spec(r#"["sh", "-c", "echo try"]"#, "");
    let (first, first_events) = run(&executor, &spec).await;
    let (second, second_events) = run(&executor, &spec).await;
    assert_eq!(first, Ok(exited(0)));
    assert_eq!(second, Ok(exited(0)));
    assert_ne!(run_ref(&first_events), run_ref(&second_events));
    assert_eq!(texts(&second_events, Stream::Stdout), ["try"]);
    assert_eq!(node.container_ids().len(), 1);
}

// === measurements (cargo test -p reelay-worker --test docker_executor -- --ignored --nocapture) ===

#[tokio::test]
#[ignore = "a measurement, not a check"]
async fn measure_start_latency() {
    let executor = executor().await;
    let node = TestNode::new();
    let mut to_first_line = Vec::new();
    let mut started_to_first_line = Vec::new();
    let mut whole_run = Vec::new();
    for _ in 0..15 {
        let spec = node.spec(r#"["echo", "hello"]"#, "");
        let (tx, mut rx) = mpsc::channel(64);
        let consume = async {
            let (mut started, mut first_line) = (None, None);
            while let Some(event) = rx.recv().await {
                match event {
                    ExecEvent::Started { .. } => started = Some(Instant::now()),
                    ExecEvent::Line { .. } => first_line = first_line.or(Some(Instant::now())),
                }
            }
            (started, first_line)
        };
        let begin = Instant::now();
        let (result, (started, first_line)) =
            tokio::join!(executor.run(&spec, tx, CancellationToken::new()), consume);
        whole_run.push(begin.elapsed());
        assert_eq!(result, Ok(exited(0)));
        let (started, first_line) = (started.expect("started"), first_line.expect("a line"));
        to_first_line.push(first_line - begin);
        started_to_first_line.push(first_line - started);
        executor
            .cleanup(&format!("reelay-{}-{}", spec.job_id, spec.attempt))
            .await;
    }
    fn median(mut values: Vec<Duration>) -> Duration {
        values.sort();
        values[values.len() / 2]
    }
    println!(
        "median of {} runs: run() called -> first line {:?}; Started -> first line {:?}; whole run {:?}",
        whole_run.len(),
        median(to_first_line),
        median(started_to_first_line),
        median(whole_run)
    );
}
