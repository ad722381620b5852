//! Drives one attempt from accepted to finished, whatever the executor.
//!
//! It checks what can be checked before starting (pipeline configured here, parameters, input
//! file), waits while the executor cannot start jobs, empties the output directory, runs (or
//! re-attaches to) the program, numbers its lines, turns `::progress` lines into progress, enforces
//! the timeout, and at the end records the exit code, the outputs and the final state. The runner
//! is the only writer of its attempt's record.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use reelay_core::progress::parse_progress;
use reelay_proto::convert::{opt_system_time, timestamp};
use reelay_proto::v1;
use tokio::sync::mpsc;

use crate::event_log::Change;
use crate::executor::{ExecError, ExecEvent, ResumePoint, RunExit, RunSpec, Stream};
use crate::outputs;
use crate::supervisor::{RunControl, StopReason, Supervisor};
use crate::transfers::{self, TransferEnd};

/// Longest wait between two readiness checks of an executor that cannot start jobs.
const MAX_READY_BACKOFF: Duration = Duration::from_secs(5);
/// Events buffered between an executor and the runner.
const EXEC_EVENTS: usize = 256;

/// How an attempt ended, before it is turned into a final state.
enum Ended {
    Exit(RunExit),
    /// It could not run, or was lost: the error.
    Failed(String),
    /// The worker shuts down and leaves the run going; nothing to record.
    Detached,
}

pub(crate) async fn run_attempt(
    supervisor: &Supervisor,
    mut job: v1::WorkerJob,
    control: &RunControl,
    reattach: bool,
) {
    let mut state = LineState::default();
    let ended = if job.phase == v1::AttemptPhase::Uploading as i32 {
        // The pipeline exited 0 before the worker restarted: only its upload is left.
        Ended::Exit(RunExit {
            code: Some(0),
            signal: None,
            stopped: false,
        })
    } else {
        drive(supervisor, &mut job, control, reattach, &mut state).await
    };
    if let Ended::Detached = ended {
        return;
    }
    finish(supervisor, &mut job, ended, control, &state).await;
}

/// The file the pipeline reads: its input from the artifact store, staged now (or linked before a
/// restart), or the `input_path` the job names on this node.
async fn input_path(
    supervisor: &Supervisor,
    job: &mut v1::WorkerJob,
    control: &RunControl,
    reattach: bool,
) -> Result<Option<PathBuf>, Ended> {
    if let Some(input) = &job.input {
        if reattach {
            return Ok(Some(supervisor.input_dir(&job.job_id).join(&input.name)));
        }
        control.set_phase(v1::AttemptPhase::Staging);
        return match transfers::stage_input(supervisor, job, control).await {
            Ok(path) => Ok(path),
            Err(TransferEnd::Stopped) => Err(Ended::Exit(RunExit {
                code: None,
                signal: None,
                stopped: true,
            })),
            Err(TransferEnd::Detached) => Err(Ended::Detached),
            Err(TransferEnd::Failed(error)) => Err(Ended::Failed(error)),
        };
    }
    let path = job
        .spec
        .as_ref()
        .map(|spec| PathBuf::from(&spec.input_path))
        .filter(|path| !path.as_os_str().is_empty());
    Ok(path)
}

async fn drive(
    supervisor: &Supervisor,
    job: &mut v1::WorkerJob,
    control: &RunControl,
    reattach: bool,
    lines: &mut LineState,
) -> Ended {
    let spec = job.spec.clone().unwrap_or_default();
    let Some(pipeline) = supervisor.pipelines.get(&spec.pipeline) else {
        return Ended::Failed(format!(
            "pipeline {:?} is not configured on node {}",
            spec.pipeline, supervisor.node.node_id
        ));
    };
    let params = match pipeline.validate_params(&spec.params.clone().into_iter().collect()) {
        Ok(params) => params,
        Err(err) => {
            return Ended::Failed(format!(
                "node {} refuses the parameters: {err}",
                supervisor.node.node_id
            ));
        }
    };
    let input_path = match input_path(supervisor, job, control, reattach).await {
        Ok(path) => path,
        Err(ended) => return ended,
    };
    let output_dir = supervisor.output_dir(&job.job_id);
    debug_assert!(
        output_dir.is_absolute(),
        "output dirs are absolute: {}",
        output_dir.display()
    );
    let run = RunSpec {
        job_id: job.job_id.clone(),
        attempt: job.attempt,
        node_id: supervisor.node.node_id.clone(),
        pipeline: pipeline.clone(),
        params,
        input_dir: job
            .input
            .is_some()
            .then(|| supervisor.input_dir(&job.job_id)),
        input_path,
        output_dir: output_dir.clone(),
        grace: Duration::from_secs(u64::from(pipeline.grace_seconds)),
    };

    if !reattach {
        if let Some(input) = &run.input_path
            && !is_file(input).await
        {
            return Ended::Failed(format!("input not found: {}", input.display()));
        }
        if !wait_until_ready(supervisor, job, control).await {
            return Ended::Exit(RunExit {
                code: None,
                signal: None,
                stopped: true,
            });
        }
        let dir = output_dir.clone();
        let reset = tokio::task::spawn_blocking(move || outputs::reset_dir(&dir)).await;
        if let Err(err) = reset
            .map_err(|err| err.to_string())
            .and_then(|result| result.map_err(|err| err.to_string()))
        {
            return Ended::Failed(format!(
                "cannot prepare the output directory {}: {err}",
                output_dir.display()
            ));
        }
        job.state = v1::JobState::Running as i32;
        job.phase = v1::AttemptPhase::Running as i32;
        control.set_phase(v1::AttemptPhase::Running);
        job.started_at = Some(timestamp(SystemTime::now()));
        job.message = format!("running on node {}", supervisor.node.node_id);
        job.progress = 0;
        job.stage.clear();
        job.eta_seconds = 0.0;
        job.transfer = None;
        record(supervisor, job, true, None, true).await;
    }

    let timer = spawn_timeout(job, control);
    let mut reattach = reattach;
    let result = loop {
        let (events_tx, events_rx) = mpsc::channel(EXEC_EVENTS);
        let executor = &supervisor.executor;
        let resume = ResumePoint {
            log_lines: job.log_lines,
            last_log_time: job.last_log_time.clone(),
        };
        let run_ref = job.run_ref.clone();
        let execution = async {
            if reattach {
                executor
                    .reattach(&run, &run_ref, &resume, events_tx, control.stop.clone())
                    .await
            } else {
                executor.run(&run, events_tx, control.stop.clone()).await
            }
        };
        let followed =
            async { tokio::join!(execution, consume(supervisor, job, events_rx, lines)).0 };
        let result = tokio::select! {
            result = followed => result,
            () = control.detach.cancelled() => return Ended::Detached,
        };
        match result {
            // The engine went away before the run existed: wait for it and start again.
            Err(ExecError::Unavailable(_)) if job.run_ref.is_empty() => {
                if !wait_until_ready(supervisor, job, control).await {
                    break Ok(RunExit {
                        code: None,
                        signal: None,
                        stopped: true,
                    });
                }
            }
            // It went away after the run existed: follow the run again.
            Err(ExecError::Unavailable(_)) => {
                if !wait_until_ready(supervisor, job, control).await {
                    break Ok(RunExit {
                        code: None,
                        signal: None,
                        stopped: true,
                    });
                }
                reattach = true;
            }
            other => break other,
        }
    };
    if let Some(timer) = timer {
        timer.abort();
    }
    match result {
        Ok(exit) => Ended::Exit(exit),
        Err(
            ExecError::Start(reason) | ExecError::Lost(reason) | ExecError::Unavailable(reason),
        ) => Ended::Failed(reason),
    }
}

/// Waits until the executor can start jobs; false when the attempt was stopped meanwhile.
async fn wait_until_ready(
    supervisor: &Supervisor,
    job: &mut v1::WorkerJob,
    control: &RunControl,
) -> bool {
    let mut backoff = Duration::from_millis(200);
    loop {
        match supervisor.executor.check_ready().await {
            Ok(()) => {
                supervisor
                    .condition
                    .send_if_modified(|condition| condition.take().is_some());
                return true;
            }
            Err(condition) => {
                let message = format!("waiting: {condition}");
                if job.message != message {
                    job.message = message;
                    record(supervisor, job, true, None, false).await;
                }
                supervisor.condition.send_replace(Some(condition));
            }
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = control.stop.cancelled() => return false,
        }
        backoff = (backoff * 2).min(MAX_READY_BACKOFF);
    }
}

/// Stops the run when its timeout passes (counted from its start, also across re-attaches).
fn spawn_timeout(job: &v1::WorkerJob, control: &RunControl) -> Option<tokio::task::JoinHandle<()>> {
    let seconds = job.timeout_seconds;
    if seconds == 0 {
        return None;
    }
    let started = opt_system_time(job.started_at.as_ref()).unwrap_or_else(SystemTime::now);
    let deadline = started + Duration::from_secs(u64::from(seconds));
    let left = deadline
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    let control = control.clone();
    Some(tokio::spawn(async move {
        tokio::time::sleep(left).await;
        control.stop_for(StopReason::Timeout(seconds));
    }))
}

/// What the runner remembers of the output beyond the record.
#[derive(Default)]
struct LineState {
    last_stderr: Option<String>,
}

/// Records what the executor reports until it has nothing more to say.
async fn consume(
    supervisor: &Supervisor,
    job: &mut v1::WorkerJob,
    mut events: mpsc::Receiver<ExecEvent>,
    lines: &mut LineState,
) {
    while let Some(event) = events.recv().await {
        match event {
            ExecEvent::Started { run_ref } => {
                job.run_ref = run_ref;
                record(supervisor, job, false, None, true).await;
            }
            ExecEvent::Line { stream, text, time } => {
                job.log_lines += 1;
                if let Some(time) = time {
                    job.last_log_time = time;
                }
                let progress = parse_progress(&text);
                if let Some(progress) = &progress {
                    job.progress = progress.percent;
                    job.stage.clone_from(&progress.stage);
                    job.fps = progress.fps.unwrap_or(0.0);
                    job.eta_seconds = progress.eta_seconds.unwrap_or(0.0);
                }
                if stream == Stream::Stderr && !text.trim().is_empty() {
                    lines.last_stderr = Some(text.clone());
                }
                let line = v1::LogLine {
                    number: job.log_lines,
                    text,
                    stream: match stream {
                        Stream::Stdout => v1::LogStream::Stdout,
                        Stream::Stderr => v1::LogStream::Stderr,
                    } as i32,
                    time: Some(timestamp(SystemTime::now())),
                    attempt: job.attempt,
                };
                record(supervisor, job, progress.is_some(), Some(line), false).await;
            }
        }
    }
}

/// Records the final state, exit code and outputs, then lets the executor release the run.
async fn finish(
    supervisor: &Supervisor,
    job: &mut v1::WorkerJob,
    ended: Ended,
    control: &RunControl,
    lines: &LineState,
) {
    if !job.run_ref.is_empty() {
        supervisor.executor.cleanup(&job.run_ref).await;
    }
    let files = if job.phase == v1::AttemptPhase::Uploading as i32 {
        // Listed (and hashed) before the restart.
        job.uploads
            .iter()
            .map(|upload| v1::OutputFile {
                name: upload.name.clone(),
                size: upload.size,
                sha256: upload.sha256.clone(),
            })
            .collect()
    } else {
        list_outputs(supervisor, &job.job_id).await
    };
    let (mut state, mut message, mut error) =
        verdict(&ended, control.reason(), lines.last_stderr.as_deref());
    if state == v1::JobState::Succeeded {
        let spec = job.spec.clone().unwrap_or_default();
        let names: Vec<&str> = files.iter().map(|file| file.name.as_str()).collect();
        if let Some(pipeline) = supervisor.pipelines.get(&spec.pipeline) {
            (state, message, error) = check_outputs(pipeline, &names);
        }
    }
    if let Ended::Exit(exit) = &ended {
        job.exit_code = exit.code;
    }
    // A success counts once its outputs are in the artifact store; until then, and for a job that
    // failed, no outputs are listed (none could be downloaded).
    let stored = supervisor.store.is_some();
    if state == v1::JobState::Succeeded && stored && !files.is_empty() {
        control.set_phase(v1::AttemptPhase::Uploading);
        let pipeline_stage =
            (job.phase != v1::AttemptPhase::Uploading as i32).then(|| job.stage.clone());
        match transfers::upload_outputs(supervisor, job, control, &files).await {
            Ok(()) => {
                job.outputs = files;
                // The job ends showing what its pipeline said last, not the upload.
                job.stage = pipeline_stage.unwrap_or_default();
            }
            Err(TransferEnd::Detached) => return,
            Err(TransferEnd::Stopped) => {
                (state, message, error) = stopped_while_uploading(control.reason());
            }
            Err(TransferEnd::Failed(reason)) => {
                message = format!("failed: {reason}");
                (state, error) = (v1::JobState::Failed, reason);
            }
        }
    } else if !stored {
        job.outputs = files;
    }
    // Before the final state: whoever sees the job finished sees its files where they stay. A
    // worker killed in between finds the uploads done in the record and finishes the same way.
    remove_local_files(supervisor, job, stored).await;
    job.state = state as i32;
    job.message = message;
    job.error = error;
    job.finished_at = Some(timestamp(SystemTime::now()));
    job.fps = 0.0;
    job.eta_seconds = 0.0;
    job.transfer = None;
    control.release_slot();
    record(supervisor, job, true, None, true).await;
    if job.error.is_empty() {
        tracing::info!(job_id = %job.job_id, attempt = job.attempt, state = ?state, "attempt finished");
    } else {
        tracing::info!(job_id = %job.job_id, attempt = job.attempt, state = ?state, error = %job.error, "attempt finished");
    }
}

/// The outputs the pipeline left, with size and SHA-256.
async fn list_outputs(supervisor: &Supervisor, job_id: &str) -> Vec<v1::OutputFile> {
    let dir = supervisor.output_dir(job_id);
    match tokio::task::spawn_blocking(move || outputs::scan(&dir)).await {
        Ok(Ok(files)) => files.iter().map(Into::into).collect(),
        Ok(Err(err)) => {
            tracing::warn!(job_id = %job_id, error = %err, "cannot list outputs");
            Vec::new()
        }
        Err(err) => {
            tracing::warn!(job_id = %job_id, error = %err, "output listing task failed");
            Vec::new()
        }
    }
}

/// The verdict of an attempt stopped while its outputs were uploaded.
fn stopped_while_uploading(reason: Option<StopReason>) -> (v1::JobState, String, String) {
    match reason {
        Some(StopReason::Requested(why)) => (
            v1::JobState::Cancelled,
            format!("{why} (while its outputs were uploaded)"),
            String::new(),
        ),
        _ => {
            let error = "stopped while its outputs were uploaded".to_owned();
            (v1::JobState::Failed, format!("failed: {error}"), error)
        }
    }
}

/// An ended attempt's input link, and its outputs once they are in the artifact store (with a
/// store, the node's copy serves nobody).
async fn remove_local_files(supervisor: &Supervisor, job: &v1::WorkerJob, stored: bool) {
    let mut dirs = vec![supervisor.input_dir(&job.job_id)];
    if stored {
        dirs.push(supervisor.output_dir(&job.job_id));
    }
    for dir in dirs {
        let removed = tokio::task::spawn_blocking(move || match std::fs::remove_dir_all(&dir) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err((dir, err)),
            _ => Ok(()),
        })
        .await;
        if let Ok(Err((dir, err))) = removed {
            tracing::warn!(dir = %dir.display(), error = %err, "cannot remove an ended attempt's files");
        }
    }
}

/// The final state, message and error of an attempt.
fn verdict(
    ended: &Ended,
    reason: Option<StopReason>,
    last_stderr: Option<&str>,
) -> (v1::JobState, String, String) {
    use v1::JobState::{Cancelled, Failed, Succeeded};
    let exit = match ended {
        Ended::Failed(error) => return (Failed, format!("failed: {error}"), error.clone()),
        Ended::Detached => return (Failed, String::new(), "detached".to_owned()),
        Ended::Exit(exit) => exit,
    };
    let how = match (exit.signal, exit.code) {
        (Some(9), _) => "killed after the grace period",
        (None, None) => "stopped before it started",
        _ => "stopped with SIGTERM",
    };
    if exit.stopped {
        return match reason {
            Some(StopReason::Timeout(seconds)) => {
                let error = format!("timed out after {seconds}s ({how})");
                (Failed, format!("failed: {error}"), error)
            }
            Some(StopReason::Shutdown) => {
                let error = format!("the worker shut down while the job ran ({how})");
                (Failed, format!("failed: {error}"), error)
            }
            Some(StopReason::Requested(why)) => {
                (Cancelled, format!("{why} ({how})"), String::new())
            }
            None => (Cancelled, format!("cancelled ({how})"), String::new()),
        };
    }
    match (exit.code, exit.signal) {
        (Some(0), _) => (Succeeded, "succeeded".to_owned(), String::new()),
        (Some(code), _) => {
            let error = match last_stderr {
                Some(line) => format!("exit code {code}: {line}"),
                None => format!("exit code {code}"),
            };
            (Failed, format!("failed: {error}"), error)
        }
        (None, Some(signal)) => {
            let error = format!("killed by signal {signal}");
            (Failed, format!("failed: {error}"), error)
        }
        (None, None) => (
            Failed,
            "failed: no exit status".to_owned(),
            "no exit status".to_owned(),
        ),
    }
}

/// The verdict of a run that exited 0, given the files it left: a pipeline that declares `outputs`
/// fails when a pattern matches no file (its files went somewhere else and would be lost); one that
/// declares none succeeds with whatever it left, and the message says when that is nothing.
fn check_outputs(
    pipeline: &reelay_core::pipeline::Pipeline,
    names: &[&str],
) -> (v1::JobState, String, String) {
    let missing = pipeline.missing_outputs(names);
    if !missing.is_empty() {
        let left = if names.is_empty() {
            "no files".to_owned()
        } else {
            names.join(", ")
        };
        let error = format!(
            "the pipeline exited 0 but left no file matching {} in REELAY_OUTPUT_DIR (it left: \
             {left}); a pipeline must write its outputs there, files elsewhere are not kept",
            missing
                .iter()
                .map(|pattern| format!("{pattern:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        return (v1::JobState::Failed, format!("failed: {error}"), error);
    }
    if names.is_empty() {
        return (
            v1::JobState::Succeeded,
            "succeeded (no outputs)".to_owned(),
            String::new(),
        );
    }
    (
        v1::JobState::Succeeded,
        "succeeded".to_owned(),
        String::new(),
    )
}

/// Writes the record (with an event when `event`) and an optional log line; when `durable`, flushes
/// before returning and before its events can stream.
pub(crate) async fn record(
    supervisor: &Supervisor,
    job: &v1::WorkerJob,
    event: bool,
    log: Option<v1::LogLine>,
    durable: bool,
) {
    let change = Change {
        job: Some(job.clone()),
        job_event: event,
        log,
    };
    let recorded = if durable {
        supervisor.log.append_durable(vec![change]).await
    } else {
        supervisor.log.append(vec![change])
    };
    if let Err(err) = recorded {
        tracing::error!(job_id = %job.job_id, error = %err, "cannot record a change of the attempt");
    }
}

async fn is_file(path: &Path) -> bool {
    tokio::fs::metadata(path)
        .await
        .is_ok_and(|meta| meta.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exit(code: Option<i32>, signal: Option<i32>, stopped: bool) -> Ended {
        Ended::Exit(RunExit {
            code,
            signal,
            stopped,
        })
    }

    #[test]
    fn declared_outputs_decide_a_zero_exit() {
        let pipelines = reelay_core::pipeline::Pipelines::parse(
            "[[pipeline]]\nname = \"t\"\ncommand = [\"x\"]\noutputs = [\"*.mp4\", \"thumb.jpg\"]\n\
             [[pipeline]]\nname = \"any\"\ncommand = [\"x\"]\n",
            "t",
        )
        .unwrap();
        let declared = pipelines.get("t").unwrap();
        let (state, _, error) = check_outputs(declared, &["a.mp4", "thumb.jpg"]);
        assert_eq!((state, error.as_str()), (v1::JobState::Succeeded, ""));
        let (state, message, error) = check_outputs(declared, &[]);
        assert_eq!(state, v1::JobState::Failed);
        assert!(error.contains("\"*.mp4\", \"thumb.jpg\""), "{error}");
        assert!(error.contains("left: no files"), "{error}");
        assert!(message.starts_with("failed: "), "{message}");
        let (state, _, error) = check_outputs(declared, &["a.mp4"]);
        assert_eq!(state, v1::JobState::Failed);
        assert!(
            error.contains("\"thumb.jpg\"") && !error.contains("\"*.mp4\""),
            "{error}"
        );

        let any = pipelines.get("any").unwrap();
        let (state, message, _) = check_outputs(any, &[]);
        assert_eq!(
            (state, message.as_str()),
            (v1::JobState::Succeeded, "succeeded (no outputs)")
        );
    }

    #[test]
    fn verdicts() {
        let (state, _, error) = verdict(&exit(Some(0), None, false), None, None);
        assert_eq!((state, error.as_str()), (v1::JobState::Succeeded, ""));
        let (state, _, error) = verdict(&exit(Some(3), None, false), None, Some("boom"));
        assert_eq!(
            (state, error.as_str()),
            (v1::JobState::Failed, "exit code 3: boom")
        );
        let (state, _, error) = verdict(
            &exit(None, Some(9), true),
            Some(StopReason::Timeout(5)),
            None,
        );
        assert_eq!(state, v1::JobState::Failed);
        assert_eq!(error, "timed out after 5s (killed after the grace period)");
        let (state, message, _) = verdict(
            &exit(None, Some(15), true),
            Some(StopReason::Requested("cancelled by user".into())),
            None,
        );
        assert_eq!(state, v1::JobState::Cancelled);
        assert_eq!(message, "cancelled by user (stopped with SIGTERM)");
        let (state, _, error) = verdict(&Ended::Failed("input not found: /x".into()), None, None);
        assert_eq!(
            (state, error.as_str()),
            (v1::JobState::Failed, "input not found: /x")
        );
    }
}
