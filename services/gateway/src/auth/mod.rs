//! Who is asking. Every request resolves to exactly one user, or is refused.
//!
//! - `local` (the default for `mainloop up`, which listens on loopback only): everyone is the one
//!   local user, `local-dev-user`.
//! - `token`: `Authorization: Bearer <token>` (API clients), the session cookie a browser got by
//!   logging in (`session`), or, on the SSE routes only (EventSource cannot send headers), a
//!   `token` query parameter; the user is `MAINLOOP_USER` (default `local-dev-user`).
//!   A person's own API token (`mainloop tokens create <user>`, see `api_tokens`) signs in as
//!   that person.
//! - `proxy`: behind an identity-aware proxy, the person named in `AUTH_PROXY_HEADER`, believed
//!   only from `AUTH_TRUSTED_PROXIES` (`proxy`); API clients use their own API tokens.
//! - `test`: the original test contract: `X-User-ID` header, or `user_id_query` for SSE. Never
//!   the default; a client-chosen identity is only for test setups.

pub mod api_tokens;
pub mod proxy;

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::StatusCode;
use axum::http::request::Parts;

use crate::api_error::ApiError;
use crate::state::AppState;

pub const LOCAL_USER: &str = "local-dev-user";

#[derive(Debug, Clone, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthMode {
    Local,
    Token,
    /// Behind an identity-aware proxy (the person named in a header from trusted addresses).
    Proxy,
    Test,
}

/// The user id of a person as a sign-in names them (an email from a proxy, a name given to
/// `mainloop tokens`): letters, digits and `-` as they are, every other byte as `_` and two hex
/// digits, so ids stay valid subject tokens and two names never share one
/// (`alice@example.com` → `alice_40example_2ecom`).
pub fn person_id(name: &str) -> Result<String, String> {
    let name = name.trim();
    let id: String = name
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' => char::from(b).to_string(),
            other => format!("_{other:02x}"),
        })
        .collect();
    if name.is_empty() || id.len() > 128 {
        return Err(format!(
            "a person's name must be 1 to about 40 characters, not {:?}",
            name
        ));
    }
    Ok(id)
}

fn unauthorized(why: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, why)
}

/// The bearer token a request presents (on the SSE routes also `?token=`, since EventSource
/// cannot send a header).
fn presented(parts: &Parts) -> Option<&str> {
    let bearer = parts
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let sse = parts.uri.path() == "/events" || parts.uri.path().ends_with("/logs/stream");
    bearer.or_else(|| sse.then(|| query_param(parts, "token")).flatten())
}

/// The person a per-person API token belongs to.
async fn token_owner(state: &AppState, token: &str) -> Result<Option<String>, ApiError> {
    api_tokens::user_of(&state.db, token).await.map_err(|err| {
        tracing::error!(error = %err, "API tokens could not be read");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "sign-in is unavailable; try again",
        )
    })
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
                let presented = presented(parts);
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
                    (Some(given), _, _) => token_owner(state, given)
                        .await?
                        .ok_or_else(|| unauthorized("a valid token is required"))?,
                    _ => return Err(unauthorized("a valid token is required")),
                }
            }
            AuthMode::Proxy => match presented(parts) {
                Some(given) => token_owner(state, given)
                    .await?
                    .ok_or_else(|| unauthorized("this API token is not valid"))?,
                None => {
                    let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
                    let named = parts.headers.get(state.auth.proxy.auth_proxy_header.as_str());
                    match (state.auth.proxy.trusts(peer), named) {
                        (true, Some(named)) => named
                            .to_str()
                            .map_err(|_| {
                                ApiError::bad_request("the proxy's user header must be visible ASCII")
                            })
                            .and_then(|name| person_id(name).map_err(ApiError::bad_request))?,
                        (true, None) => return Err(unauthorized("the proxy did not say who is signed in")),
                        (false, Some(_)) => {
                            tracing::warn!(peer = ?peer, "a user header from an address that is not a trusted proxy");
                            return Err(unauthorized("only the sign-in proxy may name the user"));
                        }
                        (false, None) => {
                            return Err(unauthorized("sign in through the proxy, or use an API token"));
                        }
                    }
                }
            },
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
