//! `CreateJobs`: many jobs in one call, one result per request.
//!
//! The whole batch goes to the engine as one command, so it is applied in one cycle and made
//! durable by one flush (one group commit). Each item is checked and de-duplicated by its
//! `request_id` on its own: an invalid item gets its own error and does not sink the others. A
//! batch over [`MAX_BATCH`] requests is refused whole, before anything is looked at.

use reelay_proto::v1;
use tonic::Status;

use super::ApiState;
use crate::engine::NewJob;
use crate::error::CoordinatorError;

/// Requests per `CreateJobs` call at most (the call is also bounded by the 4 MiB message limit).
const MAX_BATCH: usize = reelay_proto::MAX_CREATE_JOBS;

/// Creates the jobs of `request`; the outer error refuses the batch as a whole.
pub(crate) async fn create_jobs(
    state: &ApiState,
    request: v1::CreateJobsRequest,
) -> Result<v1::CreateJobsResponse, Status> {
    let count = request.requests.len();
    if count > MAX_BATCH {
        return Err(Status::invalid_argument(format!(
            "requests: {count} requests in one batch; at most {MAX_BATCH} are allowed (send them in batches of {MAX_BATCH})"
        )));
    }
    // Items without a spec are answered here; the others go to the engine, in order.
    let mut results: Vec<Option<v1::CreateJobResult>> = Vec::with_capacity(count);
    let mut items = Vec::with_capacity(count);
    for (index, item) in request.requests.into_iter().enumerate() {
        match item.spec {
            Some(spec) => {
                let spec: reelay_core::JobSpec = spec.into();
                // An input that cannot be resolved refuses this item only.
                match super::inputs::resolve(state, &spec).await {
                    Ok(input) => {
                        items.push(NewJob {
                            spec,
                            request_id: item.request_id,
                            input,
                        });
                        results.push(None);
                    }
                    Err(status) => results.push(Some(refused(status))),
                }
            }
            None => results.push(Some(refused(Status::invalid_argument(format!(
                "requests[{index}].spec: a job spec is required"
            ))))),
        }
    }
    let created = if items.is_empty() {
        Vec::new()
    } else {
        state.engine.create_many(items).await?
    };
    let mut jobs = Vec::with_capacity(created.len());
    // Per engine item: `Ok(new)` for a job (in `jobs`, in order), or the refusal.
    let mut outcomes = Vec::with_capacity(created.len());
    for outcome in created {
        match outcome {
            Ok(created) => {
                jobs.push(created.job);
                outcomes.push(Ok(created.new));
            }
            Err(err) => outcomes.push(Err(refused(Status::from(err)))),
        }
    }
    // No queue positions: a new job is at the back of its priority, and counting costs a walk of
    // the queue (GetJob has it).
    let mut views = state.views(&jobs, 0).into_iter();
    let mut engine_results = outcomes.into_iter().map(|outcome| match outcome {
        Ok(new) => v1::CreateJobResult {
            result: views.next().map(v1::create_job_result::Result::Job),
            created: new,
        },
        Err(refusal) => refusal,
    });
    let results = results
        .into_iter()
        .map(|slot| {
            slot.or_else(|| engine_results.next()).unwrap_or_else(|| {
                refused(Status::from(CoordinatorError::Internal(
                    "the engine answered fewer items than it was given".into(),
                )))
            })
        })
        .collect();
    Ok(v1::CreateJobsResponse { results })
}

fn refused(status: Status) -> v1::CreateJobResult {
    v1::CreateJobResult {
        result: Some(v1::create_job_result::Result::Error(v1::ItemError {
            code: status.code() as i32,
            message: status.message().to_owned(),
        })),
        created: false,
    }
}
