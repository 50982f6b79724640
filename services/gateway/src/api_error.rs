//! The only mapping from failures to HTTP. Bodies keep the original API's shape,
//! `{"detail": "<text>"}`; every refusal is logged.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use mainloop_bus::request::RequestError;
use mainloop_events::v1::ErrorCode;
use serde_json::json;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub detail: String,
}

impl ApiError {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        ApiError {
            status,
            detail: detail.into(),
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, detail)
    }
}

impl From<RequestError> for ApiError {
    fn from(err: RequestError) -> Self {
        match err {
            RequestError::Rejected { code, message } => {
                let status = match code {
                    ErrorCode::Invalid => StatusCode::BAD_REQUEST,
                    ErrorCode::NotFound => StatusCode::NOT_FOUND,
                    ErrorCode::Conflict => StatusCode::CONFLICT,
                    ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::Internal | ErrorCode::Unspecified => StatusCode::INTERNAL_SERVER_ERROR,
                };
                ApiError::new(status, message)
            }
            RequestError::NoResponders(_) | RequestError::TimedOut(_) => {
                tracing::error!(error = %err, "a service did not answer");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "a mainloop service is not available; try again",
                )
            }
            RequestError::Transport { .. } | RequestError::BadReply { .. } => {
                tracing::error!(error = %err, "request to a service failed");
                ApiError::new(StatusCode::BAD_GATEWAY, "a mainloop service failed to answer")
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = %self.status, detail = %self.detail, "request failed");
        } else {
            tracing::info!(status = %self.status, detail = %self.detail, "request refused");
        }
        (self.status, Json(json!({ "detail": self.detail }))).into_response()
    }
}

/// Every refusal has the API's shape: an error answer that is not JSON (axum's own 405, a bad
/// path parameter, a timeout) gets `{"detail"}` with its text or the status's reason.
pub async fn json_errors(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json") || t.starts_with("text/event-stream"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let body = axum::body::to_bytes(response.into_body(), 16 * 1024)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&body).trim().to_string();
    let detail = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        text
    };
    tracing::warn!(%status, %detail, "request refused");
    (status, Json(json!({"detail": detail}))).into_response()
}
