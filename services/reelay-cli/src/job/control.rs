//! Changing jobs: `reelay job cancel`, `retry`, `delete`.

use std::process::ExitCode;

use clap::Args;
use reelay_proto::v1;

use crate::{Ctx, format, json, tty};

use super::watch;

/// Flags of `reelay job cancel`.
#[derive(Debug, Args)]
#[command(after_help = "\
A running pipeline is stopped (SIGTERM, then SIGKILL after a grace period); a queued job leaves the
queue. Cancelling a finished job is an error.

Example:
  reelay job cancel 0193a1b2-7c4e-7d10-9a0b-2f6c1e3d4a5b")]
pub struct CancelArgs {
    /// The job's id.
    pub(crate) id: String,
}

/// Flags of `reelay job retry`.
#[derive(Debug, Args)]
#[command(after_help = "\
The job keeps its id and gets a new attempt number; its earlier logs stay.

Examples:
  reelay job retry 0193a1b2-7c4e-7d10-9a0b-2f6c1e3d4a5b
  reelay job retry 0193a1b2-7c4e-7d10-9a0b-2f6c1e3d4a5b --watch")]
pub struct RetryArgs {
    /// The job's id.
    pub(crate) id: String,
    /// Then follow the job like `reelay job watch`.
    #[arg(long, short = 'w')]
    pub(crate) watch: bool,
}

/// Flags of `reelay job delete`.
#[derive(Debug, Args)]
#[command(after_help = "\
Only finished jobs can be deleted (cancel a running one first). On a terminal you are asked to
confirm; --yes skips the question.

Example:
  reelay job delete 0193a1b2-7c4e-7d10-9a0b-2f6c1e3d4a5b --yes")]
pub struct DeleteArgs {
    /// The job's id.
    pub(crate) id: String,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub(crate) yes: bool,
}

pub(crate) async fn cancel(ctx: &Ctx, args: CancelArgs) -> anyhow::Result<ExitCode> {
    let job = ctx
        .conn
        .jobs()
        .cancel_job(v1::CancelJobRequest { id: args.id })
        .await?
        .into_inner();
    if ctx.json() {
        json::print_line(&json::job(&job))?;
    } else if format::is_terminal(job.state) {
        crate::out::line(format_args!(
            "job {} {}",
            job.id,
            format::job_state(job.state).to_lowercase()
        ))?;
    } else {
        crate::out::line(format_args!(
            "job {} cancel requested; the pipeline on {} is being stopped",
            job.id,
            if job.node_id.is_empty() {
                "its node"
            } else {
                &job.node_id
            }
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn retry(ctx: &Ctx, args: RetryArgs) -> anyhow::Result<ExitCode> {
    let job = ctx
        .conn
        .jobs()
        .retry_job(v1::RetryJobRequest { id: args.id })
        .await?
        .into_inner();
    if ctx.json() {
        if !args.watch {
            json::print_line(&json::job(&job))?;
        }
    } else {
        let note = format::job_note(&job);
        let state = format::job_state(job.state).to_lowercase();
        if note.is_empty() {
            crate::out::line(format_args!(
                "job {} {state} for attempt {}",
                job.id,
                job.attempt + 1
            ))?;
        } else {
            crate::out::line(format_args!(
                "job {} {state} for attempt {}: {note}",
                job.id,
                job.attempt + 1
            ))?;
        }
    }
    if args.watch {
        return watch::follow(ctx, &job.id, Some(job.state)).await;
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn delete(ctx: &Ctx, args: DeleteArgs) -> anyhow::Result<ExitCode> {
    let mut client = ctx.conn.jobs();
    if !args.yes && tty::can_ask() {
        let job = client
            .get_job(v1::GetJobRequest {
                id: args.id.clone(),
            })
            .await?
            .into_inner();
        let pipeline = job
            .spec
            .as_ref()
            .map(|spec| spec.pipeline.as_str())
            .unwrap_or("");
        let question = format!(
            "delete job {} ({pipeline}, {}) with its history, logs and {} output file(s)?",
            job.id,
            format::job_state(job.state),
            job.outputs.len()
        );
        if !tty::confirm(&question)? {
            eprintln!("not deleted");
            return Ok(ExitCode::FAILURE);
        }
    }
    client
        .delete_job(v1::DeleteJobRequest {
            id: args.id.clone(),
        })
        .await?;
    if ctx.json() {
        json::print_line(&serde_json::json!({ "id": args.id, "deleted": true }))?;
    } else {
        crate::out::line(format_args!("job {} deleted", args.id))?;
    }
    Ok(ExitCode::SUCCESS)
}
