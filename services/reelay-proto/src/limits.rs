//! A request over a server's message limit is answered `RESOURCE_EXHAUSTED`, naming the call and
//! the limit.
//!
//! tonic refuses such a request with `OUT_OF_RANGE` ("Error, decoded message length too large"),
//! but gRPC's status code table gives `RESOURCE_EXHAUSTED` for a message larger than the configured
//! limit, and lists `OUT_OF_RANGE` among the codes the libraries never produce: clients would take
//! it for the application's own answer (Reelay's `OUT_OF_RANGE` means a cursor past the end).
//! [`MessageLimitLayer`] wraps a whole server and rewrites that one status, in the response
//! headers (a call refused before it started) and in trailers (refused mid-stream); every other
//! response passes untouched.

use std::pin::Pin;
use std::task::{Context, Poll};

use http::HeaderMap;
use http_body_util::BodyExt;
use tonic::codegen::Bytes;
use tonic::{Code, Status};
use tower::{Layer, Service};

/// How tonic words a request over the limit: `…found {len} bytes, the limit is: {limit} bytes`.
const TONIC_TOO_LARGE: &str = "decoded message length too large: found ";

/// Rewrites tonic's over-limit `OUT_OF_RANGE` into `RESOURCE_EXHAUSTED`.
#[derive(Debug, Clone, Copy, Default)]
pub struct MessageLimitLayer;

impl<S> Layer<S> for MessageLimitLayer {
    type Service = MessageLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        MessageLimit { inner }
    }
}

/// The service made by [`MessageLimitLayer`].
#[derive(Debug, Clone)]
pub struct MessageLimit<S> {
    inner: S,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, Request, ResBody> Service<http::Request<Request>> for MessageLimit<S>
where
    S: Service<http::Request<Request>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<tonic::codegen::StdError>,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Request>) -> Self::Future {
        let call = request.uri().path().to_owned();
        let response = self.inner.call(request);
        Box::pin(async move {
            let mut response = response.await?;
            rewrite(response.headers_mut(), &call);
            Ok(response.map(|body| {
                tonic::body::Body::new(body.map_frame(move |frame| match frame.into_trailers() {
                    Ok(mut trailers) => {
                        rewrite(&mut trailers, &call);
                        http_body::Frame::trailers(trailers)
                    }
                    Err(frame) => frame,
                }))
            }))
        })
    }
}

/// Turns tonic's over-limit status in `headers` (response headers or trailers) into
/// `RESOURCE_EXHAUSTED` naming `call`; leaves anything else alone.
fn rewrite(headers: &mut HeaderMap, call: &str) {
    let out_of_range = headers
        .get(Status::GRPC_STATUS)
        .is_some_and(|code| code.as_bytes() == b"11");
    if !out_of_range {
        return;
    }
    let Some(status) = Status::from_header_map(headers) else {
        return;
    };
    let Some((found, limit)) = over_limit(status.message()) else {
        return;
    };
    let message = format!(
        "{call}: the request message is {found} bytes, over this server's limit of {limit} bytes \
         ({}); send less in one message",
        mib(limit)
    );
    let rewritten = Status::new(Code::ResourceExhausted, message);
    if rewritten.add_header(headers).is_err() {
        tracing::debug!(%call, "cannot rewrite an over-limit status");
    }
}

/// `(found, limit)` from tonic's over-limit message.
fn over_limit(message: &str) -> Option<(u64, u64)> {
    let rest = &message[message.find(TONIC_TOO_LARGE)? + TONIC_TOO_LARGE.len()..];
    let (found, rest) = rest.split_once(" bytes, the limit is: ")?;
    let limit = rest.strip_suffix(" bytes")?;
    Some((found.parse().ok()?, limit.parse().ok()?))
}

fn mib(bytes: u64) -> String {
    let mib = bytes as f64 / (1024.0 * 1024.0);
    if mib.fract() == 0.0 {
        format!("{mib:.0} MiB")
    } else {
        format!("{mib:.2} MiB")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers_of(status: &Status) -> HeaderMap {
        let mut headers = HeaderMap::new();
        status.add_header(&mut headers).unwrap();
        headers
    }

    #[test]
    fn tonics_over_limit_status_becomes_resource_exhausted_naming_call_and_limit() {
        let tonic = Status::out_of_range(
            "Error, decoded message length too large: found 4195328 bytes, the limit is: 4194304 bytes",
        );
        let mut headers = headers_of(&tonic);
        rewrite(&mut headers, "/reelay.v1.JobService/CreateJob");
        let status = Status::from_header_map(&headers).unwrap();
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(
            status.message(),
            "/reelay.v1.JobService/CreateJob: the request message is 4195328 bytes, over this \
             server's limit of 4194304 bytes (4 MiB); send less in one message"
        );
    }

    #[test]
    fn other_statuses_pass_untouched() {
        for status in [
            Status::out_of_range("after_version: 9 is ahead of job x, which is at version 3"),
            Status::resource_exhausted("every slot of the node is taken"),
            Status::not_found("decoded message length too large: found 1 bytes"),
            Status::ok(""),
        ] {
            let mut headers = headers_of(&status);
            let before = headers.clone();
            rewrite(&mut headers, "/x/Y");
            assert_eq!(headers, before, "{status:?}");
        }
        let mut empty = HeaderMap::new();
        rewrite(&mut empty, "/x/Y");
        assert!(empty.is_empty());
    }

    #[test]
    fn limits_read_in_mib() {
        assert_eq!(mib(4 * 1024 * 1024), "4 MiB");
        assert_eq!(mib(1536 * 1024), "1.50 MiB");
    }
}
