//! The connection to the coordinator: the channel, the bearer token on every call, and the typed
//! clients of the public services.
//!
//! The channel connects lazily: a coordinator that cannot be reached shows up as an `UNAVAILABLE`
//! status on the first call, which [`crate::error`] turns into a message with a hint.

use std::time::Duration;

use std::path::Path;

use anyhow::bail;
use reelay_proto::auth::ClusterAuth;
use reelay_proto::tls::ClientTls;
use reelay_proto::v1::job_service_client::JobServiceClient;
use reelay_proto::v1::node_service_client::NodeServiceClient;
use reelay_proto::v1::pipeline_service_client::PipelineServiceClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

/// How long a connection attempt may take before the call fails as `UNAVAILABLE`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// HTTP/2 pings on long streams (watch, logs), so a dead server is noticed.
const KEEP_ALIVE: Duration = Duration::from_secs(20);

/// A channel whose calls carry `authorization: Bearer <token>` when a token is set.
pub(crate) type AuthChannel = InterceptedService<Channel, ClusterAuth>;

/// The coordinator, ready to be called.
#[derive(Debug, Clone)]
pub(crate) struct Connection {
    channel: Channel,
    /// Adds the bearer token; shared by every client made from this connection.
    auth: ClusterAuth,
}

impl Connection {
    /// Checks `server` and prepares a channel to it; nothing is sent yet. An `https://` server
    /// is verified with the CA in `tls_ca`, or the system's roots.
    pub(crate) fn new(
        server: &str,
        token: Option<&str>,
        tls_ca: Option<&Path>,
    ) -> anyhow::Result<Self> {
        let tls = ClientTls::load(tls_ca).map_err(|err| anyhow::anyhow!("--tls-ca: {err}"))?;
        let endpoint = endpoint(server, &tls)?;
        let auth =
            ClusterAuth::new(token).map_err(|reason| anyhow::anyhow!("--token: {reason}"))?;
        Ok(Connection {
            channel: endpoint.connect_lazy(),
            auth,
        })
    }

    pub(crate) fn jobs(&self) -> JobServiceClient<AuthChannel> {
        JobServiceClient::with_interceptor(self.channel.clone(), self.auth.interceptor())
    }

    pub(crate) fn nodes(&self) -> NodeServiceClient<AuthChannel> {
        NodeServiceClient::with_interceptor(self.channel.clone(), self.auth.interceptor())
    }

    pub(crate) fn pipelines(&self) -> PipelineServiceClient<AuthChannel> {
        PipelineServiceClient::with_interceptor(self.channel.clone(), self.auth.interceptor())
    }
}

/// The endpoint for a `--server` value: `http://host:port`, or `https://host:port` verified by
/// `tls`.
fn endpoint(server: &str, tls: &ClientTls) -> anyhow::Result<Endpoint> {
    check_server_url(server)?;
    let endpoint = tls
        .endpoint(server)
        .map_err(|err| anyhow::anyhow!("--server: {err}"))?;
    Ok(endpoint
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(KEEP_ALIVE)
        .keep_alive_while_idle(true))
}

/// Rejects what cannot work before anything is sent, with a message that says what to do.
fn check_server_url(server: &str) -> anyhow::Result<()> {
    let Some(rest) = server
        .strip_prefix("http://")
        .or_else(|| server.strip_prefix("https://"))
    else {
        bail!(
            "--server: {server:?} must start with http:// or https:// (for example http://127.0.0.1:7070)"
        );
    };
    if rest.is_empty() || rest.starts_with('/') {
        bail!("--server: {server:?} has no host (for example http://127.0.0.1:7070)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls_are_checked_before_connecting() {
        assert!(check_server_url("http://127.0.0.1:7070").is_ok());
        assert!(check_server_url("http://reelay.internal:7070/").is_ok());
        assert!(check_server_url("https://reelay.example.com").is_ok());
        let bare = check_server_url("127.0.0.1:7070").unwrap_err();
        assert!(bare.to_string().contains("http://"), "{bare}");
        assert!(check_server_url("http://").is_err());
    }

    #[tokio::test]
    async fn a_connection_is_made_without_a_server() {
        // connect_lazy: nothing is dialled until the first call.
        assert!(Connection::new("http://127.0.0.1:9", Some("token"), None).is_ok());
        assert!(Connection::new("http://127.0.0.1:9", Some("bad\ntoken"), None).is_err());
        let missing = Connection::new(
            "https://127.0.0.1:9",
            None,
            Some(Path::new("/nonexistent/ca.pem")),
        )
        .unwrap_err();
        assert!(
            missing.to_string().contains("/nonexistent/ca.pem"),
            "{missing}"
        );
    }
}
