//! The Anthropic Messages API (`POST {base}/v1/messages`, `stream: true`). Text deltas go out as
//! they arrive; a tool call's input is joined from its `input_json_delta` fragments and parsed at
//! its `content_block_stop`; an `error` event after the 200 is an error; `ping` and unknown
//! events are ignored, as the API asks.

use std::collections::BTreeMap;
use std::time::Duration;

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use mainloop_runtime::Secret;
use serde::Serialize;
use serde_json::{Value, json};

use super::{Block, ChatModel, Deltas, Message, ModelError, ModelReply, ModelRequest, Role, Stop, Tool};

pub struct Anthropic {
    http: reqwest::Client,
    base: String,
    key: Option<Secret>,
    model: String,
}

impl Anthropic {
    pub fn new(base: &str, key: Option<Secret>, model: &str) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(120))
            .build()
            .unwrap_or_default();
        Anthropic {
            http,
            base: base.trim_end_matches('/').to_string(),
            key,
            model: model.to_string(),
        }
    }

    async fn stream(&self, request: &ModelRequest, deltas: &Deltas) -> Result<ModelReply, ModelError> {
        let Some(key) = &self.key else {
            return Err(ModelError::NotConfigured("ANTHROPIC_API_KEY is not set".into()));
        };
        let body = Body {
            model: &self.model,
            max_tokens: request.max_tokens,
            system: &request.system,
            messages: request.messages.iter().map(WireMessage::from).collect(),
            tools: request.tools.iter().map(WireTool::from).collect(),
            stream: true,
        };
        let response = super::send_until_accepted(
            || {
                self.http
                    .post(format!("{}/v1/messages", self.base))
                    .header("x-api-key", key.expose())
                    .header("anthropic-version", "2023-06-01")
                    .json(&body)
            },
            |status, body| ModelError::Api {
                status,
                kind: body["error"]["type"].as_str().unwrap_or("unknown").to_string(),
                message: body["error"]["message"].as_str().unwrap_or_default().to_string(),
            },
        )
        .await?;
        let mut events = response.bytes_stream().eventsource();
        let mut reading = Reading::default();
        while let Some(event) = events.next().await {
            let event = event.map_err(|e| ModelError::Transport(e.to_string()))?;
            let data: Value = serde_json::from_str(&event.data)
                .map_err(|e| ModelError::Protocol(format!("{}: {e}", event.event)))?;
            if reading.apply(&data, deltas)? {
                return Ok(reading.reply());
            }
        }
        Err(ModelError::Protocol(
            "the stream ended before message_stop".into(),
        ))
    }
}

impl ChatModel for Anthropic {
    fn describe(&self) -> String {
        format!("anthropic {}", self.model)
    }

    fn turn<'a>(
        &'a self,
        request: &'a ModelRequest,
        deltas: &'a Deltas,
    ) -> BoxFuture<'a, Result<ModelReply, ModelError>> {
        Box::pin(self.stream(request, deltas))
    }
}

/// The request as it goes on the wire, borrowed from the [`ModelRequest`]: no text or schema
/// is copied on the way to the first word, only lists of references made.
#[derive(Serialize)]
struct Body<'a> {
    model: &'a str,
    max_tokens: u32,
    system: &'a str,
    messages: Vec<WireMessage<'a>>,
    tools: Vec<WireTool<'a>>,
    stream: bool,
}

#[derive(Serialize)]
struct WireMessage<'a> {
    role: &'static str,
    content: Vec<WireBlock<'a>>,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireBlock<'a> {
    Text {
        text: &'a str,
    },
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: &'a Value,
    },
    ToolResult {
        tool_use_id: &'a str,
        content: &'a str,
        is_error: bool,
    },
}

#[derive(Serialize)]
struct WireTool<'a> {
    name: &'a str,
    description: &'a str,
    input_schema: &'a Value,
}

impl<'a> From<&'a Message> for WireMessage<'a> {
    fn from(message: &'a Message) -> Self {
        let content = message
            .blocks
            .iter()
            .map(|block| match block {
                Block::Text(text) => WireBlock::Text { text },
                Block::ToolUse { id, name, input } => WireBlock::ToolUse { id, name, input },
                Block::ToolResult {
                    tool_use_id,
                    content,
                    is_error,
                } => WireBlock::ToolResult {
                    tool_use_id,
                    content,
                    is_error: *is_error,
                },
            })
            .collect();
        let role = match message.role {
            Role::User => "user",
            Role::Assistant => "assistant",
        };
        WireMessage { role, content }
    }
}

impl<'a> From<&'a Tool> for WireTool<'a> {
    fn from(tool: &'a Tool) -> Self {
        WireTool {
            name: &tool.name,
            description: &tool.description,
            input_schema: &tool.schema,
        }
    }
}

/// A block as it arrives.
enum Partial {
    Text(String),
    Tool { id: String, name: String, json: String },
    Other,
}

/// The message being read from the stream.
#[derive(Default)]
struct Reading {
    blocks: BTreeMap<u64, Partial>,
    done: Vec<(u64, Block)>,
    stop: Option<String>,
}

impl Reading {
    /// Applies one event; `Ok(true)` at `message_stop`.
    fn apply(&mut self, data: &Value, deltas: &Deltas) -> Result<bool, ModelError> {
        let index = data["index"].as_u64().unwrap_or_default();
        match data["type"].as_str().unwrap_or_default() {
            "content_block_start" => {
                let block = &data["content_block"];
                let partial = match block["type"].as_str() {
                    Some("text") => {
                        let text = block["text"].as_str().unwrap_or_default().to_string();
                        if !text.is_empty() {
                            let _ = deltas.send(super::Delta::Text(super::storable(&text)));
                        }
                        Partial::Text(text)
                    }
                    Some("tool_use") => Partial::Tool {
                        id: block["id"].as_str().unwrap_or_default().to_string(),
                        name: block["name"].as_str().unwrap_or_default().to_string(),
                        json: String::new(),
                    },
                    _ => Partial::Other,
                };
                self.blocks.insert(index, partial);
            }
            "content_block_delta" => {
                let delta = &data["delta"];
                match (self.blocks.get_mut(&index), delta["type"].as_str()) {
                    (Some(Partial::Text(text)), Some("text_delta")) => {
                        let fragment = delta["text"].as_str().unwrap_or_default();
                        text.push_str(fragment);
                        let _ = deltas.send(super::Delta::Text(super::storable(fragment)));
                    }
                    (Some(Partial::Tool { json, .. }), Some("input_json_delta")) => {
                        json.push_str(delta["partial_json"].as_str().unwrap_or_default());
                    }
                    _ => {}
                }
            }
            "content_block_stop" => {
                if let Some(partial) = self.blocks.remove(&index) {
                    let block = match partial {
                        Partial::Text(text) => Block::Text(super::storable(&text)),
                        Partial::Tool { id, name, json } => {
                            let input = if json.trim().is_empty() {
                                json!({})
                            } else {
                                serde_json::from_str(&json).map_err(|e| {
                                    ModelError::Protocol(format!(
                                        "the input of tool call {name} is not JSON: {e}"
                                    ))
                                })?
                            };
                            Block::ToolUse {
                                id,
                                name,
                                input: super::storable_json(input),
                            }
                        }
                        Partial::Other => return Ok(false),
                    };
                    self.done.push((index, block));
                }
            }
            "message_delta" => {
                if let Some(stop) = data["delta"]["stop_reason"].as_str() {
                    self.stop = Some(stop.to_string());
                }
            }
            "message_stop" => return Ok(true),
            "error" => {
                return Err(ModelError::Api {
                    status: 200,
                    kind: data["error"]["type"].as_str().unwrap_or("unknown").to_string(),
                    message: data["error"]["message"].as_str().unwrap_or_default().to_string(),
                });
            }
            // message_start, ping, and whatever the API adds later.
            _ => {}
        }
        Ok(false)
    }

    fn reply(mut self) -> ModelReply {
        self.done.sort_by_key(|(index, _)| *index);
        ModelReply {
            blocks: self.done.into_iter().map(|(_, block)| block).collect(),
            stop: match self.stop.as_deref() {
                Some("end_turn") | None => Stop::EndTurn,
                Some("tool_use") => Stop::ToolUse,
                Some("max_tokens") => Stop::MaxTokens,
                Some(other) => Stop::Other(other.to_string()),
            },
        }
    }
}
