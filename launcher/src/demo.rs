//! `mainloop up --demo`: the outside world replaced by the fakes the tests use, each speaking
//! the real protocol, so the real clients run: a GitHub with the repository `acme/widgets` (whose
//! CI fails once, then passes), the Claude Code CLI (`mainloop fake-claude`), and the Anthropic
//! Messages API.

use std::path::Path;

use anyhow::Context;
use mainloop_fakes::anthropic::FakeAnthropic;
use mainloop_fakes::github::FakeGitHub;
use mainloop_runtime::Secret;
use serde_json::json;

use crate::cli::UpArgs;

const TOKEN: &str = "demo-github-token";
const KEY: &str = "demo-anthropic-key";

pub async fn start(args: &mut UpArgs, data_dir: &Path) -> anyhow::Result<()> {
    let github = FakeGitHub::new(data_dir.join("github"), TOKEN);
    let github_url = github
        .serve(tokio::net::TcpListener::bind("127.0.0.1:0").await?)
        .await?;
    reqwest::Client::new()
        .post(format!("{github_url}/_control/repos"))
        .json(&json!({"owner": "acme", "name": "widgets", "ci": "fail_then_pass"}))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .context("the demo GitHub did not create acme/widgets")?;
    let llm_url = FakeAnthropic::new(KEY)
        .serve(tokio::net::TcpListener::bind("127.0.0.1:0").await?)
        .await?;

    args.github.github_api_url = github_url.clone();
    args.github.github_token = Some(Secret::new(TOKEN));
    args.agent.git_token = Some(Secret::new(TOKEN));
    args.github.github_poll_interval_ms = 1000;
    args.llm.chat_api_url = llm_url.clone();
    args.llm.chat_api_key = Some(Secret::new(KEY));
    // The fake CLI, like the real one, needs a key; it calls no API with it.
    args.agent.anthropic_base_url = Some(llm_url);
    args.agent.anthropic_api_key = Some(Secret::new(KEY));
    args.agent.agent_program = std::env::current_exe().context("cannot find the mainloop executable")?;
    args.agent.agent_args_prefix = vec!["fake-claude".into()];
    args.agent.agent_model = "sonnet".into();
    println!("DEMO MODE: nothing leaves this machine.");
    println!("  GitHub:    fake, at {github_url} (repository acme/widgets; its CI fails once, then passes)");
    println!("  Claude:    fake Claude Code CLI (mainloop fake-claude), making real commits");
    println!("  Chat LLM:  fake Anthropic API that asks before it spawns");
    println!(
        "  Try: \"add a quick start section to the README of https://github.com/acme/widgets\", then \"yes\"."
    );
    Ok(())
}
