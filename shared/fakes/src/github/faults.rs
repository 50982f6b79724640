//! Injected failures, so every way GitHub fails can be reproduced: server errors, primary rate
//! limits (`x-ratelimit-remaining: 0` with a reset time), secondary limits (`retry-after`), bad
//! credentials, missing permission, not found, on the REST API and on git alike. A fault matches
//! requests by `METHOD /path` prefix (`"POST /repos/acme/widgets/issues"`, `"GIT"` for git over
//! HTTP, `""` for everything) and answers a number of them, or all of them for a while. With
//! `applied`, the request is carried out first and the failure answered after, as when GitHub
//! creates an issue and the answer is lost: a client that blindly re-sends it makes a duplicate.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::FakeGitHub;
use super::api::error;

#[derive(Debug, Clone, Deserialize)]
pub struct FaultSpec {
    /// `"METHOD /path"` prefix; `"GIT"` matches git over HTTP; empty matches every request.
    #[serde(default)]
    pub route: String,
    pub status: u16,
    #[serde(default)]
    pub message: Option<String>,
    /// Requests to answer; unlimited while `for_ms` runs when not given.
    #[serde(default)]
    pub times: Option<u32>,
    /// How long the fault lasts.
    #[serde(default)]
    pub for_ms: Option<u64>,
    /// A primary rate limit: `x-ratelimit-remaining: 0` and a reset this many seconds after the
    /// first request it answers.
    #[serde(default)]
    pub reset_in_secs: Option<u64>,
    /// A secondary rate limit: `retry-after`.
    #[serde(default)]
    pub retry_after_secs: Option<u64>,
    /// Carry the request out, then answer the failure.
    #[serde(default)]
    pub applied: bool,
}

#[derive(Debug, Clone)]
pub struct Fault {
    spec: FaultSpec,
    left: Option<u32>,
    until: Option<Instant>,
    /// Unix seconds; set when the fault first answers.
    reset_at: Option<u64>,
}

impl Fault {
    pub fn new(spec: FaultSpec) -> Self {
        Fault {
            left: spec.times.or(if spec.for_ms.is_some() { None } else { Some(1) }),
            until: spec.for_ms.map(|ms| Instant::now() + Duration::from_millis(ms)),
            reset_at: None,
            spec,
        }
    }

    fn live(&self) -> bool {
        self.left.is_none_or(|left| left > 0) && self.until.is_none_or(|until| Instant::now() < until)
    }

    fn matches(&self, call: &str) -> bool {
        self.live() && call.starts_with(&self.spec.route)
    }

    fn response(&mut self) -> Response {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let reset_at = *self
            .reset_at
            .get_or_insert(now + self.spec.reset_in_secs.unwrap_or(0));
        let status = StatusCode::from_u16(self.spec.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let message = self
            .spec
            .message
            .clone()
            .unwrap_or_else(|| default_message(self).into());
        let mut response = error(status, &message);
        let headers = response.headers_mut();
        let mut set = |name: &'static str, value: String| {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        };
        if self.spec.reset_in_secs.is_some() {
            set("x-ratelimit-limit", "5000".into());
            set("x-ratelimit-remaining", "0".into());
            set("x-ratelimit-used", "5000".into());
            set("x-ratelimit-reset", reset_at.to_string());
            set("x-ratelimit-resource", "core".into());
        }
        if let Some(secs) = self.spec.retry_after_secs {
            set("retry-after", secs.to_string());
        }
        if status == StatusCode::UNAUTHORIZED && self.spec.route == "GIT" {
            set("www-authenticate", "Basic realm=\"GitHub\"".into());
        }
        response
    }
}

fn default_message(fault: &Fault) -> &'static str {
    if fault.spec.reset_in_secs.is_some() {
        "API rate limit exceeded for user ID 1. If you reach out to GitHub Support for help, please include the request ID."
    } else if fault.spec.retry_after_secs.is_some() {
        "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."
    } else {
        match fault.spec.status {
            401 => "Bad credentials",
            403 => "Resource not accessible by personal access token",
            404 => "Not Found",
            422 => "Validation Failed",
            502 => "Server Error",
            503 => "Service Unavailable",
            _ => "Internal Server Error",
        }
    }
}

impl FakeGitHub {
    /// Adds a fault; it answers matching requests from now on.
    pub fn inject(&self, spec: FaultSpec) {
        if let Ok(mut state) = self.state.lock() {
            state.faults.push(Fault::new(spec));
        }
    }

    /// The fault that answers `call`, counting the request against it.
    fn fault_for(&self, call: &str) -> Option<(Response, bool)> {
        let mut state = self.state.lock().ok()?;
        state.faults.retain(Fault::live);
        let fault = state.faults.iter_mut().find(|f| f.matches(call))?;
        if let Some(left) = fault.left.as_mut() {
            *left -= 1;
        }
        let (answer, status) = ((fault.response(), fault.spec.applied), fault.spec.status);
        state.calls.push(format!("FAULT {status} {call}"));
        Some(answer)
    }
}

/// The middleware in front of the REST API and git: a matching fault answers instead.
/// What GitHub says of its primary rate limit on every REST answer: 5,000 calls an hour, one
/// used per call; a 304 to a conditional request costs nothing, as GitHub documents.
fn rate_limit_headers(gh: &FakeGitHub, response: &mut Response) {
    use std::sync::atomic::Ordering;
    let used = if response.status() == StatusCode::NOT_MODIFIED {
        gh.calls.load(Ordering::SeqCst)
    } else {
        gh.calls.fetch_add(1, Ordering::SeqCst) + 1
    };
    let reset = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() + 3600);
    let headers = response.headers_mut();
    for (name, value) in [
        ("x-ratelimit-limit", "5000".to_string()),
        ("x-ratelimit-remaining", 5000u64.saturating_sub(used).to_string()),
        ("x-ratelimit-used", used.to_string()),
        ("x-ratelimit-reset", reset.to_string()),
        ("x-ratelimit-resource", "core".to_string()),
    ] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
}

pub async fn inject(State(gh): State<FakeGitHub>, request: Request<Body>, next: Next) -> Response {
    let path = request.uri().path().to_string();
    if path.starts_with("/_control") {
        return next.run(request).await;
    }
    let git = path.ends_with("/info/refs") || path.ends_with("-pack");
    let call = if git {
        format!("GIT {path}")
    } else {
        format!("{} {path}", request.method())
    };
    match gh.fault_for(&call) {
        None if git => next.run(request).await,
        None => {
            let mut response = next.run(request).await;
            rate_limit_headers(&gh, &mut response);
            response
        }
        Some((answer, true)) => {
            let _ = next.run(request).await.into_response();
            answer
        }
        Some((answer, false)) => answer,
    }
}
