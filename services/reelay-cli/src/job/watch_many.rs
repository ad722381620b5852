//! Following several jobs to their end (`reelay job submit --watch` with several jobs).
//!
//! One `WatchJobs` stream carries the changes of all of them. It is opened *before* the jobs are
//! created, so no change between the creation and the watch is missed; the jobs as the create
//! answered are the starting point. When the stream breaks (a coordinator restart) it is opened
//! again and the unfinished jobs are read once with GetJob; when the server says this watcher fell
//! behind (it re-sends snapshots), the same. Events older than what is known are skipped (by
//! version), so nothing is shown twice. Exits 0 only when every job succeeded.

use std::collections::HashMap;
use std::process::ExitCode;

use anyhow::Context;
use reelay_proto::v1;
use tonic::{Code, Streaming};

use crate::error::{AlreadyReported, Interrupted, is_transient};
use crate::reconnect::{self, Backoff};
use crate::render::Mode;
use crate::render_many::{Ended, ManyRenderer};
use crate::{Ctx, format};

/// A job to follow and what to call it.
#[derive(Debug, Clone)]
pub(crate) struct Tracked {
    pub(crate) job: v1::Job,
    /// The input or line it came from (shown next to its id).
    pub(crate) label: String,
}

/// A WatchJobs stream, open before the jobs it follows exist.
#[derive(Debug)]
pub(crate) struct Watch {
    stream: Streaming<v1::JobEvent>,
}

impl Watch {
    /// Opens the stream; once this returns, the server relays every change.
    pub(crate) async fn open(ctx: &Ctx) -> anyhow::Result<Self> {
        let stream = open_stream(ctx)
            .await
            .context("watching the jobs (WatchJobs)")?;
        Ok(Watch { stream })
    }

    /// Follows `jobs` until every one has ended; prints the summary and gives the exit code.
    pub(crate) async fn follow(self, ctx: &Ctx, jobs: Vec<Tracked>) -> anyhow::Result<ExitCode> {
        let mode = if ctx.json() {
            Mode::Json
        } else if ctx.interactive() {
            Mode::Bar
        } else {
            Mode::Lines
        };
        let mut follower = Follower::new(jobs, ManyRenderer::new(mode));
        let result = tokio::select! {
            result = follower.run(ctx, self.stream) => Some(result),
            Ok(()) = tokio::signal::ctrl_c() => None,
        };
        let open = follower.open_count();
        follower.renderer.finish();
        match result {
            None => Err(Interrupted(format!(
                "stopped watching; {open} job{} keep running (`reelay job list --state active`)",
                if open == 1 { "" } else { "s" }
            ))
            .into()),
            Some(result) => {
                result?;
                follower.summary(ctx)
            }
        }
    }
}

async fn open_stream(ctx: &Ctx) -> Result<Streaming<v1::JobEvent>, tonic::Status> {
    let request = v1::WatchJobsRequest {
        states: Vec::new(),
        no_snapshot: true,
    };
    Ok(ctx.conn.jobs().watch_jobs(request).await?.into_inner())
}

/// The jobs followed and how each stands.
struct Follower {
    jobs: HashMap<String, Entry>,
    /// Ids in the order they were submitted (for the summary).
    order: Vec<String>,
    renderer: ManyRenderer,
}

struct Entry {
    label: String,
    job: v1::Job,
    ended: Option<Ended>,
}

impl Follower {
    fn new(jobs: Vec<Tracked>, mut renderer: ManyRenderer) -> Self {
        renderer.start(jobs.len());
        let mut follower = Follower {
            jobs: HashMap::with_capacity(jobs.len()),
            order: Vec::with_capacity(jobs.len()),
            renderer,
        };
        for tracked in jobs {
            let id = tracked.job.id.clone();
            if follower.jobs.contains_key(&id) {
                // The same job twice in one command (a repeated request id): followed once.
                continue;
            }
            follower.order.push(id.clone());
            let ended = ended(&tracked.job);
            follower.renderer.first(&tracked.label, &tracked.job, ended);
            follower.jobs.insert(
                id,
                Entry {
                    label: tracked.label,
                    job: tracked.job,
                    ended,
                },
            );
        }
        follower
    }

    fn open_count(&self) -> usize {
        self.jobs.values().filter(|e| e.ended.is_none()).count()
    }

    /// Reads the stream until every job has ended, resuming it when it breaks.
    async fn run(&mut self, ctx: &Ctx, stream: Streaming<v1::JobEvent>) -> anyhow::Result<()> {
        let mut stream = Some(stream);
        let mut backoff = Backoff::new();
        let mut in_snapshots = false;
        while self.open_count() > 0 {
            let Some(live) = stream.as_mut() else {
                match open_stream(ctx).await {
                    Ok(opened) => {
                        stream = Some(opened);
                        // Changes while the stream was down: read each unfinished job once.
                        self.refresh(ctx).await?;
                    }
                    Err(status) if is_transient(&status) => {
                        self.wait(&mut backoff, status.message()).await?;
                    }
                    Err(status) => return Err(status).context("watching the jobs (WatchJobs)"),
                }
                continue;
            };
            match live.message().await {
                Ok(Some(event)) => {
                    backoff.reset();
                    tokio::task::consume_budget().await;
                    let snapshot = event.change == v1::JobChange::Snapshot as i32;
                    if snapshot && !in_snapshots {
                        // The server says this watcher fell behind: it re-sends the active jobs,
                        // but a job that ended meanwhile is not among them.
                        self.refresh(ctx).await?;
                    }
                    in_snapshots = snapshot;
                    self.apply(&event)?;
                }
                Ok(None) => {
                    stream = None;
                    self.wait(&mut backoff, "the stream ended").await?;
                }
                Err(status) if is_transient(&status) => {
                    stream = None;
                    self.wait(&mut backoff, status.message()).await?;
                }
                Err(status) => return Err(status).context("watching the jobs"),
            }
        }
        Ok(())
    }

    async fn wait(&self, backoff: &mut Backoff, cause: &str) -> anyhow::Result<()> {
        if reconnect::wait(backoff, cause, |text| self.renderer.say(text)).await {
            return Ok(());
        }
        anyhow::bail!(
            "lost the watch of {} unfinished jobs ({cause}) and could not reconnect for {}; they may \
             still be running: `reelay job list --state active`",
            self.open_count(),
            format::duration(reconnect::GIVE_UP_AFTER)
        )
    }

    /// Reads every unfinished job with GetJob and applies what changed.
    async fn refresh(&mut self, ctx: &Ctx) -> anyhow::Result<()> {
        let mut client = ctx.conn.jobs();
        let open: Vec<String> = self
            .order
            .iter()
            .filter(|id| self.jobs.get(*id).is_some_and(|e| e.ended.is_none()))
            .cloned()
            .collect();
        for id in open {
            let event = match client.get_job(v1::GetJobRequest { id: id.clone() }).await {
                Ok(job) => snapshot(job.into_inner()),
                Err(status) if status.code() == Code::NotFound => {
                    let Some(entry) = self.jobs.get(&id) else {
                        continue;
                    };
                    v1::JobEvent {
                        job_id: id.clone(),
                        version: entry.job.version + 1,
                        job: Some(entry.job.clone()),
                        change: v1::JobChange::Deleted as i32,
                        previous_state: 0,
                        time: None,
                    }
                }
                Err(status) => return Err(status).context(format!("reading job {id}")),
            };
            self.apply(&event)?;
        }
        Ok(())
    }

    /// Applies an event of any job: only those followed, only newer than what is known.
    fn apply(&mut self, event: &v1::JobEvent) -> anyhow::Result<()> {
        let Some(entry) = self.jobs.get_mut(&event.job_id) else {
            return Ok(());
        };
        if entry.ended.is_some() || event.version <= entry.job.version {
            return Ok(());
        }
        let Some(job) = &event.job else {
            return Ok(());
        };
        let deleted = event.change == v1::JobChange::Deleted as i32;
        let ended_now = if deleted {
            Some(Ended::Deleted)
        } else {
            ended(job)
        };
        self.renderer
            .event(&entry.label, &entry.job, event, ended_now)?;
        entry.job = job.clone();
        entry.job.version = event.version;
        entry.ended = ended_now;
        Ok(())
    }

    /// Prints how the jobs ended and gives the exit code: 0 only when every one succeeded.
    fn summary(&self, ctx: &Ctx) -> anyhow::Result<ExitCode> {
        let mut counts: HashMap<Ended, usize> = HashMap::new();
        for entry in self.jobs.values() {
            if let Some(ended) = entry.ended {
                *counts.entry(ended).or_default() += 1;
            }
        }
        let count = |ended| counts.get(&ended).copied().unwrap_or(0);
        let failures = self.jobs.len() - count(Ended::Succeeded);
        if !ctx.json() {
            let mut parts = vec![format!("{} succeeded", count(Ended::Succeeded))];
            for (ended, name) in [
                (Ended::Failed, "failed"),
                (Ended::Cancelled, "cancelled"),
                (Ended::Deleted, "deleted"),
            ] {
                if count(ended) > 0 {
                    parts.push(format!("{} {name}", count(ended)));
                }
            }
            crate::out::line(format_args!(
                "{} job{}: {}",
                self.jobs.len(),
                if self.jobs.len() == 1 { "" } else { "s" },
                parts.join(", ")
            ))?;
        }
        if failures == 0 {
            return Ok(ExitCode::SUCCESS);
        }
        for id in &self.order {
            let Some(entry) = self.jobs.get(id) else {
                continue;
            };
            let job = &entry.job;
            let what = match entry.ended {
                Some(Ended::Failed) => {
                    let why = if job.error.is_empty() {
                        &job.message
                    } else {
                        &job.error
                    };
                    format!("failed: {why} (its log: reelay job logs {id})")
                }
                Some(Ended::Cancelled) => "was cancelled".to_owned(),
                Some(Ended::Deleted) => "was deleted while being watched".to_owned(),
                Some(Ended::Succeeded) | None => continue,
            };
            eprintln!("error: job {id} ({}) {what}", entry.label);
        }
        Err(AlreadyReported.into())
    }
}

/// How a job ended, if it did.
fn ended(job: &v1::Job) -> Option<Ended> {
    match v1::JobState::try_from(job.state) {
        Ok(v1::JobState::Succeeded) => Some(Ended::Succeeded),
        Ok(v1::JobState::Failed) => Some(Ended::Failed),
        Ok(v1::JobState::Cancelled) => Some(Ended::Cancelled),
        _ => None,
    }
}

fn snapshot(job: v1::Job) -> v1::JobEvent {
    v1::JobEvent {
        job_id: job.id.clone(),
        version: job.version,
        job: Some(job),
        change: v1::JobChange::Snapshot as i32,
        previous_state: 0,
        time: None,
    }
}
