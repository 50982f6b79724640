//! Git over smart HTTP, as GitHub serves it: `git http-backend` behind the same authentication.
//! Pushing always needs credentials, and so does fetching a private repository; without them
//! the answer is `401` with `WWW-Authenticate: Basic realm="GitHub"`, which makes git ask its
//! credential helpers (and fail with "terminal prompts disabled" when there are none). As on
//! GitHub, any user name goes and the token is the password.

use std::process::Stdio;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use tokio::io::AsyncWriteExt;

use super::FakeGitHub;

pub fn router() -> Router<FakeGitHub> {
    Router::new()
        .route("/{owner}/{repo}/info/refs", get(serve))
        .route("/{owner}/{repo}/git-upload-pack", post(serve))
        .route("/{owner}/{repo}/git-receive-pack", post(serve))
        .layer(DefaultBodyLimit::disable())
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Basic realm=\"GitHub\"")],
        "Invalid username or token. Password authentication is not supported for Git operations.\n",
    )
        .into_response()
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "Repository not found.\n").into_response()
}

/// The password of a Basic `Authorization` header, when it is the fake's token.
fn authenticated(gh: &FakeGitHub, headers: &HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64.trim()).ok())
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|pair| pair.split_once(':').map(|(_, password)| password.to_string()))
        .is_some_and(|password| !password.is_empty() && password == gh.token)
}

async fn serve(
    State(gh): State<FakeGitHub>,
    Path(params): Path<Vec<(String, String)>>,
    method: Method,
    RawQuery(query): RawQuery,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let [(_, owner), (_, repo), ..] = params.as_slice() else {
        return not_found();
    };
    let Some(name) = repo.strip_suffix(".git") else {
        return not_found();
    };
    let push = uri.path().ends_with("git-receive-pack")
        || query
            .as_deref()
            .is_some_and(|q| q.contains("service=git-receive-pack"));
    let private = match gh.state.lock() {
        Ok(state) => match state.repos.get(&format!("{owner}/{name}")) {
            Some(repo) => repo.private,
            None => return not_found(),
        },
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    let signed_in = authenticated(&gh, &headers);
    if (push || private) && !signed_in {
        return unauthorized();
    }
    if let Ok(mut state) = gh.state.lock() {
        state.calls.push(format!("GIT {} {}", method, uri.path()));
    }
    let pushing = push && method == Method::POST;
    let heads_before = if pushing {
        open_heads(&gh, owner, name)
    } else {
        vec![]
    };
    let answer = backend(
        &gh,
        &method,
        uri.path(),
        query.as_deref(),
        &headers,
        body,
        signed_in,
    )
    .await;
    match answer {
        Ok(response) => {
            if pushing {
                synchronize(&gh, owner, name, heads_before);
            }
            response
        }
        Err(err) => {
            tracing::warn!(error = %err, "git http-backend failed");
            (StatusCode::INTERNAL_SERVER_ERROR, err.to_string()).into_response()
        }
    }
}

/// The open pull requests of `owner/name` with their head commits now.
fn open_heads(gh: &FakeGitHub, owner: &str, name: &str) -> Vec<(u64, String, Option<String>)> {
    let Ok(state) = gh.state.lock() else {
        return vec![];
    };
    let Some(repo) = state.repos.get(&format!("{owner}/{name}")).cloned() else {
        return vec![];
    };
    drop(state);
    repo.pulls
        .values()
        .filter(|p| p.state == "open")
        .map(|p| (p.number, p.head.clone(), super::api::head_sha(gh, &repo, &p.head)))
        .collect()
}

/// As GitHub: a push that moves an open pull request's head sends `pull_request` `synchronize`.
fn synchronize(gh: &FakeGitHub, owner: &str, name: &str, before: Vec<(u64, String, Option<String>)>) {
    let Some(repository) = gh.state.lock().ok().and_then(|state| {
        state
            .repos
            .get(&format!("{owner}/{name}"))
            .map(super::webhooks::repository)
    }) else {
        return;
    };
    let after = open_heads(gh, owner, name);
    for (number, head, was) in before {
        let now = after
            .iter()
            .find(|(n, _, _)| *n == number)
            .and_then(|(_, _, sha)| sha.clone());
        if now.is_some() && now != was {
            super::webhooks::deliver(
                gh,
                "pull_request",
                serde_json::json!({"action": "synchronize", "number": number, "repository": repository,
                    "before": was, "after": now,
                    "pull_request": {"number": number, "state": "open", "head": {"ref": head, "sha": now}}}),
                "mainloop-bot",
            );
        }
    }
}

/// Runs `git http-backend` as a CGI program and turns its output into a response.
async fn backend(
    gh: &FakeGitHub,
    method: &Method,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: Bytes,
    signed_in: bool,
) -> std::io::Result<Response> {
    let header_str = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let mut command = tokio::process::Command::new("git");
    command
        .arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("GIT_PROJECT_ROOT", &gh.root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("PATH_INFO", path)
        .env("REQUEST_METHOD", method.as_str())
        .env("QUERY_STRING", query.unwrap_or_default())
        .env("CONTENT_TYPE", header_str(header::CONTENT_TYPE))
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("HTTP_CONTENT_ENCODING", header_str(header::CONTENT_ENCODING))
        .env(
            "GIT_PROTOCOL",
            header_str(header::HeaderName::from_static("git-protocol")),
        )
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if signed_in {
        // http-backend allows receive-pack only for an authenticated user.
        command.env("REMOTE_USER", "mainloop-bot");
    }
    let mut child = command.spawn()?;
    let mut stdin = child.stdin.take();
    let writer = async move {
        if let Some(stdin) = stdin.as_mut() {
            stdin.write_all(&body).await?;
            stdin.shutdown().await?;
        }
        drop(stdin);
        Ok::<_, std::io::Error>(())
    };
    let (written, output) = tokio::join!(writer, child.wait_with_output());
    written?;
    let output = output?;
    Ok(cgi_response(&output.stdout))
}

/// A CGI answer: header lines (`Status:` among them), a blank line, the body.
fn cgi_response(raw: &[u8]) -> Response {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, i + 4))
        .or_else(|| raw.windows(2).position(|w| w == b"\n\n").map(|i| (i, i + 2)));
    let Some((head_end, body_start)) = split else {
        return (StatusCode::BAD_GATEWAY, "git http-backend gave no headers").into_response();
    };
    let mut status = StatusCode::OK;
    let mut response = Response::builder();
    for line in String::from_utf8_lossy(&raw[..head_end]).lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            status = value
                .split_whitespace()
                .next()
                .and_then(|code| code.parse::<u16>().ok())
                .and_then(|code| StatusCode::from_u16(code).ok())
                .unwrap_or(StatusCode::BAD_GATEWAY);
        } else if let Ok(value) = HeaderValue::from_str(value) {
            response = response.header(name.trim(), value);
        }
    }
    response
        .status(status)
        .body(Body::from(raw[body_start..].to_vec()))
        .unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response())
}

#[cfg(test)]
mod tests {
    #[test]
    fn cgi_status_headers_and_body_are_kept() {
        let response = super::cgi_response(b"Status: 403 Forbidden\r\nContent-Type: text/plain\r\n\r\nno");
        assert_eq!(response.status(), 403);
        assert_eq!(response.headers()["content-type"], "text/plain");
    }
}
