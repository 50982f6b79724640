//! `mainloop up` picks what it finds: with no Anthropic key and no OpenAI-compatible server
//! named, the Claude Code CLI when it is installed and signed in to a subscription
//! (`CLAUDE_CODE_OAUTH_TOKEN`, or the login `claude` keeps in `~/.claude`); else a local Ollama
//! (`OLLAMA_HOST`, else 127.0.0.1:11434) that answers `/v1/models`, with its first model unless
//! `CHAT_MODEL` names one.

use std::time::Duration;

use mainloop_conversation::Provider;
use serde_json::Value;

use crate::cli::UpArgs;

/// The default chat model's name: a Claude model, which a local server does not have.
const CLAUDE_DEFAULT: &str = "claude-sonnet-4-5";

/// Where Ollama listens: `OLLAMA_HOST` as Ollama reads it (`host:port`, or a URL), else its default.
fn ollama_base() -> String {
    let host = std::env::var("OLLAMA_HOST")
        .ok()
        .filter(|h| !h.trim().is_empty())
        .unwrap_or_else(|| "127.0.0.1:11434".into());
    let host = host.trim().trim_end_matches('/');
    if host.starts_with("http://") || host.starts_with("https://") {
        format!("{host}/v1")
    } else {
        format!("http://{host}/v1")
    }
}

/// How the Claude Code CLI is signed in to a subscription, if it is.
pub fn claude_login() -> Option<&'static str> {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    if set("CLAUDE_CODE_OAUTH_TOKEN") {
        return Some("CLAUDE_CODE_OAUTH_TOKEN");
    }
    let config = std::env::var_os("CLAUDE_CONFIG_DIR")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| std::path::Path::new(&home).join(".claude")))?;
    config
        .join(".credentials.json")
        .is_file()
        .then_some("the login in ~/.claude")
}

/// Whether `program` can be started (a path, or a name on the PATH).
fn installed(program: &std::path::Path) -> bool {
    if program.components().count() > 1 {
        return program.is_file();
    }
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// Points the chat at the Claude Code CLI or a local Ollama when nothing else was configured.
pub async fn find(args: &mut UpArgs) {
    let llm = &args.llm;
    let anthropic_key = llm
        .chat_api_key
        .as_ref()
        .is_some_and(|k| !k.expose().trim().is_empty());
    let openai_url = llm
        .openai_base_url
        .as_deref()
        .is_some_and(|u| !u.trim().is_empty());
    if llm.chat_provider != Provider::Auto || anthropic_key || openai_url {
        return;
    }
    if installed(&llm.chat_cli) && claude_login().is_some() {
        args.llm.chat_provider = Provider::ClaudeCode;
        return;
    }
    let base = ollama_base();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_millis(800))
        .build()
        .unwrap_or_default();
    let Ok(answer) = http.get(format!("{base}/models")).send().await else {
        return;
    };
    let Ok(models) = answer.error_for_status().map(|a| a.json::<Value>()) else {
        return;
    };
    let Ok(models) = models.await else {
        return;
    };
    let first = models["data"]
        .as_array()
        .and_then(|m| m.first())
        .and_then(|m| m["id"].as_str())
        .map(str::to_string);
    let Some(first) = first else {
        return;
    };
    args.llm.chat_provider = Provider::Openai;
    args.llm.openai_base_url = Some(base);
    if args.llm.chat_model == CLAUDE_DEFAULT {
        args.llm.chat_model = first;
    }
}
