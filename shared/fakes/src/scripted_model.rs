//! A Messages API (`POST /v1/messages`) whose model follows a script, for running the real
//! Claude Code CLI against it: each request of the agent's loop (one that offers tools) gets the
//! next scripted turn (text, a tool call, or an API error); anything else the CLI asks on the
//! side (titles, summaries) gets a short text. Answers stream as the real API streams them
//! (`message_start`, `content_block_start`/`_delta`/`_stop` with `input_json_delta` for tool
//! input, `message_delta`, `message_stop`) when the request says `stream: true`, and are one JSON
//! message otherwise. Every request body is kept, so tests can see what the CLI sent (a resumed
//! session sends its earlier conversation).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};

/// One turn of the scripted model.
#[derive(Debug, Clone)]
pub enum Turn {
    Text(String),
    /// The model calls a tool.
    Tool {
        name: String,
        input: Value,
    },
    /// The API refuses: status, error type, message.
    Error {
        status: u16,
        kind: String,
        message: String,
    },
}

#[derive(Clone, Default)]
pub struct ScriptedModel {
    key: String,
    script: Arc<Mutex<VecDeque<Turn>>>,
    requests: Arc<Mutex<Vec<Value>>>,
}

impl ScriptedModel {
    pub fn new(key: &str, script: Vec<Turn>) -> Self {
        ScriptedModel {
            key: key.to_string(),
            script: Arc::new(Mutex::new(script.into())),
            requests: Arc::default(),
        }
    }

    /// Serves on `listener`; returns the base URL to give as `ANTHROPIC_BASE_URL`.
    pub async fn serve(self, listener: tokio::net::TcpListener) -> std::io::Result<String> {
        let url = format!("http://{}", listener.local_addr()?);
        let app = Router::new()
            .route("/v1/messages", post(messages))
            .with_state(self);
        crate::serving::serve(listener, app);
        Ok(url)
    }

    /// Adds turns to the end of the script.
    pub fn push(&self, turns: Vec<Turn>) {
        if let Ok(mut script) = self.script.lock() {
            script.extend(turns);
        }
    }

    /// The request bodies of the agent's loop (those offering tools), in order.
    pub fn agent_requests(&self) -> Vec<Value> {
        self.requests
            .lock()
            .map(|r| r.iter().filter(|b| offers_tools(b)).cloned().collect())
            .unwrap_or_default()
    }
}

fn offers_tools(body: &Value) -> bool {
    body["tools"].as_array().is_some_and(|t| !t.is_empty())
}

fn error(status: u16, kind: &str, message: &str) -> Response {
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        Json(json!({"type": "error", "error": {"type": kind, "message": message}})),
    )
        .into_response()
}

async fn messages(
    State(model): State<ScriptedModel>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let key = headers
        .get("x-api-key")
        .or_else(|| headers.get("authorization"))
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if key.trim_start_matches("Bearer ") != model.key {
        return error(401, "authentication_error", "invalid x-api-key");
    }
    if let Ok(mut requests) = model.requests.lock() {
        requests.push(body.clone());
    }
    let turn = if offers_tools(&body) {
        model.script.lock().ok().and_then(|mut s| s.pop_front())
    } else {
        None
    }
    .unwrap_or_else(|| Turn::Text("Done.".into()));
    let block = match turn {
        Turn::Error {
            status,
            kind,
            message,
        } => return error(status, &kind, &message),
        Turn::Text(text) => json!({"type": "text", "text": text}),
        Turn::Tool { name, input } => {
            json!({"type": "tool_use", "id": format!("toolu_{}", uuid::Uuid::now_v7().simple()), "name": name, "input": input})
        }
    };
    let stop_reason = if block["type"] == "tool_use" {
        "tool_use"
    } else {
        "end_turn"
    };
    let model_name = body["model"].as_str().unwrap_or("claude-sonnet-5").to_string();
    let id = format!("msg_{}", uuid::Uuid::now_v7().simple());
    let usage = json!({"input_tokens": 100, "output_tokens": 20, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0});
    if body["stream"] != true {
        return Json(
            json!({"id": id, "type": "message", "role": "assistant", "model": model_name,
            "content": [block], "stop_reason": stop_reason, "stop_sequence": null, "usage": usage}),
        )
        .into_response();
    }
    let message = json!({"id": id, "type": "message", "role": "assistant", "model": model_name,
        "content": [block], "stop_reason": stop_reason, "stop_sequence": null, "usage": usage});
    crate::anthropic_stream::response(&message, None)
}
