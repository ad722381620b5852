//! How this worker reaches the artifact store, as the coordinator said when the worker registered:
//! through the coordinator's ArtifactService (a local store on the coordinator), or straight to S3
//! with the coordinator's S3 options under this worker's own `AWS_*` variables.
//!
//! The last answer is kept in the event log's `meta` tree, so a worker restarted while its
//! coordinator is away can still finish staging inputs and uploading outputs to S3.

use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use reelay_artifacts::remote::CoordinatorBlobs;
use reelay_artifacts::{Blobs, ObjectBlobs, S3Options, StoreLocation};
use reelay_proto::auth::ClusterAuth;
use reelay_proto::tls::ClientTls;
use reelay_proto::v1;
use reelay_proto::v1::artifact_service_client::ArtifactServiceClient;
use reelay_store::{Store, WriteBatch};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::error::WorkerError;
use crate::event_log::META;

const ACCESS_KEY: &[u8] = b"store_access";

/// How to build a client of the coordinator's ArtifactService.
#[derive(Debug, Clone)]
pub struct CoordinatorLink {
    pub url: String,
    pub tls: ClientTls,
    pub auth: ClusterAuth,
}

/// The artifact store as this worker reaches it; unknown until the coordinator says.
#[derive(Debug)]
pub struct StoreAccess {
    link: Option<CoordinatorLink>,
    store: Arc<dyn Store>,
    current: watch::Sender<Option<Arc<dyn Blobs>>>,
}

impl StoreAccess {
    /// Starts with what `store` remembers from the last registration.
    pub fn new(link: Option<CoordinatorLink>, store: Arc<dyn Store>) -> Self {
        let (current, _) = watch::channel(None);
        let access = StoreAccess {
            link,
            store,
            current,
        };
        match access.remembered() {
            Ok(Some(remembered)) => {
                if let Err(err) = access.apply(&remembered) {
                    tracing::warn!(error = %err, "the remembered artifact store cannot be used; waiting for the coordinator");
                }
            }
            Ok(None) => {}
            Err(err) => tracing::warn!(error = %err, "cannot read the remembered artifact store"),
        }
        access
    }

    fn remembered(&self) -> Result<Option<v1::StoreAccess>, WorkerError> {
        match self.store.get(META, ACCESS_KEY)? {
            Some(bytes) => Ok(Some(v1::StoreAccess::decode(bytes.as_slice())?)),
            None => Ok(None),
        }
    }

    /// Takes what the coordinator said at registration, and remembers it.
    pub fn set(&self, access: &v1::StoreAccess) -> Result<(), WorkerError> {
        if self.remembered().ok().flatten().as_ref() == Some(access)
            && self.current.borrow().is_some()
        {
            return Ok(());
        }
        self.apply(access)?;
        let mut batch = WriteBatch::default();
        batch.put(META, ACCESS_KEY.to_vec(), access.encode_to_vec());
        self.store.commit(&batch)?;
        Ok(())
    }

    fn apply(&self, access: &v1::StoreAccess) -> Result<(), WorkerError> {
        let blobs = self.build(access)?;
        tracing::info!(store = %blobs.describe(), "artifact store");
        self.current.send_replace(Some(blobs));
        Ok(())
    }

    fn build(&self, access: &v1::StoreAccess) -> Result<Arc<dyn Blobs>, WorkerError> {
        match access.kind.as_str() {
            "coordinator" => {
                let link = self.link.as_ref().ok_or_else(|| {
                    WorkerError::Internal(
                        "the artifact store is on the coordinator, but this worker has no --coordinator"
                            .to_owned(),
                    )
                })?;
                let endpoint = link
                    .tls
                    .endpoint(&link.url)
                    .map_err(WorkerError::Internal)?
                    .connect_timeout(Duration::from_secs(3))
                    .http2_keep_alive_interval(Duration::from_secs(10))
                    .keep_alive_timeout(Duration::from_secs(10))
                    .initial_stream_window_size(8 << 20)
                    .initial_connection_window_size(16 << 20);
                let channel = endpoint.connect_lazy();
                let client =
                    ArtifactServiceClient::with_interceptor(channel, link.auth.interceptor())
                        .max_decoding_message_size(8 << 20);
                Ok(Arc::new(CoordinatorBlobs::new(client, link.url.clone())))
            }
            "s3" => {
                let location = StoreLocation::parse(&access.url)
                    .map_err(|err| WorkerError::Internal(err.to_string()))?;
                let handed = S3Options(access.options.clone().into_iter().collect());
                let options = handed.overridden_by(&S3Options::from_env());
                let blobs = ObjectBlobs::open(&location, &options)
                    .map_err(|err| WorkerError::Internal(err.to_string()))?;
                Ok(Arc::new(blobs))
            }
            other => Err(WorkerError::Internal(format!(
                "the coordinator names an artifact store of kind {other:?}, which this worker does not know (upgrade it)"
            ))),
        }
    }

    /// The store, waiting until it is known; `None` when `stop` fires first.
    pub async fn get(&self, stop: &CancellationToken) -> Option<Arc<dyn Blobs>> {
        let mut current = self.current.subscribe();
        tokio::select! {
            known = current.wait_for(Option::is_some) => known.ok().and_then(|blobs| blobs.clone()),
            () = stop.cancelled() => None,
        }
    }

    /// The store if known now.
    pub fn now(&self) -> Option<Arc<dyn Blobs>> {
        self.current.borrow().clone()
    }
}
