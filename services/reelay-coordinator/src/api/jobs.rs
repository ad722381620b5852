//! JobService over gRPC.

use std::collections::BTreeSet;

use futures::StreamExt;
use reelay_core::names::{validate_node_id, validate_output_name};
use reelay_core::{JobId, JobSpec, JobState};
use reelay_proto::convert::job_state;
use reelay_proto::v1;
use reelay_proto::v1::job_service_server::JobService;
use tonic::{Request, Response, Status, Streaming};

use super::stream::{self, Gone, Tx};
use super::{ApiState, ServerStream, batch, parse_id, watch};
use crate::error::CoordinatorError;
use crate::metrics::StreamKind;

const DEFAULT_PAGE: usize = 50;
const MAX_PAGE: usize = 1000;
/// Index entries read per round when a filter skips some.
const SCAN_CHUNK: usize = 256;
/// History events returned at most by GetJobHistory.
const MAX_HISTORY: usize = 10_000;

/// JobService.
#[derive(Debug, Clone)]
pub struct JobApi(pub ApiState);

#[tonic::async_trait]
impl JobService for JobApi {
    async fn create_job(
        &self,
        request: Request<v1::CreateJobRequest>,
    ) -> Result<Response<v1::Job>, Status> {
        self.0.write(&request)?;
        let request = request.into_inner();
        let spec: JobSpec = request
            .spec
            .ok_or_else(|| Status::invalid_argument("spec: a job spec is required"))?
            .into();
        let input = super::inputs::resolve(&self.0, &spec).await?;
        let job = self
            .0
            .engine
            .create(spec, request.request_id, input)
            .await?;
        // A new job is at the back of its priority: its position costs a walk of the queue; GetJob has it.
        Ok(Response::new(
            self.0
                .views(std::slice::from_ref(&job), 0)
                .pop()
                .unwrap_or_default(),
        ))
    }

    async fn create_jobs(
        &self,
        request: Request<v1::CreateJobsRequest>,
    ) -> Result<Response<v1::CreateJobsResponse>, Status> {
        self.0.write(&request)?;
        let response = batch::create_jobs(&self.0, request.into_inner()).await?;
        Ok(Response::new(response))
    }

    async fn get_job(
        &self,
        request: Request<v1::GetJobRequest>,
    ) -> Result<Response<v1::Job>, Status> {
        self.0.read(&request)?;
        let id = parse_id(&request.into_inner().id)?;
        let job = self.0.store.require_job(id)?;
        Ok(Response::new(self.0.view(&job)))
    }

    async fn list_jobs(
        &self,
        request: Request<v1::ListJobsRequest>,
    ) -> Result<Response<v1::ListJobsResponse>, Status> {
        self.0.read(&request)?;
        let request = request.into_inner();
        let page_size = match request.page_size {
            n if n < 0 => {
                return Err(Status::invalid_argument(format!(
                    "page_size: {n} is negative"
                )));
            }
            0 => DEFAULT_PAGE,
            n => (n as usize).min(MAX_PAGE),
        };
        let before = parse_page_token(&request.page_token)?;
        let states: BTreeSet<JobState> = request
            .states
            .iter()
            .map(|state| job_state(*state, "states"))
            .collect::<Result<_, _>>()
            .map_err(CoordinatorError::from)?;
        let node = Some(request.node_id).filter(|node| !node.is_empty());
        if let Some(node) = &node {
            validate_node_id(node, "node_id").map_err(CoordinatorError::from)?;
        }
        let (jobs, more) = match Some(request.parent_id).filter(|id| !id.is_empty()) {
            Some(parent) => {
                let parent = parse_id(&parent)?;
                self.steps_page(parent, before, &states, page_size)?
            }
            None if request.top_level => {
                self.top_level_page(before, &states, node.as_deref(), page_size)?
            }
            None => self.page(before, &states, node.as_deref(), page_size)?,
        };
        let next_page_token = if more {
            jobs.last()
                .map(|job| hex::encode(job.id.as_bytes()))
                .unwrap_or_default()
        } else {
            String::new()
        };
        let jobs = self.0.views(&jobs, super::LIST_POSITION_CAP);
        Ok(Response::new(v1::ListJobsResponse {
            jobs,
            next_page_token,
        }))
    }

    type WatchJobStream = ServerStream<v1::JobEvent>;

    async fn watch_job(
        &self,
        request: Request<v1::WatchJobRequest>,
    ) -> Result<Response<Self::WatchJobStream>, Status> {
        self.0.read(&request)?;
        let request = request.into_inner();
        let id = parse_id(&request.id)?;
        let stream = watch::job(self.0.clone(), id, request.after_version)?;
        Ok(Response::new(stream))
    }

    type WatchJobsStream = ServerStream<v1::JobEvent>;

    async fn watch_jobs(
        &self,
        request: Request<v1::WatchJobsRequest>,
    ) -> Result<Response<Self::WatchJobsStream>, Status> {
        self.0.read(&request)?;
        let request = request.into_inner();
        let states: BTreeSet<JobState> = request
            .states
            .iter()
            .map(|state| job_state(*state, "states"))
            .collect::<Result<_, _>>()
            .map_err(CoordinatorError::from)?;
        Ok(Response::new(watch::jobs(
            self.0.clone(),
            states,
            !request.no_snapshot,
        )))
    }

    async fn cancel_job(
        &self,
        request: Request<v1::CancelJobRequest>,
    ) -> Result<Response<v1::Job>, Status> {
        self.0.write(&request)?;
        let id = parse_id(&request.into_inner().id)?;
        let job = self.0.engine.cancel(id).await?;
        Ok(Response::new(self.0.view(&job)))
    }

    async fn retry_job(
        &self,
        request: Request<v1::RetryJobRequest>,
    ) -> Result<Response<v1::Job>, Status> {
        self.0.write(&request)?;
        let id = parse_id(&request.into_inner().id)?;
        let job = self.0.engine.retry(id).await?;
        Ok(Response::new(self.0.view(&job)))
    }

    async fn delete_job(
        &self,
        request: Request<v1::DeleteJobRequest>,
    ) -> Result<Response<v1::DeleteJobResponse>, Status> {
        self.0.write(&request)?;
        let id = parse_id(&request.into_inner().id)?;
        self.0.engine.delete(id).await?;
        Ok(Response::new(v1::DeleteJobResponse {}))
    }

    type GetJobLogsStream = ServerStream<v1::LogLine>;

    async fn get_job_logs(
        &self,
        request: Request<v1::GetJobLogsRequest>,
    ) -> Result<Response<Self::GetJobLogsStream>, Status> {
        self.0.read(&request)?;
        let request = request.into_inner();
        let id = parse_id(&request.id)?;
        let stream = watch::logs(self.0.clone(), id, request.after_line, request.follow)?;
        Ok(Response::new(stream))
    }

    async fn list_outputs(
        &self,
        request: Request<v1::ListOutputsRequest>,
    ) -> Result<Response<v1::ListOutputsResponse>, Status> {
        self.0.read(&request)?;
        let id = parse_id(&request.into_inner().id)?;
        let job = self.0.store.require_job(id)?;
        let files = job.outputs.iter().map(Into::into).collect();
        Ok(Response::new(v1::ListOutputsResponse { files }))
    }

    type DownloadOutputStream = ServerStream<v1::DataChunk>;

    async fn download_output(
        &self,
        request: Request<v1::DownloadOutputRequest>,
    ) -> Result<Response<Self::DownloadOutputStream>, Status> {
        self.0.read(&request)?;
        let request = request.into_inner();
        let id = parse_id(&request.id)?;
        let stream = open_download(
            &self.0,
            StreamKind::DownloadOutput,
            (id, &request.name),
            request.offset,
        )
        .await?;
        Ok(Response::new(stream))
    }

    async fn upload_input(
        &self,
        request: Request<Streaming<v1::UploadInputRequest>>,
    ) -> Result<Response<v1::Upload>, Status> {
        self.0.write(&request)?;
        let mut stream = request.into_inner();
        let header = match stream.message().await? {
            Some(v1::UploadInputRequest {
                part: Some(v1::upload_input_request::Part::Header(header)),
            }) => header,
            _ => {
                return Err(Status::invalid_argument(
                    "UploadInput starts with a header: name, size, sha256 (and id, offset to resume)",
                ));
            }
        };
        let data = stream.map(|message| match message {
            Ok(v1::UploadInputRequest {
                part: Some(v1::upload_input_request::Part::Data(data)),
            }) => Ok(data),
            Ok(_) => {
                Err(reelay_core::Error::invalid("data", "only data follows the header").into())
            }
            Err(status) => Err(CoordinatorError::Unavailable(format!(
                "the upload stream broke: {}",
                status.message()
            ))),
        });
        let upload = self.0.uploads.receive(header.into(), data).await?;
        Ok(Response::new(upload))
    }

    async fn get_upload(
        &self,
        request: Request<v1::GetUploadRequest>,
    ) -> Result<Response<v1::Upload>, Status> {
        self.0.read(&request)?;
        Ok(Response::new(self.0.uploads.get(&request.into_inner().id)?))
    }

    async fn get_job_history(
        &self,
        request: Request<v1::GetJobHistoryRequest>,
    ) -> Result<Response<v1::GetJobHistoryResponse>, Status> {
        self.0.read(&request)?;
        let request = request.into_inner();
        let id = parse_id(&request.id)?;
        let job = self.0.store.require_job(id)?;
        if request.after_version > job.version {
            return Err(Status::out_of_range(format!(
                "after_version: {} is ahead of job {id}, which is at version {}",
                request.after_version, job.version
            )));
        }
        let events = self
            .0
            .store
            .events_after(id, request.after_version, MAX_HISTORY)?;
        Ok(Response::new(v1::GetJobHistoryResponse { events }))
    }
}

impl JobApi {
    /// One page of the steps of `parent`, in the order they were made (the page token is the
    /// last step of the previous page), and whether more follow.
    fn steps_page(
        &self,
        parent: JobId,
        after: Option<JobId>,
        states: &BTreeSet<JobState>,
        page_size: usize,
    ) -> Result<(Vec<reelay_core::Job>, bool), CoordinatorError> {
        let store = &self.0.store;
        store.require_job(parent)?;
        let mut jobs = Vec::with_capacity(page_size);
        let mut more = false;
        for id in store
            .ids_of_parent(parent, usize::MAX)?
            .into_iter()
            .filter(|id| after.is_none_or(|after| *id > after))
        {
            let Some(job) = store.job(id)? else { continue };
            if !states.is_empty() && !states.contains(&job.state) {
                continue;
            }
            if jobs.len() == page_size {
                more = true;
                break;
            }
            jobs.push(job);
        }
        Ok((jobs, more))
    }

    /// A page of jobs that are no other job's step, newest first.
    fn top_level_page(
        &self,
        mut before: Option<JobId>,
        states: &BTreeSet<JobState>,
        node: Option<&str>,
        page_size: usize,
    ) -> Result<(Vec<reelay_core::Job>, bool), CoordinatorError> {
        let mut kept = Vec::with_capacity(page_size + 1);
        loop {
            let (jobs, more) = self.page(before, states, node, page_size)?;
            before = jobs.last().map(|job| job.id);
            kept.extend(jobs.into_iter().filter(|job| job.parent_id.is_none()));
            if kept.len() > page_size || !more || before.is_none() {
                let more = kept.len() > page_size || more;
                kept.truncate(page_size);
                return Ok((kept, more));
            }
        }
    }

    /// One page of jobs newest first, and whether more follow.
    fn page(
        &self,
        before: Option<JobId>,
        states: &BTreeSet<JobState>,
        node: Option<&str>,
        page_size: usize,
    ) -> Result<(Vec<reelay_core::Job>, bool), CoordinatorError> {
        let store = &self.0.store;
        let wanted = page_size + 1;
        let ids: Vec<JobId> = match (node, states.len()) {
            (None, 0) => store.ids(before, wanted)?,
            (None, 1) => {
                let state = states.iter().next().copied().unwrap_or(JobState::Queued);
                store.ids_in_state(state, before, wanted)?
            }
            (None, _) => {
                let mut merged = Vec::new();
                for state in states {
                    merged.extend(store.ids_in_state(*state, before, wanted)?);
                }
                merged.sort_unstable_by(|a, b| b.cmp(a));
                merged.truncate(wanted);
                merged
            }
            (Some(node), _) => {
                // Filtered by node first, then by state: read the node's index in chunks.
                let mut matched = Vec::new();
                let mut cursor = before;
                loop {
                    let chunk = store.ids_on_node(node, cursor, SCAN_CHUNK)?;
                    let Some(last) = chunk.last().copied() else {
                        break;
                    };
                    for id in chunk.iter().copied() {
                        if states.is_empty()
                            || store
                                .job(id)?
                                .is_some_and(|job| states.contains(&job.state))
                        {
                            matched.push(id);
                        }
                    }
                    if matched.len() >= wanted || chunk.len() < SCAN_CHUNK {
                        break;
                    }
                    cursor = Some(last);
                }
                matched.truncate(wanted);
                matched
            }
        };
        let more = ids.len() > page_size;
        let mut jobs = Vec::with_capacity(page_size);
        for id in ids.into_iter().take(page_size) {
            if let Some(job) = store.job(id)? {
                jobs.push(job);
            }
        }
        Ok((jobs, more))
    }
}

fn parse_page_token(token: &str) -> Result<Option<JobId>, Status> {
    if token.is_empty() {
        return Ok(None);
    }
    let bytes = hex::decode(token)
        .ok()
        .and_then(|bytes| <[u8; 16]>::try_from(bytes).ok());
    bytes.map(|bytes| Some(JobId::from_bytes(bytes))).ok_or_else(|| {
        Status::invalid_argument("page_token: not a token from a previous ListJobs response; start again without one")
    })
}

/// Opens output `name` of job `id` in the artifact store, from `offset`: a stream of `kind`. The
/// job's worker need not be there.
pub(crate) async fn open_download(
    state: &ApiState,
    kind: StreamKind,
    (id, name): (JobId, &str),
    offset: u64,
) -> Result<ServerStream<v1::DataChunk>, Status> {
    validate_output_name(name, "name").map_err(CoordinatorError::from)?;
    let job = state.store.require_job(id)?;
    let Some(file) = job.outputs.iter().find(|file| file.name == name) else {
        return Err(Status::not_found(format!(
            "job {id} has no output named {name:?}"
        )));
    };
    if offset > file.size {
        return Err(Status::invalid_argument(format!(
            "offset: {offset} is past the end of {name:?} ({} bytes)",
            file.size
        )));
    }
    let size = file.size;
    // A job made of steps has its join step's outputs.
    let (owner, attempt) = match job.steps.as_ref().and_then(|steps| steps.join.as_ref()) {
        Some(join) => (join.job, state.store.require_job(join.job)?.attempt),
        None => (id, job.attempt),
    };
    let key = reelay_artifacts::keys::output(&owner.to_string(), attempt, name);
    let source = if offset == size {
        futures::stream::empty().boxed()
    } else {
        state
            .uploads
            .blobs()
            .read(&reelay_artifacts::ObjectRef::stored(key), offset)
            .await
            .map_err(CoordinatorError::from)?
    };
    let (tx, stream) = stream::channel(&state.streams, kind, state.shutdown.clone());
    tokio::spawn(async move {
        tx.run(relay(source, (offset, size), &tx)).await;
    });
    Ok(stream)
}

/// Relays an object's bytes to the client as chunks until it ends or either side fails (run by
/// [`Tx::run`], which also ends it when the client leaves, dropping the read of the store).
async fn relay(
    mut source: reelay_artifacts::ByteStream,
    (offset, size): (u64, u64),
    tx: &Tx<v1::DataChunk>,
) -> Result<(), Gone> {
    let mut at = offset;
    while let Some(chunk) = source.next().await {
        match chunk {
            Ok(data) => {
                let len = data.len() as u64;
                let chunk = v1::DataChunk {
                    data,
                    offset: at,
                    size: if at == offset { size } else { 0 },
                };
                at += len;
                tx.send(Ok(chunk)).await?;
            }
            Err(err) => return tx.send(Err(CoordinatorError::from(err).into())).await,
        }
    }
    Ok(())
}
