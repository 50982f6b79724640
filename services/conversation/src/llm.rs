//! The Anthropic Messages API (`POST {base}/v1/messages`), non-streaming, with tools. Errors keep
//! the API's own type and message; overload and rate limits are retried with backoff.

use std::time::Duration;

use mainloop_runtime::Secret;
use serde_json::{Value, json};

#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    #[error("the chat model is not configured: {0}")]
    NotConfigured(&'static str),
    #[error("the chat model answered {status} {kind}: {message}")]
    Api {
        status: u16,
        kind: String,
        message: String,
    },
    #[error("the chat model could not be reached: {0}")]
    Transport(String),
}

#[derive(Clone)]
pub struct Anthropic {
    http: reqwest::Client,
    base: String,
    key: Option<Secret>,
    pub model: String,
}

const ATTEMPTS: u32 = 3;

impl Anthropic {
    pub fn new(base: &str, key: Option<Secret>, model: &str) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .unwrap_or_default();
        Anthropic {
            http,
            base: base.trim_end_matches('/').to_string(),
            key,
            model: model.to_string(),
        }
    }

    /// One model turn: returns the response message (`content`, `stop_reason`, …).
    pub async fn complete(&self, system: &str, messages: &[Value], tools: &Value) -> Result<Value, LlmError> {
        let Some(key) = &self.key else {
            return Err(LlmError::NotConfigured("ANTHROPIC_API_KEY is not set"));
        };
        let body = json!({"model": self.model, "max_tokens": 2048, "system": system, "messages": messages, "tools": tools});
        let mut delay = Duration::from_millis(500);
        for attempt in 1..=ATTEMPTS {
            let response = self
                .http
                .post(format!("{}/v1/messages", self.base))
                .header("x-api-key", key.expose())
                .header("anthropic-version", "2023-06-01")
                .json(&body)
                .send()
                .await
                .map_err(|e| LlmError::Transport(e.to_string()))?;
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .map(Duration::from_secs);
            let mut value: Value = response
                .json()
                .await
                .map_err(|e| LlmError::Transport(e.to_string()))?;
            if (200..300).contains(&status) {
                // The model's text (replies, tool inputs such as a task description) is made
                // storable where it enters: a NUL would fail its row or poison the task.
                let cleaned = mainloop_events::text::make_storable(&mut value);
                if cleaned > 0 {
                    tracing::warn!(cleaned, "the chat model's reply held NUL characters; shown as ␀");
                }
                return Ok(value);
            }
            let error = LlmError::Api {
                status,
                kind: value["error"]["type"].as_str().unwrap_or("unknown").to_string(),
                message: value["error"]["message"].as_str().unwrap_or_default().to_string(),
            };
            if !matches!(status, 429 | 500 | 529) || attempt == ATTEMPTS {
                return Err(error);
            }
            tracing::warn!(%error, attempt, "chat model busy; retrying");
            tokio::time::sleep(retry_after.unwrap_or(delay)).await;
            delay *= 2;
        }
        Err(LlmError::Transport("no attempt made".into()))
    }
}
