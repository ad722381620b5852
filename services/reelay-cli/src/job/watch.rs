//! `reelay job watch`: WatchJob until the job ends, resuming a dropped stream after the last
//! version seen (no event twice, none missed), and the exit code of the job's outcome.

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use reelay_proto::v1;
use tonic::Code;

use crate::error::{AlreadyReported, Interrupted, is_transient};
use crate::reconnect::{self, Backoff};
use crate::render::{Mode, Renderer};
use crate::{Ctx, format};

/// Flags of `reelay job watch`.
#[derive(Debug, Args)]
#[command(after_help = "\
On a terminal a progress bar shows the stage, speed and ETA, with a line per state change. In a
pipe or a log a line is printed per change; with -o json one JSON object per event.
The exit code is 0 when the job succeeds and 1 when it fails or is cancelled.

Examples:
  reelay job watch 0193a1b2-7c4e-7d10-9a0b-2f6c1e3d4a5b
  reelay job watch 0193a1b2-7c4e-7d10-9a0b-2f6c1e3d4a5b -o json | jq -r .progress")]
pub struct WatchArgs {
    /// The job's id.
    pub(crate) id: String,
}

pub(crate) async fn run(ctx: &Ctx, args: WatchArgs) -> anyhow::Result<ExitCode> {
    follow(ctx, &args.id, None).await
}

/// Follows job `id` to its end. `announced`: a state already printed (by submit), not repeated.
pub(crate) async fn follow(
    ctx: &Ctx,
    id: &str,
    announced: Option<i32>,
) -> anyhow::Result<ExitCode> {
    let mode = if ctx.json() {
        Mode::Json
    } else if ctx.interactive() {
        Mode::Bar
    } else {
        Mode::Lines
    };
    let mut renderer = Renderer::new(mode, announced);
    // Ctrl-C stops the watch, not the job: say so, people expect the opposite.
    let result = tokio::select! {
        result = stream_events(ctx, id, &mut renderer) => Some(result),
        Ok(()) = tokio::signal::ctrl_c() => None,
    };
    let last = renderer.finish();
    let Some(result) = result else {
        return Err(Interrupted(format!(
            "stopped watching; job {id} keeps running (stop it with `reelay job cancel {id}`)"
        ))
        .into());
    };
    let ended = result?;
    match last {
        Some(job) => outcome(ctx, &job, ended),
        None => anyhow::bail!("the watch of job {id} ended before any event arrived"),
    }
}

/// How the stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    Terminal,
    Deleted,
}

/// Reads events until the job reaches a terminal state or is deleted.
async fn stream_events(ctx: &Ctx, id: &str, renderer: &mut Renderer) -> anyhow::Result<Ended> {
    let mut client = ctx.conn.jobs();
    let mut after_version = 0;
    let mut backoff = Backoff::new();
    loop {
        let request = v1::WatchJobRequest {
            id: id.to_owned(),
            after_version,
        };
        let cause = match client.watch_job(request).await {
            Ok(response) => {
                let mut stream = response.into_inner();
                loop {
                    match stream.message().await {
                        Ok(Some(event)) => {
                            backoff.reset();
                            // A burst of events must not keep Ctrl-C from being seen.
                            tokio::task::consume_budget().await;
                            after_version = after_version.max(event.version);
                            renderer.event(&event)?;
                            if event.change == v1::JobChange::Deleted as i32 {
                                return Ok(Ended::Deleted);
                            }
                            if event
                                .job
                                .as_ref()
                                .is_some_and(|job| format::is_terminal(job.state))
                            {
                                return Ok(Ended::Terminal);
                            }
                        }
                        // The server ends the stream only after a terminal state; anything else is
                        // a server going away (a restart): resume.
                        Ok(None) => break "the stream ended".to_owned(),
                        Err(status) if is_transient(&status) => break status.message().to_owned(),
                        Err(status) => return Err(status).context(format!("watching job {id}")),
                    }
                }
            }
            // The history before `after_version` is gone (should not happen): start from a snapshot.
            Err(status) if status.code() == Code::OutOfRange && after_version > 0 => {
                after_version = 0;
                continue;
            }
            // Before the first event a failure is reported at once (wrong id, server down).
            Err(status) if after_version > 0 && is_transient(&status) => {
                status.message().to_owned()
            }
            Err(status) => return Err(status.into()),
        };
        if !reconnect::wait(&mut backoff, &cause, |text| renderer.say(text)).await {
            anyhow::bail!(
                "lost the watch of job {id} ({cause}) and could not reconnect for {}; the job may \
                 still be running: `reelay job watch {id}`",
                format::duration(reconnect::GIVE_UP_AFTER)
            );
        }
    }
}

/// Prints how the job ended and gives the exit code: 0 only for SUCCEEDED.
fn outcome(ctx: &Ctx, job: &v1::Job, ended: Ended) -> anyhow::Result<ExitCode> {
    if ended == Ended::Deleted {
        eprintln!("error: job {} was deleted while being watched", job.id);
        return Err(AlreadyReported.into());
    }
    let took = took(job);
    match v1::JobState::try_from(job.state) {
        Ok(v1::JobState::Succeeded) => {
            if !ctx.json() {
                crate::out::line(format_args!("job {} succeeded{took}", job.id))?;
                if !job.outputs.is_empty() {
                    let names: Vec<&str> = job.outputs.iter().map(|f| f.name.as_str()).collect();
                    crate::out::line(format_args!(
                        "outputs: {} (reelay job download {} NAME)",
                        names.join(", "),
                        job.id
                    ))?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Ok(v1::JobState::Cancelled) => {
            eprintln!("error: job {} was cancelled{took}", job.id);
            Err(AlreadyReported.into())
        }
        _ => {
            let why = if job.error.is_empty() {
                job.message.clone()
            } else {
                job.error.clone()
            };
            let attempts = if job.attempt > 1 {
                format!(" after {} attempts", job.attempt)
            } else {
                String::new()
            };
            eprintln!("error: job {} failed{attempts}{took}: {why}", job.id);
            eprintln!("hint: its log: reelay job logs {}", job.id);
            Err(AlreadyReported.into())
        }
    }
}

/// ` in 2.3s`: from the start of the last attempt (or the creation) to the end.
fn took(job: &v1::Job) -> String {
    let start = format::time(job.started_at.as_ref()).or(format::time(job.created_at.as_ref()));
    let end = format::time(job.finished_at.as_ref());
    match (start, end) {
        (Some(start), Some(end)) => match end.duration_since(start) {
            Ok(elapsed) => format!(" in {}", format::duration(elapsed)),
            Err(_) => String::new(),
        },
        _ => String::new(),
    }
}
