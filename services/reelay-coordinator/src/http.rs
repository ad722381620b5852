//! Everything the coordinator serves on its one port: gRPC and grpc-web for the public services,
//! health and reflection, the web UI, file downloads over plain HTTP, and `/metrics`.
//!
//! Each gRPC service is wrapped in `GrpcWebLayer` on its own (wrapping the whole router would
//! answer 400 to plain HTTP GETs). Paths that match no service fall through to the UI, except gRPC
//! calls, which get `UNIMPLEMENTED`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};
use axum::routing::{get, post};
use futures::StreamExt;
use reelay_artifacts::remote::ArtifactServer;
use reelay_proto::auth::{Access, RequireToken};
use reelay_proto::v1::artifact_service_server::ArtifactServiceServer;
use reelay_proto::v1::job_service_server::JobServiceServer;
use reelay_proto::v1::node_service_server::NodeServiceServer;
use reelay_proto::v1::pipeline_service_server::PipelineServiceServer;
use tonic::service::Routes;
use tonic::service::interceptor::InterceptedService;
use tonic_web::GrpcWebLayer;
use tower::Layer;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::api::jobs::{JobApi, open_download};
use crate::api::nodes::NodeApi;
use crate::api::pipelines::PipelineApi;
use crate::api::{ApiState, parse_id};
use crate::error::CoordinatorError;
use crate::metrics::{Metrics, StreamKind};
use crate::web;

mod upload;

/// Largest request accepted by the public services.
pub const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;

/// The gRPC services and HTTP routes of the coordinator.
pub fn routes(state: ApiState, metrics: Metrics) -> Result<Routes, CoordinatorError> {
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    tokio::spawn(async move {
        health_reporter
            .set_serving::<JobServiceServer<JobApi>>()
            .await;
        health_reporter
            .set_serving::<NodeServiceServer<NodeApi>>()
            .await;
        health_reporter
            .set_serving::<PipelineServiceServer<PipelineApi>>()
            .await;
    });
    let reflection_v1 =
        reelay_proto::reflection::v1(reelay_proto::reflection::COORDINATOR_SERVICES)
            .map_err(|err| CoordinatorError::Internal(err.to_string()))?;
    let reflection_v1alpha =
        reelay_proto::reflection::v1alpha(reelay_proto::reflection::COORDINATOR_SERVICES)
            .map_err(|err| CoordinatorError::Internal(err.to_string()))?;
    let web_layer = GrpcWebLayer::new();
    let jobs =
        JobServiceServer::new(JobApi(state.clone())).max_decoding_message_size(MAX_REQUEST_BYTES);
    let nodes =
        NodeServiceServer::new(NodeApi(state.clone())).max_decoding_message_size(MAX_REQUEST_BYTES);
    let pipelines = PipelineServiceServer::new(PipelineApi(state.clone()))
        .max_decoding_message_size(MAX_REQUEST_BYTES);
    // Internal: workers reach a local artifact store through it, with the cluster token.
    let artifacts = InterceptedService::new(
        ArtifactServiceServer::new(ArtifactServer::new(Arc::clone(state.uploads.blobs())))
            .max_decoding_message_size(MAX_REQUEST_BYTES),
        RequireToken(state.cluster.clone()),
    );
    let mut routes = Routes::new(web_layer.layer(jobs))
        .add_service(web_layer.layer(nodes))
        .add_service(web_layer.layer(pipelines))
        .add_service(web_layer.layer(health_service))
        .add_service(artifacts)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);
    let router = routes.axum_router_mut();
    *router = std::mem::take(router)
        .route(
            "/download/{id}/{name}",
            get(download).with_state(state.clone()),
        )
        .route("/upload", post(upload::post).with_state(state.clone()))
        .route("/upload/{id}", get(upload::get).with_state(state))
        .route(
            "/metrics",
            get(move || std::future::ready(metrics.render())),
        )
        .fallback(fallback);
    Ok(routes)
}

/// CORS for grpc-web clients on other origins (a UI in development, scripts).
pub fn cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::mirror_request())
        .allow_credentials(true)
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            header::RANGE,
            header::HeaderName::from_static("x-grpc-web"),
            header::HeaderName::from_static("x-user-agent"),
            header::HeaderName::from_static("grpc-timeout"),
        ])
        .expose_headers([
            header::HeaderName::from_static("grpc-status"),
            header::HeaderName::from_static("grpc-message"),
            header::HeaderName::from_static("grpc-status-details-bin"),
            header::CONTENT_DISPOSITION,
            header::CONTENT_LENGTH,
            header::CONTENT_RANGE,
        ])
        .max_age(Duration::from_secs(3600))
}

/// Unknown gRPC calls get UNIMPLEMENTED; anything else is the web UI.
async fn fallback(method: Method, headers: HeaderMap, uri: axum::http::Uri) -> Response<Body> {
    let is_grpc = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/grpc"));
    if method == Method::POST && is_grpc {
        let status = tonic::Status::unimplemented(format!("no such method: {}", uri.path()));
        return status.into_http::<Body>();
    }
    if method != Method::GET && method != Method::HEAD {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "only GET is served here");
    }
    web::serve(uri.path())
}

/// `GET /download/{job id}/{file name}`: an output file, streamed from its node, with `Range`.
async fn download(
    State(state): State<ApiState>,
    Path((id, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response<Body> {
    // Any valid token may download (a read token is enough); none or a wrong one gets 401.
    if let Err(response) = authorize(&state, &headers, Access::Read) {
        return *response;
    }
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(status) => return plain(StatusCode::BAD_REQUEST, status.message()),
    };
    let size = match state
        .store
        .require_job(id)
        .map(|job| job.outputs.iter().find(|f| f.name == name).map(|f| f.size))
    {
        Ok(Some(size)) => size,
        Ok(None) => {
            return plain(
                StatusCode::NOT_FOUND,
                &format!("job {id} has no output named {name:?}"),
            );
        }
        Err(err) => return status_response(&err.into()),
    };
    let range = match parse_range(headers.get(header::RANGE), size) {
        Ok(range) => range,
        Err(message) => {
            let mut response = plain(StatusCode::RANGE_NOT_SATISFIABLE, &message);
            if let Ok(value) = HeaderValue::from_str(&format!("bytes */{size}")) {
                response.headers_mut().insert(header::CONTENT_RANGE, value);
            }
            return response;
        }
    };
    let (start, end) = range.unwrap_or((0, size.saturating_sub(1)));
    let length = if size == 0 { 0 } else { end + 1 - start };
    let upstream = match open_download(&state, StreamKind::HttpDownload, (id, &name), start).await {
        Ok(stream) => stream,
        Err(status) => return status_response(&status),
    };
    let mut remaining = length;
    let body = upstream.map(move |chunk| {
        chunk.map(|chunk| {
            let mut data = chunk.data;
            data.truncate(remaining.min(data.len() as u64) as usize);
            remaining -= data.len() as u64;
            data
        })
    });
    let mut response = Response::new(Body::from_stream(body));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(value) = HeaderValue::from_str(&length.to_string()) {
        headers.insert(header::CONTENT_LENGTH, value);
    }
    if let Ok(value) = HeaderValue::from_str(&content_disposition(&name)) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    if range.is_some() {
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
        if let Ok(value) = HeaderValue::from_str(&format!("bytes {start}-{end}/{size}")) {
            response.headers_mut().insert(header::CONTENT_RANGE, value);
        }
    }
    response
}

/// Checks the bearer token of an HTTP request: 401 without a valid one, 403 for a read token
/// where writing is needed.
pub(crate) fn authorize(
    state: &ApiState,
    headers: &HeaderMap,
    needed: Access,
) -> Result<(), Box<Response<Body>>> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    match state.clients.access(authorization) {
        Ok(Access::Read) if needed == Access::Write => Err(Box::new(plain(
            StatusCode::FORBIDDEN,
            "this token may only read; uploading needs an --api-token",
        ))),
        Ok(_) => Ok(()),
        Err(status) => {
            let mut response = plain(StatusCode::UNAUTHORIZED, status.message());
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"reelay\""),
            );
            Err(Box::new(response))
        }
    }
}

/// `attachment` with an ASCII fallback name and the exact name percent-encoded (RFC 6266).
fn content_disposition(name: &str) -> String {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded: String = name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

/// A single `bytes=START-[END]` or `bytes=-SUFFIX` range; `None` when the header is absent.
fn parse_range(value: Option<&HeaderValue>, size: u64) -> Result<Option<(u64, u64)>, String> {
    let Some(value) = value else { return Ok(None) };
    let text = value
        .to_str()
        .map_err(|_| "the Range header is not text".to_owned())?;
    let spec = text
        .strip_prefix("bytes=")
        .ok_or_else(|| format!("unsupported range {text:?}: use bytes=START-END"))?;
    if spec.contains(',') {
        return Err("only one range per request is served".to_owned());
    }
    let (start, end) = spec
        .split_once('-')
        .ok_or_else(|| format!("malformed range {text:?}"))?;
    let number = |part: &str| {
        part.trim()
            .parse::<u64>()
            .map_err(|_| format!("malformed range {text:?}"))
    };
    let (start, end) = match (start.trim().is_empty(), end.trim().is_empty()) {
        (true, false) => {
            let suffix = number(end)?.min(size);
            (size - suffix, size.saturating_sub(1))
        }
        (false, true) => (number(start)?, size.saturating_sub(1)),
        (false, false) => (number(start)?, number(end)?.min(size.saturating_sub(1))),
        (true, true) => return Err(format!("malformed range {text:?}")),
    };
    if start >= size || start > end {
        return Err(format!("range {text:?} is outside the file ({size} bytes)"));
    }
    Ok(Some((start, end)))
}

pub(crate) fn plain(status: StatusCode, message: &str) -> Response<Body> {
    let mut response = Response::new(Body::from(format!("{message}\n")));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

pub(crate) fn status_response(status: &tonic::Status) -> Response<Body> {
    let code = match status.code() {
        tonic::Code::NotFound => StatusCode::NOT_FOUND,
        tonic::Code::InvalidArgument | tonic::Code::OutOfRange => StatusCode::BAD_REQUEST,
        tonic::Code::FailedPrecondition => StatusCode::CONFLICT,
        tonic::Code::Aborted => StatusCode::CONFLICT,
        tonic::Code::ResourceExhausted => StatusCode::INSUFFICIENT_STORAGE,
        tonic::Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        tonic::Code::PermissionDenied => StatusCode::FORBIDDEN,
        tonic::Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    plain(code, status.message())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(text: &str, size: u64) -> Result<Option<(u64, u64)>, String> {
        parse_range(Some(&HeaderValue::from_str(text).unwrap()), size)
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 10).unwrap(), None);
        assert_eq!(range("bytes=0-", 10).unwrap(), Some((0, 9)));
        assert_eq!(range("bytes=2-4", 10).unwrap(), Some((2, 4)));
        assert_eq!(range("bytes=5-100", 10).unwrap(), Some((5, 9)));
        assert_eq!(range("bytes=-3", 10).unwrap(), Some((7, 9)));
        for bad in [
            "bytes=10-",
            "bytes=4-2",
            "bytes=a-",
            "items=0-1",
            "bytes=0-1,3-4",
            "bytes=-",
        ] {
            assert!(range(bad, 10).is_err(), "{bad}");
        }
    }

    #[test]
    fn dispositions_escape_odd_names() {
        assert_eq!(
            content_disposition("a.mp4"),
            "attachment; filename=\"a.mp4\"; filename*=UTF-8''a.mp4"
        );
        let odd = content_disposition("é \"x\".mp4");
        assert!(
            odd.contains("filename*=UTF-8''%C3%A9%20%22x%22.mp4"),
            "{odd}"
        );
        assert!(!odd.contains("\"x\""), "{odd}");
    }
}
