//! The web app, compiled into the binary by the build script (see `build.rs`): `/` is its
//! page, `/assets/…` its hashed (so never-changing) scripts and styles, and the rest its service
//! worker, manifest and icons. Every page is served with a Content-Security-Policy that lets
//! only this origin's scripts run, so nothing a model or GitHub writes can run in it.

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::state::AppState;

include!(concat!(env!("OUT_DIR"), "/web_assets.rs"));

/// Scripts, styles and connections from this origin only; no plugins, frames or base changes.
const POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

pub fn router() -> Router<AppState> {
    let mut router = Router::new().route("/", get(|| async { asset("/index.html") }));
    for (path, _) in WEB_ASSETS {
        if *path != "/index.html" {
            router = router.route(
                path,
                get(|request: Request| async move { asset(request.uri().path()) }),
            );
        }
    }
    router
}

fn asset(path: &str) -> Response {
    let Some((_, body)) = WEB_ASSETS.iter().find(|(p, _)| *p == path) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    // Hashed names never change; everything else is checked again on each load.
    let cache = if path.starts_with("/assets/") {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type(path))),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
            (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(POLICY)),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
        ],
        *body,
    )
        .into_response()
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("webmanifest") => "application/manifest+json",
        Some("png") => "image/png",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::{WEB_ASSETS, content_type};

    #[test]
    fn the_built_app_is_inside_with_its_page_worker_and_scripts() {
        let paths: Vec<&str> = WEB_ASSETS.iter().map(|(p, _)| *p).collect();
        for needed in ["/index.html", "/sw.js", "/manifest.webmanifest", "/theme.js"] {
            assert!(paths.contains(&needed), "{needed} missing from {paths:?}");
        }
        let scripts: Vec<&&str> = paths
            .iter()
            .filter(|p| p.starts_with("/assets/") && p.ends_with(".js"))
            .collect();
        assert_eq!(scripts.len(), 1, "{paths:?}");
        let page = String::from_utf8_lossy(
            WEB_ASSETS
                .iter()
                .find(|(p, _)| *p == "/index.html")
                .map_or(&[][..], |(_, b)| b),
        );
        assert!(page.contains(&format!("src=\"{}\"", scripts[0])), "{page}");
        // No inline script: the policy would refuse it.
        assert!(!page.contains("<script>"), "{page}");
    }

    #[test]
    fn each_kind_of_file_is_named_for_the_browser() {
        assert_eq!(
            content_type("/assets/index-1.js"),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(content_type("/manifest.webmanifest"), "application/manifest+json");
        assert_eq!(content_type("/index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("/x.bin"), "application/octet-stream");
    }
}
