//! Any OpenAI-compatible chat-completions endpoint (`POST {base}/chat/completions`, `stream:
//! true`): Ollama (`http://localhost:11434/v1`), vLLM, llama.cpp's server, hosted ones. Text
//! deltas go out as they arrive; tool calls are joined by their `index` (the first fragment
//! names the call, later ones append to `arguments`; some servers send a whole call at once);
//! `data: [DONE]` ends the stream, and an `error` object in it is an error.

use std::collections::BTreeMap;
use std::time::Duration;

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use mainloop_runtime::Secret;
use serde_json::{Value, json};

use super::{Block, ChatModel, Deltas, Message, ModelError, ModelReply, ModelRequest, Role, Stop};

pub struct OpenAi {
    http: reqwest::Client,
    /// The API root including its version path, e.g. `http://localhost:11434/v1`.
    base: String,
    key: Option<Secret>,
    model: String,
}

impl OpenAi {
    pub fn new(base: &str, key: Option<Secret>, model: &str) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(300))
            .build()
            .unwrap_or_default();
        OpenAi {
            http,
            base: base.trim_end_matches('/').to_string(),
            key,
            model: model.to_string(),
        }
    }

    async fn stream(&self, request: &ModelRequest, deltas: &Deltas) -> Result<ModelReply, ModelError> {
        let mut messages = vec![json!({"role": "system", "content": request.system})];
        messages.extend(request.messages.iter().flat_map(message));
        let mut body = json!({"model": self.model, "max_tokens": request.max_tokens, "messages": messages,
            "stream": true});
        if !request.tools.is_empty() {
            body["tools"] = request
                .tools
                .iter()
                .map(|t| {
                    json!({"type": "function", "function": {"name": t.name, "description": t.description,
                    "parameters": t.schema}})
                })
                .collect();
        }
        let response = super::send_until_accepted(
            || {
                let post = self
                    .http
                    .post(format!("{}/chat/completions", self.base))
                    .json(&body);
                // Local servers take no key; the header is still sent, as clients do.
                post.bearer_auth(self.key.as_ref().map_or("none", Secret::expose))
            },
            refused,
        )
        .await?;
        let mut events = response.bytes_stream().eventsource();
        let mut reading = Reading::default();
        while let Some(event) = events.next().await {
            let event = event.map_err(|e| ModelError::Transport(e.to_string()))?;
            if event.data.trim() == "[DONE]" {
                return Ok(reading.reply());
            }
            let chunk: Value = serde_json::from_str(&event.data)
                .map_err(|e| ModelError::Protocol(format!("a chunk: {e}")))?;
            if chunk.get("error").is_some_and(|e| !e.is_null()) {
                return Err(refused(200, &chunk));
            }
            reading.apply(&chunk, deltas);
        }
        Err(ModelError::Protocol("the stream ended before [DONE]".into()))
    }
}

impl ChatModel for OpenAi {
    fn describe(&self) -> String {
        format!("openai-compatible {} at {}", self.model, self.base)
    }

    fn turn<'a>(
        &'a self,
        request: &'a ModelRequest,
        deltas: &'a Deltas,
    ) -> BoxFuture<'a, Result<ModelReply, ModelError>> {
        Box::pin(self.stream(request, deltas))
    }
}

/// OpenAI's error shape: `{"error": {"message", "type", "code"}}` (some servers send a string).
fn refused(status: u16, body: &Value) -> ModelError {
    let error = &body["error"];
    ModelError::Api {
        status,
        kind: error["type"]
            .as_str()
            .or_else(|| error["code"].as_str())
            .unwrap_or("error")
            .to_string(),
        message: error["message"]
            .as_str()
            .or_else(|| error.as_str())
            .unwrap_or_default()
            .to_string(),
    }
}

/// Our message as chat-completions messages: tool results are messages of their own.
fn message(message: &Message) -> Vec<Value> {
    match message.role {
        Role::User => {
            let mut out = Vec::new();
            let mut text = Vec::new();
            for block in &message.blocks {
                match block {
                    Block::Text(t) => text.push(t.as_str()),
                    Block::ToolResult {
                        tool_use_id,
                        content,
                        is_error,
                    } => out.push(json!({"role": "tool", "tool_call_id": tool_use_id,
                        "content": if *is_error { format!("Error: {content}") } else { content.clone() }})),
                    Block::ToolUse { .. } => {}
                }
            }
            if !text.is_empty() {
                out.push(json!({"role": "user", "content": text.join("\n\n")}));
            }
            out
        }
        Role::Assistant => {
            let text: Vec<&str> = message
                .blocks
                .iter()
                .filter_map(|b| match b {
                    Block::Text(t) => Some(t.as_str()),
                    _ => None,
                })
                .collect();
            let calls: Vec<Value> = message
                .blocks
                .iter()
                .filter_map(|b| match b {
                    Block::ToolUse { id, name, input } => Some(json!({"id": id, "type": "function",
                        "function": {"name": name, "arguments": input.to_string()}})),
                    _ => None,
                })
                .collect();
            let mut out = json!({"role": "assistant",
                "content": if text.is_empty() { Value::Null } else { json!(text.join("\n\n")) }});
            if !calls.is_empty() {
                out["tool_calls"] = json!(calls);
            }
            vec![out]
        }
    }
}

/// A tool call as its fragments arrive.
#[derive(Default)]
struct Call {
    id: String,
    name: String,
    arguments: String,
}

#[derive(Default)]
struct Reading {
    text: String,
    calls: BTreeMap<u64, Call>,
    finish: Option<String>,
}

impl Reading {
    fn apply(&mut self, chunk: &Value, deltas: &Deltas) {
        // The usage chunk at the end has no choices.
        let Some(choice) = chunk["choices"].as_array().and_then(|c| c.first()) else {
            return;
        };
        let delta = &choice["delta"];
        if let Some(text) = delta["content"].as_str().filter(|t| !t.is_empty()) {
            self.text.push_str(text);
            let _ = deltas.send(super::Delta::Text(super::storable(text)));
        }
        for fragment in delta["tool_calls"].as_array().into_iter().flatten() {
            let call = self
                .calls
                .entry(fragment["index"].as_u64().unwrap_or_default())
                .or_default();
            if let Some(id) = fragment["id"].as_str().filter(|i| !i.is_empty()) {
                call.id = id.to_string();
            }
            if let Some(name) = fragment["function"]["name"].as_str().filter(|n| !n.is_empty()) {
                call.name = name.to_string();
            }
            // Most servers send strings; some send a whole call's arguments as an object.
            match &fragment["function"]["arguments"] {
                Value::String(more) => call.arguments.push_str(more),
                Value::Null => {}
                whole => call.arguments = whole.to_string(),
            }
        }
        if let Some(reason) = choice["finish_reason"].as_str() {
            self.finish = Some(reason.to_string());
        }
    }

    fn reply(self) -> ModelReply {
        let mut blocks = Vec::new();
        if !self.text.is_empty() {
            blocks.push(Block::Text(super::storable(&self.text)));
        }
        for (index, call) in self.calls {
            let input = if call.arguments.trim().is_empty() {
                json!({})
            } else {
                serde_json::from_str(&call.arguments).unwrap_or_else(|_| json!({"_unparsed": call.arguments}))
            };
            blocks.push(Block::ToolUse {
                id: if call.id.is_empty() {
                    format!("call_{index}")
                } else {
                    call.id
                },
                name: call.name,
                input: super::storable_json(input),
            });
        }
        let has_calls = blocks.iter().any(|b| matches!(b, Block::ToolUse { .. }));
        ModelReply {
            blocks,
            stop: match self.finish.as_deref() {
                Some("tool_calls") => Stop::ToolUse,
                // Some servers end a tool call with "stop".
                Some("stop") | None if has_calls => Stop::ToolUse,
                Some("stop") | None => Stop::EndTurn,
                Some("length") => Stop::MaxTokens,
                Some(other) => Stop::Other(other.to_string()),
            },
        }
    }
}
