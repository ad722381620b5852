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

/// Characters of a client's value that an error message quotes at most.
const QUOTE_MAX: usize = 64;

/// A client's value as error messages quote it: escaped like `{:?}`, cut after 64 characters with
/// its length. Messages travel in a gRPC header (`grpc-message`): quoting a 100 KB value whole
/// would make a header the client refuses, and the client would lose its connection.
pub fn quote(value: &str) -> String {
    match value.char_indices().nth(QUOTE_MAX) {
        None => format!("{value:?}"),
        Some((cut, _)) => format!("{:?}… ({} bytes)", &value[..cut], value.len()),
    }
}

/// A client's name inside a field path (`spec.params.<name>`): itself, or cut after 64 characters
/// with `…`.
pub fn excerpt(value: &str) -> String {
    match value.char_indices().nth(QUOTE_MAX) {
        None => value.to_owned(),
        Some((cut, _)) => format!("{}…", &value[..cut]),
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_are_short() {
        assert_eq!(quote("a\0b"), "\"a\\0b\"");
        let long = "é".repeat(100_000);
        let quoted = quote(&long);
        assert!(quoted.len() < 200, "{quoted}");
        assert!(quoted.ends_with("… (200000 bytes)"), "{quoted}");
        assert_eq!(excerpt("height"), "height");
        assert_eq!(excerpt(&"x".repeat(1000)).len(), 64 + "…".len());
    }
}
