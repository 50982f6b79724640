//! CORS: only the origins listed in `CORS_ORIGINS` may call the API from another origin; in test
//! mode also any localhost / 127.0.0.1 port, so the original web client's own test set-up (served
//! from another local port) keeps working. Preflights are answered for those origins only.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::state::AppState;

/// Whether a browser page at `origin` may call the API.
pub fn allowed(origin: &str, state: &AppState) -> bool {
    let test_mode = state.auth.mode == crate::auth::AuthMode::Test;
    (test_mode && local_origin(origin)) || state.cors_origins.iter().any(|o| o == origin)
}

fn local_origin(origin: &str) -> bool {
    ["http://localhost:", "http://127.0.0.1:"].iter().any(|prefix| {
        origin
            .strip_prefix(prefix)
            .is_some_and(|port| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()))
    })
}

pub async fn cors(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let origin = request
        .headers()
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .filter(|o| allowed(o, &state))
        .and_then(|o| HeaderValue::from_str(o).ok());
    let preflight = request.method() == Method::OPTIONS;
    let mut response = if preflight && origin.is_some() {
        StatusCode::NO_CONTENT.into_response()
    } else {
        next.run(request).await
    };
    if let Some(origin) = origin {
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
        headers.insert(header::VARY, HeaderValue::from_static("origin"));
        if preflight {
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("GET, POST, PUT, PATCH, DELETE, OPTIONS"),
            );
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static("*"),
            );
            headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::local_origin;

    #[test]
    fn local_origins_are_exactly_loopback_ports() {
        assert!(local_origin("http://localhost:5173"));
        assert!(local_origin("http://127.0.0.1:8080"));
        assert!(!local_origin("http://localhost:5173.evil.com"));
        assert!(!local_origin("https://evil.com"));
    }
}
