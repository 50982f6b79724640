//! `mainloop up` with no API key but a Claude Code CLI signed in to a subscription
//! (`CLAUDE_CODE_OAUTH_TOKEN`): the CLI becomes the chat model — here the fake CLI (`mainloop
//! fake-claude`), which runs its loop against a scripted Messages API as the real one does — and
//! mainloop's tools reach it over MCP through `mainloop mcp-relay`: a true answer to "what is
//! running?", a spawn refused without the person's confirmation and made with it.

mod common;

use common::{Mainloop, Outside};
use mainloop_fakes::scripted_model::{ScriptedModel, Turn};
use serde_json::{Value, json};

const TOKEN: &str = "sk-ant-oat01-chat-cli";

async fn chat(
    http: &reqwest::Client,
    base: &str,
    conversation: Option<&str>,
    message: &str,
) -> anyhow::Result<Value> {
    let mut body = json!({"message": message});
    if let Some(id) = conversation {
        body["conversation_id"] = json!(id);
    }
    Ok(http
        .post(format!("{base}/chat"))
        .header("x-user-id", "alice")
        .json(&body)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?)
}

/// The tool result the model was sent last, as text, and whether it was an error.
fn last_tool_result(model: &ScriptedModel) -> (String, bool) {
    let requests = model.agent_requests();
    let result = requests
        .last()
        .and_then(|r| {
            r["messages"].as_array()?.last()?["content"]
                .as_array()?
                .first()
                .cloned()
        })
        .unwrap_or_default();
    let text = result["content"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["text"].as_str())
        .collect::<String>();
    (text, result["is_error"] == true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_in_claude_code_cli_chats_with_only_mainloops_tools() -> anyhow::Result<()> {
    let Outside {
        dir,
        github_url,
        http,
        ..
    } = Outside::start("mainloop-chat-cli-", None).await?;
    let model = ScriptedModel::new(TOKEN, vec![]);
    let model_url = model
        .clone()
        .serve(tokio::net::TcpListener::bind("127.0.0.1:0").await?)
        .await?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let base = format!("http://127.0.0.1:{port}");
    let exe = env!("CARGO_BIN_EXE_mainloop");
    let up = Mainloop::start_with(
        &dir.path().join(".mainloop"),
        port,
        &github_url,
        "gh",
        &model_url,
        "",
        &[
            ("CLAUDE_CODE_OAUTH_TOKEN", TOKEN),
            ("CHAT_CLI", exe),
            ("CHAT_CLI_ARGS_PREFIX", "fake-claude"),
            ("OLLAMA_HOST", "127.0.0.1:9"),
        ],
    )?;
    let said = format!(
        "Chat LLM:  Claude Code CLI 2.1.197 (Claude Code) ({exe}), model claude-sonnet-4-5, signed in with \
         CLAUDE_CODE_OAUTH_TOKEN; only mainloop's tools"
    );
    assert!(up.printed.iter().any(|l| l == &said), "{:?}", up.printed);
    assert!(
        up.printed.iter().any(|l| l.contains("TEST MODE")),
        "up says loudly that X-User-ID is believed: {:?}",
        up.printed
    );
    // In test mode `up` lets test suites seed tasks (the scheduler serves seed-task).
    let seeded: Value = http
        .post(format!("{base}/internal/test/seed-task"))
        .header("x-user-id", "seed-checker")
        .json(
            &json!({"status": "waiting_plan_review", "description": "Add a README",
            "repo_url": "https://github.com/test/repo", "plan": "1. Write it"}),
        )
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    assert_eq!(seeded["status"], "waiting_plan_review", "{seeded}");

    model.push(vec![
        Turn::Tool {
            name: "mcp__mainloop__list_tasks".into(),
            input: json!({}),
        },
        Turn::Text("Nothing is running.".into()),
    ]);
    let first = chat(&http, &base, None, "what is running?").await?;
    assert_eq!(first["message"]["content"], "Nothing is running.");
    let offered: Vec<Value> = model.agent_requests()[0]["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| t["name"].clone())
        .collect();
    assert_eq!(
        offered,
        [
            "mcp__mainloop__spawn_task",
            "mcp__mainloop__list_tasks",
            "mcp__mainloop__add_context_to_task",
            "mcp__mainloop__cancel_task",
            "mcp__mainloop__retry_task",
            "mcp__mainloop__suggest_routing"
        ]
    );
    let (listed, failed) = last_tool_result(&model);
    assert!(!failed);
    assert_eq!(listed, "No tasks.\n\nNothing in the inbox needs the person.");
    let conversation = first["conversation_id"].as_str().unwrap_or_default().to_string();

    let spawn = Turn::Tool {
        name: "mcp__mainloop__spawn_task".into(),
        input: json!({"repo_url": "https://github.com/acme/widgets", "task_description": "Add a README"}),
    };
    model.push(vec![spawn.clone(), Turn::Text("Shall I go ahead?".into())]);
    let unconfirmed = chat(&http, &base, Some(&conversation), "add a README to acme/widgets").await?;
    assert_eq!(unconfirmed["message"]["content"], "Shall I go ahead?");
    let (refusal, failed) = last_tool_result(&model);
    assert!(failed, "{refusal}");
    assert!(refusal.contains("has not confirmed"), "{refusal}");
    let tasks: Value = http
        .get(format!("{base}/tasks"))
        .header("x-user-id", "alice")
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(tasks.as_array().map(Vec::len), Some(0), "{tasks}");

    model.push(vec![spawn, Turn::Text("Started.".into())]);
    let confirmed = chat(&http, &base, Some(&conversation), "yes, go ahead").await?;
    assert_eq!(confirmed["message"]["content"], "Started.");
    let (spawned, failed) = last_tool_result(&model);
    assert!(!failed, "{spawned}");
    let tasks = common::until(&http, &format!("{base}/tasks"), "the spawned task", |t| {
        t.as_array().is_some_and(|a| a.len() == 1)
    })
    .await?;
    assert_eq!(tasks[0]["description"], "Add a README");
    assert!(
        spawned.contains(tasks[0]["id"].as_str().unwrap_or("?")),
        "{spawned}"
    );
    Ok(())
}
