//! One link per worker: the coordinator's connection to a node.
//!
//! A link connects to the node's WorkerService, checks it is the node it expects, tells the engine
//! (which answers with the attempts it believes the node holds), reconciles those with the node,
//! then follows `StreamEvents` from the stored cursor and hands each batch of events to the engine,
//! waiting until they are stored before reading more. It also carries the engine's calls to the
//! node (StartJob, CancelJob, DeleteJob). When the connection fails — including a silent one:
//! HTTP/2 keepalive pings must be answered within seconds — it tells the engine and reconnects
//! with backoff.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::FutureExt;
use reelay_core::JobId;
use reelay_core::input::InputUri;
use reelay_proto::auth::ClusterAuth;
use reelay_proto::tls::{ClientTls, error_chain};
use reelay_proto::v1;
use reelay_proto::v1::worker_service_client::WorkerServiceClient;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::engine::{Command, Engine, LinkUp, StartFailure};
use crate::store::JobStore;

/// A client of one worker, with the cluster token on every call.
pub type WorkerClient = WorkerServiceClient<InterceptedService<Channel, ClusterAuth>>;

/// Calls waiting for a link before new ones are dropped (the engine reconciles later).
const LINK_QUEUE: usize = 1024;
/// Events handed to the engine at most per batch.
const EVENT_BATCH: usize = 512;
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How often the coordinator tells a worker which events it may forget: those applied before the
/// previous tick, long since flushed (sled flushes every 500 ms).
const TRIM_EVERY: Duration = Duration::from_secs(30);
/// Keepalive: a node that does not answer a ping within this is offline.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(2);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(3);

/// A call the engine asks a node to carry out.
#[derive(Debug, Clone)]
pub enum LinkCall {
    Start {
        job_id: JobId,
        attempt: u32,
        request: Box<v1::StartJobRequest>,
    },
    Cancel {
        job_id: JobId,
        attempt: u32,
        reason: String,
    },
    Delete {
        job_id: JobId,
    },
    /// The worker may forget its events up to `through_seq`.
    Trim {
        through_seq: u64,
    },
}

#[derive(Debug)]
struct LinkHandle {
    address: String,
    calls: mpsc::Sender<LinkCall>,
    stop: CancellationToken,
    /// The connected client, for API handlers (downloads).
    client: Arc<Mutex<Option<WorkerClient>>>,
}

/// All links, by node id.
#[derive(Debug, Clone)]
pub struct Links {
    links: Arc<Mutex<HashMap<String, LinkHandle>>>,
    store: JobStore,
    auth: ClusterAuth,
    /// How nodes on `https://` addresses are verified.
    tls: ClientTls,
    shutdown: CancellationToken,
}

impl Links {
    pub fn new(
        store: JobStore,
        auth: ClusterAuth,
        tls: ClientTls,
        shutdown: CancellationToken,
    ) -> Self {
        Links {
            links: Arc::default(),
            store,
            auth,
            tls,
            shutdown,
        }
    }

    /// Makes sure a link to `node` at `address` runs (restarting it when the address changed).
    pub(crate) fn ensure(&self, node: &str, address: &str, engine: &Engine) {
        let mut links = self.links.lock().unwrap_or_else(PoisonError::into_inner);
        if links.get(node).is_some_and(|link| link.address == address) {
            return;
        }
        if let Some(old) = links.remove(node) {
            old.stop.cancel();
        }
        let (calls, calls_rx) = mpsc::channel(LINK_QUEUE);
        let stop = self.shutdown.child_token();
        let client = Arc::new(Mutex::new(None));
        let link = Link {
            node: node.to_owned(),
            address: address.to_owned(),
            engine: engine.clone(),
            store: self.store.clone(),
            auth: self.auth.clone(),
            tls: self.tls.clone(),
            stop: stop.clone(),
            client: Arc::clone(&client),
        };
        tokio::spawn(link.run(calls_rx));
        links.insert(
            node.to_owned(),
            LinkHandle {
                address: address.to_owned(),
                calls,
                stop,
                client,
            },
        );
    }

    pub(crate) fn remove(&self, node: &str) {
        if let Some(link) = self
            .links
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(node)
        {
            link.stop.cancel();
        }
    }

    /// Queues a call to `node`; false when it could not be queued.
    pub(crate) fn call(&self, node: &str, call: LinkCall) -> bool {
        let links = self.links.lock().unwrap_or_else(PoisonError::into_inner);
        links
            .get(node)
            .is_some_and(|link| link.calls.try_send(call).is_ok())
    }

    /// A client of `node` when its link is connected.
    pub fn client(&self, node: &str) -> Option<WorkerClient> {
        let links = self.links.lock().unwrap_or_else(PoisonError::into_inner);
        links.get(node).and_then(|link| {
            link.client
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
        })
    }
}

struct Link {
    node: String,
    address: String,
    engine: Engine,
    store: JobStore,
    auth: ClusterAuth,
    tls: ClientTls,
    stop: CancellationToken,
    client: Arc<Mutex<Option<WorkerClient>>>,
}

impl Link {
    async fn run(self, mut calls: mpsc::Receiver<LinkCall>) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let result = self.session(&mut calls, &mut backoff).await;
            *self.client.lock().unwrap_or_else(PoisonError::into_inner) = None;
            if self.stop.is_cancelled() {
                return;
            }
            let error = match result {
                Ok(()) => "the node ended its event stream".to_owned(),
                Err(status) => describe(&status),
            };
            tracing::warn!(node = %self.node, address = %self.address, error = %error, "link to node lost; reconnecting");
            self.engine
                .send(Command::LinkDown {
                    node: self.node.clone(),
                    error,
                })
                .await;
            // Calls that arrive while the node is away cannot be delivered: the engine re-sends
            // what matters when the link is back (reconciliation).
            let wait = tokio::time::sleep(backoff);
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    () = &mut wait => break,
                    () = self.stop.cancelled() => return,
                    call = calls.recv() => match call {
                        Some(call) => self.undeliverable(call).await,
                        None => return,
                    },
                }
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// One connection: connect, identify, reconcile, then follow the event stream.
    async fn session(
        &self,
        calls: &mut mpsc::Receiver<LinkCall>,
        backoff: &mut Duration,
    ) -> Result<(), Status> {
        let endpoint = self
            .tls
            .endpoint(&self.address)
            .map_err(|err| Status::invalid_argument(format!("bad node address: {err}")))?
            .connect_timeout(Duration::from_secs(3))
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(true)
            .initial_connection_window_size(16 * 1024 * 1024);
        let channel = tokio::select! {
            channel = endpoint.connect() => channel.map_err(|err| Status::unavailable(format!("cannot connect: {}", error_chain(&err))))?,
            () = self.stop.cancelled() => return Ok(()),
        };
        let mut client = WorkerServiceClient::with_interceptor(channel, self.auth.clone())
            .max_decoding_message_size(16 * 1024 * 1024);
        let info = client.get_info(v1::GetInfoRequest {}).await?.into_inner();
        if info.node_id != self.node {
            return Err(Status::failed_precondition(format!(
                "{} answers as node {:?}, not {:?}",
                self.address, info.node_id, self.node
            )));
        }
        let log_id = info.log_id.clone();
        let holders = self
            .engine
            .link_up(LinkUp {
                node: self.node.clone(),
                info,
            })
            .await
            .map_err(|err| Status::unavailable(err.to_string()))?;
        *self.client.lock().unwrap_or_else(PoisonError::into_inner) = Some(client.clone());
        self.reconcile(&mut client, holders).await;

        let cursor = self
            .store
            .cursor(&self.node)
            .map_err(|err| Status::internal(err.to_string()))?;
        let after_seq = if cursor.log_id == log_id {
            cursor.seq
        } else {
            0
        };
        if after_seq == 0 && !cursor.log_id.is_empty() && cursor.log_id != log_id {
            tracing::warn!(node = %self.node, "the node's event log is new (its data was replaced); reading it from the start");
        }
        let request = v1::StreamEventsRequest {
            after_seq,
            node_id: self.node.clone(),
        };
        let mut stream = client.stream_events(request).await?.into_inner();
        *backoff = Duration::from_millis(100);
        tracing::info!(node = %self.node, after_seq, "following the node's events");
        let mut applied = after_seq;
        let mut trim =
            tokio::time::interval_at(tokio::time::Instant::now() + TRIM_EVERY, TRIM_EVERY);
        let mut applied_at_last_tick = None;
        loop {
            tokio::select! {
                _ = trim.tick() => {
                    if let Some(through_seq) = applied_at_last_tick.filter(|seq| *seq > 0) {
                        self.deliver(client.clone(), LinkCall::Trim { through_seq });
                    }
                    applied_at_last_tick = Some(applied);
                }
                message = stream.message() => {
                    let Some(first) = message? else { return Ok(()) };
                    let mut events = vec![first];
                    while events.len() < EVENT_BATCH {
                        match stream.message().now_or_never() {
                            Some(Ok(Some(event))) => events.push(event),
                            Some(Err(status)) => return Err(status),
                            Some(Ok(None)) | None => break,
                        }
                    }
                    let last = events.iter().map(|event| event.seq).max().unwrap_or(0);
                    self.engine
                        .worker_events(self.node.clone(), log_id.clone(), events)
                        .await
                        .map_err(|err| Status::unavailable(err.to_string()))?;
                    applied = applied.max(last);
                }
                call = calls.recv() => match call {
                    Some(call) => self.deliver(client.clone(), call),
                    None => return Ok(()),
                },
                () = self.stop.cancelled() => return Ok(()),
            }
        }
    }

    /// Checks the attempts the engine believes the node holds: re-sends the starts the node never
    /// got, and reports the attempts it does not know. Then reports the node's other unfinished
    /// attempts, for the engine to stop those superseded while the node was away.
    async fn reconcile(&self, client: &mut WorkerClient, holders: Vec<(JobId, u32)>) {
        self.check_holders(client, &holders).await;
        // An attempt superseded while the node was away (retried elsewhere after "node lost",
        // cancelled while unreachable) may still run there, and its stop could not be delivered.
        // One that prints would be stopped on its next event; a quiet one only here.
        let active = client
            .list_jobs(v1::WorkerListJobsRequest { active_only: true })
            .await;
        let active = match active {
            Ok(list) => list.into_inner().jobs,
            Err(status) => {
                tracing::warn!(node = %self.node, error = %status.message(), "cannot list the node's attempts");
                return;
            }
        };
        let attempts: Vec<(JobId, u32)> = active
            .iter()
            .filter_map(|job| Some((JobId::parse(&job.job_id, "job_id").ok()?, job.attempt)))
            .filter(|attempt| !holders.contains(attempt))
            .collect();
        if !attempts.is_empty() {
            let command = Command::AttemptsActive {
                node: self.node.clone(),
                attempts,
            };
            self.engine.send(command).await;
        }
    }

    async fn check_holders(&self, client: &mut WorkerClient, holders: &[(JobId, u32)]) {
        for &(job_id, attempt) in holders {
            let known = client
                .get_job(v1::WorkerGetJobRequest {
                    job_id: job_id.to_string(),
                })
                .await;
            let known_attempt = match known {
                Ok(job) => Some(job.into_inner().attempt),
                Err(status) if status.code() == Code::NotFound => None,
                Err(status) => {
                    tracing::warn!(node = %self.node, %job_id, error = %status.message(), "cannot check an attempt");
                    continue;
                }
            };
            if known_attempt == Some(attempt) {
                continue;
            }
            match self.store.job(job_id) {
                Ok(Some(job))
                    if job.state == reelay_core::JobState::Assigned && job.attempt == attempt =>
                {
                    self.deliver(
                        client.clone(),
                        LinkCall::Start {
                            job_id,
                            attempt,
                            request: Box::new(start_request(&job, attempt)),
                        },
                    );
                }
                Ok(Some(_)) => {
                    let command = Command::AttemptUnknown {
                        job_id,
                        attempt,
                        node: self.node.clone(),
                    };
                    self.engine.send(command).await;
                }
                Ok(None) | Err(_) => {}
            }
        }
    }

    /// Carries out a call in its own task (never blocks the event stream).
    fn deliver(&self, mut client: WorkerClient, call: LinkCall) {
        let engine = self.engine.clone();
        let node = self.node.clone();
        tokio::spawn(async move {
            match call {
                LinkCall::Start {
                    job_id,
                    attempt,
                    request,
                } => {
                    if let Err(status) = client.start_job(*request).await {
                        let failure = start_failure(&status);
                        tracing::warn!(%node, %job_id, attempt, error = %status.message(), "StartJob failed");
                        engine
                            .send(Command::StartResult {
                                job_id,
                                attempt,
                                node,
                                failure,
                            })
                            .await;
                    }
                }
                LinkCall::Cancel {
                    job_id,
                    attempt,
                    reason,
                } => {
                    let request = v1::WorkerCancelJobRequest {
                        job_id: job_id.to_string(),
                        attempt,
                        reason,
                    };
                    // A cancel must not be lost to a passing error: try again a few times; if the
                    // link breaks meanwhile, reconnecting sends it again (link up reconciles).
                    let mut backoff = Duration::from_millis(200);
                    for _ in 0..5 {
                        match client.cancel_job(request.clone()).await {
                            Ok(_) => break,
                            Err(status)
                                if matches!(
                                    status.code(),
                                    Code::NotFound | Code::InvalidArgument
                                ) =>
                            {
                                break;
                            }
                            Err(status) => {
                                tracing::warn!(%node, %job_id, attempt, error = %status.message(), "CancelJob failed; retrying");
                                tokio::time::sleep(backoff).await;
                                backoff = (backoff * 2).min(MAX_BACKOFF);
                            }
                        }
                    }
                }
                LinkCall::Trim { through_seq } => {
                    match client
                        .trim_events(v1::TrimEventsRequest { through_seq })
                        .await
                    {
                        Ok(response) => {
                            let removed = response.into_inner().removed;
                            tracing::debug!(%node, through_seq, removed, "worker trimmed its event log");
                        }
                        Err(status) => {
                            tracing::debug!(%node, error = %status.message(), "TrimEvents failed")
                        }
                    }
                }
                LinkCall::Delete { job_id } => {
                    let request = v1::WorkerDeleteJobRequest {
                        job_id: job_id.to_string(),
                    };
                    if let Err(status) = client.delete_job(request).await {
                        tracing::debug!(%node, %job_id, error = %status.message(), "DeleteJob on the node failed");
                    }
                }
            }
        });
    }

    async fn undeliverable(&self, call: LinkCall) {
        if let LinkCall::Start {
            job_id, attempt, ..
        } = call
        {
            let failure = StartFailure::Unreachable(format!("node {} is not connected", self.node));
            self.engine
                .send(Command::StartResult {
                    job_id,
                    attempt,
                    node: self.node.clone(),
                    failure,
                })
                .await;
        }
    }
}

/// What a worker is told to start: the attempt, its spec, and its input in the artifact store.
pub(crate) fn start_request(job: &reelay_core::Job, attempt: u32) -> v1::StartJobRequest {
    let input_object = job
        .input
        .as_ref()
        .and_then(|input| InputUri::parse(&input.uri, "input_uri").ok())
        .map(|uri| v1::ObjectRef::from(&reelay_artifacts::keys::input_object(&uri)));
    let object = |input: &reelay_core::InputFile| {
        InputUri::parse(&input.uri, "input_uri")
            .ok()
            .map(|uri| v1::ObjectRef::from(&reelay_artifacts::keys::input_object(&uri)))
            .unwrap_or_default()
    };
    v1::StartJobRequest {
        job_id: job.id.to_string(),
        spec: Some(v1::JobSpec::from(&job.spec)),
        attempt,
        input: job.input.as_ref().map(Into::into),
        input_object,
        more_inputs: job.more_inputs.iter().map(Into::into).collect(),
        more_objects: job.more_inputs.iter().map(object).collect(),
    }
}

fn start_failure(status: &Status) -> StartFailure {
    let message = status.message().to_owned();
    match status.code() {
        Code::ResourceExhausted | Code::Unimplemented => StartFailure::Requeue(message),
        Code::InvalidArgument
        | Code::FailedPrecondition
        | Code::PermissionDenied
        | Code::Unauthenticated => StartFailure::Refused(message),
        _ => StartFailure::Unreachable(message),
    }
}

fn describe(status: &Status) -> String {
    match status.code() {
        Code::Unauthenticated | Code::PermissionDenied => {
            format!(
                "the node refused the cluster token: {} (check --cluster-token on both sides)",
                status.message()
            )
        }
        _ if status.message().contains("certificate") => format!(
            "{} (the coordinator verifies nodes with --tls-ca, or the system's roots without it)",
            status.message()
        ),
        _ => status.message().to_owned(),
    }
}
