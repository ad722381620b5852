//! Keeps this worker registered with the coordinator.
//!
//! The worker registers when it starts (retrying with backoff until the coordinator answers) and
//! again whenever the coordinator's event stream ends — the coordinator restarted or the
//! connection was cut. Registering is idempotent on the coordinator, so doing it once too often
//! costs nothing. There is no timer: only the stream ending triggers it.

use std::sync::Arc;
use std::time::Duration;

use reelay_proto::auth::ClusterAuth;
use reelay_proto::tls::{ClientTls, error_chain};
use reelay_proto::v1;
use reelay_proto::v1::node_service_client::NodeServiceClient;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tonic::Code;

use crate::store_access::StoreAccess;

const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Registers now and after every end of the coordinator's stream, until `shutdown`.
pub async fn keep_registered(
    coordinator: String,
    tls: ClientTls,
    request: v1::RegisterNodeRequest,
    auth: ClusterAuth,
    store: Option<Arc<StoreAccess>>,
    stream_ended: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let endpoint = match tls.endpoint(&coordinator) {
        Ok(endpoint) => endpoint
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(10)),
        Err(err) => {
            tracing::error!(coordinator = %coordinator, error = %err, "the --coordinator URL cannot be used");
            return;
        }
    };
    let channel = endpoint.connect_lazy();
    let mut client = NodeServiceClient::with_interceptor(channel, auth.interceptor());
    loop {
        let mut backoff = Duration::from_millis(100);
        loop {
            match client.register_node(request.clone()).await {
                Ok(response) => {
                    let response = response.into_inner();
                    if let (Some(store), Some(access)) = (&store, &response.store)
                        && let Err(err) = store.set(access)
                    {
                        tracing::error!(error = %err, "cannot use the artifact store the coordinator names");
                    }
                    let state = response.node.map(|node| node.state).unwrap_or_default();
                    tracing::info!(coordinator = %coordinator, node_id = %request.id, state, "registered with the coordinator");
                    break;
                }
                Err(status)
                    if matches!(
                        status.code(),
                        Code::Unauthenticated | Code::PermissionDenied
                    ) =>
                {
                    tracing::error!(
                        coordinator = %coordinator,
                        code = ?status.code(),
                        error = %status.message(),
                        "the coordinator refused this worker's cluster token: set the same \
                         --cluster-token (REELAY_CLUSTER_TOKEN) on the coordinator and its workers; retrying"
                    );
                    backoff = MAX_BACKOFF;
                }
                Err(status) => {
                    tracing::warn!(coordinator = %coordinator, code = ?status.code(), error = %describe(&status), "cannot register; retrying");
                }
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = shutdown.cancelled() => return,
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
        tokio::select! {
            () = stream_ended.notified() => {}
            () = shutdown.cancelled() => return,
        }
        tracing::info!("the coordinator's event stream ended; registering again");
    }
}

/// A status with the cause of a transport error (a refused TLS certificate says why, and what to
/// check).
fn describe(status: &tonic::Status) -> String {
    use std::error::Error as _;
    let mut text = status.message().to_owned();
    if let Some(source) = status.source() {
        let cause = error_chain(source);
        if !text.contains(&cause) {
            text = if text.is_empty() {
                cause
            } else {
                format!("{text}: {cause}")
            };
        }
    }
    if text.contains("certificate") {
        text.push_str(
            " (this worker verifies the coordinator with --tls-ca, or the system's roots without it)",
        );
    }
    text
}
