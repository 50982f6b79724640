//! A stand-in for the Claude Code CLI in headless mode. It checks its flags as the real CLI does,
//! prints the same stream-json lines (system/init, assistant, user, control_request, result) as
//! the recordings in `services/worker-supervisor/tests/fixtures/claude-code`, waits for
//! `control_response` lines on stdin for ExitPlanMode and AskUserQuestion, and really edits and
//! commits files in its working directory.
//!
//! Behaviour comes from the prompt: a plan-mode run plans; a prompt that says "ask me" asks a
//! question first; an implement run adds what the request names to the README (a "quick start"
//! section, or a note) and commits; a prompt saying "CI failed" makes a fixing commit; a feedback
//! run ("Reviewers commented …") notes each comment it was given and names them in its summary.
//! `FAKE_CLAUDE_API_ERROR=529` ends like the real CLI after exhausted retries. Like the real CLI
//! it needs a key or login (`ANTHROPIC_API_KEY`, `ANTHROPIC_AUTH_TOKEN`, `CLAUDE_CODE_OAUTH_TOKEN`),
//! keeps each session's transcript under `~/.claude/projects/`, and continues one with `--resume`
//! (or ends with "No conversation found" when it has none). "write notes while planning" makes
//! it try to write and commit in plan mode; "leave it uncommitted" makes it edit without
//! committing. With its built-in tools off (`--tools ""`) it is a chat (`claude_chat`).

use std::io::{BufRead, Write};
use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

struct Run<'a> {
    session: String,
    model: &'a str,
    out: std::io::StdoutLock<'static>,
    input: Box<dyn BufRead>,
    turns: u32,
}

impl Run<'_> {
    fn emit(&mut self, value: Value) {
        let _ = writeln!(self.out, "{value}");
        let _ = self.out.flush();
    }

    fn assistant(&mut self, block: Value) {
        self.turns += 1;
        let message_id = format!("msg_{}", uuid::Uuid::now_v7().simple());
        let line = json!({"type": "assistant", "message": {"id": message_id, "type": "message", "role": "assistant",
            "model": self.model, "content": [block], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 100, "output_tokens": 1}}, "parent_tool_use_id": null, "session_id": self.session,
            "uuid": uuid::Uuid::now_v7().to_string()});
        self.emit(line);
    }

    fn text(&mut self, text: &str) {
        self.assistant(json!({"type": "text", "text": text}));
    }

    fn tool(&mut self, name: &str, input: Value, result: &str, is_error: bool) -> String {
        let id = format!("toolu_{}", uuid::Uuid::now_v7().simple());
        self.assistant(json!({"type": "tool_use", "id": id, "name": name, "input": input}));
        self.tool_result(&id, result, is_error);
        id
    }

    fn tool_result(&mut self, id: &str, result: &str, is_error: bool) {
        let line = json!({"type": "user", "message": {"role": "user", "content": [{"tool_use_id": id, "type": "tool_result",
            "content": result, "is_error": is_error}]}, "parent_tool_use_id": null, "session_id": self.session,
            "uuid": uuid::Uuid::now_v7().to_string()});
        self.emit(line);
    }

    /// Asks permission over stdio and returns the `response` object of the control_response.
    fn ask_permission(&mut self, tool: &str, input: Value) -> Option<Value> {
        let tool_use_id = format!("toolu_{}", uuid::Uuid::now_v7().simple());
        self.assistant(json!({"type": "tool_use", "id": tool_use_id, "name": tool, "input": input}));
        let request_id = uuid::Uuid::now_v7().to_string();
        self.emit(
            json!({"type": "control_request", "request_id": request_id, "request": {"subtype": "can_use_tool",
            "tool_name": tool, "display_name": tool, "input": input, "tool_use_id": tool_use_id}}),
        );
        let mut line = String::new();
        while self.input.read_line(&mut line).ok()? > 0 {
            let value: Value = serde_json::from_str(line.trim()).ok()?;
            if value["type"] == "control_response" && value["response"]["request_id"] == request_id.as_str() {
                let response = value["response"]["response"].clone();
                let denied = response["behavior"] == "deny";
                let message = response["message"].as_str().unwrap_or("allowed").to_string();
                self.tool_result(&tool_use_id, &message, denied);
                return Some(response);
            }
            line.clear();
        }
        None
    }

    fn result(&mut self, text: &str, is_error: bool, api_status: Option<u16>) {
        let line = json!({"type": "result", "subtype": "success", "is_error": is_error, "api_error_status": api_status,
            "duration_ms": 5, "duration_api_ms": 3, "num_turns": self.turns, "result": text, "stop_reason": "end_turn",
            "session_id": self.session, "total_cost_usd": 0.0, "usage": {"input_tokens": 100, "output_tokens": 20},
            "permission_denials": [], "terminal_reason": "completed", "uuid": uuid::Uuid::now_v7().to_string()});
        self.emit(line);
    }
}

/// A feedback run answers each comment it was given ("@who on path line n:" or "@who on the
/// pull request:") with a line in the README, and says which it addressed.
fn feedback_change(prompt: &str) -> (String, &'static str) {
    let addressed: Vec<&str> = prompt
        .lines()
        .filter(|l| l.starts_with('@') && l.ends_with(':') && l.contains(" on "))
        .map(|l| l.trim_end_matches(':'))
        .collect();
    let change = addressed
        .iter()
        .map(|a| format!("\n<!-- addressed: {a} -->"))
        .collect::<String>();
    (change + "\n", "Address review feedback")
}

pub(crate) fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

/// Where the real CLI keeps a session's transcript: `$CLAUDE_CONFIG_DIR` (or `~/.claude`)
/// `/projects/<cwd with / and . as ->/<session>.jsonl`.
fn session_file(cwd: &Path, session: &str) -> std::path::PathBuf {
    let config = std::env::var("CLAUDE_CONFIG_DIR").map_or_else(
        |_| Path::new(&std::env::var("HOME").unwrap_or_default()).join(".claude"),
        std::path::PathBuf::from,
    );
    let slug: String = cwd
        .display()
        .to_string()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    config
        .join("projects")
        .join(slug)
        .join(format!("{session}.jsonl"))
}

fn git(cwd: &Path, args: &[&str]) -> String {
    match Command::new("git").args(args).current_dir(cwd).output() {
        Ok(out) => format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(err) => format!("git failed: {err}"),
    }
}

/// Runs the fake CLI with `args` (without the program name); returns the exit code.
pub fn main(args: &[String]) -> i32 {
    let has = |name: &str| args.iter().any(|a| a == name);
    if has("--version") || has("-v") {
        println!("2.1.197 (Claude Code)");
        return 0;
    }
    if !has("-p") && !has("--print") {
        eprintln!("Error: this fake only runs headless (-p)");
        return 1;
    }
    if flag(args, "--output-format") == Some("stream-json") && !has("--verbose") {
        eprintln!("Error: When using --print, --output-format=stream-json requires --verbose");
        return 1;
    }
    if flag(args, "--tools") == Some("") {
        // Built-in tools off: a chat, as mainloop's main thread runs it.
        return crate::claude_chat::main(args);
    }
    let mode = flag(args, "--permission-mode").unwrap_or("default");
    let cwd = std::env::current_dir().unwrap_or_else(|_| ".".into());
    let stdin = std::io::stdin();
    let mut input: Box<dyn BufRead> = Box::new(stdin.lock());
    let prompt = if flag(args, "--input-format") == Some("stream-json") {
        let mut line = String::new();
        if input.read_line(&mut line).unwrap_or(0) == 0 {
            return 0;
        }
        let turn: Value = serde_json::from_str(line.trim()).unwrap_or_default();
        match &turn["message"]["content"] {
            Value::String(text) => text.clone(),
            Value::Array(blocks) => blocks
                .iter()
                .filter_map(|b| b["text"].as_str())
                .collect::<Vec<_>>()
                .join("\n"),
            _ => String::new(),
        }
    } else {
        args.iter()
            .skip_while(|a| *a != "-p" && *a != "--print")
            .nth(1)
            .cloned()
            .unwrap_or_default()
    };
    let model = match flag(args, "--model").unwrap_or("sonnet") {
        "sonnet" => "claude-sonnet-5",
        "opus" => "claude-opus-5",
        "haiku" => "claude-haiku-5",
        other => other,
    };
    let resume = flag(args, "--resume");
    let session = resume
        .or(flag(args, "--session-id"))
        .map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_string);
    let transcript = session_file(&cwd, &session);
    let earlier_turns = std::fs::read_to_string(&transcript)
        .map(|t| t.lines().count())
        .ok();
    if resume.is_some() && earlier_turns.is_none() {
        // As 2.1.197 does: no init line, one error result, the same text on stderr, exit 1.
        let message = format!("No conversation found with session ID: {session}");
        eprintln!("{message}");
        let line = json!({"type": "result", "subtype": "error_during_execution", "duration_ms": 0, "duration_api_ms": 0,
            "is_error": true, "num_turns": 0, "stop_reason": null, "session_id": session, "total_cost_usd": 0,
            "usage": {"input_tokens": 0, "output_tokens": 0}, "modelUsage": {}, "permission_denials": [],
            "uuid": uuid::Uuid::now_v7().to_string(), "errors": [message]});
        println!("{line}");
        return 1;
    }
    if let Some(dir) = transcript.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let _ = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&transcript)
        .and_then(|mut file| writeln!(file, "{}", json!({"type": "user", "prompt": prompt})));
    let mut run = Run {
        session: session.clone(),
        model,
        out: std::io::stdout().lock(),
        input,
        turns: 0,
    };
    run.emit(json!({"type": "system", "subtype": "init", "cwd": cwd.display().to_string(), "session_id": session,
        "tools": ["AskUserQuestion", "Bash", "Edit", "ExitPlanMode", "Read", "Write"], "mcp_servers": [],
        "model": model, "permissionMode": mode, "apiKeySource": "ANTHROPIC_API_KEY", "claude_code_version": "2.1.197 (fake)",
        "uuid": uuid::Uuid::now_v7().to_string()}));

    if let Some(turns) = earlier_turns.filter(|_| resume.is_some()) {
        run.text(&format!("Resuming our conversation ({turns} earlier turn(s))."));
    }

    // Which user it runs as, on stderr (as the real CLI's diagnostics go), for tests of isolation.
    if let Ok(meta) = std::fs::metadata("/proc/self") {
        eprintln!(
            "fake-claude: running as uid {}",
            std::os::unix::fs::MetadataExt::uid(&meta)
        );
    }
    if prompt
        .to_lowercase()
        .contains("peek at your parent's environment")
    {
        // What a curious agent could try: the supervisor's environment holds its secrets.
        let parent = std::os::unix::process::parent_id();
        let peek = match std::fs::read(format!("/proc/{parent}/environ")) {
            Ok(bytes) => format!("parent environment: readable ({} bytes)", bytes.len()),
            Err(err) => format!("parent environment: not readable ({err})"),
        };
        run.text(&peek);
    }

    let logged_in = [
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_AUTH_TOKEN",
        "CLAUDE_CODE_OAUTH_TOKEN",
    ]
    .iter()
    .any(|name| std::env::var(name).is_ok_and(|v| !v.is_empty()));
    if !logged_in {
        let text = "Not logged in · Please run /login";
        run.text(text);
        run.result(text, true, None);
        return 1;
    }

    if let Ok(status) = std::env::var("FAKE_CLAUDE_API_ERROR") {
        let code = status.parse().unwrap_or(529);
        run.emit(json!({"type": "system", "subtype": "api_retry", "attempt": 1, "error_status": code, "session_id": run.session}));
        let text = format!(
            "API Error: {code} Overloaded. This is a server-side issue, usually temporary — try again in a moment."
        );
        run.text(&text);
        run.result(&text, true, Some(code));
        return 1;
    }

    let readme = cwd.join("README.md");
    let current = std::fs::read_to_string(&readme).unwrap_or_default();
    // A careless (or hostile) model: the key it was given, in every form, and a NUL.
    let leaked = if prompt.to_lowercase().contains("leak the key") {
        let key = std::env::var("ANTHROPIC_API_KEY").unwrap_or_default();
        let spaced: String = key.chars().map(|c| format!("{c} ")).collect();
        let encoded = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, key.as_bytes());
        let leak = format!("The key is {key} (base64 {encoded}; spaced {spaced}) and a NUL: [\0].");
        run.text(&leak);
        leak
    } else {
        String::new()
    };
    if mode == "plan" {
        run.text("I'll read the README first.");
        run.tool(
            "Read",
            json!({"file_path": readme.display().to_string()}),
            &current,
            false,
        );
        if prompt.to_lowercase().contains("write notes while planning") {
            // A model that tries to change things while planning; the real CLI asks first.
            let notes = cwd.join("NOTES.md");
            let input = json!({"file_path": notes.display().to_string(), "content": "planning notes\n"});
            if run
                .ask_permission("Write", input)
                .is_some_and(|r| r["behavior"] == "allow")
            {
                let _ = std::fs::write(&notes, "planning notes\n");
            }
            let commit = json!({"command": "git add -A && git commit -m notes"});
            if run
                .ask_permission("Bash", commit)
                .is_some_and(|r| r["behavior"] == "allow")
            {
                git(&cwd, &["add", "-A"]);
                git(&cwd, &["commit", "-qm", "notes"]);
            }
        }
        let mut answers = String::new();
        if prompt.to_lowercase().contains("ask me") && !prompt.contains("answered your questions") {
            // The careless model leaks into its question too.
            let question = format!("Where should the new section go?{leaked}");
            let questions = json!({"questions": [{"question": question, "header": "Placement",
                "options": [{"label": "Top", "description": "Right after the title"}, {"label": "Bottom", "description": "At the end"}],
                "multiSelect": false}]});
            let response = run.ask_permission("AskUserQuestion", questions);
            if response.as_ref().is_some_and(|r| r["behavior"] == "deny") {
                run.text("I'll wait for your answers.");
                run.result("Waiting for answers.", false, None);
                return 0;
            }
            answers = response
                .map(|r| r["updatedInput"]["answers"].to_string())
                .unwrap_or_default();
        }
        let request = prompt
            .lines()
            .skip_while(|l| !l.starts_with("The request"))
            .nth(1)
            .unwrap_or(prompt.as_str());
        let plan = format!(
            "# Plan: {}\n\n## Summary\nChange the README as requested.{answers}{leaked}\n\n## Files to modify\n- `README.md`\n\n## Considerations\nKeep the existing text.\n",
            request.trim()
        );
        let plan_path = format!(
            "{}/.claude/plans/plan.md",
            std::env::var("HOME").unwrap_or_default()
        );
        let response = run.ask_permission("ExitPlanMode", json!({"plan": plan, "planFilePath": plan_path}));
        let done = if response.is_some_and(|r| r["behavior"] == "deny") {
            "The plan is ready for review."
        } else {
            "Plan approved."
        };
        run.text(done);
        run.result(done, false, None);
        return 0;
    }

    let lower = prompt.to_lowercase();
    let (change, message) = if lower.starts_with("reviewers commented") {
        feedback_change(&prompt)
    } else if lower.contains("ci failed") {
        (
            "\nRun `make test` before you push.\n".to_string(),
            "Fix CI: document the test command",
        )
    } else if lower.contains("quick start") {
        (
            "\n## Quick start\n\n```sh\nmake up\n```\n".to_string(),
            "Add a quick start section",
        )
    } else {
        (
            format!(
                "\n<!-- mainloop: {} -->\n",
                prompt.lines().next().unwrap_or_default()
            ),
            "Note the request",
        )
    };
    let updated = format!("{current}{change}");
    let wrote = std::fs::write(&readme, &updated).is_ok();
    run.tool(
        "Edit",
        json!({"file_path": readme.display().to_string(), "new_string": change}),
        "The file has been updated.",
        !wrote,
    );
    if lower.contains("leave it uncommitted") {
        let summary = format!("{message}; I did not commit it.");
        run.text(&summary);
        run.result(&summary, false, None);
        return 0;
    }
    let added = git(&cwd, &["add", "-A"]);
    run.tool("Bash", json!({"command": "git add -A"}), &added, false);
    // The careless model writes the key into its commit message too (a NUL cannot be an argument).
    let message = if leaked.is_empty() {
        message.to_string()
    } else {
        format!("{message}\n\n{}", leaked.replace('\0', ""))
    };
    let message = message.as_str();
    let committed = git(&cwd, &["commit", "-m", message]);
    run.tool(
        "Bash",
        json!({"command": format!("git commit -m \"{message}\"")}),
        &committed,
        false,
    );
    let summary = if message.starts_with("Address review feedback") {
        let addressed: Vec<&str> = change
            .lines()
            .filter_map(|l| l.strip_prefix("<!-- addressed: ")?.strip_suffix(" -->"))
            .collect();
        format!(
            "Addressed {} comments: {}.",
            addressed.len(),
            addressed.join("; ")
        )
    } else {
        format!("{message}, and committed it.")
    };
    run.text(&summary);
    run.result(&summary, false, None);
    0
}
