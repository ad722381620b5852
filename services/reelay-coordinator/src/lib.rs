//! Reelay's coordinator: the public API (JobService, NodeService, PipelineService) over gRPC and
//! grpc-web, the job queue and scheduler, and one event stream per worker.
//!
//! # Layout
//! - [`engine`] — the one task that changes jobs and nodes — state machine, scheduling, group
//!   commit — and the live node view.
//! - [`store`] — the coordinator's sled trees and their keys.
//! - [`hub`] — fan-out of changes and log lines to watchers.
//! - [`links`] — one link per worker: its event stream in, StartJob/CancelJob out.
//! - [`api`] — the gRPC services (thin).
//! - [`http`] — everything on the one port — gRPC, grpc-web, UI, downloads, metrics.
//! - [`uploads`] — input files sent to the coordinator, in the artifact store; `janitor` removes
//!   the objects of deleted jobs and expired uploads.
//! - [`web`] — the embedded UI. [`metrics`]: Prometheus. [`retention`]: removal of expired jobs.
//!
//! [`run`] wires them on a listener until a shutdown token fires.

pub mod api;
pub mod engine;
pub mod error;
pub mod http;
pub mod hub;
mod janitor;
pub mod links;
pub mod metrics;
mod retention;
pub mod store;
pub mod uploads;
pub mod web;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use reelay_core::machine::Policy;
use reelay_core::pipeline::Pipelines;
use reelay_proto::auth::{ClusterAuth, TokenCheck};
use reelay_proto::net::serve_bounded;
use reelay_proto::tls::{ClientTls, ServerTls};
use reelay_store::SledStore;
use reelay_store::sled_store::SledOptions;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use reelay_artifacts::{Blobs, ObjectBlobs, S3Options, StoreLocation};
use reelay_proto::v1;

use crate::api::ApiState;
use crate::engine::{Engine, EngineParts, EngineSettings};
pub use crate::error::{CoordinatorError, Result};
use crate::hub::Hub;
use crate::links::Links;
use crate::metrics::Metrics;
use crate::store::JobStore;
use crate::uploads::Uploads;

/// Everything a coordinator needs to run.
#[derive(Clone)]
pub struct CoordinatorConfig {
    pub data_dir: PathBuf,
    pub pipelines: Pipelines,
    /// How long finished jobs are kept.
    pub retain: Duration,
    /// How long a node may be offline before its jobs fail with "node lost".
    pub node_lost_after: Duration,
    /// Tokens of clients that may change things.
    pub api_tokens: Vec<String>,
    /// Tokens of clients that may only read.
    pub read_tokens: Vec<String>,
    /// Shared secret between the coordinator and its workers.
    pub cluster_token: Option<String>,
    /// sled page cache in bytes.
    pub cache_bytes: u64,
    /// The certificate the port serves TLS with (gRPC, grpc-web, UI, downloads, metrics); `None`
    /// serves plain HTTP.
    pub tls: Option<ServerTls>,
    /// How links verify workers whose address is `https://`.
    pub peer_tls: ClientTls,
    /// The artifact store; `None`: `<data-dir>/artifacts`.
    pub artifacts: Option<StoreLocation>,
    /// S3 settings (the `AWS_*` variables) for an S3 store; handed to workers too.
    pub s3: S3Options,
    /// On shutdown, how long clients' connections get to close after their streams were ended,
    /// before they are cut.
    pub drain_grace: Duration,
}

impl std::fmt::Debug for CoordinatorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Tokens are counted, never shown.
        f.debug_struct("CoordinatorConfig")
            .field("data_dir", &self.data_dir)
            .field("pipelines", &self.pipelines)
            .field("retain", &self.retain)
            .field("node_lost_after", &self.node_lost_after)
            .field("api_tokens", &self.api_tokens.len())
            .field("read_tokens", &self.read_tokens.len())
            .field("cluster_token", &self.cluster_token.is_some())
            .field("cache_bytes", &self.cache_bytes)
            .field("tls", &self.tls)
            .field("peer_tls", &self.peer_tls)
            .field("artifacts", &self.artifacts)
            .field("s3", &self.s3)
            .field("drain_grace", &self.drain_grace)
            .finish()
    }
}

/// Runs a coordinator on `listener` until `shutdown` is cancelled: stops accepting, ends streams
/// (`UNAVAILABLE`), sends GOAWAY and lets in-flight calls finish for at most `drain_grace`, then
/// stops the engine and flushes storage — whether or not every client went away.
pub async fn run(
    mut config: CoordinatorConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<()> {
    let opened = std::time::Instant::now();
    config.data_dir = std::path::absolute(&config.data_dir).map_err(|err| {
        CoordinatorError::Internal(format!(
            "cannot make the data directory {} absolute: {err}",
            config.data_dir.display()
        ))
    })?;
    store::refuse_worker_data_dir(&config.data_dir)?;
    let sled_options = SledOptions {
        cache_bytes: config.cache_bytes,
    };
    let sled = SledStore::open(&config.data_dir, &store::SCHEMA, sled_options)?;
    let store = JobStore::new(Arc::new(sled));
    let location = config
        .artifacts
        .clone()
        .unwrap_or_else(|| StoreLocation::Local(config.data_dir.join("artifacts")));
    let blobs: Arc<dyn Blobs> = Arc::new(ObjectBlobs::open(&location, &config.s3)?);
    let store_access = Arc::new(store_access(&location, &config.s3));
    let uploads = Arc::new(Uploads::new(
        Arc::clone(store.raw()),
        Arc::clone(&blobs),
        config.retain,
    ));
    let janitor = Arc::new(tokio::sync::Notify::new());
    let hub = Arc::new(Hub::default());
    let metrics = Metrics::default();
    let auth =
        ClusterAuth::new(config.cluster_token.as_deref()).map_err(CoordinatorError::Internal)?;
    let background = CancellationToken::new();
    let links = Links::new(
        store.clone(),
        auth,
        config.peer_tls.clone(),
        background.clone(),
    );
    let settings = EngineSettings {
        policy: Policy {
            retain: config.retain,
        },
        pipelines: config.pipelines.clone(),
        node_lost_after: config.node_lost_after,
    };
    let (engine, engine_task) = Engine::start(
        EngineParts {
            store: store.clone(),
            hub: Arc::clone(&hub),
            links: links.clone(),
            metrics: metrics.clone(),
            janitor: Arc::clone(&janitor),
            blobs: Arc::clone(&blobs),
        },
        settings,
        background.clone(),
    )?;
    metrics.observe(engine.clone(), Arc::clone(&hub));
    tokio::spawn(retention::run(
        engine.clone(),
        store.clone(),
        background.clone(),
    ));
    tokio::spawn(janitor::run(
        store.clone(),
        Arc::clone(&uploads),
        janitor,
        background.clone(),
    ));

    let state = ApiState {
        engine,
        store: store.clone(),
        hub,
        links,
        clients: TokenCheck::new(config.api_tokens.clone(), config.read_tokens.clone()),
        cluster: TokenCheck::new(config.cluster_token.iter().cloned().collect(), Vec::new()),
        shutdown: shutdown.clone(),
        uploads,
        store_access,
        streams: metrics.streams.clone(),
    };
    let routes = http::routes(state, metrics)?;
    tracing::info!(
        address = %listener.local_addr()?,
        tls = config.tls.is_some(),
        client_tokens = !config.api_tokens.is_empty() || !config.read_tokens.is_empty(),
        cluster_token = config.cluster_token.is_some(),
        data_dir = %config.data_dir.display(),
        pipelines = config.pipelines.iter().count(),
        ui = web::is_built(),
        artifacts = %blobs.describe(),
        ready_ms = opened.elapsed().as_millis() as u64,
        "coordinator serving"
    );
    let router = tonic::transport::Server::builder()
        .accept_http1(true)
        .http2_keepalive_interval(Some(Duration::from_secs(20)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .initial_connection_window_size(16 * 1024 * 1024)
        .initial_stream_window_size(1024 * 1024)
        .layer(http::cors())
        .layer(reelay_proto::limits::MessageLimitLayer)
        .add_routes(routes);
    let stop = shutdown.clone().cancelled_owned();
    let grace = config.drain_grace;
    // With a certificate the port serves TLS only: gRPC, grpc-web, the UI, downloads, metrics.
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
    tracing::info!("coordinator stops: finishing the engine and flushing storage");
    background.cancel();
    match engine_task.await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => tracing::error!(error = %err, "engine ended with an error"),
        Err(err) => tracing::error!(error = %err, "engine task failed"),
    }
    let raw = Arc::clone(store.raw());
    tokio::task::spawn_blocking(move || raw.flush())
        .await
        .map_err(|err| CoordinatorError::Internal(err.to_string()))??;
    let closed = Arc::downgrade(store.raw());
    drop(store);
    checkpoint(closed, config.data_dir.clone(), sled_options).await;
    served.map_err(|err| CoordinatorError::Internal(format!("server: {err}")))
}

/// How long a stop waits for the last users of the database to let go of it before its checkpoint.
const CHECKPOINT_WAIT: Duration = Duration::from_secs(1);

/// Once the database is closed (`closed` has no strong holder left: the tasks that used it have
/// ended), opens and closes it again so the next start replays nothing (`SledStore::checkpoint`).
/// Everything was flushed before: a stop that skips or fails this loses nothing, the next start is
/// only slower. Tasks still holding the database after `CHECKPOINT_WAIT` skip it.
async fn checkpoint(
    closed: std::sync::Weak<dyn reelay_store::Store>,
    path: PathBuf,
    options: SledOptions,
) {
    let waiting = std::time::Instant::now();
    while closed.strong_count() > 0 {
        if waiting.elapsed() > CHECKPOINT_WAIT {
            tracing::info!("storage still in use: no checkpoint, the next start replays its log");
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let started = std::time::Instant::now();
    let done =
        tokio::task::spawn_blocking(move || SledStore::checkpoint(&path, &store::SCHEMA, options))
            .await;
    match done {
        Ok(Ok(())) => tracing::info!(
            took_ms = started.elapsed().as_millis() as u64,
            "storage checkpointed: the next start replays nothing"
        ),
        Ok(Err(err)) => tracing::warn!(error = %err, "storage checkpoint failed"),
        Err(err) => tracing::warn!(error = %err, "storage checkpoint task failed"),
    }
}

/// What workers are told about the artifact store: go through this coordinator (a local
/// directory), or to S3 with the coordinator's S3 options (their own `AWS_*` variables win).
fn store_access(location: &StoreLocation, s3: &S3Options) -> v1::StoreAccess {
    match location {
        StoreLocation::Local(_) => v1::StoreAccess {
            kind: "coordinator".to_owned(),
            ..Default::default()
        },
        StoreLocation::S3 { .. } => v1::StoreAccess {
            kind: "s3".to_owned(),
            url: location.url(),
            options: s3.0.clone().into_iter().collect(),
        },
    }
}
