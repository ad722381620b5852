//! The web UI, embedded from `web/dist` at build time.
//!
//! Files are served with their content type; hashed assets (`/assets/…`) are cached for a year,
//! everything else is revalidated. Paths that are not files get `index.html`, so the UI's own
//! routes (`/jobs/<id>`) work on reload. A binary built before the UI was built serves a page that
//! says how to build it.

use axum::body::Body;
use axum::http::{HeaderValue, Response, StatusCode, header};
use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "../../web/dist"]
#[allow_missing = true]
struct Assets;

const NOT_BUILT: &str = "<!doctype html><html><head><meta charset=\"utf-8\"><title>Reelay</title></head>\
<body style=\"font-family:sans-serif;max-width:40em;margin:3em auto\"><h1>Reelay</h1>\
<p>The coordinator runs, but this binary was built without the web UI.</p>\
<p>Build it with <code>npm --prefix web ci &amp;&amp; npm --prefix web run build</code>, then rebuild \
<code>reelay</code> (<code>cargo build --release</code>) — or use <code>scripts/dev.sh</code>, which does both.</p>\
<p>The gRPC API works meanwhile: <code>grpcurl -plaintext 127.0.0.1:7070 list</code>.</p></body></html>";

/// The response for a GET of `path`.
pub fn serve(path: &str) -> Response<Body> {
    let file = path.trim_start_matches('/');
    if let Some(asset) = (!file.is_empty()).then(|| Assets::get(file)).flatten() {
        let cache = if file.starts_with("assets/") {
            "public, max-age=31536000, immutable"
        } else {
            "no-cache"
        };
        return respond(
            StatusCode::OK,
            asset.data.into_owned(),
            asset.metadata.mimetype(),
            cache,
        );
    }
    // A missing file under /assets is a real 404, not a client-side route.
    if file.starts_with("assets/") {
        return respond(
            StatusCode::NOT_FOUND,
            b"not found\n".to_vec(),
            "text/plain; charset=utf-8",
            "no-cache",
        );
    }
    match Assets::get("index.html") {
        Some(index) => respond(
            StatusCode::OK,
            index.data.into_owned(),
            "text/html; charset=utf-8",
            "no-cache",
        ),
        None => respond(
            StatusCode::OK,
            NOT_BUILT.as_bytes().to_vec(),
            "text/html; charset=utf-8",
            "no-cache",
        ),
    }
}

/// Whether the UI was embedded.
pub fn is_built() -> bool {
    Assets::get("index.html").is_some()
}

fn respond(
    status: StatusCode,
    body: Vec<u8>,
    content_type: &str,
    cache: &'static str,
) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(content_type) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}
