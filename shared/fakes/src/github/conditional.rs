//! Conditional requests as GitHub answers them: every successful `GET` carries an `ETag` (a
//! digest of its body), and a `GET` whose `If-None-Match` names the current one is answered
//! `304 Not Modified` with no body. GitHub does not count an authorized 304 against the rate
//! limit; the fake counts 304s apart (`Snapshot::not_modified`) so benchmarks can say so.

use std::hash::{Hash, Hasher};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::FakeGitHub;

/// Bodies larger than this are answered as they are, without an ETag.
const MAX_BODY: usize = 16 * 1024 * 1024;

pub async fn etags(State(gh): State<FakeGitHub>, request: Request, next: Next) -> Response {
    if request.method() != Method::GET {
        return next.run(request).await;
    }
    let asked = request
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let path = request.uri().to_string();
    let response = next.run(request).await;
    if response.status() != StatusCode::OK {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let etag = format!("W/\"{:016x}\"", digest(&bytes));
    let Ok(value) = HeaderValue::from_str(&etag) else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    if asked.is_some_and(|asked| asked.split(',').any(|tag| tag.trim() == etag)) {
        if let Ok(mut state) = gh.state.lock() {
            state.not_modified.push(format!("GET {path}"));
        }
        let mut unchanged = StatusCode::NOT_MODIFIED.into_response();
        unchanged.headers_mut().insert(header::ETAG, value);
        return unchanged;
    }
    parts.headers.insert(header::ETAG, value);
    Response::from_parts(parts, Body::from(bytes))
}

fn digest(bytes: &[u8]) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut hasher);
    hasher.finish()
}
