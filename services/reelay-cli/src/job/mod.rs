//! `reelay job …`: submit, inspect, watch, control jobs; read their logs and download their outputs.
//!
//! - `submit`: CreateJob (after an upload with `--upload`); with several jobs `batch`
//!   (CreateJobs), `from_file` (`--from`) and `watch_many` (one watch of them all).
//! - `upload`: a local file into the coordinator's artifact store (UploadInput, resumable).
//! - `show`: get, list, history, outputs (reads); `children`: the steps `get` lists under a
//!   job made of jobs.
//! - `control`: cancel, retry, delete.
//! - `watch`: WatchJob with reconnection; `logs`: GetJobLogs with follow; `download`: outputs.

mod batch;
mod children;
mod control;
mod download;
mod from_file;
mod logs;
mod show;
mod submit;
mod upload;
mod watch;
mod watch_many;

use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::Ctx;

pub use control::{CancelArgs, DeleteArgs, RetryArgs};
pub use download::DownloadArgs;
pub use logs::LogsArgs;
pub use show::ListArgs;
pub use submit::SubmitArgs;
pub use upload::UploadArgs;
pub use watch::WatchArgs;

/// The subcommands of `reelay job`.
#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Queue a job of a pipeline (or one per input file); print its id (and follow it with --watch).
    Submit(SubmitArgs),
    /// Show one job: state, progress, node, error, outputs, times (and the steps of a job made of
    /// jobs: split, pieces, join).
    #[command(after_help = "Example:\n  reelay job get 0193a1b2-7c4e-7d10-9a0b-2f6c1e3d4a5b")]
    Get(JobId),
    /// List jobs, newest first.
    List(ListArgs),
    /// Follow a job live until it ends; exit 0 if it succeeded, 1 if it failed or was cancelled.
    Watch(WatchArgs),
    /// Stop a queued or running job.
    Cancel(CancelArgs),
    /// Run a finished (failed, cancelled or succeeded) job again, as a new attempt.
    Retry(RetryArgs),
    /// Delete a finished job with its history, logs and outputs.
    Delete(DeleteArgs),
    /// Print a job's log lines (stdout, stderr and Reelay's own); --follow for new ones.
    Logs(LogsArgs),
    /// Every change a job went through, oldest first.
    #[command(after_help = "Example:\n  reelay job history 0193a1b2-7c4e-7d10-9a0b-2f6c1e3d4a5b")]
    History(JobId),
    /// List the files a job produced, with their size and SHA-256.
    #[command(
        after_help = "Example:\n  reelay job outputs 0193a1b2-7c4e-7d10-9a0b-2f6c1e3d4a5b\n  \
                            reelay job download 0193a1b2-7c4e-7d10-9a0b-2f6c1e3d4a5b count.txt"
    )]
    Outputs(JobId),
    /// Download an output file, verify its SHA-256.
    Download(DownloadArgs),
    /// Send a local file to the coordinator as a job input (resumable); print upload:<id>.
    Upload(UploadArgs),
}

/// A job id, as printed by `reelay job submit` and `reelay job list`.
#[derive(Debug, Args)]
pub struct JobId {
    /// The job's id (a UUID).
    pub(crate) id: String,
}

pub(crate) async fn run(ctx: &Ctx, command: JobCommand) -> anyhow::Result<ExitCode> {
    match command {
        JobCommand::Submit(args) => submit::run(ctx, args).await,
        JobCommand::Get(args) => show::get(ctx, &args.id).await,
        JobCommand::List(args) => show::list(ctx, args).await,
        JobCommand::Watch(args) => watch::run(ctx, args).await,
        JobCommand::Cancel(args) => control::cancel(ctx, args).await,
        JobCommand::Retry(args) => control::retry(ctx, args).await,
        JobCommand::Delete(args) => control::delete(ctx, args).await,
        JobCommand::Logs(args) => logs::run(ctx, args).await,
        JobCommand::History(args) => show::history(ctx, &args.id).await,
        JobCommand::Outputs(args) => show::outputs(ctx, &args.id).await,
        JobCommand::Download(args) => download::run(ctx, args).await,
        JobCommand::Upload(args) => upload::run(ctx, args).await,
    }
}
