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
    pub usage: Usage,
}

/// What a run used, as its result line says: tokens read (with the cache's) and written, and
/// its cost in dollars.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: f64,
}

/// What the agent's API refusing who we are looks like (no key, a bad key, a lapsed login).
const LOGIN_ERRORS: &[&str] = &[
    "not logged in",
    "please run /login",
    "invalid api key",
    "invalid x-api-key",
    "authentication_error",
    "oauth token has expired",
];

/// The fix for a login error, named in the job's error.
pub const LOGIN_FIX: &str = "the agent is not logged in: set ANTHROPIC_API_KEY (an API key) or CLAUDE_CODE_OAUTH_TOKEN (a Claude subscription, from `claude setup-token`) for mainloop";

impl AgentResult {
    /// Worth another attempt: overload, rate limits and server errors.
    pub fn retryable(&self) -> bool {
        !self.is_login_error() && matches!(self.api_error_status, Some(429 | 500..=599))
    }

    /// The API does not accept our credentials: no retry can help until a person fixes them.
    pub fn is_login_error(&self) -> bool {
        let said = format!("{} {}", self.text, self.errors.join(" ")).to_lowercase();
        self.api_error_status == Some(401) || LOGIN_ERRORS.iter().any(|needle| said.contains(needle))
    }

    /// `--resume` named a session the CLI does not have (a new machine, a cleaned home).
    pub fn resume_failed(&self) -> bool {
        self.errors.iter().any(|e| e.starts_with("No conversation found"))
    }

    /// The error in the result's own words: "Claude API error 400: messages: text content blocks
    /// must be non-empty" — never the `subtype`, which reads "success" even on API errors.
    pub fn describe(&self) -> String {
        if self.is_login_error() {
            let said = if self.text.is_empty() {
                self.errors.join("; ")
            } else {
                self.text.clone()
            };
            return format!("{LOGIN_FIX} (Claude Code said: {said})");
        }
        let mut said: Vec<String> = Vec::new();
        if !self.text.is_empty() {
            said.push(self.text.clone());
        }
        said.extend(self.errors.iter().cloned());
        let said = said.join("; ");
        match self.api_error_status {
            Some(status) => {
                let prefix = format!("API Error: {status}");
                let message = said.strip_prefix(&prefix).map_or(said.as_str(), str::trim);
                format!("Claude API error {status}: {message}")
            }
            None if said.is_empty() => format!("the agent ended with {}", self.subtype),
            None => format!("the agent ended with an error: {said}"),
        }
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
            usage: Usage {
                input_tokens: [
                    "input_tokens",
                    "cache_creation_input_tokens",
                    "cache_read_input_tokens",
                ]
                .iter()
                .filter_map(|kind| value["usage"][kind].as_u64())
                .sum(),
                output_tokens: value["usage"]["output_tokens"].as_u64().unwrap_or(0),
                cost_usd: value["total_cost_usd"].as_f64().unwrap_or(0.0),
            },
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

#[cfg(test)]
mod tests {
    use super::{AgentLine, Usage, parse_line};

    #[test]
    fn a_result_line_says_what_the_run_used() {
        // The real CLI's result line (fixtures/claude-code), cut to the fields read here.
        let line =
            r#"{"type":"result","subtype":"success","is_error":false,"result":"Done.","session_id":"s1",
            "total_cost_usd":0.0018,"usage":{"input_tokens":300,"cache_creation_input_tokens":20,
            "cache_read_input_tokens":5,"output_tokens":60}}"#
                .replace('\n', "");
        let Ok(lines) = parse_line(&line) else {
            panic!("the result line did not parse");
        };
        let [AgentLine::Result(result)] = lines.as_slice() else {
            panic!("not one result: {lines:?}");
        };
        assert_eq!(
            result.usage,
            Usage {
                input_tokens: 325,
                output_tokens: 60,
                cost_usd: 0.0018
            }
        );
    }
}
