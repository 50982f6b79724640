//! Claude Code's headless SDK protocol (`--input-format stream-json --output-format stream-json
//! --permission-prompt-tool stdio`), as recorded from CLI 2.1.197 in `tests/fixtures/claude-code`:
//! one JSON object per line each way. We read what the agent says and does, answer its
//! permission prompts, and take the plan (ExitPlanMode), the questions (AskUserQuestion) and the
//! outcome (the one `result` line) from it.

use serde_json::{Value, json};

/// What one stdout line means to the supervisor.
#[derive(Debug, Clone, PartialEq)]
pub enum AgentLine {
    Init {
        session_id: String,
        model: String,
    },
    /// A text block the model wrote.
    Text(String),
    /// A tool the model called, summarised for the log.
    ToolUse {
        name: String,
        summary: String,
    },
    ToolResult {
        is_error: bool,
        summary: String,
    },
    /// The CLI asks whether a tool may run; it waits for our answer on stdin.
    Permission {
        request_id: String,
        tool_name: String,
        input: Value,
    },
    /// The API was retried (overload, rate limit).
    ApiRetry(String),
    Result(AgentResult),
    /// Anything else (partial stream events, status lines, new kinds): ignored.
    Other,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct AgentResult {
    /// The outcome is `is_error`, never `subtype` alone: a 529 ends as `success` with `is_error`.
    pub is_error: bool,
    pub subtype: String,
    pub text: String,
    pub api_error_status: Option<u64>,
    pub session_id: String,
    pub errors: Vec<String>,
    pub permission_denials: usize,
}

impl AgentResult {
    /// Worth another attempt: overload, rate limits and server errors.
    pub fn retryable(&self) -> bool {
        matches!(self.api_error_status, Some(429 | 500..=599))
    }

    pub fn describe(&self) -> String {
        let mut parts = vec![format!("agent ended with {}", self.subtype)];
        if let Some(status) = self.api_error_status {
            parts.push(format!("API status {status}"));
        }
        if !self.text.is_empty() {
            parts.push(self.text.clone());
        }
        parts.extend(self.errors.iter().cloned());
        parts.join(": ")
    }
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_string()
}

fn summary(value: &Value) -> String {
    let raw = match value {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        other => other.to_string(),
    };
    let one_line = raw.replace('\n', " ⏎ ");
    if one_line.chars().count() > 300 {
        one_line.chars().take(300).collect::<String>() + "…"
    } else {
        one_line
    }
}

/// Parses one stdout line. A line that is not JSON is an error (the caller logs it raw).
pub fn parse_line(line: &str) -> Result<Vec<AgentLine>, serde_json::Error> {
    let value: Value = serde_json::from_str(line)?;
    let kind = value["type"].as_str().unwrap_or_default();
    let subtype = value["subtype"].as_str().unwrap_or_default();
    Ok(match (kind, subtype) {
        ("system", "init") => vec![AgentLine::Init {
            session_id: text(&value["session_id"]),
            model: text(&value["model"]),
        }],
        ("system", "api_retry") => vec![AgentLine::ApiRetry(value.to_string())],
        ("assistant", _) => value["message"]["content"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|block| match block["type"].as_str() {
                Some("text") => AgentLine::Text(text(&block["text"])),
                Some("tool_use") => AgentLine::ToolUse {
                    name: text(&block["name"]),
                    summary: summary(&block["input"]),
                },
                _ => AgentLine::Other,
            })
            .collect(),
        ("user", _) => value["message"]["content"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|block| block["type"] == "tool_result")
            .map(|block| AgentLine::ToolResult {
                is_error: block["is_error"].as_bool().unwrap_or(false),
                summary: summary(&block["content"]),
            })
            .collect(),
        ("control_request", _) if value["request"]["subtype"] == "can_use_tool" => {
            vec![AgentLine::Permission {
                request_id: text(&value["request_id"]),
                tool_name: text(&value["request"]["tool_name"]),
                input: value["request"]["input"].clone(),
            }]
        }
        ("result", _) => vec![AgentLine::Result(AgentResult {
            is_error: value["is_error"].as_bool().unwrap_or(true),
            subtype: subtype.to_string(),
            text: text(&value["result"]),
            api_error_status: value["api_error_status"].as_u64(),
            session_id: text(&value["session_id"]),
            errors: value["errors"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| e.as_str().map_or_else(|| e.to_string(), str::to_string))
                .collect(),
            permission_denials: value["permission_denials"].as_array().map_or(0, Vec::len),
        })],
        _ => vec![AgentLine::Other],
    })
}

/// The prompt, as the user turn the CLI reads on stdin.
pub fn user_turn(prompt: &str) -> String {
    json!({"type": "user", "message": {"role": "user", "content": prompt}, "parent_tool_use_id": null, "session_id": ""}).to_string()
}

pub fn allow(request_id: &str, input: &Value) -> String {
    json!({"type": "control_response", "response": {"subtype": "success", "request_id": request_id,
        "response": {"behavior": "allow", "updatedInput": input}}})
    .to_string()
}

pub fn deny(request_id: &str, message: &str) -> String {
    json!({"type": "control_response", "response": {"subtype": "success", "request_id": request_id,
        "response": {"behavior": "deny", "message": message}}})
    .to_string()
}

/// The questions of an AskUserQuestion call: `{questions: [{question, header, options: [{label,
/// description}], multiSelect}]}`.
pub fn questions(input: &Value) -> Vec<mainloop_events::v1::Question> {
    input["questions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|q| mainloop_events::v1::Question {
            id: String::new(),
            header: text(&q["header"]),
            question: text(&q["question"]),
            options: q["options"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|o| mainloop_events::v1::QuestionOption {
                    label: text(&o["label"]),
                    description: text(&o["description"]),
                })
                .collect(),
            multi_select: q["multiSelect"].as_bool().unwrap_or(false),
        })
        .collect()
}
