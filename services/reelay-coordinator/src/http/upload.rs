//! `POST /upload` and `GET /upload/{id}`: uploads for clients that cannot stream over gRPC (browsers
//! speak grpc-web, which has no client streams).
//!
//! ```text
//! POST /upload?name=clip.mp4&size=123456&sha256=<hex>[&id=<uuid>&offset=<n>]
//! authorization: Bearer <api token>          (when the coordinator has tokens)
//! <the file's bytes from offset>
//! ```
//!
//! The answer is the upload as JSON (`{"id", "name", "size", "sha256", "received", "complete"}`):
//! 200 when complete; 400 with a message when the body ended early (resume: `GET /upload/{id}`
//! gives `received`, then POST the rest with `id` and `offset` = `received`) or did not match its
//! SHA-256. Same tokens as `/download`, but a read token may not upload.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use futures::StreamExt;
use reelay_proto::auth::Access;
use reelay_proto::v1;
use serde::Deserialize;

use super::{authorize, status_response};
use crate::api::ApiState;
use crate::error::CoordinatorError;
use crate::uploads::Header;

#[derive(Debug, Deserialize)]
pub(crate) struct Params {
    #[serde(default)]
    name: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    sha256: String,
    #[serde(default)]
    id: String,
    #[serde(default)]
    offset: u64,
}

pub(crate) async fn post(
    State(state): State<ApiState>,
    Query(params): Query<Params>,
    headers: HeaderMap,
    body: Body,
) -> Response<Body> {
    if let Err(response) = authorize(&state, &headers, Access::Write) {
        return *response;
    }
    let header = Header {
        name: params.name,
        size: params.size,
        sha256: params.sha256,
        id: params.id,
        offset: params.offset,
    };
    let data = body.into_data_stream().map(|chunk| {
        chunk.map_err(|err| CoordinatorError::Unavailable(format!("the upload body broke: {err}")))
    });
    match state.uploads.receive(header, data).await {
        Ok(upload) => json(StatusCode::OK, &upload),
        Err(err) => status_response(&err.into()),
    }
}

pub(crate) async fn get(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response<Body> {
    if let Err(response) = authorize(&state, &headers, Access::Read) {
        return *response;
    }
    match state.uploads.get(&id) {
        Ok(upload) => json(StatusCode::OK, &upload),
        Err(err) => status_response(&err.into()),
    }
}

fn json(status: StatusCode, upload: &v1::Upload) -> Response<Body> {
    let body = serde_json::json!({
        "id": upload.id,
        "name": upload.name,
        "size": upload.size,
        "sha256": upload.sha256,
        "received": upload.received,
        "complete": upload.complete,
    });
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
