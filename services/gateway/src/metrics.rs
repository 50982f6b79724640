//! The gateway's own metrics and request spans (the bus counts its consumers): every request
//! counted and timed by method, route (the pattern it matched, so ids make no new series) and
//! status, in a span that starts the trace of what it causes, and the server-sent event feeds
//! open now, by feed.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Counts and times each request, in a span of its own that begins the trace of what it causes
/// (or continues the caller's `traceparent`); a streamed response is timed to its first bytes.
pub async fn measure(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = request.method().to_string();
    let span = tracing::info_span!("http.request", http.method = %method, http.route = %route,
        http.status_code = tracing::field::Empty);
    let _ = span.set_parent(caller_trace(request.headers()));
    let started = Instant::now();
    let response = next.run(request).instrument(span.clone()).await;
    span.record("http.status_code", response.status().as_u16());
    let status = response.status().as_u16().to_string();
    metrics::histogram!("mainloop_http_request_duration_seconds", "method" => method.clone(), "route" => route.clone())
        .record(started.elapsed().as_secs_f64());
    metrics::counter!("mainloop_http_requests_total", "method" => method, "route" => route, "status" => status)
        .increment(1);
    response
}

/// The caller's W3C trace context, when it sent one.
fn caller_trace(headers: &axum::http::HeaderMap) -> opentelemetry::Context {
    let traceparent = headers.get("traceparent").and_then(|v| v.to_str().ok());
    mainloop_bus::trace::from_traceparent(traceparent.unwrap_or_default())
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
