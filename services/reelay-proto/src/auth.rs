//! Bearer tokens on gRPC calls: adding them (clients) and checking them (servers).
//!
//! Tokens are compared in constant time and never logged. Health and reflection are not wrapped
//! by these checks, so probes and grpcurl's `list`/`describe` work without a token.

use subtle::ConstantTimeEq;
use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    Read,
    Write,
}

/// Checks `authorization: Bearer <token>` against configured tokens.
#[derive(Clone, Default)]
pub struct TokenCheck {
    write: Vec<String>,
    read: Vec<String>,
}

impl std::fmt::Debug for TokenCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCheck")
            .field("write", &self.write.len())
            .field("read", &self.read.len())
            .finish()
    }
}

impl TokenCheck {
    /// `write` tokens may do everything, `read` tokens only read. No tokens at all: open.
    pub fn new(write: Vec<String>, read: Vec<String>) -> Self {
        TokenCheck {
            write: write.into_iter().filter(|t| !t.is_empty()).collect(),
            read: read.into_iter().filter(|t| !t.is_empty()).collect(),
        }
    }

    pub fn is_open(&self) -> bool {
        self.write.is_empty() && self.read.is_empty()
    }

    /// The access a bearer header value grants.
    pub fn access(&self, header: Option<&[u8]>) -> Result<Access, Status> {
        if self.is_open() {
            return Ok(Access::Write);
        }
        let Some(header) = header else {
            return Err(Status::unauthenticated(
                "this server needs a token: send `authorization: Bearer <token>`",
            ));
        };
        // The scheme is case-insensitive (RFC 9110); the token is compared exactly.
        let token = (header.len() > 7 && header[..7].eq_ignore_ascii_case(b"Bearer "))
            .then(|| &header[7..]);
        let Some(token) = token else {
            return Err(Status::unauthenticated(
                "the authorization header must be `Bearer <token>`",
            ));
        };
        let matches = |tokens: &[String]| {
            tokens.iter().fold(false, |found, t| {
                found | bool::from(t.as_bytes().ct_eq(token))
            })
        };
        if matches(&self.write) {
            Ok(Access::Write)
        } else if matches(&self.read) {
            Ok(Access::Read)
        } else {
            Err(Status::unauthenticated(
                "the token is not valid for this server",
            ))
        }
    }

    /// Checks a gRPC request for at least `needed` access.
    pub fn check<T>(&self, request: &Request<T>, needed: Access) -> Result<Access, Status> {
        let header = request
            .metadata()
            .get("authorization")
            .map(|value| value.as_bytes());
        let access = self.access(header)?;
        if access < needed {
            return Err(Status::permission_denied(
                "a read-only token cannot change anything; use an API token",
            ));
        }
        Ok(access)
    }
}

/// Checks a configured token: not empty, at most 4 KiB of visible ASCII without spaces (it travels
/// in an HTTP header). The message names `flag`, never the token.
pub fn validate_token(token: &str, flag: &str) -> Result<(), String> {
    if token.is_empty() {
        return Err(format!(
            "{flag} is empty: give a random secret (for example `openssl rand -hex 32`)"
        ));
    }
    if token.len() > 4096 || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "{flag} must be at most 4096 visible ASCII characters without spaces \
             (for example `openssl rand -hex 32`)"
        ));
    }
    Ok(())
}

/// A server-side interceptor that requires write access (used for the cluster token).
#[derive(Debug, Clone)]
pub struct RequireToken(pub TokenCheck);

impl Interceptor for RequireToken {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        self.0.check(&request, Access::Write)?;
        Ok(request)
    }
}

/// Adds a bearer token to every outgoing call (when one is set).
#[derive(Clone, Default)]
pub struct ClusterAuth {
    header: Option<MetadataValue<tonic::metadata::Ascii>>,
}

impl std::fmt::Debug for ClusterAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterAuth")
            .field("token", &self.header.is_some())
            .finish()
    }
}

impl ClusterAuth {
    /// A token with characters that cannot go in a header is refused.
    pub fn new(token: Option<&str>) -> Result<Self, String> {
        let header = match token.filter(|t| !t.is_empty()) {
            None => None,
            Some(token) => Some(format!("Bearer {token}").parse().map_err(|_| {
                "the token has characters that cannot be sent in a header".to_owned()
            })?),
        };
        Ok(ClusterAuth { header })
    }

    pub fn interceptor(&self) -> Self {
        self.clone()
    }
}

impl Interceptor for ClusterAuth {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(header) = &self.header {
            request
                .metadata_mut()
                .insert("authorization", header.clone());
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_grant_their_access() {
        let check = TokenCheck::new(vec!["w".into()], vec!["r".into()]);
        assert_eq!(check.access(Some(b"Bearer w")).unwrap(), Access::Write);
        assert_eq!(check.access(Some(b"Bearer r")).unwrap(), Access::Read);
        assert_eq!(
            check.access(Some(b"Bearer x")).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        assert_eq!(check.access(Some(b"bearer w")).unwrap(), Access::Write);
        assert_eq!(
            check.access(Some(b"Bearer W")).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        assert_eq!(
            check.access(Some(b"w")).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        assert_eq!(
            check.access(None).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        let mut request = Request::new(());
        request
            .metadata_mut()
            .insert("authorization", "Bearer r".parse().unwrap());
        assert_eq!(
            check.check(&request, Access::Write).unwrap_err().code(),
            tonic::Code::PermissionDenied
        );
    }

    #[test]
    fn configured_tokens_are_checked_without_echoing_them() {
        assert!(validate_token("0123abcd", "--api-token").is_ok());
        let empty = validate_token("", "--api-token").unwrap_err();
        assert!(empty.contains("--api-token"), "{empty}");
        let spaced = validate_token("sec ret", "--cluster-token").unwrap_err();
        assert!(spaced.contains("--cluster-token"), "{spaced}");
        assert!(!spaced.contains("sec ret"), "{spaced}");
        assert!(validate_token("caf\u{e9}", "--read-token").is_err());
    }

    #[test]
    fn no_tokens_means_open() {
        assert_eq!(TokenCheck::default().access(None).unwrap(), Access::Write);
    }
}
