//! How a test client reaches a server: its URL, the bearer token it sends, and the CA it trusts
//! for `https://`.

use std::path::{Path, PathBuf};

use reelay_proto::auth::ClusterAuth;
use reelay_proto::tls::ClientTls;
use reelay_proto::v1::job_service_client::JobServiceClient;
use reelay_proto::v1::node_service_client::NodeServiceClient;
use reelay_proto::v1::pipeline_service_client::PipelineServiceClient;
use reelay_proto::v1::worker_service_client::WorkerServiceClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// A channel whose calls carry `authorization: Bearer <token>` when a token is set.
pub type AuthChannel = InterceptedService<Channel, ClusterAuth>;

/// A server and how to call it.
#[derive(Debug, Clone)]
pub struct Connect {
    pub url: String,
    pub token: Option<String>,
    /// The CA that verifies an `https://` server.
    pub ca: Option<PathBuf>,
}

impl Connect {
    pub fn plain(url: &str) -> Self {
        Connect {
            url: url.to_owned(),
            token: None,
            ca: None,
        }
    }

    /// The same server with another token.
    pub fn with_token(&self, token: Option<&str>) -> Self {
        Connect {
            token: token.map(str::to_owned),
            ..self.clone()
        }
    }

    /// The same server trusting another CA.
    pub fn with_ca(&self, ca: Option<&Path>) -> Self {
        Connect {
            ca: ca.map(Path::to_path_buf),
            ..self.clone()
        }
    }

    /// A connected channel, or the error (for tests that expect a refusal).
    pub async fn try_channel(&self) -> Result<Channel, String> {
        let tls = ClientTls::load(self.ca.as_deref())?;
        let endpoint = tls.endpoint(&self.url)?;
        endpoint
            .connect()
            .await
            .map_err(|err| reelay_proto::tls::error_chain(&err))
    }

    pub async fn channel(&self) -> Channel {
        self.try_channel()
            .await
            .unwrap_or_else(|err| panic!("connect to {}: {err}", self.url))
    }

    pub fn auth(&self) -> ClusterAuth {
        ClusterAuth::new(self.token.as_deref()).expect("a token that fits in a header")
    }

    pub async fn jobs(&self) -> JobServiceClient<AuthChannel> {
        JobServiceClient::with_interceptor(self.channel().await, self.auth())
            .max_decoding_message_size(64 * 1024 * 1024)
    }

    pub async fn nodes(&self) -> NodeServiceClient<AuthChannel> {
        NodeServiceClient::with_interceptor(self.channel().await, self.auth())
    }

    pub async fn pipelines(&self) -> PipelineServiceClient<AuthChannel> {
        PipelineServiceClient::with_interceptor(self.channel().await, self.auth())
    }

    pub async fn worker(&self) -> WorkerServiceClient<AuthChannel> {
        WorkerServiceClient::with_interceptor(self.channel().await, self.auth())
    }
}
