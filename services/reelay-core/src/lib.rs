//! Reelay's domain in plain Rust: no network, no storage, no clock of its own.
//!
//! # Layout
//! - [`job`]: jobs, specs, states and outputs as the rest of the code sees them.
//! - [`input`]: a job's `input_uri` (`upload:<id>`, `s3://BUCKET/KEY`).
//! - [`node`]: worker nodes and their states.
//! - [`machine`]: the job state machine, `apply(job, input, now) -> Outcome`.
//! - [`composite`]: jobs made of jobs — a parent and its split, map and join steps.
//! - [`scheduler`]: which queued job goes to which node, and why a job waits.
//! - [`pipeline`]: the pipeline config file (TOML) and the validation of job specs against it.
//! - [`progress`]: the `::progress` line of the pipeline protocol.
//! - [`names`]: validation of ids and output file names.
//! - [`error`]: the crate's error type.

pub mod composite;
pub mod error;
pub mod input;
pub mod job;
pub mod machine;
pub mod names;
pub mod node;
pub mod pipeline;
pub mod progress;
pub mod scheduler;

pub use error::{Error, Result};
pub use job::{
    InputFile, Job, JobChange, JobId, JobSpec, JobState, OutputFile, Piece, Step, Steps, Transfer,
};
pub use node::{Node, NodeState};

/// The version every Reelay process reports (nodes, `--version`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
