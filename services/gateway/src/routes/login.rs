//! Logging in from another device in token mode. `mainloop up` prints a login URL,
//! `/login#token=…`: the token rides in the fragment, which browsers never send, so it stays out
//! of every log; the page (`/login.js`) trades it for a session cookie (`POST /login`, see
//! `session`) and opens the app. `POST /logout` clears the cookie. In local and test mode there
//! is nothing to log in to (404).

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use crate::api_error::ApiError;
use crate::auth::{AuthMode, constant_time_eq};
use crate::extract::Body;
use crate::session;
use crate::state::AppState;

const PAGE: &str = "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>mainloop: log in</title>\
<link rel=\"stylesheet\" href=\"/style.css\"></head><body><main><h1>$ mainloop</h1>\
<p id=\"login-status\" role=\"status\">Logging in…</p></main><script src=\"/login.js\"></script></body></html>\n";

const SCRIPT: &str = r#"// Trades the token in the URL's fragment for a session cookie, then opens the app.
const status = document.getElementById("login-status");
const token = new URLSearchParams(location.hash.slice(1)).get("token");
history.replaceState(null, "", "/login");
if (!token) {
  status.textContent = "This login link has no token. Use the URL `mainloop up` printed.";
} else {
  fetch("/login", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ token }) })
    .then((answer) => {
      if (answer.ok) location.replace("/");
      else status.textContent = "This login link is not valid (the token may have changed). Use the URL `mainloop up` printed.";
    })
    .catch(() => { status.textContent = "mainloop could not be reached."; });
}
"#;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/login", get(|| async { Html(PAGE) }).post(login))
        .route(
            "/login.js",
            get(|| async {
                ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], SCRIPT).into_response()
            }),
        )
        .route("/logout", axum::routing::post(logout))
}

#[derive(Deserialize)]
struct LoginBody {
    token: String,
}

fn over_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.eq_ignore_ascii_case("https"))
}

fn token_mode(state: &AppState) -> Result<&[u8], ApiError> {
    match (&state.auth.mode, &state.auth.token) {
        (AuthMode::Token, Some(token)) => Ok(token.expose().as_bytes()),
        _ => Err(ApiError::not_found(
            "there is no login: this mainloop is not in token mode",
        )),
    }
}

async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    Body(body): Body<LoginBody>,
) -> Result<Response, ApiError> {
    let token = token_mode(&state)?;
    if !constant_time_eq(body.token.as_bytes(), token) {
        tracing::warn!("a login with a wrong token was refused");
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "that token is not valid"));
    }
    let session = session::issue(token)
        .ok_or_else(|| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "no session could be made"))?;
    let cookie = session::set_cookie(Some(&session), over_https(&headers));
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, cookie)]).into_response())
}

async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    token_mode(&state)?;
    let cookie = session::set_cookie(None, over_https(&headers));
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, cookie)]).into_response())
}
