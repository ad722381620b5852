//! The coordinator's error type and its one mapping to gRPC statuses.

use reelay_store::StoreError;
use tonic::Status;

#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    #[error("{0}")]
    Domain(#[from] reelay_core::Error),
    /// A node the request needs does not answer.
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored record cannot be decoded: {0}")]
    Decode(#[from] prost::DecodeError),
    /// The engine stopped (the coordinator is shutting down).
    #[error("the coordinator is shutting down")]
    Stopped,
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// Another call is changing the same thing (an upload being written): try again later.
    #[error("{0}")]
    Conflict(String),
    /// The artifact store.
    #[error(transparent)]
    Artifact(#[from] reelay_artifacts::ArtifactError),
    #[error("{0}")]
    Internal(String),
}

pub type Result<T, E = CoordinatorError> = std::result::Result<T, E>;

impl From<CoordinatorError> for Status {
    fn from(err: CoordinatorError) -> Self {
        use reelay_core::Error as Domain;
        let message = err.to_string();
        match err {
            CoordinatorError::Domain(Domain::InvalidArgument { .. }) => {
                Status::invalid_argument(message)
            }
            CoordinatorError::Domain(Domain::NotFound { .. }) => Status::not_found(message),
            CoordinatorError::Domain(Domain::FailedPrecondition(_)) => {
                Status::failed_precondition(message)
            }
            CoordinatorError::Unavailable(_) | CoordinatorError::Stopped => {
                Status::unavailable(message)
            }
            CoordinatorError::Conflict(_) => Status::aborted(message),
            CoordinatorError::Artifact(err) => err.into(),
            CoordinatorError::Store(_)
            | CoordinatorError::Decode(_)
            | CoordinatorError::Io(_)
            | CoordinatorError::Internal(_) => Status::internal(message),
        }
    }
}
