//! Reelay's integration-test harness: real `reelay` processes on loopback ports, temp dirs,
//! real sled files, and clients that follow jobs the way a real client should.
//!
//! - [`artifacts`]: uploads over gRPC, jobs that name them, the local store on disk.
//! - [`chunk`]: the steps of `transcode-chunked` (deploy/pipeline/reelay-chunk) run directly.
//! - [`media`]: test inputs made with ffmpeg; frame counts, durations and frame times from ffprobe.
//! - [`TestCluster`]: a cluster in one line, `TestCluster::builder().workers(2).start().await`.
//! - [`connect`]: how a test client reaches a server (URL, token, CA).
//! - [`grpc_web`]: a minimal grpc-web client over HTTP/1.1, for browser-style calls.
//! - [`process`]: one `reelay` process, started and stopped by PID; RSS and its peak while work runs.
//! - [`watch`]: following a job through WatchJob across restarts.
//! - [`config`]: the test pipelines.
//! - [`tools`]: external tools the tests use (the contract checker).
//! - [`docker`]: the `docker` CLI, test videos and `ffprobe`, for the Docker executor's tests.
//! - [`gauges`]: reading a server's `/metrics` gauges and waiting for a value.
//! - [`faults`]: helpers of the fault tests (proxied clusters, frozen processes, histories).
//! - [`readme`]: the README's commands, read from README.md.
//! - [`proxy`]: a TCP fault proxy (pass, drop, black-hole, restore) between the coordinator and a worker.
//! - [`s3`]: a real S3-compatible server (SeaweedFS) on loopback ports, and a plain S3 client to check it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::missing_panics_doc,
    unreachable_pub
)]

pub mod artifacts;
pub mod chunk;
pub mod cluster;
pub mod config;
pub mod connect;
pub mod docker;
pub mod faults;
pub mod gauges;
pub mod grpc_web;
pub mod http;
pub mod media;
pub mod process;
pub mod proxy;
pub mod readme;
pub mod s3;
pub mod tools;
pub mod watch;

pub use cluster::{TestCluster, TlsFiles, WorkerSpec, job_state, running_piece, spec};
