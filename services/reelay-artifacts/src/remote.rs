//! The coordinator's store over the internal ArtifactService: [`CoordinatorBlobs`] is how a worker
//! reads and writes it, [`ArtifactServer`] is the coordinator's side.
//!
//! With a local artifact store (a directory on the coordinator), workers on other machines reach it
//! only through the coordinator. The service mirrors [`Blobs`], so a worker's transfer works, and
//! resumes, the same whether it goes through the coordinator or straight to S3.

use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use reelay_proto::v1;
use reelay_proto::v1::artifact_service_client::ArtifactServiceClient;
use reelay_proto::v1::artifact_service_server::ArtifactService;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::blobs::{Blobs, ByteStream, ObjectInfo, ObjectRef};
use crate::error::ArtifactError;
use crate::keys;

/// Bytes per message of a part or a read: well under the 4 MiB message limit.
pub const CHUNK: usize = 1024 * 1024;

/// Largest part accepted from a worker.
const MAX_PART: u64 = 5 * 1024 * 1024 * 1024;

// === conversions ===

impl From<&ObjectRef> for v1::ObjectRef {
    fn from(object: &ObjectRef) -> Self {
        v1::ObjectRef {
            bucket: object.bucket.clone().unwrap_or_default(),
            key: object.key.clone(),
        }
    }
}

impl From<v1::ObjectRef> for ObjectRef {
    fn from(object: v1::ObjectRef) -> Self {
        ObjectRef {
            bucket: Some(object.bucket).filter(|bucket| !bucket.is_empty()),
            key: object.key,
        }
    }
}

impl From<ObjectInfo> for v1::ObjectInfo {
    fn from(info: ObjectInfo) -> Self {
        v1::ObjectInfo {
            size: info.size,
            etag: info.etag,
        }
    }
}

// === client ===

/// The worker's side: the store through the coordinator.
#[derive(Debug, Clone)]
pub struct CoordinatorBlobs<C> {
    client: ArtifactServiceClient<C>,
    /// The coordinator, for messages.
    coordinator: String,
}

impl<C> CoordinatorBlobs<C> {
    pub fn new(client: ArtifactServiceClient<C>, coordinator: String) -> Self {
        CoordinatorBlobs {
            client,
            coordinator,
        }
    }
}

type Body = tonic::body::Body;

#[async_trait::async_trait]
impl<C> Blobs for CoordinatorBlobs<C>
where
    C: tonic::client::GrpcService<Body> + Clone + Send + Sync + std::fmt::Debug + 'static,
    C::Future: Send,
    C::ResponseBody: tonic::transport::Body<Data = Bytes> + Send + 'static,
    <C::ResponseBody as tonic::transport::Body>::Error: Into<tonic::codegen::StdError> + Send,
    C::Error: Into<tonic::codegen::StdError>,
{
    async fn head(&self, object: &ObjectRef) -> Result<ObjectInfo, ArtifactError> {
        let info = self
            .client
            .clone()
            .head_object(v1::ObjectRef::from(object))
            .await?
            .into_inner();
        Ok(ObjectInfo {
            size: info.size,
            etag: info.etag,
        })
    }

    async fn read(&self, object: &ObjectRef, offset: u64) -> Result<ByteStream, ArtifactError> {
        let request = v1::ReadObjectRequest {
            object: Some(object.into()),
            offset,
        };
        let stream = self.client.clone().read_object(request).await?.into_inner();
        Ok(stream
            .map(|chunk| chunk.map(|chunk| chunk.data).map_err(ArtifactError::from))
            .boxed())
    }

    async fn create_multipart(&self, key: &str, part_size: u64) -> Result<String, ArtifactError> {
        let request = v1::CreateMultipartRequest {
            key: key.to_owned(),
            part_size,
        };
        Ok(self
            .client
            .clone()
            .create_multipart(request)
            .await?
            .into_inner()
            .upload_id)
    }

    async fn put_part(
        &self,
        key: &str,
        upload_id: &str,
        index: u32,
        data: Vec<Bytes>,
    ) -> Result<String, ArtifactError> {
        let header = v1::PutPartRequest {
            part: Some(v1::put_part_request::Part::Header(v1::PartHeader {
                key: key.to_owned(),
                upload_id: upload_id.to_owned(),
                index,
                size: data.iter().map(|piece| piece.len() as u64).sum(),
            })),
        };
        // Slices of the pieces, at most CHUNK each: the messages own no copy of the bytes.
        let mut messages = vec![header];
        for piece in data {
            for start in (0..piece.len()).step_by(CHUNK) {
                let end = (start + CHUNK).min(piece.len());
                messages.push(v1::PutPartRequest {
                    part: Some(v1::put_part_request::Part::Data(piece.slice(start..end))),
                });
            }
        }
        Ok(self
            .client
            .clone()
            .put_part(futures::stream::iter(messages))
            .await?
            .into_inner()
            .part_id)
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        part_ids: Vec<String>,
    ) -> Result<ObjectInfo, ArtifactError> {
        let request = v1::CompleteMultipartRequest {
            key: key.to_owned(),
            upload_id: upload_id.to_owned(),
            part_ids,
        };
        let info = self
            .client
            .clone()
            .complete_multipart(request)
            .await?
            .into_inner();
        Ok(ObjectInfo {
            size: info.size,
            etag: info.etag,
        })
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), ArtifactError> {
        let request = v1::AbortMultipartRequest {
            key: key.to_owned(),
            upload_id: upload_id.to_owned(),
        };
        self.client.clone().abort_multipart(request).await?;
        Ok(())
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<u64, ArtifactError> {
        Err(ArtifactError::Invalid(format!(
            "workers do not delete from the artifact store ({prefix})"
        )))
    }

    fn describe(&self) -> String {
        format!(
            "the artifact store of the coordinator at {}",
            self.coordinator
        )
    }
}

// === server ===

/// ArtifactService on the coordinator: a worker's requests, on the coordinator's store. Workers
/// may read any object and write outputs only; the cluster token is checked around it.
#[derive(Debug, Clone)]
pub struct ArtifactServer {
    blobs: Arc<dyn Blobs>,
}

impl ArtifactServer {
    pub fn new(blobs: Arc<dyn Blobs>) -> Self {
        ArtifactServer { blobs }
    }
}

fn writable(key: &str) -> Result<(), Status> {
    keys::validate(key)?;
    if !keys::is_output(key) {
        return Err(Status::permission_denied(format!(
            "workers write outputs only, not {key:?}"
        )));
    }
    Ok(())
}

type ServerStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl ArtifactService for ArtifactServer {
    async fn head_object(
        &self,
        request: Request<v1::ObjectRef>,
    ) -> Result<Response<v1::ObjectInfo>, Status> {
        let object = ObjectRef::from(request.into_inner());
        keys::validate(&object.key)?;
        Ok(Response::new(self.blobs.head(&object).await?.into()))
    }

    type ReadObjectStream = ServerStream<v1::DataChunk>;

    async fn read_object(
        &self,
        request: Request<v1::ReadObjectRequest>,
    ) -> Result<Response<Self::ReadObjectStream>, Status> {
        let request = request.into_inner();
        let object = ObjectRef::from(request.object.unwrap_or_default());
        keys::validate(&object.key)?;
        let mut source = self.blobs.read(&object, request.offset).await?;
        let (tx, rx) = mpsc::channel(4);
        let mut offset = request.offset;
        tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    next = source.next() => next,
                    () = tx.closed() => return,
                };
                let Some(chunk) = next else { return };
                let item = chunk
                    .map(|data| {
                        let len = data.len() as u64;
                        let chunk = v1::DataChunk {
                            offset,
                            size: 0,
                            data,
                        };
                        offset += len;
                        chunk
                    })
                    .map_err(Status::from);
                let failed = item.is_err();
                if tx.send(item).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn create_multipart(
        &self,
        request: Request<v1::CreateMultipartRequest>,
    ) -> Result<Response<v1::CreateMultipartResponse>, Status> {
        let request = request.into_inner();
        writable(&request.key)?;
        if request.part_size == 0 || request.part_size > MAX_PART {
            return Err(Status::invalid_argument(format!(
                "part_size: {} is not between 1 byte and 5 GiB",
                request.part_size
            )));
        }
        let upload_id = self
            .blobs
            .create_multipart(&request.key, request.part_size)
            .await?;
        Ok(Response::new(v1::CreateMultipartResponse { upload_id }))
    }

    async fn put_part(
        &self,
        request: Request<Streaming<v1::PutPartRequest>>,
    ) -> Result<Response<v1::PutPartResponse>, Status> {
        let mut stream = request.into_inner();
        let header = match stream.message().await? {
            Some(v1::PutPartRequest {
                part: Some(v1::put_part_request::Part::Header(header)),
            }) => header,
            _ => {
                return Err(Status::invalid_argument(
                    "PutPart starts with a header (key, upload_id, index, size)",
                ));
            }
        };
        writable(&header.key)?;
        if header.size > MAX_PART {
            return Err(Status::invalid_argument("size: parts are at most 5 GiB"));
        }
        // The pieces as they came (each a slice of what was received, no copy), until the part's
        // size is there.
        let mut data = Vec::new();
        let mut received = 0u64;
        while let Some(message) = stream.message().await? {
            match message.part {
                Some(v1::put_part_request::Part::Data(chunk)) => {
                    received += chunk.len() as u64;
                    if received > header.size {
                        return Err(Status::invalid_argument(format!(
                            "part {} is longer than its header says ({} bytes)",
                            header.index, header.size
                        )));
                    }
                    data.push(chunk);
                }
                _ => return Err(Status::invalid_argument("only data follows the header")),
            }
        }
        if received != header.size {
            return Err(Status::invalid_argument(format!(
                "part {} ended after {received} of {} bytes",
                header.index, header.size
            )));
        }
        let part_id = self
            .blobs
            .put_part(&header.key, &header.upload_id, header.index, data)
            .await?;
        Ok(Response::new(v1::PutPartResponse { part_id }))
    }

    async fn complete_multipart(
        &self,
        request: Request<v1::CompleteMultipartRequest>,
    ) -> Result<Response<v1::ObjectInfo>, Status> {
        let request = request.into_inner();
        writable(&request.key)?;
        let info = self
            .blobs
            .complete_multipart(&request.key, &request.upload_id, request.part_ids)
            .await?;
        Ok(Response::new(info.into()))
    }

    async fn abort_multipart(
        &self,
        request: Request<v1::AbortMultipartRequest>,
    ) -> Result<Response<v1::AbortMultipartResponse>, Status> {
        let request = request.into_inner();
        writable(&request.key)?;
        self.blobs
            .abort_multipart(&request.key, &request.upload_id)
            .await?;
        Ok(Response::new(v1::AbortMultipartResponse {}))
    }
}

impl From<ArtifactError> for Box<Status> {
    fn from(err: ArtifactError) -> Self {
        Box::new(Status::from(err))
    }
}
