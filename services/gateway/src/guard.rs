//! Keeps browsers from being turned against the person. A web page elsewhere can make the
//! person's browser send requests here (a form, a no-cors fetch) and a DNS-rebinding page can
//! make one look same-origin; so every request must name a host the gateway serves (loopback
//! names, its own address, or a configured public name), and every state-changing request must
//! come from an origin it trusts (`Origin`, `Sec-Fetch-Site`) and be JSON or bodiless, which no
//! cross-site form can send. Tools that are not browsers send neither header and pass.

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::api_error::ApiError;
use crate::state::AppState;

/// Hosts every gateway serves: the loopback names.
const LOOPBACK: &[&str] = &["localhost", "127.0.0.1", "[::1]"];

/// The host part of a `Host` header value (`name` or `name:port`, `[v6]:port`).
fn host_name(host: &str) -> &str {
    if host.starts_with('[') {
        return host
            .split_once(']')
            .map_or(host, |(name, _)| &host[..=name.len()]);
    }
    host.rsplit_once(':').map_or(host, |(name, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) {
            name
        } else {
            host
        }
    })
}

/// Whether `host` (a `Host` header) names this gateway.
pub fn host_allowed(host: &str, served: &[String]) -> bool {
    let name = host_name(host).to_ascii_lowercase();
    LOOPBACK.contains(&name.as_str()) || served.iter().any(|s| s.eq_ignore_ascii_case(&name))
}

fn refuse(status: StatusCode, detail: String) -> Response {
    tracing::warn!(%status, %detail, "request refused");
    ApiError::new(status, detail).into_response()
}

pub async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let Some(host) = text(header::HOST) else {
        return refuse(StatusCode::BAD_REQUEST, "a Host header is required".into());
    };
    if !host_allowed(host, &state.served_hosts) {
        return refuse(
            StatusCode::MISDIRECTED_REQUEST,
            format!("this gateway does not serve {host}"),
        );
    }
    let changes_state = !matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if changes_state {
        let own = |origin: &str| {
            origin
                .split_once("://")
                .is_some_and(|(_, rest)| rest.eq_ignore_ascii_case(host))
        };
        if let Some(origin) = text(header::ORIGIN)
            && !own(origin)
            && !crate::cors::allowed(origin, &state)
        {
            return refuse(
                StatusCode::FORBIDDEN,
                format!("requests from {origin} may not change anything here"),
            );
        }
        let site = text(header::HeaderName::from_static("sec-fetch-site"));
        if let Some(site) = site
            && !matches!(site, "same-origin" | "none")
            && text(header::ORIGIN).is_none_or(|o| !crate::cors::allowed(o, &state))
        {
            return refuse(
                StatusCode::FORBIDDEN,
                format!("a {site} request may not change anything here"),
            );
        }
        if let Some(kind) = text(header::CONTENT_TYPE)
            && !kind
                .trim_start()
                .to_ascii_lowercase()
                .starts_with("application/json")
        {
            return refuse(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("request bodies must be application/json, not {kind}"),
            );
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::{host_allowed, host_name};

    #[test]
    fn only_served_hosts_pass() {
        assert_eq!(host_name("localhost:8080"), "localhost");
        assert_eq!(host_name("[::1]:8080"), "[::1]");
        let served = vec!["mainloop.example".to_string()];
        for ok in [
            "localhost:8080",
            "127.0.0.1:1",
            "[::1]:9",
            "LOCALHOST",
            "mainloop.example",
            "mainloop.example:443",
        ] {
            assert!(host_allowed(ok, &served), "{ok}");
        }
        for bad in [
            "attacker.test",
            "attacker.test:8080",
            "127.0.0.1.attacker.test",
            "localhost.attacker.test:80",
            "mainloop.example.evil",
        ] {
            assert!(!host_allowed(bad, &served), "{bad}");
        }
    }
}
