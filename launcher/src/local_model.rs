//! `mainloop up` picks what it finds: with no Anthropic key and no OpenAI-compatible server
//! named, a local Ollama (`OLLAMA_HOST`, else 127.0.0.1:11434) that answers `/v1/models` becomes
//! the chat model, and its first model is used unless `CHAT_MODEL` names one.

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

/// Points the chat at a local Ollama when nothing else was configured and one answers.
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
