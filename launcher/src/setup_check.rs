//! What `mainloop up` finds, checked for real before anything starts, so a bad token is found
//! now and not by the first task: GitHub (`GET /user`, and the token's scopes when it has
//! classic ones), the chat model's key or server (`GET /v1/models`), the agent CLI (its version, and a
//! key or subscription token to log in with). Each line says what works or what to do.

use crate::console::say;
use std::time::Duration;

use mainloop_runtime::Secret;
use serde_json::Value;

use crate::cli::UpArgs;

const TIMEOUT: Duration = Duration::from_secs(10);

/// Prints one line per outside service.
pub async fn report(args: &UpArgs, token_source: Option<&str>) {
    let http = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .build()
        .unwrap_or_default();
    say!("GitHub:    {}", github(&http, args, token_source).await);
    say!("Chat LLM:  {}", chat(&http, args).await);
    say!("Agent:     {}", agent(args).await);
}

async fn github(http: &reqwest::Client, args: &UpArgs, source: Option<&str>) -> String {
    let api = args.github.github_api_url.trim_end_matches('/');
    let Some(token) = &args.github.github_token else {
        return "MISSING: set GITHUB_TOKEN or log in with `gh auth login` (or try --demo, or --fake github)"
            .into();
    };
    let answer = http
        .get(format!("{api}/user"))
        .bearer_auth(token.expose())
        .header("accept", "application/vnd.github+json")
        .header("user-agent", "mainloop")
        .header("x-github-api-version", "2022-11-28")
        .send()
        .await;
    let source = source.unwrap_or("GITHUB_TOKEN");
    match answer {
        Ok(response) if response.status().is_success() => {
            let scopes = response
                .headers()
                .get("x-oauth-scopes")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let user: Value = response.json().await.unwrap_or_default();
            let login = user["login"].as_str().unwrap_or("?");
            let scopes = match scopes {
                Some(scopes) if !scopes.contains("repo") => {
                    format!(
                        "; WARNING: scopes \"{scopes}\" lack `repo`, so private repositories, issues and pushes will fail"
                    )
                }
                Some(scopes) => format!(", scopes: {scopes}"),
                None => String::new(),
            };
            format!("signed in as {login} at {api} (token from {source}{scopes})")
        }
        Ok(response) if response.status() == 401 => {
            format!("REFUSED: {api} does not accept the token from {source} (401); set a valid GITHUB_TOKEN")
        }
        Ok(response) => format!("could not check the token at {api}: HTTP {}", response.status()),
        Err(err) => format!("could not reach {api}: {err}"),
    }
}

async fn chat(http: &reqwest::Client, args: &UpArgs) -> String {
    match args.llm.provider() {
        mainloop_conversation::Provider::Openai => return openai_compatible(http, args).await,
        mainloop_conversation::Provider::ClaudeCode => return claude_code(args).await,
        _ => {}
    }
    let base = args.llm.chat_api_url.trim_end_matches('/');
    let Some(key) = &args.llm.chat_api_key else {
        return "MISSING: set ANTHROPIC_API_KEY (or try --demo, or --fake llm)".into();
    };
    let answer = http
        .get(format!("{base}/v1/models"))
        .header("x-api-key", key.expose())
        .header("anthropic-version", "2023-06-01")
        .send()
        .await;
    match answer {
        Ok(response) if response.status().is_success() => {
            format!(
                "Anthropic at {base}, key accepted (model {})",
                args.llm.chat_model
            )
        }
        Ok(response) if response.status() == 401 || response.status() == 403 => {
            format!(
                "REFUSED: {base} does not accept ANTHROPIC_API_KEY ({})",
                response.status()
            )
        }
        Ok(response) => format!("could not check the key at {base}: HTTP {}", response.status()),
        Err(err) => format!("could not reach {base}: {err}"),
    }
}

/// An OpenAI-compatible server (Ollama, vLLM, llama.cpp, hosted): it answers `/models` and
/// offers the model named.
async fn openai_compatible(http: &reqwest::Client, args: &UpArgs) -> String {
    let base = args
        .llm
        .openai_base_url
        .as_deref()
        .unwrap_or("http://localhost:11434/v1")
        .trim_end_matches('/');
    let mut request = http.get(format!("{base}/models"));
    if let Some(key) = &args.llm.openai_api_key {
        request = request.bearer_auth(key.expose());
    }
    let model = &args.llm.chat_model;
    match request.send().await {
        Ok(response) if response.status().is_success() => {
            let listed: Value = response.json().await.unwrap_or(Value::Null);
            let offered = listed["data"]
                .as_array()
                .is_some_and(|m| m.iter().any(|m| m["id"].as_str() == Some(model.as_str())));
            if offered {
                format!("OpenAI-compatible server at {base}, model {model}")
            } else {
                format!("MISSING MODEL: {base} does not offer {model} (set CHAT_MODEL, or pull it)")
            }
        }
        Ok(response) if response.status() == 401 || response.status() == 403 => {
            format!(
                "REFUSED: {base} does not accept OPENAI_API_KEY ({})",
                response.status()
            )
        }
        Ok(response) => format!("could not check {base}: HTTP {}", response.status()),
        Err(err) => format!("could not reach {base}: {err}"),
    }
}

/// `program --version`, or what is wrong with it (naming `setting`, which points elsewhere).
async fn cli_version(program: &std::path::Path, prefix: &[String], setting: &str) -> Result<String, String> {
    let version = tokio::time::timeout(
        TIMEOUT,
        tokio::process::Command::new(program)
            .args(prefix)
            .arg("--version")
            .stdin(std::process::Stdio::null())
            .output(),
    )
    .await;
    match version {
        Ok(Ok(out)) if out.status.success() => Ok(String::from_utf8_lossy(&out.stdout).trim().to_string()),
        Ok(Ok(out)) => Err(format!(
            "{} --version failed ({}): install Claude Code (npm install -g @anthropic-ai/claude-code) or set {setting}",
            program.display(),
            out.status
        )),
        Ok(Err(_)) => Err(format!(
            "MISSING: {} not found; install Claude Code (npm install -g @anthropic-ai/claude-code) or set {setting}",
            program.display()
        )),
        Err(_) => Err(format!(
            "{} --version did not answer in {TIMEOUT:?}",
            program.display()
        )),
    }
}

/// The Claude Code CLI as the chat model: installed, and signed in.
async fn claude_code(args: &UpArgs) -> String {
    let llm = &args.llm;
    let version = match cli_version(&llm.chat_cli, &llm.chat_cli_args_prefix, "CHAT_CLI").await {
        Ok(version) => version,
        Err(problem) => return problem,
    };
    let login = match crate::local_model::claude_login() {
        Some(how) => format!("signed in with {how}"),
        None => "NOT SIGNED IN: run `claude` once and log in, or set CLAUDE_CODE_OAUTH_TOKEN (`claude setup-token`)".into(),
    };
    format!(
        "Claude Code CLI {version} ({}), model {}, {login}; only mainloop's tools",
        llm.chat_cli.display(),
        llm.chat_model
    )
}

async fn agent(args: &UpArgs) -> String {
    let agent = &args.agent;
    let version = match cli_version(&agent.agent_program, &agent.agent_args_prefix, "AGENT_PROGRAM").await {
        Ok(version) => version,
        Err(problem) => return problem,
    };
    let login = login(&agent.anthropic_api_key, &agent.claude_code_oauth_token);
    let user = if !mainloop_local_servers::is_root() {
        String::new()
    } else {
        match agent.agent_user.as_deref().map(str::trim) {
            Some("") => ", runs as root (AGENT_USER is empty)".to_string(),
            Some(name) => format!(", runs as user {name}"),
            None => ", runs as user nobody".to_string(),
        }
    };
    format!(
        "{} {version} (model {}), {login}{user}",
        agent.agent_program.display(),
        agent.agent_model
    )
}

fn login(key: &Option<Secret>, oauth: &Option<Secret>) -> &'static str {
    match (key, oauth) {
        (Some(_), _) => "logs in with ANTHROPIC_API_KEY",
        (None, Some(_)) => "logs in with CLAUDE_CODE_OAUTH_TOKEN (a Claude subscription)",
        (None, None) => {
            "NOT LOGGED IN: set ANTHROPIC_API_KEY or CLAUDE_CODE_OAUTH_TOKEN (`claude setup-token`); every job would fail"
        }
    }
}
