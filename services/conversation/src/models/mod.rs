//! Chat models behind one trait. A turn goes out in our own neutral shape ([`ModelRequest`]:
//! system text, messages of text / tool-use / tool-result blocks, tools with JSON schemas) and
//! comes back as [`ModelReply`] (the same blocks and why the model stopped), while the text
//! streams out through [`Deltas`] as it arrives. [`ChatModel::converse`] runs turns until the
//! model answers in words, running the tools it calls through a [`ToolRunner`]; a model that
//! runs its own loop (the Claude Code CLI) does that its own way. Each provider is one module
//! that speaks its wire format: `anthropic` (the Messages API, SSE), `openai` (any
//! OpenAI-compatible chat-completions endpoint: Ollama, vLLM, llama.cpp, hosted) and
//! `claude_code` (the Claude Code CLI on a subscription, its own tools off and ours offered over
//! MCP). Busy answers before the stream starts (429, 5xx, 529) are retried as the provider asks
//! (`retry-after`); anything after it has started is an error the person sees, never a silent
//! retry that would repeat text.

pub mod anthropic;
pub mod claude_code;
pub mod openai;

use std::time::Duration;

use futures_util::future::BoxFuture;
use serde_json::Value;

/// Who said a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    User,
    Assistant,
}

/// One piece of a message.
#[derive(Debug, Clone, PartialEq)]
pub enum Block {
    Text(String),
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
    ToolResult {
        tool_use_id: String,
        content: String,
        is_error: bool,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub role: Role,
    pub blocks: Vec<Block>,
}

impl Message {
    pub fn text(role: Role, text: &str) -> Self {
        Message {
            role,
            blocks: vec![Block::Text(text.to_string())],
        }
    }
}

/// A tool the model may call: its name, what it is for, and its input as a JSON schema.
#[derive(Debug, Clone, PartialEq)]
pub struct Tool {
    pub name: String,
    pub description: String,
    pub schema: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelRequest {
    pub system: String,
    pub messages: Vec<Message>,
    /// The same for every turn, so shared rather than built again.
    pub tools: std::sync::Arc<[Tool]>,
    pub max_tokens: u32,
}

/// Why the model stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    EndTurn,
    ToolUse,
    MaxTokens,
    Other(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelReply {
    pub blocks: Vec<Block>,
    pub stop: Stop,
}

impl ModelReply {
    pub fn text(&self) -> Vec<&str> {
        self.blocks
            .iter()
            .filter_map(|b| match b {
                Block::Text(text) => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }
}

/// What a model says as it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delta {
    /// A fragment of text, in order.
    Text(String),
    /// The model starts another turn (after tool calls): its text is a new paragraph.
    NewTurn,
}

/// Where text goes as it arrives.
pub type Deltas = tokio::sync::mpsc::UnboundedSender<Delta>;

/// What a tool says back to the model; `is_error` marks a refusal or failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolOutcome {
    pub content: String,
    pub is_error: bool,
}

impl ToolOutcome {
    pub fn done(content: impl Into<String>) -> Self {
        ToolOutcome {
            content: content.into(),
            is_error: false,
        }
    }

    pub fn refused(content: impl Into<String>) -> Self {
        ToolOutcome {
            content: content.into(),
            is_error: true,
        }
    }
}

/// Runs the tools a model calls (for one person, in one conversation).
pub trait ToolRunner: Send + Sync {
    fn run<'a>(&'a self, name: &'a str, input: &'a Value) -> BoxFuture<'a, ToolOutcome>;
}

/// Rounds of tool calls in one reply before the model is stopped.
pub const MAX_TOOL_ROUNDS: u32 = 4;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("the chat model is not configured: {0}")]
    NotConfigured(String),
    #[error("the chat model answered {status} {kind}: {message}")]
    Api {
        status: u16,
        kind: String,
        message: String,
    },
    #[error("the chat model could not be reached: {0}")]
    Transport(String),
    #[error("the chat model's answer could not be read: {0}")]
    Protocol(String),
    #[error("the Claude Code CLI said: {0}")]
    Cli(String),
    #[error("the model kept calling tools")]
    KeptCallingTools,
}

/// A chat model: one turn, streamed.
pub trait ChatModel: Send + Sync {
    /// Which provider and model, for logs ("anthropic claude-sonnet-4-5").
    fn describe(&self) -> String;

    /// Runs one turn; text fragments go to `deltas` as they arrive.
    fn turn<'a>(
        &'a self,
        request: &'a ModelRequest,
        deltas: &'a Deltas,
    ) -> BoxFuture<'a, Result<ModelReply, ModelError>>;

    /// Runs turns until the model answers in words, running the tools it calls with `tools`
    /// (at most [`MAX_TOOL_ROUNDS`] rounds); each turn's text goes to `deltas`.
    fn converse<'a>(
        &'a self,
        request: ModelRequest,
        deltas: &'a Deltas,
        tools: &'a dyn ToolRunner,
    ) -> BoxFuture<'a, Result<(), ModelError>> {
        Box::pin(take_turns(self, request, deltas, tools))
    }
}

/// The loop of a model that answers one turn at a time: its tool calls are run and their
/// results sent back until it answers in words.
async fn take_turns<M: ChatModel + ?Sized>(
    model: &M,
    mut request: ModelRequest,
    deltas: &Deltas,
    tools: &dyn ToolRunner,
) -> Result<(), ModelError> {
    for _ in 0..MAX_TOOL_ROUNDS {
        let _ = deltas.send(Delta::NewTurn);
        let reply = model.turn(&request, deltas).await?;
        let calls: Vec<(&String, &String, &Value)> = reply
            .blocks
            .iter()
            .filter_map(|b| match b {
                Block::ToolUse { id, name, input } => Some((id, name, input)),
                _ => None,
            })
            .collect();
        if reply.stop != Stop::ToolUse || calls.is_empty() {
            return Ok(());
        }
        let mut results = Vec::new();
        for (id, name, input) in calls {
            let outcome = tools.run(name, input).await;
            results.push(Block::ToolResult {
                tool_use_id: id.clone(),
                content: outcome.content,
                is_error: outcome.is_error,
            });
        }
        request.messages.push(Message {
            role: Role::Assistant,
            blocks: reply.blocks.clone(),
        });
        request.messages.push(Message {
            role: Role::User,
            blocks: results,
        });
    }
    Err(ModelError::KeptCallingTools)
}

/// Attempts of a request the provider answered busy, before the error reaches the person.
const ATTEMPTS: u32 = 3;

/// Sends `request` until it is answered with 2xx, retrying busy answers (429, 500, 502, 503,
/// 529) after `retry-after` when given, else with doubling backoff from 500 ms. Any other status
/// is read by `refusal` into the error the person sees.
async fn send_until_accepted(
    request: impl Fn() -> reqwest::RequestBuilder,
    refusal: impl Fn(u16, &Value) -> ModelError,
) -> Result<reqwest::Response, ModelError> {
    let mut delay = Duration::from_millis(500);
    let mut attempt = 1;
    loop {
        let response = request()
            .send()
            .await
            .map_err(|e| ModelError::Transport(e.to_string()))?;
        let status = response.status().as_u16();
        if response.status().is_success() {
            return Ok(response);
        }
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(|s| Duration::from_secs_f64(s.min(60.0)));
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let error = refusal(status, &body);
        if !matches!(status, 429 | 500 | 502 | 503 | 529) || attempt == ATTEMPTS {
            return Err(error);
        }
        tracing::warn!(%error, attempt, "chat model busy; retrying");
        tokio::time::sleep(retry_after.unwrap_or(delay)).await;
        delay *= 2;
        attempt += 1;
    }
}

/// Makes model text storable where it enters (a NUL would fail its row or poison a task).
fn storable(text: &str) -> String {
    let mut value = Value::String(text.to_string());
    if mainloop_events::text::make_storable(&mut value) > 0 {
        tracing::warn!("the chat model's text held NUL characters; shown as ␀");
    }
    value.as_str().unwrap_or_default().to_string()
}

fn storable_json(mut value: Value) -> Value {
    if mainloop_events::text::make_storable(&mut value) > 0 {
        tracing::warn!("the chat model's tool input held NUL characters; shown as ␀");
    }
    value
}
