//! `reelay coordinator` and `reelay worker`: flags, checks, and running until a signal.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use reelay_artifacts::{S3Options, StoreLocation};
use reelay_core::pipeline::Pipelines;
use reelay_proto::auth::validate_token;
use reelay_proto::tls::{ClientTls, ServerTls};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::logging::{self, LogFormat};

/// Flags every server command has.
#[derive(Debug, Clone, Args)]
pub(crate) struct CommonArgs {
    /// Pipeline config file (TOML, `[[pipeline]]` tables); jobs can only run pipelines it names.
    #[arg(long, env = "REELAY_CONFIG", value_parser = absolute_path)]
    pub(crate) config: Option<PathBuf>,
    /// Log format.
    #[arg(long, env = "REELAY_LOG_FORMAT", value_enum, default_value = "text")]
    pub(crate) log_format: LogFormat,
    /// Allow listening beyond loopback without a token (anyone who can connect may use it).
    #[arg(long, env = "REELAY_INSECURE")]
    pub(crate) insecure: bool,
    /// On SIGTERM, how long clients' connections get to close after their streams were ended
    /// (UNAVAILABLE) and GOAWAY sent; then they are cut and shutdown goes on (e.g. 5s, 500ms).
    #[arg(long, env = "REELAY_DRAIN_GRACE", default_value = "5s", value_parser = humantime::parse_duration)]
    pub(crate) drain_grace: Duration,
    #[command(flatten)]
    pub(crate) tls: TlsArgs,
}

/// TLS flags every server command has.
#[derive(Debug, Clone, Args)]
pub(crate) struct TlsArgs {
    /// Serve TLS only with this certificate chain (PEM, the server's certificate first).
    #[arg(
        long,
        env = "REELAY_TLS_CERT",
        requires = "tls_key",
        value_parser = absolute_path,
        value_name = "PEM"
    )]
    pub(crate) tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(
        long,
        env = "REELAY_TLS_KEY",
        requires = "tls_cert",
        value_parser = absolute_path,
        value_name = "PEM"
    )]
    pub(crate) tls_key: Option<PathBuf>,
    /// CA certificate(s) (PEM) that peers' certificates are verified with: the coordinator's when a
    /// worker registers, the workers' on the coordinator's links (default: the system's roots).
    #[arg(long, env = "REELAY_TLS_CA", value_name = "PEM", value_parser = absolute_path)]
    pub(crate) tls_ca: Option<PathBuf>,
}

impl TlsArgs {
    /// The server side: the certificate and key, read and checked now.
    pub(crate) fn server(&self) -> anyhow::Result<Option<ServerTls>> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Ok(Some(
                ServerTls::load(cert, key).map_err(|err| anyhow::anyhow!("{err}"))?,
            )),
            (None, None) => Ok(None),
            _ => bail!("--tls-cert and --tls-key go together"),
        }
    }

    /// The client side: how peers on `https://` URLs are verified.
    pub(crate) fn peers(&self) -> anyhow::Result<ClientTls> {
        ClientTls::load(self.tls_ca.as_deref()).map_err(|err| anyhow::anyhow!("{err}"))
    }
}

/// Flags of `reelay coordinator`.
#[derive(Debug, Clone, Args)]
pub(crate) struct CoordinatorArgs {
    /// Address to serve gRPC, grpc-web, the web UI and /metrics on.
    #[arg(long, env = "REELAY_LISTEN", default_value = "127.0.0.1:7070")]
    pub(crate) listen: SocketAddr,
    /// Where the coordinator keeps its state (a sled database); a relative path is taken from the
    /// directory the command runs in.
    #[arg(
        long,
        env = "REELAY_DATA_DIR",
        default_value = "reelay-data/coordinator",
        value_parser = absolute_path
    )]
    pub(crate) data_dir: PathBuf,
    #[command(flatten)]
    pub(crate) common: CommonArgs,
    #[command(flatten)]
    pub(crate) coordinator: CoordinatorTuning,
    /// Token clients must send to change anything (repeat for several). Without any, the API is open.
    #[arg(
        long = "api-token",
        env = "REELAY_API_TOKEN",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub(crate) api_tokens: Vec<String>,
    /// Token clients may send to read only (repeatable).
    #[arg(
        long = "read-token",
        env = "REELAY_READ_TOKEN",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub(crate) read_tokens: Vec<String>,
    /// Shared secret of the coordinator and its workers.
    #[arg(long, env = "REELAY_CLUSTER_TOKEN", hide_env_values = true)]
    pub(crate) cluster_token: Option<String>,
}

/// Coordinator settings shared with `reelay dev`.
#[derive(Debug, Clone, Args)]
pub(crate) struct CoordinatorTuning {
    /// How long finished jobs, their history, logs and outputs are kept (e.g. 30d, 12h).
    #[arg(long, env = "REELAY_RETAIN", default_value = "30d", value_parser = humantime::parse_duration)]
    pub(crate) retain: Duration,
    /// How long a node may be unreachable before its jobs fail with "node lost" (and are retried).
    #[arg(long, env = "REELAY_NODE_LOST_AFTER", default_value = "10m", value_parser = humantime::parse_duration)]
    pub(crate) node_lost_after: Duration,
    /// Storage page cache, in MiB.
    #[arg(long, env = "REELAY_CACHE_MB", default_value_t = 256)]
    pub(crate) cache_mb: u64,
    /// The artifact store for uploaded inputs and job outputs: a directory (default
    /// `<data-dir>/artifacts`; workers reach it through the coordinator) or `s3://BUCKET/PREFIX`
    /// (workers go to it directly; settings from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
    /// AWS_REGION, AWS_ENDPOINT_URL and AWS_ALLOW_HTTP=true for an S3-compatible server on http).
    #[arg(long, env = "REELAY_ARTIFACTS", value_name = "DIR|s3://BUCKET/PREFIX", value_parser = parse_artifacts)]
    pub(crate) artifacts: Option<StoreLocation>,
}

fn parse_artifacts(text: &str) -> Result<StoreLocation, String> {
    StoreLocation::parse(text).map_err(|err| err.to_string())
}

/// Flags of `reelay worker`.
#[derive(Debug, Clone, Args)]
pub(crate) struct WorkerArgs {
    /// Address to serve the WorkerService on.
    #[arg(long, env = "REELAY_LISTEN", default_value = "127.0.0.1:7071")]
    pub(crate) listen: SocketAddr,
    /// Where the worker keeps its state and the jobs' outputs (`<data-dir>/outputs/<job-id>/`); a
    /// relative path is taken from the directory the command runs in.
    #[arg(long, env = "REELAY_DATA_DIR", default_value = "reelay-data/worker", value_parser = absolute_path)]
    pub(crate) data_dir: PathBuf,
    #[command(flatten)]
    pub(crate) common: CommonArgs,
    /// URL of the coordinator to register with.
    #[arg(
        long,
        env = "REELAY_COORDINATOR",
        default_value = "http://127.0.0.1:7070"
    )]
    pub(crate) coordinator: String,
    /// URL the coordinator reaches this worker at (default: http://<listen address>).
    #[arg(long, env = "REELAY_ADVERTISE")]
    pub(crate) advertise: Option<String>,
    /// This node's id (default: the host name).
    #[arg(long, env = "REELAY_NODE_ID")]
    pub(crate) node_id: Option<String>,
    #[command(flatten)]
    pub(crate) node: NodeTuning,
    /// Shared secret of the coordinator and its workers.
    #[arg(long, env = "REELAY_CLUSTER_TOKEN", hide_env_values = true)]
    pub(crate) cluster_token: Option<String>,
    /// How long shutdown waits for jobs to stop (process executor) or detach (docker), after the
    /// connections were drained (--drain-grace).
    #[arg(long, env = "REELAY_SHUTDOWN_GRACE", default_value = "30s", value_parser = humantime::parse_duration)]
    pub(crate) shutdown_grace: Duration,
}

/// Node settings shared with `reelay dev`.
#[derive(Debug, Clone, Args)]
pub(crate) struct NodeTuning {
    /// How jobs run: `docker` (a container per job), `process` (a local process), or `auto`
    /// (docker when its engine answers, else process).
    #[arg(long, env = "REELAY_EXECUTOR", default_value = "auto")]
    pub(crate) executor: String,
    /// How many jobs this node runs at once.
    #[arg(long, env = "REELAY_SLOTS", default_value_t = 2)]
    pub(crate) slots: u32,
    /// Labels jobs can select this node by, as key=value,key=value.
    #[arg(long, env = "REELAY_LABELS", default_value = "", value_parser = parse_labels)]
    pub(crate) labels: std::collections::BTreeMap<String, String>,
    /// Most disk the input cache of this node uses (inputs fetched from the artifact store, kept
    /// for retries and other jobs on the same file; least recently used go first), e.g. 20GiB.
    #[arg(long, env = "REELAY_CACHE_SIZE", default_value = "20GiB", value_parser = parse_size)]
    pub(crate) cache_size: u64,
    /// How long staging an input or uploading outputs waits out an artifact store that does not
    /// answer (retrying, saying so in the job) before the job fails.
    #[arg(long, env = "REELAY_TRANSFER_DEADLINE", default_value = "1h", value_parser = humantime::parse_duration)]
    pub(crate) transfer_deadline: Duration,
}

impl NodeTuning {
    /// The node's settings with its id and data dir.
    pub(crate) fn settings(
        &self,
        node_id: String,
        data_dir: PathBuf,
    ) -> reelay_worker::NodeSettings {
        reelay_worker::NodeSettings {
            node_id,
            data_dir,
            slots: self.slots.max(1),
            labels: self.labels.clone(),
            cache_bytes: self.cache_size,
            transfer_deadline: self.transfer_deadline,
        }
    }
}

fn parse_size(text: &str) -> Result<u64, String> {
    text.parse::<bytesize::ByteSize>()
        .map(|size| size.as_u64())
        .map_err(|err| format!("{text:?} is not a size (e.g. 500MB, 20GiB): {err}"))
}

/// A path flag made absolute against the current directory once, when the flags are read: every
/// path a server stores or hands to a pipeline is absolute, whatever directory a pipeline runs in.
pub(crate) fn absolute_path(text: &str) -> Result<PathBuf, String> {
    if text.is_empty() {
        return Err("an empty path; give a file or directory".to_owned());
    }
    std::path::absolute(text).map_err(|err| {
        format!("cannot make {text:?} absolute (the current directory cannot be read: {err})")
    })
}

fn parse_labels(text: &str) -> Result<std::collections::BTreeMap<String, String>, String> {
    reelay_core::node::parse_labels(text)
}

/// Loads the pipeline config, or none with a warning.
pub(crate) fn load_pipelines(path: Option<&Path>) -> anyhow::Result<Pipelines> {
    match path {
        Some(path) => {
            Ok(Pipelines::load(path).map_err(|err| anyhow::anyhow!("bad config: {err}"))?)
        }
        None => {
            tracing::warn!(
                "no --config given: no pipeline is configured, so no job can be created"
            );
            Ok(Pipelines::default())
        }
    }
}

/// Checks every configured token (not empty, sendable in a header); messages never show one.
pub(crate) fn check_tokens<'a>(
    tokens: impl IntoIterator<Item = &'a String>,
    flag: &str,
) -> anyhow::Result<()> {
    for token in tokens {
        validate_token(token, flag).map_err(|err| anyhow::anyhow!("{err}"))?;
    }
    Ok(())
}

/// Refuses to listen beyond loopback without a token, unless told `--insecure`.
pub(crate) fn check_exposure(
    listen: SocketAddr,
    has_token: bool,
    insecure: bool,
    token_flag: &str,
) -> anyhow::Result<()> {
    if listen.ip().is_loopback() || has_token || insecure {
        return Ok(());
    }
    bail!(
        "refusing to listen on {listen} without a token: anyone who can reach it could use it. \
         Set {token_flag}, listen on 127.0.0.1, or pass --insecure if the network is trusted"
    )
}

/// A token cancelled by the first SIGINT or SIGTERM; a second one exits at once.
pub(crate) fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let Ok(mut terminate) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        else {
            tracing::error!("cannot listen for SIGTERM");
            return;
        };
        for count in 0.. {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
            if count > 0 {
                eprintln!("second signal: exiting now");
                std::process::exit(130);
            }
            tracing::info!("shutting down (send the signal again to exit at once)");
            cancel.cancel();
        }
    });
    token
}

pub(crate) async fn bind(address: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address} for the {what} (is another reelay running? pick another --listen)"))
}

/// Tokens of a coordinator.
#[derive(Default)]
pub(crate) struct Tokens {
    pub(crate) api: Vec<String>,
    pub(crate) read: Vec<String>,
    pub(crate) cluster: Option<String>,
}

pub(crate) fn coordinator_config(
    data_dir: PathBuf,
    pipelines: Pipelines,
    tuning: &CoordinatorTuning,
    tokens: Tokens,
    tls: Option<ServerTls>,
    peer_tls: ClientTls,
    drain_grace: Duration,
) -> reelay_coordinator::CoordinatorConfig {
    reelay_coordinator::CoordinatorConfig {
        data_dir,
        pipelines,
        retain: tuning.retain,
        node_lost_after: tuning.node_lost_after,
        api_tokens: tokens.api,
        read_tokens: tokens.read,
        cluster_token: tokens.cluster,
        cache_bytes: tuning.cache_mb * 1024 * 1024,
        tls,
        peer_tls,
        artifacts: tuning.artifacts.clone(),
        s3: S3Options::from_env(),
        drain_grace,
    }
}

pub(crate) async fn coordinator(args: CoordinatorArgs) -> anyhow::Result<ExitCode> {
    logging::init(args.common.log_format);
    check_tokens(&args.api_tokens, "--api-token")?;
    check_tokens(&args.read_tokens, "--read-token")?;
    check_tokens(&args.cluster_token, "--cluster-token")?;
    check_exposure(
        args.listen,
        !args.api_tokens.is_empty() || !args.read_tokens.is_empty(),
        args.common.insecure,
        "--api-token",
    )?;
    let tls = args.common.tls.server()?;
    let peer_tls = args.common.tls.peers()?;
    let pipelines = load_pipelines(args.common.config.as_deref())?;
    let listener = bind(args.listen, "coordinator").await?;
    let config = coordinator_config(
        args.data_dir,
        pipelines,
        &args.coordinator,
        Tokens {
            api: args.api_tokens,
            read: args.read_tokens,
            cluster: args.cluster_token,
        },
        tls,
        peer_tls,
        args.common.drain_grace,
    );
    reelay_coordinator::run(config, listener, shutdown_on_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn worker(args: WorkerArgs) -> anyhow::Result<ExitCode> {
    logging::init(args.common.log_format);
    check_tokens(&args.cluster_token, "--cluster-token")?;
    check_exposure(
        args.listen,
        args.cluster_token.is_some(),
        args.common.insecure,
        "--cluster-token",
    )?;
    let tls = args.common.tls.server()?;
    let coordinator_tls = args.common.tls.peers()?;
    let pipelines = load_pipelines(args.common.config.as_deref())?;
    let listener = bind(args.listen, "worker").await?;
    let advertise = advertise_url(args.advertise, listener.local_addr()?, tls.is_some())?;
    let node_id = match args.node_id {
        Some(id) => id,
        None => hostname::get()
            .context("cannot read the host name; set --node-id")?
            .to_string_lossy()
            .into_owned(),
    };
    reelay_core::names::validate_node_id(&node_id, "--node-id")
        .map_err(|err| anyhow::anyhow!("{err}"))?;
    let executor = reelay_worker::make_executor(&args.node.executor).await?;
    let config = reelay_worker::WorkerConfig {
        node: args.node.settings(node_id, args.data_dir),
        pipelines,
        coordinator: Some(args.coordinator),
        advertise,
        cluster_token: args.cluster_token,
        shutdown_grace: args.shutdown_grace,
        drain_grace: args.common.drain_grace,
        tls,
        coordinator_tls,
    };
    reelay_worker::run(config, executor, listener, shutdown_on_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

/// The URL the coordinator should use for this worker: `https://` when it serves TLS.
pub(crate) fn advertise_url(
    advertise: Option<String>,
    bound: SocketAddr,
    tls: bool,
) -> anyhow::Result<String> {
    let scheme = if tls { "https" } else { "http" };
    if let Some(url) = advertise {
        if tls && url.starts_with("http://") {
            bail!(
                "--advertise {url} is plain http://, but this worker serves TLS only (--tls-cert): \
                 advertise https://"
            );
        }
        return Ok(url);
    }
    if bound.ip().is_unspecified() {
        bail!(
            "the worker listens on {bound}: set --advertise to the URL the coordinator reaches it at ({scheme}://HOST:{})",
            bound.port()
        );
    }
    Ok(format!("{scheme}://{bound}"))
}
