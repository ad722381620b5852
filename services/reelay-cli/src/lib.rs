//! Reelay's command-line client: `reelay job …`, `reelay node …`, `reelay pipeline …`.
//!
//! Every command talks to the coordinator's public gRPC API (`--server`, `REELAY_SERVER`) with an
//! optional bearer token (`--token`, `REELAY_TOKEN`).

use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// For people: tables, progress bars.
    Text,
    /// For scripts: one JSON object per line.
    Json,
}

/// Where the coordinator is and how to talk to it.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// Coordinator URL.
    #[arg(
        long,
        env = "REELAY_SERVER",
        default_value = "http://127.0.0.1:7070",
        global = true
    )]
    pub server: String,
    /// API token, sent as `authorization: Bearer <token>`.
    #[arg(long, env = "REELAY_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "text", global = true)]
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

#[derive(Debug, Subcommand)]
pub enum JobCommand {}

/// `reelay node …`
#[derive(Debug, Args)]
pub struct NodeArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    pub command: NodeCommand,
}

#[derive(Debug, Subcommand)]
pub enum NodeCommand {}

/// `reelay pipeline …`
#[derive(Debug, Args)]
pub struct PipelineArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    pub command: PipelineCommand,
}

#[derive(Debug, Subcommand)]
pub enum PipelineCommand {}

pub async fn run_job(args: JobArgs) -> anyhow::Result<ExitCode> {
    match args.command {}
}

pub async fn run_node(args: NodeArgs) -> anyhow::Result<ExitCode> {
    match args.command {}
}

pub async fn run_pipeline(args: PipelineArgs) -> anyhow::Result<ExitCode> {
    match args.command {}
}
