//! Built-in fakes for `mainloop up`: `--demo` replaces the whole outside world, `--fake` some of
//! it (say, a fake GitHub with the real agent and model). Each fake is the one the tests use and
//! speaks the real protocol, so the real clients run: a GitHub with the private repository
//! `acme/widgets` (whose CI fails once, then passes), the Claude Code CLI (`mainloop
//! fake-claude`), the Anthropic Messages API.

use crate::console::say;
use std::path::Path;

use anyhow::Context;
use mainloop_fakes::anthropic::FakeAnthropic;
use mainloop_fakes::github::FakeGitHub;
use mainloop_runtime::Secret;
use serde_json::json;

use crate::cli::{Fake, UpArgs};

const TOKEN: &str = "demo-github-token";
const KEY: &str = "demo-anthropic-key";

/// Starts the fakes in `fakes` (their data fresh under `data_dir`) and points `args` at them.
pub async fn start(args: &mut UpArgs, data_dir: &Path, fakes: &[Fake]) -> anyhow::Result<()> {
    let all = fakes.len() == 3;
    if all {
        say!("DEMO MODE: nothing leaves this machine.");
    }
    if fakes.contains(&Fake::Github) {
        fake_github(args, &data_dir.join("fake-github")).await?;
    }
    if fakes.contains(&Fake::Llm) {
        let llm_url = FakeAnthropic::new(KEY)
            .serve(tokio::net::TcpListener::bind("127.0.0.1:0").await?)
            .await?;
        args.llm.chat_api_url = llm_url.clone();
        args.llm.chat_api_key = Some(Secret::new(KEY));
        say!("  Chat LLM:  fake Anthropic API that asks before it spawns, at {llm_url}");
        if fakes.contains(&Fake::Claude) {
            // The fake CLI, like the real one, needs a key; it calls no API with it.
            args.agent.anthropic_base_url = Some(llm_url);
            args.agent.anthropic_api_key = Some(Secret::new(KEY));
        }
    }
    if fakes.contains(&Fake::Claude) {
        args.agent.agent_program = std::env::current_exe().context("cannot find the mainloop executable")?;
        args.agent.agent_args_prefix = vec!["fake-claude".into()];
        args.agent.agent_model = "sonnet".into();
        // The fake CLI is mainloop itself, which another user may not be able to reach; it is
        // our own code, so it runs as us.
        args.agent.agent_user = Some(String::new());
        if args.agent.anthropic_api_key.is_none() && args.agent.claude_code_oauth_token.is_none() {
            args.agent.anthropic_api_key = Some(Secret::new(KEY));
        }
        say!("  Claude:    fake Claude Code CLI (mainloop fake-claude), making real commits");
    }
    if fakes.contains(&Fake::Github) && fakes.contains(&Fake::Llm) {
        say!(
            "  Try: \"add a quick start section to the README of https://github.com/acme/widgets\", then \"yes\"."
        );
    }
    Ok(())
}

async fn fake_github(args: &mut UpArgs, root: &Path) -> anyhow::Result<()> {
    if root.exists() {
        std::fs::remove_dir_all(root).with_context(|| format!("cannot reset {}", root.display()))?;
    }
    let github = FakeGitHub::new(root.to_path_buf(), TOKEN);
    let github_url = github
        .serve(tokio::net::TcpListener::bind("127.0.0.1:0").await?)
        .await?;
    reqwest::Client::new()
        .post(format!("{github_url}/_control/repos"))
        .json(&json!({"owner": "acme", "name": "widgets", "ci": "fail_then_pass"}))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .context("the fake GitHub did not create acme/widgets")?;
    args.github.github_api_url = github_url.clone();
    args.github.github_token = Some(Secret::new(TOKEN));
    args.github.github_poll_interval_ms = 1000;
    args.github.github_poll_max_interval_ms = 5000;
    args.github.github_poll_with_webhooks_ms = 5000;
    args.agent.git_token = Some(Secret::new(TOKEN));
    say!(
        "  GitHub:    fake, at {github_url} (private repository acme/widgets, pages at {github_url}/acme/widgets/pull/N; its CI fails once, then passes)"
    );
    Ok(())
}
