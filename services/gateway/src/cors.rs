//! CORS for the original web client, which may be served from another local port: origins on
//! localhost / 127.0.0.1 are allowed (plus any listed in `CORS_ORIGINS`), with any header, and
//! preflights are answered.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::state::AppState;

fn allowed(origin: &str, extra: &[String]) -> bool {
    let local = ["http://localhost:", "http://127.0.0.1:"].iter().any(|prefix| {
        origin
            .strip_prefix(prefix)
            .is_some_and(|port| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()))
    });
    local || extra.iter().any(|o| o == origin)
}

pub async fn cors(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let origin = request
        .headers()
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .filter(|o| allowed(o, &state.cors_origins))
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
    use super::allowed;

    #[test]
    fn local_origins_and_listed_ones_only() {
        assert!(allowed("http://localhost:5173", &[]));
        assert!(allowed("http://127.0.0.1:8080", &[]));
        assert!(!allowed("http://localhost:5173.evil.com", &[]));
        assert!(!allowed("https://evil.com", &[]));
        assert!(allowed(
            "https://mainloop.example",
            &["https://mainloop.example".into()]
        ));
    }
}
