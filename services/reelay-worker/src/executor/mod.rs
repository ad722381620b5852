//! Executors run one attempt of a pipeline: a local process group or a Docker container.
//!
//! The worker's [`crate::runner`] owns everything about an attempt that does not depend on how it
//! runs (log numbering, `::progress` parsing, timeouts, outputs, the event log). An executor only
//! starts the program, streams its output lines, stops it when asked and reports how it ended.
//!
//! # Contract
//! - [`Executor::run`] starts the program and reports [`ExecEvent::Started`] with a `run_ref`
//!   (process group id, container id) *before* any line, so the worker can store it.
//! - Every stdout/stderr line is one [`ExecEvent::Line`], in the order the program wrote it per stream.
//! - When `stop` is cancelled: SIGTERM, `grace`, then SIGKILL; the run still returns a [`RunExit`].
//! - [`Executor::reattach`] resumes a run started before the worker restarted, skipping the lines
//!   already recorded ([`ResumePoint`]); it returns [`ExecError::Lost`] when the run is gone.

pub mod docker;
pub mod process;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use reelay_core::pipeline::Pipeline;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Which output stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// What an executor reports while a run goes on.
#[derive(Debug, Clone, PartialEq)]
pub enum ExecEvent {
    /// The run exists; `run_ref` finds it again after a restart.
    Started { run_ref: String },
    /// One line of output, without its line break. `time` is the executor's own timestamp when it
    /// has one (Docker: RFC 3339 with nanoseconds), used to resume logs after a restart.
    Line {
        stream: Stream,
        text: String,
        time: Option<String>,
    },
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunExit {
    /// Exit code, when the program exited by itself.
    pub code: Option<i32>,
    /// Signal that ended it, when it was killed (15 after a graceful stop, 9 after the grace period).
    pub signal: Option<i32>,
    /// Ended because `stop` was cancelled.
    pub stopped: bool,
}

/// Where to resume a run's logs after a worker restart.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResumePoint {
    /// Lines already recorded for this attempt.
    pub log_lines: u64,
    /// Executor timestamp of the last recorded line (empty when none).
    pub last_log_time: String,
}

/// Everything an executor needs to run one attempt.
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub job_id: String,
    pub attempt: u32,
    pub node_id: String,
    pub pipeline: Pipeline,
    /// Validated parameters (defaults filled in).
    pub params: BTreeMap<String, String>,
    /// Input file on this machine (absolute), if the job has one.
    pub input_path: Option<PathBuf>,
    /// The directory of the job's inputs from the artifact store (`input_path` and the others
    /// beside it), when it has some: `REELAY_INPUT_DIR`.
    pub input_dir: Option<PathBuf>,
    /// The attempt's output directory on this machine, created and empty.
    pub output_dir: PathBuf,
    /// Time between SIGTERM and SIGKILL.
    pub grace: Duration,
}

impl RunSpec {
    /// The pipeline protocol's environment, given where the program sees its input, the
    /// directory of its inputs and its output directory.
    pub fn protocol_env(
        &self,
        input: Option<&str>,
        input_dir: Option<&str>,
        output_dir: &str,
    ) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = self
            .pipeline
            .env
            .iter()
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        env.push(("REELAY_JOB_ID".into(), self.job_id.clone()));
        env.push(("REELAY_ATTEMPT".into(), self.attempt.to_string()));
        env.push(("REELAY_NODE_ID".into(), self.node_id.clone()));
        env.push(("REELAY_PIPELINE".into(), self.pipeline.name.clone()));
        env.push(("REELAY_INPUT".into(), input.unwrap_or_default().to_owned()));
        env.push((
            "REELAY_INPUT_DIR".into(),
            input_dir.unwrap_or_default().to_owned(),
        ));
        env.push(("REELAY_OUTPUT_DIR".into(), output_dir.to_owned()));
        for (name, value) in &self.params {
            env.push((
                format!("REELAY_PARAM_{}", name.to_ascii_uppercase()),
                value.clone(),
            ));
        }
        env
    }
}

/// Errors of an executor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecError {
    /// The run could not start; the message is the job's error (`image not found: NAME`).
    #[error("{0}")]
    Start(String),
    /// A run started before a restart is gone (`container lost`), or cannot be re-attached.
    #[error("{0}")]
    Lost(String),
    /// The executor's engine does not answer (a node condition, not a job failure).
    #[error("{0}")]
    Unavailable(String),
}

/// Where an executor sends what it sees. Bounded: a slow consumer slows the log reader, never
/// grows memory.
pub type EventSink = mpsc::Sender<ExecEvent>;

/// Runs pipelines. Implementations: [`process::ProcessExecutor`], `docker::DockerExecutor`.
#[async_trait::async_trait]
pub trait Executor: Send + Sync + fmt::Debug + 'static {
    /// `process` or `docker`.
    fn name(&self) -> &'static str;

    /// `Ok` when runs can start now; otherwise why not (a node condition such as "docker engine
    /// does not answer: ...").
    async fn check_ready(&self) -> Result<(), String>;

    /// Runs an attempt to its end. See the module's contract.
    async fn run(
        &self,
        spec: &RunSpec,
        events: EventSink,
        stop: CancellationToken,
    ) -> Result<RunExit, ExecError>;

    /// Resumes following a run started before the worker restarted.
    async fn reattach(
        &self,
        spec: &RunSpec,
        run_ref: &str,
        resume: &ResumePoint,
        events: EventSink,
        stop: CancellationToken,
    ) -> Result<RunExit, ExecError>;

    /// Removes runs of this node that belong to no attempt in `known` (job id, attempt); returns
    /// a description of each removed one. Called once at start, after the known runs re-attached.
    async fn remove_orphans(&self, node_id: &str, known: &[(String, u32)]) -> Vec<String>;

    /// Called after a finished run's outputs were recorded: release what it holds (remove the container).
    async fn cleanup(&self, run_ref: &str);
}
