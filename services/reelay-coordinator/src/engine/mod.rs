//! The engine: the one task that changes jobs and nodes.
//!
//! Every change goes through it as a [`Command`], so changes to a job are applied one at a time
//! and in order, without locks. It works in cycles: it takes every command waiting (up to a
//! bound), applies each through the pure state machine of `reelay-core`, writes the result in one
//! atomic batch, runs a scheduling pass (whose assignments are a second batch), flushes once if
//! any reply promised durability — so concurrent `CreateJob` calls share one flush (group commit)
//! — and only then replies, publishes to watchers and tells workers what to do.
//!
//! Reads do not go through the engine: API handlers read storage and the [`cluster::Cluster`] view.
//!
//! # Layout
//! - [`Engine`]: the handle API handlers and links use.
//! - [`actor`] — the cycle and one handler per command.
//! - [`cluster`] — the live node view.
//! - [`txn`] — one cycle's overlay of changed jobs and its pending writes.

mod actor;
pub mod cluster;
pub mod manifest;
mod txn;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use reelay_core::machine::Policy;
use reelay_core::pipeline::Pipelines;
use reelay_core::{InputFile, Job, JobId, JobSpec, Node};
use reelay_proto::v1;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::error::{CoordinatorError, Result};
use crate::hub::Hub;
use crate::links::Links;
use crate::metrics::Metrics;
use crate::store::JobStore;
pub use cluster::Cluster;

/// Commands waiting for the engine before callers wait for room.
const COMMAND_QUEUE: usize = 4096;

/// One job to create: what to run and the caller's idempotency key (empty: none).
#[derive(Debug, Clone)]
pub struct NewJob {
    pub spec: JobSpec,
    pub request_id: String,
    /// The input from the artifact store, resolved from `spec.input_uri`.
    pub input: Option<InputFile>,
}

/// A job a create asked for, and whether that create made it (`false`: its request id returned
/// a job made before).
#[derive(Debug, Clone)]
pub struct Created {
    pub job: Job,
    pub new: bool,
}

/// What a node says when it registers.
#[derive(Debug, Clone)]
pub struct Registration {
    pub id: String,
    pub address: String,
    pub labels: std::collections::BTreeMap<String, String>,
    pub slots: u32,
    pub version: String,
    pub executor: String,
}

/// What the link learned when it (re)connected to a node.
#[derive(Debug, Clone)]
pub struct LinkUp {
    pub node: String,
    pub info: v1::WorkerInfo,
}

/// Why a StartJob call did not take.
#[derive(Debug, Clone)]
pub enum StartFailure {
    /// The worker is full or not ready: queue the job again, the attempt does not count.
    Requeue(String),
    /// The worker refused the attempt for good: the attempt failed.
    Refused(String),
    /// The call did not get through; the attempt stays assigned and is sent again when the link is back.
    Unreachable(String),
}

pub(crate) enum Command {
    Create {
        spec: JobSpec,
        request_id: String,
        /// The input from the artifact store, resolved from `spec.input_uri`.
        input: Option<InputFile>,
        reply: oneshot::Sender<Result<Job>>,
    },
    /// A batch create: every item in this one cycle (one commit, one flush), each validated and
    /// de-duplicated on its own; the reply has one result per item, in order.
    CreateMany {
        items: Vec<NewJob>,
        reply: oneshot::Sender<Result<Vec<Result<Created>>>>,
    },
    Cancel {
        id: JobId,
        reply: oneshot::Sender<Result<Job>>,
    },
    /// The manifest of a parent's split was read (or could not be).
    Expand {
        parent: JobId,
        split: JobId,
        manifest: std::result::Result<manifest::Manifest, String>,
    },
    Retry {
        id: JobId,
        reply: oneshot::Sender<Result<Job>>,
    },
    Delete {
        id: JobId,
        reply: oneshot::Sender<Result<()>>,
    },
    Register {
        registration: Registration,
        reply: oneshot::Sender<Result<Node>>,
    },
    SetDrained {
        id: String,
        drained: bool,
        reply: oneshot::Sender<Result<Node>>,
    },
    RemoveNode {
        id: String,
        reply: oneshot::Sender<Result<()>>,
    },
    /// Events from a node's stream, in order; the reply comes once they are stored.
    WorkerEvents {
        node: String,
        log_id: String,
        events: Vec<v1::WorkerEvent>,
        reply: oneshot::Sender<Result<()>>,
    },
    /// The link is up; the reply lists the jobs holding the node's slots (id, attempt) to reconcile.
    LinkUp {
        up: LinkUp,
        reply: oneshot::Sender<Vec<(JobId, u32)>>,
    },
    LinkDown {
        node: String,
        error: String,
    },
    NodeLost {
        node: String,
        generation: u64,
    },
    StartResult {
        job_id: JobId,
        attempt: u32,
        node: String,
        failure: StartFailure,
    },
    /// The node does not know an attempt the coordinator thinks it runs.
    AttemptUnknown {
        job_id: JobId,
        attempt: u32,
        node: String,
    },
    /// Unfinished attempts (id, attempt) a node that came back runs beyond those the engine named
    /// at link up: each that is not its job's current attempt is told to stop.
    AttemptsActive {
        node: String,
        attempts: Vec<(JobId, u32)>,
    },
    /// Remove jobs whose retention has passed.
    Expire,
}

/// Settings of the engine.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    pub policy: Policy,
    pub pipelines: Pipelines,
    /// How long a node may be offline before its jobs fail with "node lost".
    pub node_lost_after: Duration,
}

/// What the engine works with, besides its settings.
#[derive(Debug, Clone)]
pub struct EngineParts {
    pub store: JobStore,
    pub hub: Arc<Hub>,
    pub links: Links,
    pub metrics: Metrics,
    /// Woken when a deleted job's objects are due for removal from the artifact store.
    pub janitor: Arc<tokio::sync::Notify>,
    /// The artifact store (a split's manifest is read from it).
    pub blobs: Arc<dyn reelay_artifacts::Blobs>,
}

/// A handle to the engine.
#[derive(Debug, Clone)]
pub struct Engine {
    tx: mpsc::Sender<Command>,
    cluster: Arc<RwLock<Cluster>>,
    /// Shared, not copied: every API handler and stream holds an `Engine`.
    pipelines: Arc<Pipelines>,
}

impl Engine {
    /// Starts the engine over `store`; it runs until `shutdown` and every handle is gone.
    pub fn start(
        parts: EngineParts,
        settings: EngineSettings,
        shutdown: CancellationToken,
    ) -> Result<(Engine, tokio::task::JoinHandle<Result<()>>)> {
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
        let cluster = Arc::new(RwLock::new(Cluster::default()));
        let engine = Engine {
            tx: tx.clone(),
            cluster: Arc::clone(&cluster),
            pipelines: Arc::new(settings.pipelines.clone()),
        };
        let actor = actor::Actor::load(parts, settings, cluster, tx.downgrade(), engine.clone())?;
        let task = tokio::spawn(actor.run(rx, shutdown));
        Ok((engine, task))
    }

    pub fn cluster(&self) -> std::sync::RwLockReadGuard<'_, Cluster> {
        self.cluster
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn pipelines(&self) -> &Pipelines {
        &self.pipelines
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<Result<T>>) -> Command) -> Result<T> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| CoordinatorError::Stopped)?;
        answer.await.map_err(|_| CoordinatorError::Stopped)?
    }

    /// Creates a job; `input` is its input from the artifact store, resolved from
    /// `spec.input_uri` by the caller (`None` for jobs without one).
    pub async fn create(
        &self,
        spec: JobSpec,
        request_id: String,
        input: Option<InputFile>,
    ) -> Result<Job> {
        self.ask(|reply| Command::Create {
            spec,
            request_id,
            input,
            reply,
        })
        .await
    }

    /// Creates every job of `items` in one engine cycle; one result per item, in order. The
    /// outer error means nothing was stored (the engine stopped or storage failed).
    pub async fn create_many(&self, items: Vec<NewJob>) -> Result<Vec<Result<Created>>> {
        self.ask(|reply| Command::CreateMany { items, reply }).await
    }

    pub async fn cancel(&self, id: JobId) -> Result<Job> {
        self.ask(|reply| Command::Cancel { id, reply }).await
    }

    pub async fn retry(&self, id: JobId) -> Result<Job> {
        self.ask(|reply| Command::Retry { id, reply }).await
    }

    pub async fn delete(&self, id: JobId) -> Result<()> {
        self.ask(|reply| Command::Delete { id, reply }).await
    }

    pub async fn register(&self, registration: Registration) -> Result<Node> {
        self.ask(|reply| Command::Register {
            registration,
            reply,
        })
        .await
    }

    pub async fn set_drained(&self, id: String, drained: bool) -> Result<Node> {
        self.ask(|reply| Command::SetDrained { id, drained, reply })
            .await
    }

    pub async fn remove_node(&self, id: String) -> Result<()> {
        self.ask(|reply| Command::RemoveNode { id, reply }).await
    }

    pub(crate) async fn worker_events(
        &self,
        node: String,
        log_id: String,
        events: Vec<v1::WorkerEvent>,
    ) -> Result<()> {
        self.ask(|reply| Command::WorkerEvents {
            node,
            log_id,
            events,
            reply,
        })
        .await
    }

    pub(crate) async fn link_up(&self, up: LinkUp) -> Result<Vec<(JobId, u32)>> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Command::LinkUp { up, reply })
            .await
            .map_err(|_| CoordinatorError::Stopped)?;
        answer.await.map_err(|_| CoordinatorError::Stopped)
    }

    pub(crate) async fn send(&self, command: Command) {
        // Only fails when the engine stopped, and then nobody needs the news.
        let _ = self.tx.send(command).await;
    }
}
