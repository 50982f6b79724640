//! The gateway's own metrics (the bus counts its consumers): every request counted and timed
//! by method, route (the pattern it matched, so ids make no new series) and status, and the
//! server-sent event feeds open now, by feed.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;

/// Counts and times each request; a streamed response is timed to its first bytes.
pub async fn measure(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::histogram!("mainloop_http_request_duration_seconds", "method" => method.clone(), "route" => route.clone())
        .record(started.elapsed().as_secs_f64());
    metrics::counter!("mainloop_http_requests_total", "method" => method, "route" => route, "status" => status)
        .increment(1);
    response
}

/// One open SSE feed of kind `feed` (`events`, `logs`), counted while it lives.
pub struct OpenFeed(&'static str);

impl OpenFeed {
    pub fn new(feed: &'static str) -> Self {
        metrics::gauge!("mainloop_sse_clients", "feed" => feed).increment(1.0);
        OpenFeed(feed)
    }
}

impl Drop for OpenFeed {
    fn drop(&mut self) {
        metrics::gauge!("mainloop_sse_clients", "feed" => self.0).decrement(1.0);
    }
}
