//! Per-person rate limits, so one person (or a script with their token) cannot flood the
//! services: each person has a bucket of state-changing requests (commands) and a smaller one of
//! chat turns (each may call a paid model). An empty bucket answers 429 with `Retry-After` and
//! `{"detail"}`, and a log line; reads are not limited.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{FromRequestParts, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::api_error::ApiError;
use crate::auth::User;
use crate::state::AppState;

/// A bucket: `burst` requests at once, one more every `every`.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    pub burst: u32,
    pub every: Duration,
}

pub const COMMANDS: Rate = Rate {
    burst: 60,
    every: Duration::from_millis(500),
};
pub const CHAT: Rate = Rate {
    burst: 10,
    every: Duration::from_secs(3),
};

/// (person, kind) → (requests left, when it was last counted).
type Buckets = HashMap<(String, &'static str), (f64, Instant)>;

#[derive(Debug, Default, Clone)]
pub struct Limits {
    buckets: Arc<Mutex<Buckets>>,
}

impl Limits {
    /// Takes one request from the person's bucket; `Err(wait)` when it is empty.
    pub fn take(&self, user: &str, kind: &'static str, rate: Rate) -> Result<(), Duration> {
        let Ok(mut buckets) = self.buckets.lock() else {
            return Ok(());
        };
        let now = Instant::now();
        let (tokens, last) = buckets
            .entry((user.to_string(), kind))
            .or_insert((f64::from(rate.burst), now));
        let refill = now.duration_since(*last).as_secs_f64() / rate.every.as_secs_f64();
        *tokens = (*tokens + refill).min(f64::from(rate.burst));
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(rate.every.mul_f64(1.0 - *tokens))
        }
    }
}

pub async fn limit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(request).await;
    }
    let (mut parts, body) = request.into_parts();
    let Ok(User(user)) = User::from_request_parts(&mut parts, &state).await else {
        // The handler refuses it with the reason.
        return next.run(Request::from_parts(parts, body)).await;
    };
    let (kind, rate) = if parts.uri.path() == "/chat" {
        ("chat", CHAT)
    } else {
        ("commands", COMMANDS)
    };
    if let Err(wait) = state.limits.take(&user, kind, rate) {
        let seconds = wait.as_secs().max(1);
        tracing::warn!(%user, kind, seconds, "rate limit reached");
        let mut response = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("too many {kind} requests; try again in {seconds} s"),
        )
        .into_response();
        if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return response;
    }
    next.run(Request::from_parts(parts, body)).await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{Limits, Rate};

    #[test]
    fn a_bucket_empties_and_refills_per_person() {
        let limits = Limits::default();
        let rate = Rate {
            burst: 3,
            every: Duration::from_secs(60),
        };
        for _ in 0..3 {
            assert!(limits.take("alice", "chat", rate).is_ok());
        }
        let wait = limits.take("alice", "chat", rate);
        assert!(wait.is_err_and(|w| w <= Duration::from_secs(60) && w > Duration::from_secs(50)));
        assert!(
            limits.take("bob", "chat", rate).is_ok(),
            "another person has their own bucket"
        );
        assert!(
            limits.take("alice", "commands", rate).is_ok(),
            "and each kind its own"
        );
    }
}
