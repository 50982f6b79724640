//! A local Anthropic Messages API (`POST /v1/messages`, streaming or not, as asked) that plays a careful main
//! thread: asked for work on a GitHub repository, it proposes a task and asks for confirmation;
//! told "yes", it calls the `spawn_task` tool; given the tool's result, it says what happened.
//! (Said "without asking", it spawns at once, to test that mainloop refuses.)
//! Requests are checked as the real API checks them (`x-api-key`, `anthropic-version`, `model`,
//! `max_tokens`, `messages`), errors have the real shape, and `/_control/fail` scripts a 529 or 429
//! (`{"status", "type"}`), or with `"mid_stream": true` an `error` event after a 200 and the first
//! words of the answer; `/_control/hold` and `/_control/release` (`{"contains"}`) pause the
//! streamed answer to one message after its first words.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};

#[derive(Clone, Default)]
pub struct FakeAnthropic {
    key: String,
    /// Errors to answer with before answering normally: (status, error type, mid-stream).
    failures: Arc<Mutex<Vec<(u16, String, bool)>>>,
    requests: Arc<Mutex<Vec<Value>>>,
    /// `/_control/hold {"contains"}`: the next streamed answer to a message containing that
    /// text stops after its first fragment until `/_control/release {"contains"}`. Keyed, so
    /// tests running side by side hold only their own answers.
    holds: Arc<Mutex<std::collections::HashMap<String, Hold>>>,
}

#[derive(Debug, Default)]
struct Hold {
    gate: Arc<tokio::sync::Notify>,
    taken: bool,
}

impl FakeAnthropic {
    pub fn new(key: &str) -> Self {
        FakeAnthropic {
            key: key.to_string(),
            ..Default::default()
        }
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/v1/messages", post(messages))
            .route("/v1/models", axum::routing::get(models))
            .route("/_control/fail", post(script_failure))
            .route("/_control/hold", post(hold))
            .route("/_control/release", post(release))
            .with_state(self.clone())
    }

    pub async fn serve(self, listener: tokio::net::TcpListener) -> std::io::Result<String> {
        let url = format!("http://{}", listener.local_addr()?);
        let app = self.router();
        crate::serving::serve(listener, app);
        Ok(url)
    }

    /// Every request body received, for assertions.
    pub fn requests(&self) -> Vec<Value> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

fn error(status: StatusCode, kind: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"type": "error", "error": {"type": kind, "message": message}})),
    )
        .into_response()
}

async fn script_failure(State(fake): State<FakeAnthropic>, Json(body): Json<Value>) -> Response {
    let status = u16::try_from(body["status"].as_u64().unwrap_or(529)).unwrap_or(529);
    let kind = body["type"].as_str().unwrap_or("overloaded_error").to_string();
    let mid_stream = body["mid_stream"].as_bool().unwrap_or(false);
    if let Ok(mut failures) = fake.failures.lock() {
        failures.push((status, kind, mid_stream));
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn hold(State(fake): State<FakeAnthropic>, Json(body): Json<Value>) -> StatusCode {
    let Some(text) = body["contains"].as_str().filter(|t| !t.is_empty()) else {
        return StatusCode::BAD_REQUEST;
    };
    if let Ok(mut holds) = fake.holds.lock() {
        holds.insert(text.to_string(), Hold::default());
    }
    StatusCode::NO_CONTENT
}

async fn release(State(fake): State<FakeAnthropic>, Json(body): Json<Value>) -> StatusCode {
    let text = body["contains"].as_str().unwrap_or_default();
    match fake.holds.lock().ok().and_then(|mut holds| holds.remove(text)) {
        Some(hold) => {
            // A permit is kept if the stream is not waiting yet.
            hold.gate.notify_one();
            StatusCode::NO_CONTENT
        }
        None => StatusCode::NOT_FOUND,
    }
}

/// The gate of a hold whose text the person's last message contains (each hold once).
fn held(fake: &FakeAnthropic, last: &Value) -> Option<Arc<tokio::sync::Notify>> {
    let said = last.to_string();
    let mut holds = fake.holds.lock().ok()?;
    let hold = holds
        .iter_mut()
        .find(|(text, hold)| !hold.taken && said.contains(text.as_str()))?
        .1;
    hold.taken = true;
    Some(hold.gate.clone())
}

/// `GET /v1/models`: what a key check asks; 401 for a wrong key, as the real API answers.
async fn models(State(fake): State<FakeAnthropic>, headers: HeaderMap) -> Response {
    let key = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if key != fake.key {
        return error(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "invalid x-api-key",
        );
    }
    Json(json!({"data": [{"type": "model", "id": "claude-sonnet-4-5", "display_name": "Claude Sonnet 4.5",
        "created_at": "2025-09-29T00:00:00Z"}], "has_more": false, "first_id": "claude-sonnet-4-5", "last_id": "claude-sonnet-4-5"}))
    .into_response()
}

const CONFIRMATIONS: &[&str] = &[
    "yes",
    "yes please",
    "confirm",
    "i confirm",
    "go ahead",
    "do it",
    "sure",
    "ok",
    "okay",
    "please do",
    "yep",
];

fn is_confirmation(text: &str) -> bool {
    let lower = text.trim().to_lowercase();
    let lower = lower.trim_end_matches(['.', '!']);
    CONFIRMATIONS.contains(&lower) || lower.starts_with("yes")
}

fn github_repo(text: &str) -> Option<String> {
    text.split_whitespace()
        .find(|w| w.starts_with("https://github.com/"))
        .map(|w| w.trim_end_matches(['.', ',', ')', '?']).to_string())
}

fn text_of(message: &Value) -> String {
    match &message["content"] {
        Value::String(text) => text.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter_map(|b| b["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

async fn messages(
    State(fake): State<FakeAnthropic>,
    headers: HeaderMap,
    Json(request): Json<Value>,
) -> Response {
    if headers.get("x-api-key").and_then(|v| v.to_str().ok()) != Some(fake.key.as_str()) {
        return error(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "invalid x-api-key",
        );
    }
    if headers.get("anthropic-version").is_none() {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "anthropic-version header is required",
        );
    }
    if let Ok(mut requests) = fake.requests.lock() {
        requests.push(request.clone());
    }
    let failure = fake
        .failures
        .lock()
        .ok()
        .and_then(|mut f| (!f.is_empty()).then(|| f.remove(0)));
    let mut fail_mid_stream = None;
    if let Some((status, kind, mid_stream)) = failure {
        if mid_stream && request["stream"] == true {
            fail_mid_stream = Some(kind);
        } else {
            let mut response = error(
                StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
                &kind,
                "scripted failure",
            );
            response
                .headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from_static("1"));
            return response;
        }
    }
    let (Some(model), Some(_), Some(history)) = (
        request["model"].as_str(),
        request["max_tokens"].as_u64(),
        request["messages"].as_array(),
    ) else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "model, max_tokens and messages are required",
        );
    };
    let Some(last) = history.last() else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "messages: at least one message is required",
        );
    };
    let content = decide(history, last);
    let stop_reason = if content.iter().any(|b| b["type"] == "tool_use") {
        "tool_use"
    } else {
        "end_turn"
    };
    let message = json!({
        "id": format!("msg_{}", uuid::Uuid::now_v7().simple()), "type": "message", "role": "assistant", "model": model,
        "content": content, "stop_reason": stop_reason, "stop_sequence": null,
        "usage": {"input_tokens": 100, "output_tokens": 20, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
    });
    if request["stream"] == true {
        let gate = held(&fake, last);
        return crate::anthropic_stream::held_response(&message, fail_mid_stream.as_deref(), gate);
    }
    Json(message).into_response()
}

fn decide(history: &[Value], last: &Value) -> Vec<Value> {
    let text = |t: &str| vec![json!({"type": "text", "text": t})];
    // A tool result: report it.
    if let Some(result) = last["content"]
        .as_array()
        .and_then(|blocks| blocks.iter().find(|b| b["type"] == "tool_result"))
    {
        let said = result["content"]
            .as_str()
            .map_or_else(|| result["content"].to_string(), str::to_string);
        return if result["is_error"].as_bool().unwrap_or(false) {
            text(&format!("That did not work: {said}"))
        } else {
            text(&format!(
                "{said} I'll plan it in a GitHub issue; you'll find the plan in your inbox for review."
            ))
        };
    }
    let said = text_of(last);
    let earlier_request = history
        .iter()
        .rev()
        .skip(1)
        .filter(|m| m["role"] == "user")
        .map(text_of)
        .find(|t| github_repo(t).is_some());
    if is_confirmation(&said)
        && let Some(request) = earlier_request
    {
        let repo = github_repo(&request).unwrap_or_default();
        // A model that garbles: the task description it writes carries a NUL.
        let request = if request.contains("garbled") {
            format!("{request}\u{0} (garbled)")
        } else {
            request
        };
        return vec![
            json!({"type": "text", "text": "Spawning the worker now."}),
            json!({"type": "tool_use", "id": format!("toolu_{}", uuid::Uuid::now_v7().simple()), "name": "spawn_task",
                "input": {"repo_url": repo, "task_description": request, "skip_planning": false}}),
        ];
    }
    // A model that garbles its reply: a NUL in the text, which no row may refuse.
    if said.contains("garbled") && github_repo(&said).is_none() {
        return text("Here is your answer:\u{0} (garbled)");
    }
    // A reckless model, for tests of the confirmation rule: it spawns without asking.
    if let Some(repo) = github_repo(&said).filter(|_| said.contains("without asking")) {
        return vec![
            json!({"type": "tool_use", "id": format!("toolu_{}", uuid::Uuid::now_v7().simple()), "name": "spawn_task",
            "input": {"repo_url": repo, "task_description": said, "skip_planning": false}}),
        ];
    }
    if let Some(repo) = github_repo(&said) {
        let name = repo.trim_start_matches("https://github.com/");
        return text(&format!(
            "I can start a worker on {name} for this: \"{}\". It will plan first and ask for your approval. Shall I go ahead?",
            said.trim()
        ));
    }
    text(
        "Hello! Tell me what to build and in which GitHub repository (a https://github.com/… URL), and I'll start a worker on it.",
    )
}
