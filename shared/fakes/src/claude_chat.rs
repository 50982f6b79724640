//! The fake Claude Code CLI with its built-in tools off (`--tools ""`): a chat, as mainloop's
//! main thread runs it. It does what the real CLI does in that mode (recorded with 2.1.197):
//! starts the MCP servers of `--mcp-config` over stdio and lists their tools as
//! `mcp__<server>__<tool>`, sends the prompt from stdin with `--system-prompt` to the Messages API
//! at `ANTHROPIC_BASE_URL` (so the scripted fake model decides what is said), calls the tools the
//! model asks for through MCP — only those `--allowedTools` allows — and loops until the model
//! answers in words or `--max-turns` is reached. With `--include-partial-messages` each reply is
//! also printed as `stream_event` lines, in the order the real CLI prints them.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use serde_json::{Value, json};

/// One MCP server the CLI started, speaking JSON-RPC over its stdio.
struct Server {
    name: String,
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
    next_id: u64,
}

impl Server {
    fn start(name: &str, spec: &Value) -> Result<Server, String> {
        let command = spec["command"].as_str().ok_or("no command")?;
        let args: Vec<&str> = spec["args"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let mut child = Command::new(command)
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("{command}: {e}"))?;
        let (Some(input), Some(output)) = (child.stdin.take(), child.stdout.take()) else {
            return Err("no stdio".into());
        };
        let mut server = Server {
            name: name.to_string(),
            child,
            input,
            output: BufReader::new(output),
            next_id: 0,
        };
        server.request(
            "initialize",
            json!({"protocolVersion": "2025-11-25", "capabilities": {"roots": {}},
                "clientInfo": {"name": "claude-code", "version": "2.1.197"}}),
        )?;
        server.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))?;
        Ok(server)
    }

    fn send(&mut self, message: &Value) -> Result<(), String> {
        writeln!(self.input, "{message}")
            .and_then(|()| self.input.flush())
            .map_err(|e| e.to_string())
    }

    fn request(&mut self, method: &str, params: Value) -> Result<Value, String> {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))?;
        let mut line = String::new();
        loop {
            line.clear();
            if self.output.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
                return Err(format!("MCP server {} closed", self.name));
            }
            let Ok(answer) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if answer["id"] == id {
                return match answer.get("error") {
                    Some(error) => Err(error["message"].as_str().unwrap_or("error").to_string()),
                    None => Ok(answer["result"].clone()),
                };
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A tool as the model sees it, and where it lives.
struct Offered {
    server: usize,
    tool: String,
    spec: Value,
}

struct Chat<'a> {
    args: &'a [String],
    session: String,
    model: String,
    partial: bool,
    out: std::io::StdoutLock<'static>,
}

impl Chat<'_> {
    fn emit(&mut self, value: Value) {
        let _ = writeln!(self.out, "{value}");
        let _ = self.out.flush();
    }

    fn result(&mut self, subtype: &str, text: &str, is_error: bool, turns: u32, status: Option<u16>) {
        let line = json!({"type": "result", "subtype": subtype, "is_error": is_error, "api_error_status": status,
            "duration_ms": 5, "duration_api_ms": 3, "num_turns": turns, "result": text, "stop_reason": "end_turn",
            "session_id": self.session, "total_cost_usd": 0.0, "usage": {"input_tokens": 100, "output_tokens": 20},
            "permission_denials": [], "uuid": uuid::Uuid::now_v7().to_string()});
        self.emit(line);
    }

    /// Prints the model's message as the real CLI does: stream events around each block, the
    /// `assistant` line for a block right after its deltas.
    fn say(&mut self, message: &Value) {
        let event = |e: Value, session: &str| {
            json!({"type": "stream_event", "event": e, "session_id": session, "parent_tool_use_id": null,
                "uuid": uuid::Uuid::now_v7().to_string()})
        };
        let session = self.session.clone();
        if self.partial {
            let mut start = message.clone();
            start["content"] = json!([]);
            start["stop_reason"] = Value::Null;
            self.emit(event(
                json!({"type": "message_start", "message": start}),
                &session,
            ));
        }
        for (index, block) in message["content"].as_array().into_iter().flatten().enumerate() {
            if self.partial {
                let mut empty = block.clone();
                if block["type"] == "text" {
                    empty["text"] = json!("");
                }
                self.emit(event(
                    json!({"type": "content_block_start", "index": index, "content_block": empty}),
                    &session,
                ));
                if let Some(text) = block["text"].as_str() {
                    for piece in halves(text) {
                        self.emit(event(
                            json!({"type": "content_block_delta", "index": index,
                            "delta": {"type": "text_delta", "text": piece}}),
                            &session,
                        ));
                    }
                }
            }
            let mut one = message.clone();
            one["content"] = json!([block]);
            one["stop_reason"] = Value::Null;
            self.emit(
                json!({"type": "assistant", "message": one, "parent_tool_use_id": null,
                "session_id": session, "uuid": uuid::Uuid::now_v7().to_string()}),
            );
            if self.partial {
                self.emit(event(
                    json!({"type": "content_block_stop", "index": index}),
                    &session,
                ));
            }
        }
        if self.partial {
            self.emit(event(
                json!({"type": "message_delta", "delta": {"stop_reason": message["stop_reason"]},
                "usage": {"output_tokens": 20}}),
                &session,
            ));
            self.emit(event(json!({"type": "message_stop"}), &session));
        }
    }

    fn allowed(&self, tool: &str) -> bool {
        let rules = super::claude::flag(self.args, "--allowedTools")
            .or(super::claude::flag(self.args, "--allowed-tools"))
            .unwrap_or_default();
        rules
            .split([',', ' '])
            .map(str::trim)
            .any(|rule| rule == tool || tool.strip_prefix(rule).is_some_and(|rest| rest.starts_with("__")))
    }
}

/// A text in two pieces (on a character boundary), as a stream delivers it.
fn halves(text: &str) -> Vec<&str> {
    let mut middle = text.len() / 2;
    while !text.is_char_boundary(middle) {
        middle += 1;
    }
    [&text[..middle], &text[middle..]]
        .into_iter()
        .filter(|p| !p.is_empty())
        .collect()
}

/// Runs the chat mode; returns the exit code.
pub fn main(args: &[String]) -> i32 {
    let flag = |name| super::claude::flag(args, name);
    if args.iter().any(|a| a == "--include-partial-messages")
        && flag("--output-format") != Some("stream-json")
    {
        eprintln!("Error: --include-partial-messages requires --print and --output-format=stream-json");
        return 1;
    }
    let mut prompt = String::new();
    let _ = std::io::stdin().read_to_string(&mut prompt);
    let model = match flag("--model").unwrap_or("sonnet") {
        "sonnet" => "claude-sonnet-5",
        other => other,
    }
    .to_string();
    let mut servers = Vec::new();
    let mut offered = Vec::new();
    let mut statuses = Vec::new();
    if let Some(config) = flag("--mcp-config").and_then(|c| serde_json::from_str::<Value>(c).ok()) {
        for (name, spec) in config["mcpServers"].as_object().into_iter().flatten() {
            let started = Server::start(name, spec)
                .and_then(|mut s| s.request("tools/list", json!({})).map(|t| (s, t)));
            match started {
                Ok((server, listed)) => {
                    for tool in listed["tools"].as_array().into_iter().flatten() {
                        let tool_name = tool["name"].as_str().unwrap_or_default();
                        offered.push(Offered {
                            server: servers.len(),
                            tool: tool_name.to_string(),
                            spec: json!({"name": format!("mcp__{name}__{tool_name}"),
                                "description": tool["description"], "input_schema": tool["inputSchema"]}),
                        });
                    }
                    statuses.push(json!({"name": name, "status": "connected"}));
                    servers.push(server);
                }
                Err(err) => {
                    eprintln!("MCP server {name} failed: {err}");
                    statuses.push(json!({"name": name, "status": "failed"}));
                }
            }
        }
    }
    let mut chat = Chat {
        args,
        session: uuid::Uuid::now_v7().to_string(),
        model: model.clone(),
        partial: args.iter().any(|a| a == "--include-partial-messages"),
        out: std::io::stdout().lock(),
    };
    let tool_names: Vec<&Value> = offered.iter().map(|o| &o.spec["name"]).collect();
    chat.emit(json!({"type": "system", "subtype": "init", "cwd": std::env::current_dir().unwrap_or_default(),
        "session_id": chat.session, "tools": tool_names, "mcp_servers": statuses, "model": model,
        "permissionMode": "default", "apiKeySource": "ANTHROPIC_API_KEY", "claude_code_version": "2.1.197 (fake)",
        "uuid": uuid::Uuid::now_v7().to_string()}));
    let key = [
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_AUTH_TOKEN",
        "CLAUDE_CODE_OAUTH_TOKEN",
    ]
    .iter()
    .find_map(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
    .unwrap_or_default();
    if key.is_empty() {
        chat.result("success", "Not logged in · Please run /login", true, 0, None);
        return 1;
    }
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
        return 1;
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let base = std::env::var("ANTHROPIC_BASE_URL").unwrap_or_else(|_| "https://api.anthropic.com".into());
    let max_turns: u32 = flag("--max-turns").and_then(|t| t.parse().ok()).unwrap_or(100);
    let mut messages = vec![json!({"role": "user", "content": [{"type": "text", "text": prompt}]})];
    let tools: Vec<&Value> = offered.iter().map(|o| &o.spec).collect();
    for turn in 1..=max_turns {
        let body = json!({"model": chat.model, "max_tokens": 32000, "stream": false, "messages": messages,
            "system": [{"type": "text", "text": flag("--system-prompt").unwrap_or_default()}], "tools": tools});
        let answer = runtime.block_on(async {
            let response = http
                .post(format!("{base}/v1/messages"))
                .header("x-api-key", &key)
                .header("anthropic-version", "2023-06-01")
                .json(&body)
                .send()
                .await?;
            let status = response.status().as_u16();
            Ok::<_, reqwest::Error>((status, response.json::<Value>().await.unwrap_or_default()))
        });
        let (status, message) = match answer {
            Ok(answer) => answer,
            Err(err) => {
                let text = format!("API Error: Connection error. ({err})");
                chat.result("success", &text, true, turn, None);
                return 1;
            }
        };
        if status != 200 {
            let text = format!(
                "API Error: {status} {}",
                message["error"]["message"].as_str().unwrap_or_default()
            );
            chat.result("success", &text, true, turn, Some(status));
            return 1;
        }
        chat.say(&message);
        let calls: Vec<Value> = message["content"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|b| b["type"] == "tool_use")
            .cloned()
            .collect();
        if calls.is_empty() {
            let text: Vec<&str> = message["content"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|b| b["text"].as_str())
                .collect();
            chat.result("success", &text.join("\n"), false, turn, None);
            return 0;
        }
        let mut results = Vec::new();
        for call in &calls {
            let name = call["name"].as_str().unwrap_or_default();
            let (content, is_error) = match offered.iter().find(|o| o.spec["name"] == name) {
                _ if !chat.allowed(name) => (
                    json!(format!(
                        "Claude requested permissions to use {name}, but you haven't granted it yet."
                    )),
                    true,
                ),
                Some(tool) => match servers[tool.server].request(
                    "tools/call",
                    json!({"name": tool.tool, "arguments": call["input"]}),
                ) {
                    Ok(result) => (result["content"].clone(), result["isError"] == true),
                    Err(err) => (json!(format!("MCP error: {err}")), true),
                },
                None => (json!(format!("No such tool available: {name}")), true),
            };
            results.push(json!({"type": "tool_result", "tool_use_id": call["id"], "content": content, "is_error": is_error}));
        }
        chat.emit(json!({"type": "user", "message": {"role": "user", "content": results}, "parent_tool_use_id": null,
            "session_id": chat.session, "uuid": uuid::Uuid::now_v7().to_string()}));
        messages.push(json!({"role": "assistant", "content": message["content"]}));
        messages.push(json!({"role": "user", "content": results}));
    }
    chat.result("error_max_turns", "", true, max_turns, None);
    1
}
