//! The watcher's metrics (the bus counts its consumers): calls to GitHub by method and status
//! (`error` when no answer came), and the rate limit left, as GitHub's last answer said.

/// One call to GitHub and what came back (`status` None: no answer).
pub fn called(method: &http::Method, status: Option<u16>, headers: Option<&http::HeaderMap>) {
    let status = status.map_or_else(|| "error".to_string(), |s| s.to_string());
    metrics::counter!("mainloop_github_requests_total", "method" => method.to_string(), "status" => status)
        .increment(1);
    let remaining = headers
        .and_then(|h| h.get("x-ratelimit-remaining"))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok());
    if let Some(remaining) = remaining {
        metrics::gauge!("mainloop_github_rate_limit_remaining").set(remaining);
    }
}
