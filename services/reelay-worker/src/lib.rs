//! Reelay's worker: runs job attempts through an executor and streams every change to the
//! coordinator from a durable event log.
//!
//! # Layout
//! - [`executor`]: how a pipeline runs — the [`executor::Executor`] trait, the local process
//!   executor and the Docker executor.
//! - [`runner`]: one attempt from accepted to finished (checks, progress, timeout, outputs).
//! - [`supervisor`]: the node's attempts — idempotent start, slots, cancel, recovery, shutdown.
//! - [`event_log`]: attempt records and the event log in sled, `seq` never reused.
//! - [`data_dir`]: the data directory's layout and its checks at start.
//! - [`outputs`]: a job's output files, listed with SHA-256 and opened safely.
//! - `transfers`: an attempt's input staged from the artifact store, its outputs uploaded to it;
//!   [`cache`]: the node's input cache; [`store_access`]: where the store is (from the coordinator).
//! - [`service`]: WorkerService over gRPC (thin), with [`event_stream`] for `StreamEvents`.
//! - [`metrics`]: `/metrics` on the worker's port — its open streams and running jobs.
//! - [`registration`]: registering with the coordinator, again after its stream ends.
//!
//! [`run`] wires them on a listener until a shutdown token fires.

pub mod cache;
pub mod data_dir;
pub mod error;
pub mod event_log;
pub mod event_stream;
pub mod executor;
pub mod metrics;
pub mod outputs;
pub mod registration;
pub(crate) mod runner;
pub mod service;
pub mod store_access;
pub mod supervisor;
pub(crate) mod transfers;
pub(crate) mod visibility;

use std::sync::Arc;
use std::time::Duration;

use reelay_core::pipeline::Pipelines;
use reelay_proto::auth::{ClusterAuth, RequireToken, TokenCheck};
use reelay_proto::net::serve_bounded;
use reelay_proto::tls::{ClientTls, ServerTls};
use reelay_proto::v1;
use reelay_proto::v1::worker_service_server::WorkerServiceServer;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use error::WorkerError;
use executor::Executor;
use service::WorkerApi;
pub use supervisor::{NodeSettings, Supervisor};

/// Largest request a worker accepts.
const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;

/// Everything a worker needs to run.
#[derive(Clone)]
pub struct WorkerConfig {
    pub node: NodeSettings,
    pub pipelines: Pipelines,
    /// The coordinator's URL; `None` runs the worker without registering.
    pub coordinator: Option<String>,
    /// The URL the coordinator reaches this worker at.
    pub advertise: String,
    /// Shared secret between the coordinator and its workers.
    pub cluster_token: Option<String>,
    /// How long shutdown waits for attempts to stop or detach.
    pub shutdown_grace: Duration,
    /// On shutdown, how long clients' connections get to close after their streams were ended,
    /// before they are cut (before attempts are stopped or detached).
    pub drain_grace: Duration,
    /// The certificate the WorkerService port serves TLS with; `None` serves plain HTTP/2.
    pub tls: Option<ServerTls>,
    /// How the coordinator is verified when its URL is `https://`.
    pub coordinator_tls: ClientTls,
}

impl std::fmt::Debug for WorkerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The cluster token is never shown.
        f.debug_struct("WorkerConfig")
            .field("node", &self.node)
            .field("pipelines", &self.pipelines)
            .field("coordinator", &self.coordinator)
            .field("advertise", &self.advertise)
            .field("cluster_token", &self.cluster_token.is_some())
            .field("shutdown_grace", &self.shutdown_grace)
            .field("drain_grace", &self.drain_grace)
            .field("tls", &self.tls)
            .field("coordinator_tls", &self.coordinator_tls)
            .finish()
    }
}

/// Runs a worker on `listener` with `executor` until `shutdown` is cancelled.
pub async fn run(
    mut config: WorkerConfig,
    executor: Arc<dyn Executor>,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), WorkerError> {
    // Every path handed to a pipeline is absolute: a pipeline runs in its output directory, where
    // a relative `REELAY_OUTPUT_DIR` would point somewhere else.
    config.node.data_dir = std::path::absolute(&config.node.data_dir).map_err(|err| {
        WorkerError::Internal(format!(
            "cannot make the data directory {} absolute: {err}",
            config.node.data_dir.display()
        ))
    })?;
    let data_dir = &config.node.data_dir;
    let log = Arc::new(data_dir::open(data_dir)?);
    let cache = Arc::new(
        cache::InputCache::open(data_dir.join(data_dir::CACHE_DIR), config.node.cache_bytes)
            .map_err(|err| {
                WorkerError::Internal(format!(
                    "cannot open the input cache in {}: {err}",
                    data_dir.display()
                ))
            })?,
    );
    let auth = ClusterAuth::new(config.cluster_token.as_deref()).map_err(WorkerError::Internal)?;
    let store = config.coordinator.as_ref().map(|url| {
        Arc::new(store_access::StoreAccess::new(
            Some(store_access::CoordinatorLink {
                url: url.clone(),
                tls: config.coordinator_tls.clone(),
                auth: auth.clone(),
            }),
            Arc::clone(log.store()),
        ))
    });
    let supervisor = Supervisor::new(
        config.node.clone(),
        config.pipelines.clone(),
        Arc::clone(&executor),
        log,
        store.clone(),
        cache,
    );
    let resumed = supervisor.recover().await?;
    tracing::info!(
        node_id = %config.node.node_id,
        executor = executor.name(),
        slots = config.node.slots,
        resumed,
        address = %listener.local_addr()?,
        tls = config.tls.is_some(),
        cluster_token = config.cluster_token.is_some(),
        "worker started"
    );

    let stream_ended = Arc::new(Notify::new());
    if let Some(coordinator) = config.coordinator.clone() {
        let request = v1::RegisterNodeRequest {
            id: config.node.node_id.clone(),
            address: config.advertise.clone(),
            labels: config.node.labels.clone().into_iter().collect(),
            slots: config.node.slots,
            version: reelay_core::VERSION.to_owned(),
            executor: executor.name().to_owned(),
        };
        tokio::spawn(registration::keep_registered(
            coordinator,
            config.coordinator_tls.clone(),
            request,
            auth,
            store,
            Arc::clone(&stream_ended),
            shutdown.clone(),
        ));
    }

    let metrics = metrics::WorkerMetrics::new(Arc::clone(&supervisor));
    let api = WorkerApi::new(
        Arc::clone(&supervisor),
        (stream_ended, shutdown.clone()),
        metrics.clone(),
    );
    let token_check = TokenCheck::new(config.cluster_token.iter().cloned().collect(), Vec::new());
    let worker_service = WorkerServiceServer::new(api).max_decoding_message_size(MAX_REQUEST_BYTES);
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<WorkerServiceServer<WorkerApi>>()
        .await;
    let reflection_v1 = reelay_proto::reflection::v1(reelay_proto::reflection::WORKER_SERVICES)
        .map_err(|err| WorkerError::Internal(err.to_string()))?;
    let reflection_v1alpha =
        reelay_proto::reflection::v1alpha(reelay_proto::reflection::WORKER_SERVICES)
            .map_err(|err| WorkerError::Internal(err.to_string()))?;

    let mut routes = tonic::service::Routes::new(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(tonic::service::interceptor::InterceptedService::new(
            worker_service,
            RequireToken(token_check),
        ));
    let router = routes.axum_router_mut();
    *router = std::mem::take(router).route(
        "/metrics",
        axum::routing::get(move || {
            let metrics = metrics.clone();
            async move { metrics.render().await }
        }),
    );
    // HTTP/1.1 too, for Prometheus; gRPC clients speak HTTP/2.
    let router = tonic::transport::Server::builder()
        .accept_http1(true)
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .http2_keepalive_timeout(Some(Duration::from_secs(5)))
        .initial_connection_window_size(16 * 1024 * 1024)
        .layer(reelay_proto::limits::MessageLimitLayer)
        .add_routes(routes);
    let stop = shutdown.clone().cancelled_owned();
    let grace = config.drain_grace;
    let served = match &config.tls {
        Some(tls) => {
            let serve = router.serve_with_incoming_shutdown(tls.incoming(listener), stop);
            serve_bounded(serve, shutdown.cancelled(), grace).await
        }
        None => {
            let incoming = reelay_proto::net::incoming(listener);
            let serve = router.serve_with_incoming_shutdown(incoming, stop);
            serve_bounded(serve, shutdown.cancelled(), grace).await
        }
    };
    tracing::info!("worker stops: stopping or detaching attempts");
    supervisor.shutdown(config.shutdown_grace).await;
    served.map_err(|err| WorkerError::Internal(format!("server: {err}")))
}

/// The executor named by `--executor`: `process`, `docker`, or `auto` (Docker when its engine
/// answers, else the process executor, said in the log).
pub async fn make_executor(name: &str) -> Result<Arc<dyn Executor>, WorkerError> {
    let docker = || async {
        executor::docker::DockerExecutor::connect()
            .await
            .map_err(|err| WorkerError::Internal(format!("cannot use the docker executor: {err}")))
    };
    match name {
        "process" => Ok(Arc::new(executor::process::ProcessExecutor)),
        "docker" => Ok(Arc::new(docker().await?)),
        "auto" => {
            let engine = docker().await;
            let ready = match &engine {
                Ok(engine) => engine.check_ready().await,
                Err(err) => Err(err.to_string()),
            };
            match (engine, ready) {
                (Ok(engine), Ok(())) => {
                    tracing::info!(
                        "executor auto: the Docker engine answers, jobs run in containers"
                    );
                    Ok(Arc::new(engine))
                }
                (_, Err(why)) => {
                    tracing::warn!(reason = %why, "executor auto: no Docker engine, jobs run as local processes");
                    Ok(Arc::new(executor::process::ProcessExecutor))
                }
                (Err(err), Ok(())) => Err(err),
            }
        }
        other => Err(WorkerError::Internal(format!(
            "unknown executor {other:?}: use process, docker or auto"
        ))),
    }
}
