//! The Claude Code CLI as the chat model, for people with a Claude subscription instead of an
//! API key. Each reply is one headless run (`claude -p --output-format stream-json --verbose
//! --include-partial-messages`) in an empty directory of its own: our system prompt replaces the
//! CLI's (`--system-prompt`), the conversation goes in on stdin, and its built-in tools are off
//! (`--tools ""`: no shell, no files, no network). mainloop's tools are the only ones it has:
//! offered by an MCP server (`mcp`) that the CLI starts over stdio as `<relay> mcp-relay
//! <socket>` — a byte pipe (`relay`) back to a socket this run listens on — so every call runs
//! here, for this person, with the confirmation checks of `tools`. The text streams out from the
//! `stream_event` lines as it is written; the `result` line decides the outcome, and an error
//! result reaches the person in the CLI's own words.

pub mod mcp;
pub mod relay;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

use super::{
    Block, ChatModel, Delta, Deltas, MAX_TOOL_ROUNDS, Message, ModelError, ModelReply, ModelRequest, Role,
    Stop, ToolRunner,
};

/// The name our MCP server has in the CLI: its tools are `mcp__mainloop__<tool>`.
const SERVER: &str = "mainloop";

/// The environment the CLI keeps from ours: what it needs to run and sign in, never the
/// service's other secrets (GitHub tokens, database URLs).
const KEPT_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LC_ALL",
    "TMPDIR",
    "TZ",
    "HTTPS_PROXY",
    "HTTP_PROXY",
    "NO_PROXY",
    "https_proxy",
    "http_proxy",
    "no_proxy",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "NODE_EXTRA_CA_CERTS",
];
const KEPT_PREFIXES: &[&str] = &["ANTHROPIC_", "CLAUDE_", "XDG_"];

/// The Claude Code CLI, run once per reply.
#[derive(Debug, Clone)]
pub struct ClaudeCode {
    program: PathBuf,
    args_prefix: Vec<String>,
    relay: PathBuf,
    model: String,
    env: Vec<(String, String)>,
    timeout: Duration,
}

impl ClaudeCode {
    /// `program` (after `args_prefix`) runs the turns; `relay` is started by the CLI as
    /// `<relay> mcp-relay <socket>` (a mainloop binary).
    pub fn new(program: &Path, args_prefix: &[String], relay: &Path, model: &str) -> Self {
        ClaudeCode {
            program: program.to_path_buf(),
            args_prefix: args_prefix.to_vec(),
            relay: relay.to_path_buf(),
            model: model.to_string(),
            env: Vec::new(),
            timeout: Duration::from_secs(300),
        }
    }

    /// Sets a variable in the CLI's environment (for example `ANTHROPIC_BASE_URL`); an empty
    /// value removes it.
    pub fn with_env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_string(), value.to_string()));
        self
    }

    /// One run of the CLI: `tools` offered through our MCP server when given. Returns the
    /// final text of the `result` line.
    async fn run(
        &self,
        request: &ModelRequest,
        deltas: &Deltas,
        tools: Option<&dyn ToolRunner>,
    ) -> Result<String, ModelError> {
        let scratch = Scratch::new()?;
        let offered = tools.filter(|_| !request.tools.is_empty());
        let socket = scratch.0.join("mcp.sock");
        let listener = match offered {
            Some(_) => Some(
                tokio::net::UnixListener::bind(&socket)
                    .map_err(|e| ModelError::Transport(format!("the tool socket: {e}")))?,
            ),
            None => None,
        };
        let mut child = self.start(request, &scratch.0, offered.map(|_| socket.as_path()))?;
        let serving = async {
            if let (Some(listener), Some(runner)) = (&listener, offered)
                && let Err(err) = mcp::serve(listener, &request.tools, runner).await
            {
                tracing::warn!(error = %err, "mainloop's tools stopped being offered to the CLI");
            }
            std::future::pending::<()>().await
        };
        tokio::select! {
            result = answer(&mut child, deltas) => outcome(&result?),
            () = serving => unreachable!("serving never ends"),
            () = tokio::time::sleep(self.timeout) => Err(ModelError::Transport(format!(
                "the Claude Code CLI did not answer within {} s", self.timeout.as_secs()
            ))),
        }
    }

    /// Starts the CLI in `dir` with the conversation on its stdin.
    fn start(&self, request: &ModelRequest, dir: &Path, socket: Option<&Path>) -> Result<Child, ModelError> {
        let mut command = Command::new(&self.program);
        command
            .args(&self.args_prefix)
            .args([
                "-p",
                "--output-format",
                "stream-json",
                "--verbose",
                "--include-partial-messages",
            ])
            .args(["--model", &self.model, "--tools", "", "--strict-mcp-config"])
            .args(["--system-prompt", &request.system])
            .args(["--max-turns", &(MAX_TOOL_ROUNDS + 2).to_string()]);
        if let Some(socket) = socket {
            let config =
                json!({"mcpServers": {SERVER: {"command": self.relay, "args": ["mcp-relay", socket]}}});
            let allowed: Vec<String> = request
                .tools
                .iter()
                .map(|t| format!("mcp__{SERVER}__{}", t.name))
                .collect();
            command
                .args(["--mcp-config", &config.to_string()])
                .args(["--allowedTools", &allowed.join(",")]);
        }
        command
            .env_clear()
            .envs(std::env::vars().filter(|(name, value)| kept(name) && !value.is_empty()));
        for (name, value) in &self.env {
            match value.as_str() {
                "" => command.env_remove(name),
                value => command.env(name, value),
            };
        }
        command
            .env("DISABLE_AUTOUPDATER", "1")
            .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().map_err(|e| {
            ModelError::NotConfigured(format!(
                "the Claude Code CLI ({}) could not be started: {e}; install it with \
                 `npm install -g @anthropic-ai/claude-code` or set CHAT_CLI",
                self.program.display()
            ))
        })?;
        if let Some(mut stdin) = child.stdin.take() {
            let prompt = prompt(&request.messages);
            tokio::spawn(async move {
                let _ = stdin.write_all(prompt.as_bytes()).await;
            });
        }
        Ok(child)
    }
}

impl ChatModel for ClaudeCode {
    fn describe(&self) -> String {
        format!("claude-code {} ({})", self.model, self.program.display())
    }

    /// One reply without tools (summaries); tools go through [`ChatModel::converse`], since the
    /// CLI runs its own loop.
    fn turn<'a>(
        &'a self,
        request: &'a ModelRequest,
        deltas: &'a Deltas,
    ) -> BoxFuture<'a, Result<ModelReply, ModelError>> {
        Box::pin(async move {
            if !request.tools.is_empty() {
                return Err(ModelError::Protocol(
                    "the Claude Code CLI runs its own tool loop: offer tools through converse".into(),
                ));
            }
            let text = self.run(request, deltas, None).await?;
            Ok(ModelReply {
                blocks: vec![Block::Text(text)],
                stop: Stop::EndTurn,
            })
        })
    }

    fn converse<'a>(
        &'a self,
        request: ModelRequest,
        deltas: &'a Deltas,
        tools: &'a dyn ToolRunner,
    ) -> BoxFuture<'a, Result<(), ModelError>> {
        Box::pin(async move { self.run(&request, deltas, Some(tools)).await.map(|_| ()) })
    }
}

fn kept(name: &str) -> bool {
    KEPT_ENV.contains(&name) || KEPT_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// The conversation as the CLI's prompt: the latest message alone when it is the first, else
/// the earlier messages as a transcript before it.
fn prompt(messages: &[Message]) -> String {
    let Some((latest, earlier)) = messages.split_last() else {
        return String::new();
    };
    if earlier.is_empty() {
        return plain(latest);
    }
    let transcript: Vec<String> = earlier
        .iter()
        .map(|m| match m.role {
            Role::User => format!("<person>\n{}\n</person>", plain(m)),
            Role::Assistant => format!("<you>\n{}\n</you>", plain(m)),
        })
        .collect();
    format!(
        "Our conversation so far:\n\n{}\n\nThe person's latest message, to answer now:\n\n{}",
        transcript.join("\n\n"),
        plain(latest)
    )
}

fn plain(message: &Message) -> String {
    let parts: Vec<String> = message
        .blocks
        .iter()
        .map(|b| match b {
            Block::Text(text) => text.clone(),
            Block::ToolUse { name, input, .. } => format!("[called {name} with {input}]"),
            Block::ToolResult { content, .. } => format!("[tool result: {content}]"),
        })
        .collect();
    parts.join("\n")
}

/// The CLI's `result` line, or why there was none (how it ended, its last words on stderr).
async fn answer(child: &mut Child, deltas: &Deltas) -> Result<Value, ModelError> {
    let stderr = child.stderr.take().map(|stderr| {
        tokio::spawn(async move {
            let mut said = Vec::new();
            let mut stderr = stderr;
            let _ = (&mut stderr).take(64 * 1024).read_to_end(&mut said).await;
            let _ = tokio::io::copy(&mut stderr, &mut tokio::io::sink()).await;
            String::from_utf8_lossy(&said).into_owned()
        })
    });
    if let Some(stdout) = child.stdout.take()
        && let Some(result) = read(stdout, deltas).await
    {
        return Ok(result);
    }
    let status = child.wait().await;
    let said = match stderr {
        Some(reading) => reading.await.unwrap_or_default(),
        None => String::new(),
    };
    Err(ModelError::Transport(format!(
        "the Claude Code CLI ended without an answer ({}){}",
        status.map_or_else(|e| e.to_string(), |s| s.to_string()),
        last_line(&said).map(|l| format!(": {l}")).unwrap_or_default()
    )))
}

/// Reads the CLI's stream-json lines, saying text as it streams, until the `result` line.
async fn read(stdout: tokio::process::ChildStdout, deltas: &Deltas) -> Option<Value> {
    let mut lines = BufReader::new(stdout).split(b'\n');
    let mut streamed = false;
    while let Ok(Some(line)) = lines.next_segment().await {
        let Ok(line) = serde_json::from_slice::<Value>(&line) else {
            tracing::debug!("a line of the Claude Code CLI was not JSON");
            continue;
        };
        match line["type"].as_str() {
            Some("stream_event") => {
                let event = &line["event"];
                match event["type"].as_str() {
                    Some("message_start") => {
                        streamed = false;
                        let _ = deltas.send(Delta::NewTurn);
                    }
                    Some("content_block_delta") if event["delta"]["type"] == "text_delta" => {
                        streamed = true;
                        let text = event["delta"]["text"].as_str().unwrap_or_default();
                        let _ = deltas.send(Delta::Text(super::storable(text)));
                    }
                    _ => {}
                }
            }
            // Text that did not stream (a CLI without partial messages) is said whole.
            Some("assistant") if !streamed => {
                for block in line["message"]["content"].as_array().into_iter().flatten() {
                    if let Some(text) = block["text"].as_str().filter(|_| block["type"] == "text") {
                        let _ = deltas.send(Delta::Text(super::storable(text)));
                    }
                }
            }
            Some("result") => return Some(line),
            _ => {}
        }
    }
    None
}

/// What the `result` line decides: its text, or the error in the CLI's words.
fn outcome(result: &Value) -> Result<String, ModelError> {
    let text = result["result"].as_str().unwrap_or_default();
    if result["subtype"] == "error_max_turns" {
        return Err(ModelError::KeptCallingTools);
    }
    if result["is_error"] != true && result["subtype"] == "success" {
        return Ok(super::storable(text));
    }
    let mut said = match result["errors"].as_array() {
        Some(errors) if text.is_empty() && !errors.is_empty() => errors
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join("; "),
        _ if text.is_empty() => format!("it ended with {}", result["subtype"]),
        _ => text.to_string(),
    };
    let lower = said.to_lowercase();
    if lower.contains("/login") || lower.contains("api key") {
        said.push_str(
            " (sign in once by running `claude` in a terminal, or set CLAUDE_CODE_OAUTH_TOKEN \
             from `claude setup-token`)",
        );
    }
    Err(ModelError::Cli(super::storable(&said)))
}

fn last_line(text: &str) -> Option<&str> {
    text.lines().rev().map(str::trim).find(|l| !l.is_empty())
}

/// An empty directory of the run's own (its cwd and its tool socket), removed afterwards.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Result<Scratch, ModelError> {
        let dir = std::env::temp_dir()
            .join("mainloop-chat")
            .join(uuid::Uuid::now_v7().simple().to_string());
        std::fs::create_dir_all(&dir)
            .map_err(|e| ModelError::Transport(format!("{}: {e}", dir.display())))?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_message_is_the_prompt_and_later_ones_come_after_a_transcript() {
        let first = [Message::text(Role::User, "what is running?")];
        assert_eq!(prompt(&first), "what is running?");
        let later = [
            Message::text(Role::User, "add a README to a/b"),
            Message::text(Role::Assistant, "Shall I?"),
            Message::text(Role::User, "yes"),
        ];
        assert_eq!(
            prompt(&later),
            "Our conversation so far:\n\n<person>\nadd a README to a/b\n</person>\n\n<you>\nShall I?\n</you>\n\n\
             The person's latest message, to answer now:\n\nyes"
        );
    }

    #[test]
    fn the_result_line_decides() {
        let ok = json!({"type": "result", "subtype": "success", "is_error": false, "result": "Hi."});
        assert_eq!(outcome(&ok).ok().as_deref(), Some("Hi."));
        let api =
            json!({"type": "result", "subtype": "success", "is_error": true, "result": "API Error: 400 bad"});
        assert_eq!(
            outcome(&api).err().map(|e| e.to_string()).as_deref(),
            Some("the Claude Code CLI said: API Error: 400 bad")
        );
        let login = json!({"type": "result", "subtype": "success", "is_error": true, "result": "Not logged in · Please run /login"});
        assert!(
            outcome(&login)
                .err()
                .is_some_and(|e| e.to_string().contains("claude setup-token"))
        );
        let turns = json!({"type": "result", "subtype": "error_max_turns", "is_error": true});
        assert!(matches!(outcome(&turns), Err(ModelError::KeptCallingTools)));
        let resume = json!({"type": "result", "subtype": "error_during_execution", "is_error": true, "errors": ["gone"]});
        assert_eq!(
            outcome(&resume).err().map(|e| e.to_string()).as_deref(),
            Some("the Claude Code CLI said: gone")
        );
    }

    #[test]
    fn the_cli_keeps_only_what_it_needs_of_our_environment() {
        for name in [
            "PATH",
            "HOME",
            "ANTHROPIC_BASE_URL",
            "CLAUDE_CODE_OAUTH_TOKEN",
            "XDG_CONFIG_HOME",
        ] {
            assert!(kept(name), "{name}");
        }
        for name in ["GITHUB_TOKEN", "DATABASE_URL", "NATS_URL", "OPENAI_API_KEY"] {
            assert!(!kept(name), "{name}");
        }
    }
}
