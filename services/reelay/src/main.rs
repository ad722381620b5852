//! `reelay`: the one binary. Parses arguments and hands over to the server or client crates.

mod dev;
mod logging;
mod servers;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc instead of the system allocator: the servers allocate many small, short-lived buffers
/// (messages, batches), and glibc's malloc took a fifth of the coordinator's CPU under load. Built
/// without transparent huge pages (`no_thp`): mimalloc asks for them on its arenas, and where the
/// kernel grants them on request (`madvise`, common) memory is resident 2 MiB at a time — an idle
/// coordinator was 69 MiB instead of 20, and 10,000 watchers cost 81–86 MiB instead of 65.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Reelay runs video-processing pipelines on a fleet of machines and shows every job's progress live.
///
/// Try it on one machine:   reelay dev            (then open http://127.0.0.1:7070)
/// Submit a job:            reelay job submit count --param steps=50 --watch
/// With an input file:      reelay job submit transcode --upload clip.mp4 --watch
/// See what is configured:  reelay pipeline list
///
/// In production run one `reelay coordinator` and a `reelay worker` on every machine that
/// processes video. Every flag can also be set with an environment variable (REELAY_<FLAG>).
#[derive(Debug, Parser)]
#[command(
    name = "reelay",
    version,
    propagate_version = true,
    verbatim_doc_comment,
    max_term_width = 100
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// A coordinator and one worker in one process, for a laptop or a demo (web UI included).
    Dev(dev::DevArgs),
    /// The coordinator: public API, web UI, job queue and scheduler.
    Coordinator(servers::CoordinatorArgs),
    /// A worker: runs jobs on this machine for a coordinator.
    Worker(servers::WorkerArgs),
    /// Submit, list, watch, cancel jobs; read their logs and download their outputs.
    Job(reelay_cli::JobArgs),
    /// List nodes; drain, undrain and remove them.
    Node(reelay_cli::NodeArgs),
    /// List the pipelines jobs can run.
    Pipeline(reelay_cli::PipelineArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Dev(args) => dev::run(args).await,
            Command::Coordinator(args) => servers::coordinator(args).await,
            Command::Worker(args) => servers::worker(args).await,
            Command::Job(args) => reelay_cli::run_job(args).await,
            Command::Node(args) => reelay_cli::run_node(args).await,
            Command::Pipeline(args) => reelay_cli::run_pipeline(args).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
