//! The process executor: runs the pipeline's argv as a local process in its own process group.
//!
//! No shell is involved: the argv comes from the config, parameters arrive as environment
//! variables. The environment is cleared except for `PATH`, `HOME`, `LANG`, `TZ` and `TMPDIR`, then
//! the pipeline protocol's variables are set. The working directory is the output directory.
//! Stopping sends SIGTERM to the whole group, then SIGKILL after the grace period.
//!
//! A process cannot be re-attached after the worker restarts (its pipes are gone): `reattach`
//! stops what is left of the group and reports the run as lost.

use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use super::{EventSink, ExecError, ExecEvent, Executor, ResumePoint, RunExit, RunSpec, Stream};

/// Longest line kept; the rest of a longer line is dropped (with a marker).
const MAX_LINE: usize = 64 * 1024;
/// How long output readers may outlive the process (a background child holding the pipe).
const READER_GRACE: Duration = Duration::from_secs(2);
/// Variables passed through from the worker's environment.
const INHERITED_ENV: [&str; 5] = ["PATH", "HOME", "LANG", "TZ", "TMPDIR"];

/// Runs pipelines as local processes.
#[derive(Debug, Default)]
pub struct ProcessExecutor;

#[async_trait::async_trait]
impl Executor for ProcessExecutor {
    fn name(&self) -> &'static str {
        "process"
    }

    async fn check_ready(&self) -> Result<(), String> {
        Ok(())
    }

    async fn run(
        &self,
        spec: &RunSpec,
        events: EventSink,
        stop: CancellationToken,
    ) -> Result<RunExit, ExecError> {
        let input = spec
            .input_path
            .as_ref()
            .map(|path| path.to_string_lossy().into_owned());
        let output_dir = spec.output_dir.to_string_lossy().into_owned();
        let Some((program, args)) = spec.pipeline.command.split_first() else {
            return Err(ExecError::Start(format!(
                "pipeline {} has no command",
                spec.pipeline.name
            )));
        };
        let mut command = Command::new(resolve_program(program, spec.pipeline.base_dir.as_deref()));
        command
            .args(args)
            .env_clear()
            .envs(
                INHERITED_ENV
                    .iter()
                    .filter_map(|name| Some((*name, std::env::var_os(name)?))),
            )
            .envs(
                spec.protocol_env(
                    input.as_deref(),
                    spec.input_dir
                        .as_ref()
                        .map(|dir| dir.to_string_lossy())
                        .as_deref(),
                    &output_dir,
                ),
            )
            .current_dir(&spec.output_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = command
            .spawn()
            .map_err(|err| ExecError::Start(format!("cannot start {program:?}: {err}")))?;
        let Some(pid) = child.id() else {
            return Err(ExecError::Start(format!(
                "{program:?} exited before it could be followed"
            )));
        };
        let group = Pid::from_raw(pid as i32);
        // The receiver only goes away when the worker shuts down; the run goes on regardless.
        let _ = events
            .send(ExecEvent::Started {
                run_ref: pid.to_string(),
            })
            .await;

        let stdout = child
            .stdout
            .take()
            .map(|out| tokio::spawn(forward_lines(out, Stream::Stdout, events.clone())));
        let stderr = child
            .stderr
            .take()
            .map(|err| tokio::spawn(forward_lines(err, Stream::Stderr, events.clone())));

        let (status, stopped) = wait_or_stop(&mut child, group, &stop, spec.grace).await;
        for reader in [stdout, stderr].into_iter().flatten() {
            if tokio::time::timeout(READER_GRACE, reader).await.is_err() {
                // Something in the group still holds the pipe: end the group.
                let _ = killpg(group, Signal::SIGKILL);
            }
        }
        let status =
            status.map_err(|err| ExecError::Start(format!("waiting for {program:?}: {err}")))?;
        Ok(RunExit {
            code: status.code(),
            signal: status.signal(),
            stopped,
        })
    }

    async fn reattach(
        &self,
        spec: &RunSpec,
        run_ref: &str,
        _resume: &ResumePoint,
        _events: EventSink,
        _stop: CancellationToken,
    ) -> Result<RunExit, ExecError> {
        let still_running = run_ref
            .parse::<i32>()
            .ok()
            .filter(|pid| belongs_to(*pid, &spec.job_id));
        match still_running {
            Some(pid) => {
                let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
                Err(ExecError::Lost(format!(
                    "the worker restarted while the job ran; the process executor cannot re-attach, \
                     so it stopped the job's process group {pid}"
                )))
            }
            None => Err(ExecError::Lost(
                "the worker restarted while the job ran and its process is gone (the process executor cannot re-attach)"
                    .to_owned(),
            )),
        }
    }

    async fn remove_orphans(&self, _node_id: &str, _known: &[(String, u32)]) -> Vec<String> {
        Vec::new()
    }

    async fn cleanup(&self, _run_ref: &str) {}
}

/// The program to start: a relative path with a `/` (`./bin/x`, `bin/x`) is taken from the config
/// file's directory, not from the output directory the program runs in; a bare name is looked up on
/// `PATH`; an absolute path is used as is.
fn resolve_program(program: &str, base_dir: Option<&std::path::Path>) -> std::path::PathBuf {
    let path = std::path::Path::new(program);
    match base_dir {
        Some(base) if path.is_relative() && program.contains('/') => base.join(path),
        _ => path.to_path_buf(),
    }
}

/// Waits for the child; when `stop` fires, SIGTERM to the group, then SIGKILL after `grace`.
async fn wait_or_stop(
    child: &mut Child,
    group: Pid,
    stop: &CancellationToken,
    grace: Duration,
) -> (std::io::Result<std::process::ExitStatus>, bool) {
    tokio::select! {
        status = child.wait() => return (status, false),
        () = stop.cancelled() => {}
    }
    let _ = killpg(group, Signal::SIGTERM);
    if let Ok(status) = tokio::time::timeout(grace, child.wait()).await {
        return (status, true);
    }
    let _ = killpg(group, Signal::SIGKILL);
    (child.wait().await, true)
}

/// Whether process `pid` is alive and was started for job `job_id`.
fn belongs_to(pid: i32, job_id: &str) -> bool {
    let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
        return false;
    };
    let wanted = format!("REELAY_JOB_ID={job_id}");
    environ
        .split(|byte| *byte == 0)
        .any(|entry| entry == wanted.as_bytes())
}

/// Reads `reader` to its end, sending each line (split at `\n` or `\r`) to `events`.
async fn forward_lines(mut reader: impl AsyncRead + Unpin, stream: Stream, events: EventSink) {
    let mut splitter = LineSplitter::default();
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let read = match reader.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        for text in splitter.push(&buffer[..read]) {
            if events
                .send(ExecEvent::Line {
                    stream,
                    text,
                    time: None,
                })
                .await
                .is_err()
            {
                return;
            }
        }
    }
    if let Some(text) = splitter.finish() {
        let _ = events
            .send(ExecEvent::Line {
                stream,
                text,
                time: None,
            })
            .await;
    }
}

/// Splits a byte stream into lines at `\n`, `\r\n` or a lone `\r` (progress meters), lossily UTF-8.
#[derive(Debug, Default)]
pub(crate) struct LineSplitter {
    pending: Vec<u8>,
    truncated: bool,
    after_cr: bool,
}

impl LineSplitter {
    pub(crate) fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut lines = Vec::new();
        for &byte in bytes {
            let after_cr = std::mem::replace(&mut self.after_cr, false);
            match byte {
                b'\n' if after_cr => {}
                b'\n' | b'\r' => {
                    self.after_cr = byte == b'\r';
                    lines.push(self.take());
                }
                _ if self.pending.len() >= MAX_LINE => self.truncated = true,
                _ => self.pending.push(byte),
            }
        }
        lines
    }

    pub(crate) fn finish(&mut self) -> Option<String> {
        if self.pending.is_empty() && !self.truncated {
            None
        } else {
            Some(self.take())
        }
    }

    fn take(&mut self) -> String {
        let mut line = String::from_utf8_lossy(&self.pending).into_owned();
        if std::mem::take(&mut self.truncated) {
            line.push_str(" [line truncated]");
        }
        self.pending.clear();
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reelay_core::pipeline::Pipelines;
    use tokio::sync::mpsc;

    #[test]
    fn splits_at_newlines_and_carriage_returns() {
        let mut splitter = LineSplitter::default();
        let mut lines = splitter.push(b"a\nb\r\nc\rd");
        lines.extend(splitter.push(b"e\n\nf"));
        lines.extend(splitter.finish());
        assert_eq!(lines, ["a", "b", "c", "de", "", "f"]);
        assert_eq!(splitter.finish(), None);
    }

    #[test]
    fn relative_programs_come_from_the_config_directory() {
        let base = std::path::Path::new("/etc/reelay");
        assert_eq!(
            resolve_program("./bin/x", Some(base)),
            std::path::Path::new("/etc/reelay/./bin/x")
        );
        assert_eq!(
            resolve_program("bin/x", Some(base)),
            std::path::Path::new("/etc/reelay/bin/x")
        );
        assert_eq!(
            resolve_program("ffmpeg", Some(base)),
            std::path::Path::new("ffmpeg")
        );
        assert_eq!(
            resolve_program("/usr/bin/x", Some(base)),
            std::path::Path::new("/usr/bin/x")
        );
        assert_eq!(resolve_program("./x", None), std::path::Path::new("./x"));
    }

    #[test]
    fn truncates_giant_lines() {
        let mut splitter = LineSplitter::default();
        let lines = splitter.push(&vec![b'x'; MAX_LINE + 10]);
        assert!(lines.is_empty());
        let line = splitter.push(b"\n").pop().unwrap();
        assert!(line.ends_with("[line truncated]"));
        assert_eq!(line.len(), MAX_LINE + " [line truncated]".len());
    }

    fn spec(command: &str, dir: &std::path::Path) -> RunSpec {
        let config =
            format!("[[pipeline]]\nname = \"t\"\ncommand = {command}\ninput_required = false\n");
        let pipelines = Pipelines::parse(&config, "test").unwrap();
        RunSpec {
            job_id: "job-1".into(),
            attempt: 1,
            node_id: "n1".into(),
            pipeline: pipelines.get("t").unwrap().clone(),
            params: [("height".to_string(), "360".to_string())].into(),
            input_path: None,
            input_dir: None,
            output_dir: dir.to_owned(),
            grace: Duration::from_millis(300),
        }
    }

    async fn collect(mut rx: mpsc::Receiver<ExecEvent>) -> Vec<ExecEvent> {
        let mut events = Vec::new();
        while let Some(event) = rx.recv().await {
            events.push(event);
        }
        events
    }

    #[tokio::test]
    async fn runs_argv_with_the_protocol_env_and_reports_the_exit_code() {
        let dir = tempfile::tempdir().unwrap();
        let spec = spec(
            r#"["sh", "-c", "echo $REELAY_PARAM_HEIGHT; echo oops >&2; exit 3"]"#,
            dir.path(),
        );
        let (tx, rx) = mpsc::channel(16);
        let exit = ProcessExecutor
            .run(&spec, tx, CancellationToken::new())
            .await
            .unwrap();
        assert_eq!(
            exit,
            RunExit {
                code: Some(3),
                signal: None,
                stopped: false
            }
        );
        let events = collect(rx).await;
        assert!(matches!(events[0], ExecEvent::Started { .. }));
        assert!(events.contains(&ExecEvent::Line {
            stream: Stream::Stdout,
            text: "360".into(),
            time: None
        }));
        assert!(events.contains(&ExecEvent::Line {
            stream: Stream::Stderr,
            text: "oops".into(),
            time: None
        }));
    }

    #[tokio::test]
    async fn stop_terms_then_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        // The shell ignores TERM and has a child: both must die.
        let spec = spec(
            r#"["sh", "-c", "trap '' TERM; sleep 30 & sleep 30"]"#,
            dir.path(),
        );
        let (tx, rx) = mpsc::channel(16);
        let stop = CancellationToken::new();
        let stopper = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            stopper.cancel();
        });
        let started = std::time::Instant::now();
        let exit = ProcessExecutor.run(&spec, tx, stop).await.unwrap();
        assert!(exit.stopped);
        assert_eq!(exit.signal, Some(9));
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        drop(collect(rx).await);
    }

    #[tokio::test]
    async fn a_missing_program_is_a_start_error() {
        let dir = tempfile::tempdir().unwrap();
        let spec = spec(r#"["/nonexistent/program"]"#, dir.path());
        let (tx, _rx) = mpsc::channel(16);
        let err = ProcessExecutor
            .run(&spec, tx, CancellationToken::new())
            .await
            .unwrap_err();
        assert!(
            matches!(err, ExecError::Start(ref m) if m.contains("/nonexistent/program")),
            "{err}"
        );
    }
}
