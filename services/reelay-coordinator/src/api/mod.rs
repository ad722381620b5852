//! The coordinator's public gRPC services. Handlers check the caller's token, convert, delegate to
//! the engine (changes) or storage (reads) and map errors; the decisions live elsewhere.
//!
//! - [`jobs`] — JobService, with [`watch`] for its streams (WatchJob, WatchJobs, GetJobLogs) and
//!   `inputs` for a new job's `input_uri`, [`batch`] for CreateJobs.
//! - [`nodes`] — NodeService (its WatchNodes in [`watch`] too).
//! - [`pipelines`] — PipelineService.
//! - [`stream`] — the one channel every server stream sends through: ends the stream's task when
//!   its client leaves or the server shuts down, and counts it in `/metrics`.

mod batch;
mod inputs;
pub mod jobs;
pub mod nodes;
pub mod pipelines;
mod stream;
mod watch;

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use reelay_core::{Job, JobId};
use reelay_proto::auth::{Access, TokenCheck};
use reelay_proto::v1;
use tonic::{Request, Status};

use crate::engine::{Cluster, Engine};
use crate::hub::Hub;
use crate::links::Links;
use crate::metrics::OpenStreams;
use crate::store::JobStore;
use crate::uploads::Uploads;

/// Queue positions of one job are counted up to this many jobs ahead (GetJob, WatchJob).
pub(crate) const POSITION_CAP: usize = 10_000;
/// Queue positions of pages of jobs are counted up to this many jobs ahead (ListJobs, WatchJobs):
/// one pass over the queue per page, kept short.
pub(crate) const LIST_POSITION_CAP: usize = 1_000;

pub(crate) type ServerStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// What every handler needs.
#[derive(Debug, Clone)]
pub struct ApiState {
    pub engine: Engine,
    pub store: JobStore,
    pub hub: Arc<Hub>,
    pub links: Links,
    /// API and read tokens of clients.
    pub clients: TokenCheck,
    /// The cluster token, for workers.
    pub cluster: TokenCheck,
    /// Ends every stream, so the server can shut down.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// Input files sent to the coordinator, and the artifact store behind them.
    pub uploads: Arc<Uploads>,
    /// How workers reach the artifact store (told at registration).
    pub store_access: Arc<v1::StoreAccess>,
    /// Gauges of open server streams.
    pub streams: OpenStreams,
}

impl ApiState {
    pub(crate) fn read<T>(&self, request: &Request<T>) -> Result<(), Status> {
        self.clients.check(request, Access::Read).map(drop)
    }

    pub(crate) fn write<T>(&self, request: &Request<T>) -> Result<(), Status> {
        self.clients.check(request, Access::Write).map(drop)
    }

    /// A job as clients see it: with why it waits and where it is in the queue.
    pub(crate) fn view(&self, job: &Job) -> v1::Job {
        self.views(std::slice::from_ref(job), POSITION_CAP)
            .pop()
            .unwrap_or_default()
    }

    /// Jobs as clients see them; queue positions come from one pass over the queue, counting at
    /// most `position_cap` jobs (0: no positions; a job further back gets 0, "unknown").
    pub(crate) fn views(&self, jobs: &[Job], position_cap: usize) -> Vec<v1::Job> {
        let queued: Vec<JobId> = jobs
            .iter()
            .filter(|job| job.state == reelay_core::JobState::Queued)
            .map(|job| job.id)
            .collect();
        let positions = if position_cap == 0 {
            Default::default()
        } else {
            self.store
                .queue_positions(&queued, position_cap)
                .unwrap_or_default()
        };
        // The nodes' slots once for all the jobs, not once per job.
        let slots = (!queued.is_empty()).then(|| self.engine.cluster().slots());
        jobs.iter()
            .map(|job| {
                let mut wire = v1::Job::from(job);
                if let Some(slots) = &slots
                    && job.state == reelay_core::JobState::Queued
                {
                    wire.pending_reason = Cluster::pending_reason_in(job, slots);
                    wire.queue_position = positions.get(&job.id).copied().unwrap_or(0) as u32;
                }
                wire
            })
            .collect()
    }
}

pub(crate) fn parse_id(text: &str) -> Result<JobId, Status> {
    JobId::parse(text, "id").map_err(|err| Status::invalid_argument(err.to_string()))
}
