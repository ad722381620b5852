//! A new job's `input_uri`, resolved into the input its worker will fetch: an upload that must be
//! complete, or an `s3://` object that must exist (asked of the store now, so a typo fails the
//! submit, not the job).

use reelay_artifacts::{ArtifactError, keys};
use reelay_core::input::InputUri;
use reelay_core::{InputFile, JobSpec};
use tonic::Status;

use super::ApiState;
use crate::error::CoordinatorError;

/// The input of a job about to be created; `None` when it names none in the store.
pub(crate) async fn resolve(state: &ApiState, spec: &JobSpec) -> Result<Option<InputFile>, Status> {
    if spec.input_uri.is_empty() {
        return Ok(None);
    }
    // The spec's own mistakes first (a wrong pipeline, two inputs), before asking the store.
    state
        .engine
        .pipelines()
        .validate(spec)
        .map_err(CoordinatorError::from)?;
    let uri = InputUri::parse(&spec.input_uri, "spec.input_uri").map_err(CoordinatorError::from)?;
    let canonical = uri.to_string();
    match &uri {
        InputUri::Upload(id) => Ok(Some(state.uploads.use_for_job(id, &canonical).await?)),
        InputUri::Output { job, attempt, name } => {
            let id =
                reelay_core::JobId::parse(job, "spec.input_uri").map_err(CoordinatorError::from)?;
            let source = state.store.require_job(id)?;
            let file = source
                .outputs
                .iter()
                .find(|file| &file.name == name)
                .filter(|_| source.attempt == *attempt)
                .ok_or_else(|| Status::not_found(format!("input not found: {canonical}")))?;
            Ok(Some(InputFile {
                uri: canonical,
                name: file.name.clone(),
                size: file.size,
                sha256: file.sha256.clone(),
            }))
        }
        InputUri::S3 { key, .. } => {
            let object = keys::input_object(&uri);
            match state.uploads.blobs().head(&object).await {
                Ok(info) => Ok(Some(InputFile {
                    uri: canonical,
                    name: InputUri::s3_name(key).to_owned(),
                    size: info.size,
                    sha256: String::new(),
                })),
                Err(ArtifactError::NotFound(_)) => {
                    Err(Status::not_found(format!("input not found: {canonical}")))
                }
                Err(ArtifactError::Invalid(message)) => Err(Status::invalid_argument(format!(
                    "spec.input_uri: {message}"
                ))),
                Err(err) => Err(CoordinatorError::from(err).into()),
            }
        }
    }
}
