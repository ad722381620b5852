//! The artifact store's errors, and the gRPC status of each.

use tonic::{Code, Status};

/// What went wrong with an object or a transfer. Messages say what and, where there is one, what
/// to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArtifactError {
    /// The object, upload or multipart write does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The store does not answer, or failed in a way worth retrying.
    #[error("{0}")]
    Unavailable(String),
    /// A request that can never succeed: a bad key, a part of the wrong size, a store that cannot
    /// do it.
    #[error("{0}")]
    Invalid(String),
    /// Bytes that are not what was promised (size, SHA-256).
    #[error("{0}")]
    Integrity(String),
    /// The local disk: full, or not writable.
    #[error("{0}")]
    Disk(String),
}

impl ArtifactError {
    /// Worth trying again later (the store may come back).
    pub fn is_retryable(&self) -> bool {
        matches!(self, ArtifactError::Unavailable(_))
    }

    /// An I/O error on a local file, with what was being done.
    pub fn disk(what: &str, err: &std::io::Error) -> Self {
        let hint = match err.raw_os_error() {
            Some(28) => " (no space left on the device: free some, or lower --cache-size)",
            Some(13) => " (permission denied: check the directory's owner and mode)",
            _ => "",
        };
        ArtifactError::Disk(format!("{what}: {err}{hint}"))
    }

    /// An `object_store` error about `what`.
    pub fn from_store(what: &str, err: object_store::Error) -> Self {
        match err {
            object_store::Error::NotFound { .. } => {
                ArtifactError::NotFound(format!("{what}: not found"))
            }
            object_store::Error::InvalidPath { source } => {
                ArtifactError::Invalid(format!("{what}: invalid path: {source}"))
            }
            object_store::Error::NotSupported { source } => {
                ArtifactError::Invalid(format!("{what}: not supported by this store: {source}"))
            }
            object_store::Error::Precondition { source, .. } => {
                ArtifactError::Integrity(format!("{what}: the object changed: {source}"))
            }
            other => ArtifactError::Unavailable(format!("{what}: {}", chain(&other))),
        }
    }
}

/// An error and its sources, `a: b: c`.
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let next = cause.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = cause.source();
    }
    text
}

impl From<ArtifactError> for Status {
    fn from(err: ArtifactError) -> Self {
        let code = match &err {
            ArtifactError::NotFound(_) => Code::NotFound,
            ArtifactError::Unavailable(_) => Code::Unavailable,
            ArtifactError::Invalid(_) => Code::InvalidArgument,
            ArtifactError::Integrity(_) => Code::DataLoss,
            ArtifactError::Disk(_) => Code::ResourceExhausted,
        };
        Status::new(code, err.to_string())
    }
}

impl From<Status> for ArtifactError {
    fn from(status: Status) -> Self {
        let message = status.message().to_owned();
        match status.code() {
            Code::NotFound => ArtifactError::NotFound(message),
            Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
                ArtifactError::Invalid(message)
            }
            Code::DataLoss => ArtifactError::Integrity(message),
            Code::ResourceExhausted => ArtifactError::Disk(message),
            Code::Unauthenticated | Code::PermissionDenied => ArtifactError::Invalid(format!(
                "the coordinator refused the artifact request: {message}"
            )),
            _ => {
                ArtifactError::Unavailable(format!("the coordinator's artifact service: {message}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip() {
        for err in [
            ArtifactError::NotFound("a".into()),
            ArtifactError::Unavailable("b".into()),
            ArtifactError::Invalid("c".into()),
            ArtifactError::Integrity("d".into()),
            ArtifactError::Disk("e".into()),
        ] {
            let status = Status::from(err.clone());
            let back = ArtifactError::from(status);
            if let ArtifactError::Unavailable(text) = &back {
                assert!(text.ends_with('b'), "{text}");
            } else {
                assert_eq!(back, err);
            }
        }
        assert!(ArtifactError::Unavailable("x".into()).is_retryable());
        assert!(!ArtifactError::Integrity("x".into()).is_retryable());
    }

    #[test]
    fn a_full_disk_says_so() {
        let err = ArtifactError::disk("writing x", &std::io::Error::from_raw_os_error(28));
        assert!(err.to_string().contains("no space left"), "{err}");
    }
}
