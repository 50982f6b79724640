//! Who is asking. Every request resolves to exactly one user, or is refused.
//!
//! - `local` (the default for `mainloop up`, which listens on loopback only): everyone is the one
//!   local user, `local-dev-user`.
//! - `token`: `Authorization: Bearer <token>` (API clients), the session cookie a browser got by
//!   logging in (`session`), or, on the SSE routes only (EventSource cannot send headers), a
//!   `token` query parameter; the user is `MAINLOOP_USER` (default `local-dev-user`).
//! - `test`: the original test contract: `X-User-ID` header, or `user_id_query` for SSE. Never
//!   the default; a client-chosen identity is only for test setups.

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;

use crate::api_error::ApiError;
use crate::state::AppState;

pub const LOCAL_USER: &str = "local-dev-user";

#[derive(Debug, Clone, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthMode {
    Local,
    Token,
    Test,
}

/// The authenticated user of a request.
#[derive(Debug, Clone)]
pub struct User(pub String);

fn query_param<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts.uri.query()?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then_some(value)
    })
}

impl FromRequestParts<AppState> for User {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let user = match state.auth.mode {
            AuthMode::Local => state.auth.user.clone(),
            AuthMode::Token => {
                let bearer = parts
                    .headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "));
                // Only where a browser API cannot send a header (EventSource).
                let sse = parts.uri.path() == "/events" || parts.uri.path().ends_with("/logs/stream");
                let presented = bearer.or_else(|| sse.then(|| query_param(parts, "token")).flatten());
                let expected = state.auth.token.as_ref().map(|t| t.expose());
                let session = crate::session::from_headers(&parts.headers);
                match (presented, session, expected) {
                    (Some(given), _, Some(expected))
                        if constant_time_eq(given.as_bytes(), expected.as_bytes()) =>
                    {
                        state.auth.user.clone()
                    }
                    (_, Some(session), Some(expected))
                        if crate::session::valid(expected.as_bytes(), session) =>
                    {
                        state.auth.user.clone()
                    }
                    _ => {
                        return Err(ApiError::new(
                            StatusCode::UNAUTHORIZED,
                            "a valid token is required",
                        ));
                    }
                }
            }
            AuthMode::Test => match parts.headers.get("x-user-id") {
                // A header that is there but unreadable is refused, never the shared default.
                Some(given) => given
                    .to_str()
                    .map_err(|_| ApiError::bad_request("X-User-ID must be visible ASCII"))?
                    .to_string(),
                None => query_param(parts, "user_id_query")
                    .unwrap_or(LOCAL_USER)
                    .to_string(),
            },
        };
        mainloop_events::subjects::token("user id", &user)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        Ok(User(user))
    }
}

pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
