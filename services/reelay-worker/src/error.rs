//! The worker's error type and its one mapping to gRPC statuses.

use reelay_store::StoreError;
use tonic::Status;

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("{0}")]
    Domain(#[from] reelay_core::Error),
    /// Every slot of the node is taken.
    #[error("{0}")]
    Full(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored record cannot be decoded: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Internal(String),
}

impl From<WorkerError> for Status {
    fn from(err: WorkerError) -> Self {
        use reelay_core::Error as Domain;
        match err {
            WorkerError::Domain(Domain::InvalidArgument { .. }) => {
                Status::invalid_argument(err.to_string())
            }
            WorkerError::Domain(Domain::NotFound { .. }) => Status::not_found(err.to_string()),
            WorkerError::Domain(Domain::FailedPrecondition(_)) => {
                Status::failed_precondition(err.to_string())
            }
            WorkerError::Full(_) => Status::resource_exhausted(err.to_string()),
            WorkerError::Io(ref io) if io.kind() == std::io::ErrorKind::NotFound => {
                Status::not_found(err.to_string())
            }
            WorkerError::Store(_)
            | WorkerError::Decode(_)
            | WorkerError::Io(_)
            | WorkerError::Internal(_) => Status::internal(err.to_string()),
        }
    }
}
