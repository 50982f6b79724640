//! Extractors that refuse bad input the way the rest of the API does: 4xx with `{"detail"}`.

use std::time::Duration;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::api_error::ApiError;

/// How long a request body may take to arrive once its head has: a client that trickles a body
/// (or announces more than it sends) gets 408 instead of holding a handler forever.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// A JSON body; malformed, mistyped, oversized or too slow bodies are a 4xx with the reason.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let arrived = tokio::time::timeout(
            BODY_TIMEOUT,
            axum::Json::<serde_json::Value>::from_request(req, state),
        )
        .await
        .map_err(|_| {
            ApiError::new(
                axum::http::StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request body did not arrive within {} s",
                    BODY_TIMEOUT.as_secs()
                ),
            )
        })?;
        match arrived {
            Ok(axum::Json(value)) => {
                refuse_hostile_text(&value)?;
                serde_json::from_value(value).map(Body).map_err(|e| {
                    ApiError::new(
                        axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                        format!("invalid JSON body: {e}"),
                    )
                })
            }
            Err(rejection) => Err(json_refusal(rejection)),
        }
    }
}

/// A raw body (for signatures, which are over the exact bytes), with the same size limit and
/// arrival timeout as JSON bodies.
pub struct RawBody(pub axum::body::Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match tokio::time::timeout(BODY_TIMEOUT, axum::body::Bytes::from_request(req, state)).await {
            Ok(Ok(bytes)) => Ok(RawBody(bytes)),
            Ok(Err(rejection)) => Err(ApiError::new(
                rejection.status(),
                format!("the request body could not be read: {}", rejection.body_text()),
            )),
            Err(_) => Err(ApiError::new(
                axum::http::StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request body did not arrive within {} s",
                    BODY_TIMEOUT.as_secs()
                ),
            )),
        }
    }
}

/// Text Postgres cannot store (NUL) or that has no business in an API request (other C0 control
/// characters but tab, newline and carriage return) is refused before it goes anywhere.
fn hostile(text: &str) -> bool {
    text.chars()
        .any(|c| (c < ' ' && !matches!(c, '\t' | '\n' | '\r')) || c == '\u{7f}')
}

fn refuse_hostile_text(value: &serde_json::Value) -> Result<(), ApiError> {
    let bad = match value {
        serde_json::Value::String(text) => hostile(text),
        serde_json::Value::Array(items) => return items.iter().try_for_each(refuse_hostile_text),
        serde_json::Value::Object(fields) => {
            for (key, field) in fields {
                if hostile(key) {
                    return Err(ApiError::bad_request("a field name contains control characters"));
                }
                refuse_hostile_text(field)?;
            }
            false
        }
        _ => false,
    };
    if bad {
        return Err(ApiError::bad_request(
            "text may not contain NUL or other control characters",
        ));
    }
    Ok(())
}

fn json_refusal(rejection: JsonRejection) -> ApiError {
    ApiError::new(
        rejection.status(),
        format!("invalid JSON body: {}", rejection.body_text()),
    )
}

/// Query parameters; wrong types are a 400 with the reason.
pub struct Params<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let raw = parts.uri.query().unwrap_or_default();
        let decoded: Vec<(String, String)> = serde_urlencoded::from_str(raw).unwrap_or_default();
        if decoded.iter().any(|(k, v)| hostile(k) || hostile(v)) {
            return Err(ApiError::bad_request(
                "query parameters may not contain NUL or other control characters",
            ));
        }
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Params(value)),
            Err(rejection) => Err(query_refusal(rejection)),
        }
    }
}

fn query_refusal(rejection: QueryRejection) -> ApiError {
    ApiError::bad_request(format!("invalid query: {}", rejection.body_text()))
}

/// An id from the path. Ids are subject tokens; anything else cannot exist.
pub fn id(value: &str, what: &str) -> Result<String, ApiError> {
    mainloop_events::subjects::token("id", value)
        .map(str::to_string)
        .map_err(|_| ApiError::not_found(format!("no such {what}")))
}
