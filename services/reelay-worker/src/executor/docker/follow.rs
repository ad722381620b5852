//! Following a started container to its end: its log lines, a stop request, its exit code.
//!
//! The logs are read with `follow` and `timestamps`; the stream ends when the container stops.
//! Every line carries the time of the log entry that completed it (see [`super::timestamp`]).
//!
//! # Resuming without loss or repeat
//! Whenever the logs are read again (a re-attach after a worker restart, or after the engine went
//! away) the resume point is the time of the last line delivered, and the lines delivered before
//! are exactly the lines up to that one *in log order*. Docker timestamps stdout and stderr
//! entries in two independent copiers, so log order is not timestamp order across the streams
//! (a stderr line written after a stdout line can carry an earlier time): skipping "every line at
//! or before the resume time" would lose such a line. Instead the logs are replayed from one
//! second before the resume time (`since` is whole seconds), the lines up to and including the
//! one whose time equals the resume time are skipped, and every line after it is delivered. If
//! that line is not in the logs (they were rotated), the lines later than the resume time are
//! delivered once it is clear it will not come (a line over a second later, or the end).
//!
//! While the engine does not answer, the follower waits for it (bounded backoff) instead of
//! failing the run: only the container's own exit, or its disappearance, ends a run.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::errors::Error as DockerError;
use bollard::query_parameters::{
    KillContainerOptionsBuilder, LogsOptionsBuilder, WaitContainerOptionsBuilder,
};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::engine::{Backoff, describe, is_not_found, is_unreachable, wait_for_engine};
use super::timestamp::{line_time, split_frame, unix_seconds};
use crate::executor::process::LineSplitter;
use crate::executor::{EventSink, ExecError, ExecEvent, RunExit, Stream};

/// How long to wait for the exit after a log stream ended cleanly before reading the logs
/// again (a stream that ends while the container still runs).
const EXIT_AFTER_LOGS: Duration = Duration::from_secs(2);
/// Reads of an exited container's logs that may fail before its exit is reported without them.
const MAX_FAILED_READS: u32 = 3;
/// Lines held while looking for the resume line before giving up on finding it.
const MAX_HELD_LINES: usize = 10_000;

/// Follows one container until it exits.
#[derive(Debug)]
pub(super) struct Follower {
    docker: Docker,
    id: String,
    events: EventSink,
    /// Executor time of the last line delivered (or recorded before a restart): the resume point.
    last_delivered: Option<String>,
    /// A line went out without a time: a replay of the logs could not tell where it was, so the
    /// logs are not read again after the exit.
    untimed: bool,
    /// Set by the stopper once the engine accepted SIGTERM: the run ends because it was stopped.
    signalled: Arc<AtomicBool>,
    /// Stops the container once the stop token is cancelled; aborted when the follower ends.
    stopper: tokio::task::JoinHandle<()>,
}

/// How one read of the logs ended.
#[derive(Debug)]
enum ReadEnd {
    /// The stream ended: the container stopped (or the engine closed it cleanly).
    Clean,
    /// The engine went away or the stream broke.
    Broken(DockerError),
    /// The engine refuses to give the logs (for instance a logging driver that cannot be read).
    Refused(DockerError),
}

/// What waiting for the exit found.
#[derive(Debug)]
enum Waited {
    Exited(i64),
    StillRunning,
    Gone,
    Unreachable(DockerError),
}

impl Follower {
    /// `resume_after`: lines at or before this executor time were already recorded.
    pub(super) fn new(
        docker: Docker,
        id: String,
        events: EventSink,
        stop: CancellationToken,
        grace: Duration,
        resume_after: Option<String>,
    ) -> Self {
        let signalled = Arc::new(AtomicBool::new(false));
        let stopper = tokio::spawn(stop_when_cancelled(
            docker.clone(),
            id.clone(),
            stop,
            grace,
            signalled.clone(),
        ));
        Follower {
            docker,
            id,
            events,
            last_delivered: resume_after.filter(|time| !time.is_empty()),
            untimed: false,
            signalled,
            stopper,
        }
    }

    /// Delivers the container's remaining lines and returns how it ended.
    pub(super) async fn run_to_exit(mut self) -> Result<RunExit, ExecError> {
        let mut logs_readable = true;
        let mut failed_reads = 0;
        loop {
            let mut lines = LogLines::default();
            let end = if logs_readable {
                self.read_logs(&mut lines, true).await
            } else {
                ReadEnd::Clean
            };
            let clean = match end {
                ReadEnd::Clean => true,
                ReadEnd::Refused(err) if !is_not_found(&err) => {
                    tracing::warn!(container = %self.id, error = %describe(&err),
                        "cannot read the container's logs; waiting for its exit without them");
                    logs_readable = false;
                    true
                }
                ReadEnd::Refused(_) => false,
                ReadEnd::Broken(err) => {
                    tracing::debug!(container = %self.id, error = %describe(&err), "log stream broke");
                    failed_reads += 1;
                    false
                }
            };
            let patience = logs_readable.then_some(EXIT_AFTER_LOGS);
            match self.wait_exit(patience).await {
                Waited::Exited(code) if clean || failed_reads >= MAX_FAILED_READS => {
                    if !clean {
                        tracing::warn!(container = %self.id,
                            "the container exited but its last log lines could not be read");
                    } else if logs_readable && !self.untimed {
                        // A follow stream can end before the container's last entry (an
                        // unterminated last line) reached it: read the rest once more.
                        let mut rest = LogLines::default();
                        if let ReadEnd::Clean = self.read_logs(&mut rest, false).await {
                            lines = rest;
                        }
                    }
                    self.flush(&mut lines).await;
                    return Ok(self.exit(code));
                }
                // Exited, but the read broke: read the rest of its logs once more.
                Waited::Exited(_) | Waited::StillRunning => {}
                Waited::Gone => return Err(ExecError::Lost("container lost".to_owned())),
                Waited::Unreachable(err) => {
                    tracing::warn!(container = %self.id, error = %describe(&err),
                        "docker engine does not answer; waiting for it to follow the container again");
                    wait_for_engine(&self.docker).await;
                    tracing::info!(container = %self.id, "docker engine answers again");
                }
            }
        }
    }

    /// Reads the logs after the last delivered line, until the stream ends (with `follow`, when
    /// the container stops).
    async fn read_logs(&mut self, lines: &mut LogLines, follow: bool) -> ReadEnd {
        lines.search = self.last_delivered.clone().map(|marker| Search {
            marker,
            held: Vec::new(),
        });
        // A line after the resume line may carry a time up to a little earlier than it.
        let since = lines
            .search
            .as_ref()
            .and_then(|search| unix_seconds(&search.marker))
            .and_then(|seconds| i32::try_from(seconds - 1).ok())
            .unwrap_or(0);
        let options = LogsOptionsBuilder::new()
            .follow(follow)
            .stdout(true)
            .stderr(true)
            .timestamps(true)
            .since(since)
            .build();
        let mut frames = self.docker.logs(&self.id, Some(options));
        while let Some(frame) = frames.next().await {
            let (stream, message) = match frame {
                Ok(LogOutput::StdOut { message } | LogOutput::Console { message }) => {
                    (Stream::Stdout, message)
                }
                Ok(LogOutput::StdErr { message }) => (Stream::Stderr, message),
                Ok(LogOutput::StdIn { .. }) => continue,
                Err(err @ DockerError::DockerResponseServerError { .. }) => {
                    return ReadEnd::Refused(err);
                }
                Err(err) => return ReadEnd::Broken(err),
            };
            let (entry_time, payload) = split_frame(&message);
            for (text, time) in lines.of(stream).push(entry_time, payload) {
                self.offer(lines, Line { stream, text, time }).await;
            }
        }
        ReadEnd::Clean
    }

    /// Delivers a line read from the logs, unless it is at or before the resume line.
    async fn offer(&mut self, lines: &mut LogLines, line: Line) {
        let Some(search) = &mut lines.search else {
            return self.deliver(line).await;
        };
        let Some(time) = line.time.as_deref() else {
            return;
        };
        if time == search.marker {
            // Everything held came before the resume line: it was delivered before.
            lines.search = None;
            return;
        }
        if time < search.marker.as_str() {
            return;
        }
        let well_after = unix_seconds(time)
            .zip(unix_seconds(&search.marker))
            .is_some_and(|(time, marker)| time > marker + 1);
        search.held.push(line);
        if well_after || search.held.len() >= MAX_HELD_LINES {
            self.give_up_search(lines).await;
        }
    }

    /// The resume line is not in the logs: deliver what came after its time.
    async fn give_up_search(&mut self, lines: &mut LogLines) {
        let Some(search) = lines.search.take() else {
            return;
        };
        tracing::warn!(container = %self.id, resume = %search.marker,
            "the resume line is not in the container's logs (rotated?); resuming by time");
        for line in search.held {
            self.deliver(line).await;
        }
    }

    async fn deliver(&mut self, line: Line) {
        if line.time.is_some() {
            self.last_delivered.clone_from(&line.time);
        } else {
            self.untimed = true;
        }
        let Line { stream, text, time } = line;
        // The receiver only goes away when the worker shuts down; the container goes on.
        let _ = self
            .events
            .send(ExecEvent::Line { stream, text, time })
            .await;
    }

    /// Delivers the unterminated last line of each stream, once the container exited.
    async fn flush(&mut self, lines: &mut LogLines) {
        for stream in [Stream::Stdout, Stream::Stderr] {
            if let Some((text, time)) = lines.of(stream).finish() {
                self.offer(lines, Line { stream, text, time }).await;
            }
        }
        self.give_up_search(lines).await;
    }

    /// Waits for the container to stop; gives up after `patience` with `StillRunning`.
    async fn wait_exit(&self, patience: Option<Duration>) -> Waited {
        let options = WaitContainerOptionsBuilder::new()
            .condition("not-running")
            .build();
        let mut wait = self.docker.wait_container(&self.id, Some(options));
        let next = match patience {
            Some(patience) => match tokio::time::timeout(patience, wait.next()).await {
                Ok(next) => next,
                Err(_) => return Waited::StillRunning,
            },
            None => wait.next().await,
        };
        match next {
            Some(Ok(response)) => Waited::Exited(response.status_code),
            Some(Err(DockerError::DockerContainerWaitError { code, .. })) => Waited::Exited(code),
            Some(Err(err)) if is_not_found(&err) => Waited::Gone,
            Some(Err(err)) if is_unreachable(&err) => Waited::Unreachable(err),
            Some(Err(err)) => {
                tracing::warn!(container = %self.id, error = %describe(&err), "waiting for the container failed");
                tokio::time::sleep(Duration::from_millis(500)).await;
                Waited::StillRunning
            }
            None => Waited::Unreachable(DockerError::RequestTimeoutError),
        }
    }

    fn exit(&self, code: i64) -> RunExit {
        let stopped = self.signalled.load(Ordering::Acquire);
        let code = i32::try_from(code).unwrap_or(-1);
        match (stopped, code) {
            (true, 143) => RunExit {
                code: None,
                signal: Some(15),
                stopped,
            },
            (true, 137) => RunExit {
                code: None,
                signal: Some(9),
                stopped,
            },
            _ => RunExit {
                code: Some(code),
                signal: None,
                stopped,
            },
        }
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.stopper.abort();
    }
}

/// Once `stop` is cancelled: SIGTERM to the container, `grace`, then SIGKILL.
async fn stop_when_cancelled(
    docker: Docker,
    id: String,
    stop: CancellationToken,
    grace: Duration,
    signalled: Arc<AtomicBool>,
) {
    stop.cancelled().await;
    if !send_signal(&docker, &id, "SIGTERM").await {
        return;
    }
    signalled.store(true, Ordering::Release);
    tracing::debug!(container = %id, ?grace, "sent SIGTERM");
    tokio::time::sleep(grace).await;
    if send_signal(&docker, &id, "SIGKILL").await {
        tracing::debug!(container = %id, "sent SIGKILL after the grace period");
    }
}

/// Whether the engine delivered `signal` to the running container; retries while it does not
/// answer. `false` when the container is not running or gone.
async fn send_signal(docker: &Docker, id: &str, signal: &str) -> bool {
    let mut backoff = Backoff::default();
    loop {
        let options = KillContainerOptionsBuilder::new().signal(signal).build();
        match docker.kill_container(id, Some(options)).await {
            Ok(()) => return true,
            Err(err) if is_unreachable(&err) => backoff.sleep().await,
            Err(_) => return false,
        }
    }
}

// === line splitting with times ===

/// One line with its stream and time.
#[derive(Debug)]
struct Line {
    stream: Stream,
    text: String,
    time: Option<String>,
}

/// The state of one read of the logs.
#[derive(Debug, Default)]
struct LogLines {
    stdout: StreamLines,
    stderr: StreamLines,
    /// While set, the lines are still at or before the resume line.
    search: Option<Search>,
}

/// Looking for the resume line in a replay of the logs.
#[derive(Debug)]
struct Search {
    /// The time of the last line delivered before this read.
    marker: String,
    /// Lines later than the marker's time seen before the marker itself; delivered only if the
    /// marker turns out to be missing.
    held: Vec<Line>,
}

impl LogLines {
    fn of(&mut self, stream: Stream) -> &mut StreamLines {
        match stream {
            Stream::Stdout => &mut self.stdout,
            Stream::Stderr => &mut self.stderr,
        }
    }
}

/// One stream's line splitter and the time of its last log entry.
#[derive(Debug, Default)]
struct StreamLines {
    splitter: LineSplitter,
    last_entry: Option<String>,
    lines_in_last_entry: u32,
}

impl StreamLines {
    /// The lines completed by one log entry, each with its time.
    fn push(&mut self, entry: Option<&str>, payload: &[u8]) -> Vec<(String, Option<String>)> {
        self.last_entry = entry.map(str::to_owned);
        let texts = self.splitter.push(payload);
        self.lines_in_last_entry = u32::try_from(texts.len()).unwrap_or(u32::MAX);
        texts
            .into_iter()
            .zip(0u32..)
            .map(|(text, k)| (text, entry.map(|entry| line_time(entry, k))))
            .collect()
    }

    /// The unterminated last line, if any.
    fn finish(&mut self) -> Option<(String, Option<String>)> {
        let text = self.splitter.finish()?;
        let time = self
            .last_entry
            .as_deref()
            .map(|entry| line_time(entry, self.lines_in_last_entry));
        Some((text, time))
    }
}
