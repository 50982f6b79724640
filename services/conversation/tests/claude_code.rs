//! The Claude Code CLI as the chat model: the real CLI (`@anthropic-ai/claude-code` 2.1.197,
//! installed by `make deps`) against a scripted Messages API (`ANTHROPIC_BASE_URL`), with this
//! crate's own binary as the MCP relay. Only mainloop's tools reach the model (none of the CLI's
//! own), a tool call runs here with its exact input and its result goes back, the reply streams
//! in order, and an API error comes back as an error in the CLI's words.

use std::path::PathBuf;
use std::sync::Mutex;

use futures_util::future::BoxFuture;
use mainloop_conversation::models::claude_code::ClaudeCode;
use mainloop_conversation::models::{
    ChatModel, Delta, Message, ModelRequest, Role, Tool, ToolOutcome, ToolRunner,
};
use mainloop_fakes::scripted_model::{ScriptedModel, Turn};
use serde_json::{Value, json};

const KEY: &str = "sk-ant-chat-cli-test";

/// The installed CLI (see the test kit).
fn claude() -> anyhow::Result<PathBuf> {
    Ok(mainloop_testkit::claude_cli()?)
}

/// Records each call and answers with a fixed text.
#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<(String, Value)>>,
}

impl ToolRunner for Recorder {
    fn run<'a>(&'a self, name: &'a str, input: &'a Value) -> BoxFuture<'a, ToolOutcome> {
        Box::pin(async move {
            if let Ok(mut calls) = self.calls.lock() {
                calls.push((name.to_string(), input.clone()));
            }
            ToolOutcome::done("- t1 [implementing] acme/widgets — add a README")
        })
    }
}

struct Scene {
    home: tempfile::TempDir,
    model: ScriptedModel,
    url: String,
}

impl Scene {
    async fn new(script: Vec<Turn>) -> anyhow::Result<Scene> {
        let model = ScriptedModel::new(KEY, script);
        let url = model
            .clone()
            .serve(tokio::net::TcpListener::bind("127.0.0.1:0").await?)
            .await?;
        Ok(Scene {
            home: tempfile::tempdir()?,
            model,
            url,
        })
    }

    fn cli(&self) -> anyhow::Result<ClaudeCode> {
        let relay = PathBuf::from(env!("CARGO_BIN_EXE_mainloop-conversation"));
        Ok(ClaudeCode::new(&claude()?, &[], &relay, "sonnet")
            .with_env("ANTHROPIC_BASE_URL", &self.url)
            .with_env("ANTHROPIC_API_KEY", KEY)
            .with_env("HOME", &self.home.path().display().to_string()))
    }
}

fn request(text: &str) -> ModelRequest {
    ModelRequest {
        system: "You are the main thread of mainloop.".into(),
        messages: vec![
            Message::text(Role::User, "hello"),
            Message::text(Role::Assistant, "Hi. What shall we work on?"),
            Message::text(Role::User, text),
        ],
        tools: vec![Tool {
            name: "list_tasks".into(),
            description: "The person's tasks and what needs them.".into(),
            schema: json!({"type": "object", "properties": {"filter": {"type": "string"}}}),
        }]
        .into(),
        max_tokens: 2048,
    }
}

/// The text said, with a blank line where the model started another turn after saying something.
fn said(deltas: Vec<Delta>) -> String {
    let mut text = String::new();
    let mut new_turn = false;
    for delta in deltas {
        match delta {
            Delta::NewTurn => new_turn = true,
            Delta::Text(fragment) => {
                if new_turn && !text.is_empty() {
                    text.push_str("\n\n");
                }
                new_turn = false;
                text.push_str(&fragment);
            }
        }
    }
    text
}

fn tool_names(request: &Value) -> Vec<String> {
    request["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["name"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_our_tools_reach_the_model_and_a_call_runs_here() -> anyhow::Result<()> {
    let scene = Scene::new(vec![
        Turn::Text("Let me look.".into()),
        Turn::Tool {
            name: "mcp__mainloop__list_tasks".into(),
            input: json!({"filter": "active"}),
        },
        Turn::Text("One task runs: a README for acme/widgets.".into()),
    ])
    .await?;
    // The script's first turn is words only; the CLI's loop ends there unless the model calls a
    // tool, so the first reply is that text and the second message asks again.
    let cli = scene.cli()?;
    let runner = Recorder::default();
    let (deltas, mut heard) = tokio::sync::mpsc::unbounded_channel();
    cli.converse(request("what is running?"), &deltas, &runner)
        .await?;
    drop(deltas);
    let mut first = Vec::new();
    while let Some(delta) = heard.recv().await {
        first.push(delta);
    }
    assert_eq!(said(first), "Let me look.");

    let (deltas, mut heard) = tokio::sync::mpsc::unbounded_channel();
    cli.converse(request("and now?"), &deltas, &runner).await?;
    drop(deltas);
    let mut second = Vec::new();
    while let Some(delta) = heard.recv().await {
        second.push(delta);
    }
    assert_eq!(said(second), "One task runs: a README for acme/widgets.");

    let calls = runner.calls.lock().map(|c| c.clone()).unwrap_or_default();
    assert_eq!(
        calls,
        vec![("list_tasks".to_string(), json!({"filter": "active"}))]
    );
    let requests = scene.model.agent_requests();
    assert_eq!(requests.len(), 3, "{requests:#?}");
    for sent in &requests {
        assert_eq!(
            tool_names(sent),
            vec!["mcp__mainloop__list_tasks"],
            "no tool of the CLI's own"
        );
        assert!(
            sent["system"]
                .to_string()
                .contains("You are the main thread of mainloop.")
        );
    }
    let prompt = requests[1]["messages"][0].to_string();
    assert!(prompt.contains("<person>\\nhello\\n</person>"), "{prompt}");
    assert!(prompt.contains("and now?"), "{prompt}");
    let result = &requests[2]["messages"]
        .as_array()
        .and_then(|m| m.last())
        .cloned()
        .unwrap_or_default();
    assert_eq!(result["content"][0]["type"], "tool_result");
    assert_eq!(
        result["content"][0]["content"][0]["text"],
        "- t1 [implementing] acme/widgets — add a README"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_error_comes_back_in_the_clis_words_and_a_summary_needs_no_tools() -> anyhow::Result<()> {
    let scene = Scene::new(vec![Turn::Error {
        status: 400,
        kind: "invalid_request_error".into(),
        message: "messages: text content blocks must be non-empty".into(),
    }])
    .await?;
    let cli = scene.cli()?;
    let (deltas, _heard) = tokio::sync::mpsc::unbounded_channel();
    let failed = cli
        .converse(request("what is running?"), &deltas, &Recorder::default())
        .await;
    assert_eq!(
        failed.err().map(|e| e.to_string()).as_deref(),
        Some("the Claude Code CLI said: API Error: 400 messages: text content blocks must be non-empty")
    );

    // A summary offers no tools; the scripted model answers those "Done.".
    let summary = ModelRequest {
        tools: Default::default(),
        ..request("summarise")
    };
    let reply = cli.turn(&summary, &deltas).await?;
    assert_eq!(reply.text(), vec!["Done."]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_login_the_person_is_told_how_to_sign_in() -> anyhow::Result<()> {
    let scene = Scene::new(vec![]).await?;
    let relay = PathBuf::from(env!("CARGO_BIN_EXE_mainloop-conversation"));
    let cli = ClaudeCode::new(&claude()?, &[], &relay, "sonnet")
        .with_env("ANTHROPIC_BASE_URL", &scene.url)
        .with_env("ANTHROPIC_API_KEY", "")
        .with_env("ANTHROPIC_AUTH_TOKEN", "")
        .with_env("CLAUDE_CODE_OAUTH_TOKEN", "")
        .with_env("HOME", &scene.home.path().display().to_string());
    let (deltas, _heard) = tokio::sync::mpsc::unbounded_channel();
    let failed = cli
        .converse(request("hello?"), &deltas, &Recorder::default())
        .await;
    let said = failed.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(said.starts_with("the Claude Code CLI said: "), "{said}");
    assert!(said.contains("claude setup-token"), "{said}");
    Ok(())
}
