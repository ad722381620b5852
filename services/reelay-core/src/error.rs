//! The domain's error: what was wrong, with enough words to fix it. Mapped to gRPC statuses at the edge.

/// Errors of domain operations. Each variant maps to one gRPC status code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A request field is malformed; `field` is its path (`spec.params.height`).
    #[error("{field}: {reason}")]
    InvalidArgument { field: String, reason: String },
    /// The thing asked for does not exist.
    #[error("{what} not found: {id}")]
    NotFound { what: &'static str, id: String },
    /// The request is well-formed but the current state does not allow it.
    #[error("{0}")]
    FailedPrecondition(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub fn not_found(what: &'static str, id: impl Into<String>) -> Self {
        Self::NotFound {
            what,
            id: id.into(),
        }
    }

    pub fn precondition(reason: impl Into<String>) -> Self {
        Self::FailedPrecondition(reason.into())
    }
}
