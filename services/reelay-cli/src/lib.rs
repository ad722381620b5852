//! Reelay's command-line client: `reelay job …`, `reelay node …`, `reelay pipeline …`.
//!
//! Every command talks to the coordinator's public gRPC API (`--server`, `REELAY_SERVER`) with an
//! optional bearer token (`--token`, `REELAY_TOKEN`).
//!
//! # Layout
//! - [`job`], [`node`], [`pipeline`]: one module per command group (flags and what they do).
//! - `client`: the channel to the coordinator and the bearer token on every call.
//! - `error`: `error: …` and `hint: …` on stderr, exit codes.
//! - `args`: parsing `KEY=VALUE`, durations, states and input paths.
//! - `format`: tables, ages, sizes for people; `json`: the API's messages as JSON for scripts.
//! - `render`: a watched job as a progress bar, lines or JSON; `render_many`: several watched jobs
//!   (an overall bar and a bar per running job); `render_steps`: a parent's steps under its bar or
//!   as lines; `reconnect`: backoff for streams.
//! - `tty`: terminal checks and confirmation prompts; `out`: stdout without panics on a closed pipe.
//!
//! Exit codes: 0 success; 1 failure (an error, a job that ended FAILED or CANCELLED, a checksum
//! mismatch); 2 a wrong command line.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Args, ValueEnum};

mod args;
mod client;
mod error;
mod format;
pub mod job;
mod json;
pub mod node;
mod out;
pub mod pipeline;
mod reconnect;
mod render;
mod render_many;
mod render_steps;
mod tty;

pub use job::JobCommand;
pub use node::NodeCommand;
pub use pipeline::PipelineCommand;

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// For people: tables, progress bars.
    Text,
    /// For scripts: one JSON object per line.
    Json,
}

/// The heading of the flags every client command takes.
const GLOBAL: &str = "Connection and output";

/// Where the coordinator is and how to talk to it.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// Coordinator URL (http://HOST:PORT, or https://HOST:PORT when it serves TLS).
    #[arg(
        long,
        env = "REELAY_SERVER",
        default_value = "http://127.0.0.1:7070",
        global = true,
        value_name = "URL",
        help_heading = GLOBAL
    )]
    pub server: String,
    /// API token, sent as `authorization: Bearer <token>`.
    #[arg(
        long,
        env = "REELAY_TOKEN",
        hide_env_values = true,
        global = true,
        help_heading = GLOBAL
    )]
    pub token: Option<String>,
    /// CA certificate (PEM) to verify an https:// server with (default: the system's roots).
    #[arg(
        long,
        env = "REELAY_TLS_CA",
        global = true,
        value_name = "PEM",
        help_heading = GLOBAL
    )]
    pub tls_ca: Option<std::path::PathBuf>,
    /// Output format: `text` for people, `json` for scripts (one JSON object per line).
    #[arg(
        long,
        short = 'o',
        value_enum,
        default_value = "text",
        global = true,
        value_name = "FORMAT",
        help_heading = GLOBAL
    )]
    pub output: OutputFormat,
}

/// `reelay job …`
#[derive(Debug, Args)]
pub struct JobArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    pub command: JobCommand,
}

/// `reelay node …`
#[derive(Debug, Args)]
pub struct NodeArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    pub command: NodeCommand,
}

/// `reelay pipeline …`
#[derive(Debug, Args)]
pub struct PipelineArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    pub command: PipelineCommand,
}

/// Runs `reelay job …`; errors are printed here (with a hint), the exit code is returned.
pub async fn run_job(args: JobArgs) -> anyhow::Result<ExitCode> {
    let server = args.client.server.clone();
    let result = async {
        let ctx = Ctx::new(&args.client)?;
        job::run(&ctx, args.command).await
    };
    Ok(finish(result.await, &server))
}

/// Runs `reelay node …`; errors are printed here (with a hint), the exit code is returned.
pub async fn run_node(args: NodeArgs) -> anyhow::Result<ExitCode> {
    let server = args.client.server.clone();
    let result = async {
        let ctx = Ctx::new(&args.client)?;
        node::run(&ctx, args.command).await
    };
    Ok(finish(result.await, &server))
}

/// Runs `reelay pipeline …`; errors are printed here (with a hint), the exit code is returned.
pub async fn run_pipeline(args: PipelineArgs) -> anyhow::Result<ExitCode> {
    let server = args.client.server.clone();
    let result = async {
        let ctx = Ctx::new(&args.client)?;
        pipeline::run(&ctx, args.command).await
    };
    Ok(finish(result.await, &server))
}

/// Errors are printed here, with a hint, rather than by `main`.
fn finish(result: anyhow::Result<ExitCode>, server: &str) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(err) => error::report(&err, server),
    }
}

/// What every command needs.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub(crate) conn: client::Connection,
    pub(crate) output: OutputFormat,
}

impl Ctx {
    fn new(args: &ClientArgs) -> anyhow::Result<Self> {
        Ok(Ctx {
            conn: client::Connection::new(
                &args.server,
                args.token.as_deref(),
                args.tls_ca.as_deref(),
            )?,
            output: args.output,
        })
    }

    pub(crate) fn json(&self) -> bool {
        self.output == OutputFormat::Json
    }

    /// Text on a terminal: progress bars and prompts are welcome.
    pub(crate) fn interactive(&self) -> bool {
        !self.json() && std::io::stdout().is_terminal() && std::io::stderr().is_terminal()
    }
}
