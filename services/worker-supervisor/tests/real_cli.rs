//! The adapter against the real Claude Code CLI (`@anthropic-ai/claude-code` 2.1.197, installed
//! by `make deps`), pointed at a scripted Messages API with `ANTHROPIC_BASE_URL`: planning stays
//! read-only, a second run resumes the first's session, a cancel kills what the CLI's Bash tool
//! started, API errors read in the API's words, and a missing key names the fix.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use mainloop_events::v1::JobMode;
use mainloop_fakes::scripted_model::{ScriptedModel, Turn};
use mainloop_testkit::git;
use mainloop_worker_supervisor::agent::{AgentConfig, AgentOutcome, AgentRun, process_tree, run_agent};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const KEY: &str = "sk-ant-real-cli-test";

/// The installed CLI (see the test kit).
fn claude() -> anyhow::Result<PathBuf> {
    Ok(mainloop_testkit::claude_cli()?)
}

struct Scene {
    dir: tempfile::TempDir,
    model: ScriptedModel,
    url: String,
}

impl Scene {
    async fn new(script: Vec<Turn>) -> anyhow::Result<Scene> {
        let dir = tempfile::tempdir()?;
        let repo = dir.path().join("repo");
        std::fs::create_dir_all(&repo)?;
        std::fs::create_dir_all(dir.path().join("home"))?;
        git(&repo, &["init", "-q", "-b", "main"])?;
        std::fs::write(repo.join("README.md"), "TODO: add a hello.txt file.\n")?;
        git(&repo, &["add", "-A"])?;
        git(
            &repo,
            &[
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "commit",
                "-qm",
                "init",
            ],
        )?;
        let model = ScriptedModel::new(KEY, script);
        let url = model
            .clone()
            .serve(tokio::net::TcpListener::bind("127.0.0.1:0").await?)
            .await?;
        Ok(Scene { dir, model, url })
    }

    fn config(&self, key: Option<&str>) -> anyhow::Result<AgentConfig> {
        let mut env = vec![("ANTHROPIC_BASE_URL".to_string(), self.url.clone())];
        if let Some(key) = key {
            env.push(("ANTHROPIC_API_KEY".into(), key.into()));
        }
        Ok(AgentConfig {
            program: claude()?,
            args_prefix: vec![],
            env,
            model: "sonnet".into(),
            timeout: Duration::from_secs(90),
            run_as: None,
            on_usage: |_| {},
        })
    }

    fn repo(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    fn run(&self, mode: JobMode, prompt: &str, resume: Option<String>) -> AgentRun {
        AgentRun {
            mode,
            prompt: prompt.into(),
            cwd: self.repo(),
            home: self.dir.path().join("home"),
            resume,
            run_id: format!("real-cli-{}", self.dir.path().display()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planning_is_read_only_and_the_next_run_resumes_the_session() -> anyhow::Result<()> {
    let scene = Scene::new(vec![]).await?;
    let notes = scene.repo().join("NOTES.md");
    scene.model.push(vec![
        Turn::Tool {
            name: "Write".into(),
            input: json!({"file_path": notes.display().to_string(), "content": "planning notes\n"}),
        },
        Turn::Tool {
            name: "Bash".into(),
            input: json!({"command": "touch BASH_WAS_HERE", "description": "try a command"}),
        },
        Turn::Tool {
            name: "ExitPlanMode".into(),
            input: json!({"plan": "# Plan\n1. Add hello.txt saying hello."}),
        },
        Turn::Text("The plan is ready for review.".into()),
    ]);
    let config = scene.config(Some(KEY))?;
    let mut logged = Vec::new();
    let outcome = run_agent(
        &config,
        &scene.run(
            JobMode::Plan,
            "Plan how to add hello.txt as the README asks.",
            None,
        ),
        &CancellationToken::new(),
        |_, line| logged.push(line),
    )
    .await;
    let AgentOutcome::Plan {
        plan_text,
        session_id,
        ..
    } = outcome
    else {
        anyhow::bail!("{outcome:?}\n{logged:#?}")
    };
    assert_eq!(plan_text, "# Plan\n1. Add hello.txt saying hello.");
    assert!(!notes.exists(), "planning wrote a file");
    assert!(
        !scene.repo().join("BASH_WAS_HERE").exists(),
        "planning ran a command"
    );

    scene
        .model
        .push(vec![Turn::Text("I remember the plan; hello.txt it is.".into())]);
    let outcome = run_agent(
        &config,
        &scene.run(
            JobMode::Implement,
            "Now implement the plan.",
            Some(session_id.clone()),
        ),
        &CancellationToken::new(),
        |_, _| {},
    )
    .await;
    assert!(
        matches!(&outcome, AgentOutcome::Done { session_id: same, .. } if *same == session_id),
        "{outcome:?}"
    );
    let last = scene.model.agent_requests().pop().unwrap_or_default();
    assert!(
        last["messages"].to_string().contains("Plan how to add hello.txt"),
        "the resumed run sent the first run's conversation"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_kills_what_the_bash_tool_started() -> anyhow::Result<()> {
    let scene = Scene::new(vec![Turn::Tool {
        name: "Bash".into(),
        input: json!({"command": "sleep 300", "description": "run the dev server"}),
    }])
    .await?;
    let config = scene.config(Some(KEY))?;
    let run = scene.run(JobMode::Implement, "Start the dev server.", None);
    let cancel = CancellationToken::new();
    let (watch_id, stopper) = (run.run_id.clone(), cancel.clone());
    let watcher = tokio::spawn(async move {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let sleeping: Vec<u32> = process_tree::find(&watch_id, 0)
                .iter()
                .map(|p| p.pid)
                .filter(|pid| {
                    std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "sleep")
                })
                .collect();
            if let Some(pid) = sleeping.first() {
                stopper.cancel();
                return Some(*pid);
            }
            if Instant::now() > deadline {
                stopper.cancel();
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let outcome = run_agent(&config, &run, &cancel, |_, _| {}).await;
    assert_eq!(outcome, AgentOutcome::Cancelled);
    let pid = watcher
        .await?
        .ok_or_else(|| anyhow::anyhow!("the Bash tool never started sleep"))?;
    let deadline = Instant::now() + Duration::from_secs(2);
    while std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z ")) {
        assert!(
            Instant::now() < deadline,
            "sleep (pid {pid}) still alive 2 s after the cancel"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_errors_and_a_missing_login_read_as_what_to_do() -> anyhow::Result<()> {
    let scene = Scene::new(vec![Turn::Error {
        status: 400,
        kind: "invalid_request_error".into(),
        message: "messages: text content blocks must be non-empty".into(),
    }])
    .await?;
    let outcome = run_agent(
        &scene.config(Some(KEY))?,
        &scene.run(JobMode::Implement, "Say hi.", None),
        &CancellationToken::new(),
        |_, _| {},
    )
    .await;
    assert_eq!(
        outcome,
        AgentOutcome::Failed {
            error: "Claude API error 400: messages: text content blocks must be non-empty".into(),
            retryable: false,
        }
    );
    let outcome = run_agent(
        &scene.config(None)?,
        &scene.run(JobMode::Implement, "Say hi.", None),
        &CancellationToken::new(),
        |_, _| {},
    )
    .await;
    let AgentOutcome::Failed { error, retryable } = &outcome else {
        anyhow::bail!("{outcome:?}")
    };
    assert!(!retryable, "{error}");
    assert!(
        error.contains("ANTHROPIC_API_KEY") && error.contains("CLAUDE_CODE_OAUTH_TOKEN"),
        "{error}"
    );
    Ok(())
}
