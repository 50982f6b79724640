//! A local OpenAI-compatible server as Ollama runs one (`/v1/models`, `/v1/chat/completions`,
//! no key needed): it answers every chat with one short text, streamed as chat-completion chunks
//! (`data: {…}` lines, a usage chunk, `data: [DONE]`) when asked to stream, else as one
//! completion. Every request body is kept for assertions.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

#[derive(Clone, Default)]
pub struct FakeOllama {
    model: String,
    reply: String,
    requests: Arc<Mutex<Vec<Value>>>,
}

impl FakeOllama {
    /// A server that offers `model` and answers every chat with `reply`.
    pub fn new(model: &str, reply: &str) -> Self {
        FakeOllama {
            model: model.to_string(),
            reply: reply.to_string(),
            requests: Arc::default(),
        }
    }

    /// Serves on `listener`; returns `host:port` (what `OLLAMA_HOST` holds).
    pub async fn serve(self, listener: tokio::net::TcpListener) -> std::io::Result<String> {
        let host = listener.local_addr()?.to_string();
        let app = Router::new()
            .route("/v1/models", get(models))
            .route("/v1/chat/completions", post(chat))
            .with_state(self);
        crate::serving::serve(listener, app);
        Ok(host)
    }

    pub fn requests(&self) -> Vec<Value> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

async fn models(State(fake): State<FakeOllama>) -> Response {
    Json(json!({"object": "list", "data": [{"id": fake.model, "object": "model", "created": 1, "owned_by": "library"}]}))
        .into_response()
}

async fn chat(State(fake): State<FakeOllama>, Json(request): Json<Value>) -> Response {
    if let Ok(mut requests) = fake.requests.lock() {
        requests.push(request.clone());
    }
    if request["model"] != fake.model.as_str() {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"error": {"message": format!("model \"{}\" not found, try pulling it first", request["model"].as_str().unwrap_or_default()), "type": "api_error"}})),
        )
            .into_response();
    }
    let chunk = |delta: Value, finish: Value| {
        json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": fake.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    if request["stream"] != true {
        return Json(json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": fake.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": fake.reply}, "finish_reason": "stop"}]}))
        .into_response();
    }
    let words: Vec<String> = fake.reply.split_inclusive(' ').map(str::to_string).collect();
    let mut frames = vec![chunk(json!({"role": "assistant", "content": ""}), Value::Null)];
    frames.extend(
        words
            .into_iter()
            .map(|w| chunk(json!({"content": w}), Value::Null)),
    );
    frames.push(chunk(json!({}), json!("stop")));
    let mut body: Vec<Result<String, Infallible>> =
        frames.into_iter().map(|f| Ok(format!("data: {f}\n\n"))).collect();
    body.push(Ok("data: [DONE]\n\n".into()));
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(futures_util::stream::iter(body)))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}
