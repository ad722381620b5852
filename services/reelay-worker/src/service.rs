//! WorkerService over gRPC: converts requests, delegates to the [`Supervisor`] and the event log,
//! maps errors. No decisions are made here.

use std::io::{Read, Seek, SeekFrom};
use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use reelay_proto::v1;
use reelay_proto::v1::worker_service_server::WorkerService;
use tokio::sync::{Notify, mpsc};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::error::WorkerError;
use crate::event_stream;
use crate::metrics::{StreamKind, WorkerMetrics};
use crate::outputs;
use crate::supervisor::Supervisor;

/// Bytes per download chunk.
const CHUNK: usize = 64 * 1024;

type ServerStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Checks that `text` is a job id: ids become file names (`outputs/<job id>/`) and storage keys.
fn job_id(text: &str, field: &str) -> Result<(), Status> {
    reelay_core::JobId::parse(text, field)
        .map(drop)
        .map_err(|err| WorkerError::from(err).into())
}

/// The gRPC face of a worker.
#[derive(Debug, Clone)]
pub struct WorkerApi {
    supervisor: Arc<Supervisor>,
    /// Notified when an event stream ends (the coordinator went away): registration starts again.
    stream_ended: Arc<Notify>,
    /// Ends every event stream, so the server can shut down.
    shutdown: CancellationToken,
    /// Counts the open streams.
    metrics: WorkerMetrics,
}

impl WorkerApi {
    pub fn new(
        supervisor: Arc<Supervisor>,
        (stream_ended, shutdown): (Arc<Notify>, CancellationToken),
        metrics: WorkerMetrics,
    ) -> Self {
        WorkerApi {
            supervisor,
            stream_ended,
            shutdown,
            metrics,
        }
    }
}

#[tonic::async_trait]
impl WorkerService for WorkerApi {
    async fn start_job(
        &self,
        request: Request<v1::StartJobRequest>,
    ) -> Result<Response<v1::WorkerJob>, Status> {
        let request = request.into_inner();
        let spec = request
            .spec
            .ok_or_else(|| Status::invalid_argument("spec: required"))?;
        let first = match (request.input, request.input_object) {
            (Some(input), Some(object)) => Some((input, object)),
            (None, None) => None,
            _ => {
                return Err(Status::invalid_argument(
                    "input and input_object: give both (an input in the artifact store) or neither",
                ));
            }
        };
        if request.more_inputs.len() != request.more_objects.len() {
            return Err(Status::invalid_argument(
                "more_inputs and more_objects: one object for each input",
            ));
        }
        let more = request
            .more_inputs
            .into_iter()
            .zip(request.more_objects)
            .collect();
        let job = self
            .supervisor
            .start(
                &request.job_id,
                spec,
                request.attempt,
                crate::supervisor::Inputs { first, more },
            )
            .await?;
        Ok(Response::new(job))
    }

    async fn cancel_job(
        &self,
        request: Request<v1::WorkerCancelJobRequest>,
    ) -> Result<Response<v1::WorkerJob>, Status> {
        let request = request.into_inner();
        let job = self
            .supervisor
            .cancel(&request.job_id, request.attempt, &request.reason)
            .await?;
        Ok(Response::new(job))
    }

    type StreamEventsStream = ServerStream<v1::WorkerEvent>;

    async fn stream_events(
        &self,
        request: Request<v1::StreamEventsRequest>,
    ) -> Result<Response<Self::StreamEventsStream>, Status> {
        let request = request.into_inner();
        let node_id = &self.supervisor.node.node_id;
        if !request.node_id.is_empty() && &request.node_id != node_id {
            return Err(Status::failed_precondition(format!(
                "this worker is node {node_id}, not {}; check the node's --advertise address",
                reelay_core::error::quote(&request.node_id)
            )));
        }
        let events = event_stream::events(
            Arc::clone(&self.supervisor),
            request.after_seq,
            (Arc::clone(&self.stream_ended), self.shutdown.clone()),
            self.metrics.open(StreamKind::StreamEvents),
        );
        Ok(Response::new(Box::pin(events)))
    }

    async fn get_job(
        &self,
        request: Request<v1::WorkerGetJobRequest>,
    ) -> Result<Response<v1::WorkerJob>, Status> {
        let job_id = request.into_inner().job_id;
        self::job_id(&job_id, "job_id")?;
        let job = self
            .supervisor
            .log()
            .get_job(&job_id)
            .map_err(Status::from)?;
        job.map(Response::new)
            .ok_or_else(|| Status::not_found(format!("job not found on this node: {job_id}")))
    }

    async fn list_jobs(
        &self,
        request: Request<v1::WorkerListJobsRequest>,
    ) -> Result<Response<v1::WorkerListJobsResponse>, Status> {
        let log = self.supervisor.log();
        let jobs = if request.into_inner().active_only {
            log.active_jobs()
        } else {
            log.all_jobs()
        };
        Ok(Response::new(v1::WorkerListJobsResponse { jobs: jobs? }))
    }

    async fn list_outputs(
        &self,
        request: Request<v1::ListOutputsRequest>,
    ) -> Result<Response<v1::ListOutputsResponse>, Status> {
        let job_id = request.into_inner().id;
        self::job_id(&job_id, "id")?;
        let job = self.supervisor.log().get_job(&job_id)?;
        let job =
            job.ok_or_else(|| Status::not_found(format!("job not found on this node: {job_id}")))?;
        Ok(Response::new(v1::ListOutputsResponse {
            files: job.outputs,
        }))
    }

    type DownloadOutputStream = ServerStream<v1::DataChunk>;

    async fn download_output(
        &self,
        request: Request<v1::DownloadOutputRequest>,
    ) -> Result<Response<Self::DownloadOutputStream>, Status> {
        let request = request.into_inner();
        reelay_core::JobId::parse(&request.id, "id").map_err(WorkerError::from)?;
        let listed = self.supervisor.log().get_job(&request.id)?.and_then(|job| {
            job.outputs
                .into_iter()
                .find(|file| file.name == request.name)
        });
        if let Some(listed) = &listed
            && request.offset > listed.size
        {
            return Err(Status::invalid_argument(format!(
                "offset: {} is past the end of {:?} ({} bytes)",
                request.offset, request.name, listed.size
            )));
        }
        let dir = self.supervisor.output_dir(&request.id);
        let stored_elsewhere = listed.is_some() && self.supervisor.store.is_some();
        let (tx, rx) = mpsc::channel(8);
        let opened = tokio::task::spawn_blocking(move || -> Result<_, WorkerError> {
            let mut file = match outputs::open_file(&dir, &request.name) {
                Err(WorkerError::Domain(reelay_core::Error::NotFound { .. })) if stored_elsewhere => {
                    return Err(reelay_core::Error::not_found(
                        "output on this node (it is in the artifact store: download it from the coordinator)",
                        request.name.clone(),
                    )
                    .into());
                }
                other => other?,
            };
            let size = file.metadata()?.len();
            if request.offset > size {
                return Err(reelay_core::Error::invalid(
                    "offset",
                    format!(
                        "{} is past the end of {:?} ({size} bytes)",
                        request.offset, request.name
                    ),
                )
                .into());
            }
            file.seek(SeekFrom::Start(request.offset))?;
            Ok((file, size, request.offset))
        })
        .await
        .map_err(|err| Status::internal(err.to_string()))??;
        // The reader ends when the client leaves: its send fails as soon as the response stream
        // is dropped, even while it waits for room. The stream is counted while it lives.
        tokio::task::spawn_blocking(move || send_chunks(opened, &tx));
        let open = self.metrics.open(StreamKind::DownloadOutput);
        let chunks = ReceiverStream::new(rx).map(move |chunk| {
            let _counted = &open;
            chunk
        });
        Ok(Response::new(Box::pin(chunks)))
    }

    async fn delete_job(
        &self,
        request: Request<v1::WorkerDeleteJobRequest>,
    ) -> Result<Response<v1::WorkerDeleteJobResponse>, Status> {
        self.supervisor.delete(&request.into_inner().job_id).await?;
        Ok(Response::new(v1::WorkerDeleteJobResponse {}))
    }

    async fn trim_events(
        &self,
        request: Request<v1::TrimEventsRequest>,
    ) -> Result<Response<v1::TrimEventsResponse>, Status> {
        let through = request.into_inner().through_seq;
        let last = self.supervisor.log().last_seq();
        if through > last {
            return Err(Status::out_of_range(format!(
                "through_seq: {through} is past the last event of this worker's log ({last})"
            )));
        }
        let log = Arc::clone(self.supervisor.log());
        let removed = tokio::task::spawn_blocking(move || log.trim_through(through))
            .await
            .map_err(|err| Status::internal(err.to_string()))??;
        Ok(Response::new(v1::TrimEventsResponse {
            removed: removed as u64,
        }))
    }

    async fn get_info(
        &self,
        _request: Request<v1::GetInfoRequest>,
    ) -> Result<Response<v1::WorkerInfo>, Status> {
        Ok(Response::new(self.supervisor.info().await))
    }
}

/// Reads an opened file in chunks into `tx` (blocking).
fn send_chunks(
    opened: (std::fs::File, u64, u64),
    tx: &mpsc::Sender<Result<v1::DataChunk, Status>>,
) {
    let (mut file, size, mut offset) = opened;
    let mut first = true;
    loop {
        let mut data = vec![0u8; CHUNK];
        let read = match file.read(&mut data) {
            Ok(read) => read,
            Err(err) => {
                let _ =
                    tx.blocking_send(Err(Status::internal(format!("reading the output: {err}"))));
                return;
            }
        };
        if read == 0 && !first {
            return;
        }
        data.truncate(read);
        let chunk = v1::DataChunk {
            data: data.into(),
            offset,
            size: if first { size } else { 0 },
        };
        if tx.blocking_send(Ok(chunk)).is_err() || read == 0 {
            return;
        }
        first = false;
        offset += read as u64;
    }
}
