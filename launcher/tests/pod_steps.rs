//! The steps of an agent's Kubernetes Job (`mainloop pod-step checkout|agent|deliver`), run here
//! as the pod would run them, one after another, each with only what its container gets: the
//! git steps the token and the repository cache, the agent step neither (it sees only the
//! task's volume). Against the fake GitHub's private repository over authenticated smart HTTP
//! and the fake Claude Code CLI: a plan comes back as the agent step's outcome; an implement
//! job's leftovers are committed by the agent step and pushed by the deliver step; the token
//! is nowhere the agent can read.

use std::path::{Path, PathBuf};
use std::process::Command;

use mainloop_worker_supervisor::agent::AgentOutcome;
use mainloop_worker_supervisor::pod::{PodJob, PodLine};
use serde_json::json;

const TOKEN: &str = "ghp_pod_steps_token_0123456789";
const API_KEY: &str = "sk-pod-steps-api-key-0123456789";

struct Pod {
    dir: tempfile::TempDir,
    github: String,
}

impl Pod {
    async fn start() -> anyhow::Result<Pod> {
        mainloop_runtime::tls::install();
        let dir = tempfile::tempdir()?;
        let github = mainloop_fakes::github::FakeGitHub::new(dir.path().join("github"), TOKEN)
            .serve(tokio::net::TcpListener::bind("127.0.0.1:0").await?)
            .await?;
        reqwest::Client::new()
            .post(format!("{github}/_control/repos"))
            .json(&json!({"owner": "acme", "name": "widgets", "files": {"README.md": "# widgets\n"}}))
            .send()
            .await?
            .error_for_status()?;
        std::fs::create_dir_all(dir.path().join("secret"))?;
        std::fs::write(dir.path().join("secret/token"), format!("{TOKEN}\n"))?;
        // What the agent's container mounts: the task volume, and nothing of the cache.
        std::fs::create_dir_all(dir.path().join("work/tasks"))?;
        std::fs::create_dir_all(dir.path().join("agent-view"))?;
        std::os::unix::fs::symlink(dir.path().join("work/tasks"), dir.path().join("agent-view/tasks"))?;
        Ok(Pod { dir, github })
    }

    fn job(&self, job_id: &str, mode: &str, branch: Option<&str>, prompt: &str) -> PodJob {
        PodJob {
            task_id: "t1".into(),
            job_id: job_id.into(),
            attempt: 1,
            mode: mode.into(),
            owner: "acme".into(),
            name: "widgets".into(),
            clone_url: format!("{}/acme/widgets.git", self.github),
            default_branch: "main".into(),
            branch: branch.map(String::from),
            prompt: prompt.into(),
            model: "sonnet".into(),
            traceparent: String::new(),
        }
    }

    /// Runs one step as its container would; returns its exit code and what it printed.
    async fn step(&self, step: &str, job: &PodJob) -> anyhow::Result<(i32, Vec<PodLine>, String)> {
        let (dir, job) = (self.dir.path().to_path_buf(), serde_json::to_string(job)?);
        let step = step.to_string();
        tokio::task::spawn_blocking(move || run_step(&dir, &step, &job)).await?
    }
}

fn run_step(dir: &Path, step: &str, job: &str) -> anyhow::Result<(i32, Vec<PodLine>, String)> {
    let tmp = dir.join(format!("tmp-{step}"));
    std::fs::create_dir_all(&tmp)?;
    let mut command = Command::new(env!("CARGO_BIN_EXE_mainloop"));
    command
        .args(["pod-step", step])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", &tmp)
        .env("TMPDIR", &tmp)
        .env("MAINLOOP_JOB", job);
    if step == "agent" {
        command
            .env("MAINLOOP_WORK_ROOT", dir.join("agent-view"))
            .env("MAINLOOP_TOKEN_DIR", dir.join("no-secret-here"))
            .env("AGENT_PROGRAM", env!("CARGO_BIN_EXE_mainloop"))
            .env("AGENT_ARGS_PREFIX", "fake-claude")
            .env("ANTHROPIC_API_KEY", API_KEY);
    } else {
        command
            .env("MAINLOOP_WORK_ROOT", dir.join("work"))
            .env("MAINLOOP_TOKEN_DIR", dir.join("secret"))
            .env("ANTHROPIC_API_KEY", API_KEY);
    }
    let output = command.output()?;
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let lines = stdout
        .lines()
        .map(|l| serde_json::from_str::<PodLine>(l).map_err(|e| anyhow::anyhow!("{e}: {l}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let everything = format!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    Ok((output.status.code().unwrap_or(-1), lines, everything))
}

fn git(dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("git").args(args).current_dir(dir).output()?;
    anyhow::ensure!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_symlink() {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else if std::fs::read(&path).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle)) {
                found.push(path);
            }
        }
    }
    found
}

fn outcome(lines: &[PodLine]) -> Option<AgentOutcome> {
    lines.iter().find_map(|l| match l {
        PodLine::Outcome { outcome } => Some(outcome.clone()),
        _ => None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_and_an_implement_job_run_through_the_three_steps() -> anyhow::Result<()> {
    let pod = Pod::start().await?;

    // Planning: the checkout clones the private repository with the token; the agent plans
    // without it; the deliver step has nothing to push.
    let plan = pod.job(
        "t1-job-1",
        "plan",
        None,
        "The request:\nadd a quick start section",
    );
    let (code, lines, all) = pod.step("checkout", &plan).await?;
    assert_eq!(code, 0, "{all}");
    assert!(
        matches!(lines.last(), Some(PodLine::Log { line, .. }) if line.starts_with("checked out at ")),
        "{all}"
    );
    let (code, lines, all) = pod.step("agent", &plan).await?;
    assert_eq!(code, 0, "{all}");
    let Some(AgentOutcome::Plan { plan_text, .. }) = outcome(&lines) else {
        panic!("no plan: {all}");
    };
    assert!(
        plan_text.starts_with("# Plan: add a quick start section"),
        "{plan_text}"
    );
    assert!(!all.contains(API_KEY), "the agent's key reached its log");
    let (code, lines, all) = pod.step("deliver", &plan).await?;
    assert_eq!(code, 0, "{all}");
    assert_eq!(
        lines,
        [PodLine::Log {
            source: mainloop_events::v1::LogSource::System.into(),
            line: "nothing to deliver".into()
        }]
    );

    // Implementing on the task's branch: what the agent left uncommitted is committed by the
    // agent step, and the deliver step pushes it to GitHub over authenticated HTTP.
    let implement = pod.job(
        "t1-job-2",
        "implement",
        Some("docs/add-quick-start"),
        "Implement the quick start section, but leave it uncommitted",
    );
    let (code, _, all) = pod.step("checkout", &implement).await?;
    assert_eq!(code, 0, "{all}");
    let (code, lines, all) = pod.step("agent", &implement).await?;
    assert_eq!(code, 0, "{all}");
    assert!(
        matches!(outcome(&lines), Some(AgentOutcome::Done { .. })),
        "{all}"
    );
    assert!(all.contains("mainloop committed them"), "{all}");
    let (code, lines, all) = pod.step("deliver", &implement).await?;
    assert_eq!(code, 0, "{all}");
    let Some(PodLine::Delivered { commits, head }) = lines.last().cloned() else {
        panic!("not delivered: {all}");
    };
    assert_eq!(commits, 1);
    let bare = pod.dir.path().join("github/acme/widgets.git");
    assert_eq!(
        git(&bare, &["rev-parse", "refs/heads/docs/add-quick-start"])?,
        head
    );
    assert!(git(&bare, &["show", "docs/add-quick-start:README.md"])?.contains("## Quick start"));

    // Nothing the agent can read holds the token: not the clone, not its config, not its home.
    let leaked = files_containing(&pod.dir.path().join("work/tasks"), TOKEN.as_bytes());
    assert!(leaked.is_empty(), "the token is in {leaked:?}");
    let clone = pod.dir.path().join("work/tasks/t1/repo");
    assert!(
        !clone.join(".git/objects/info/alternates").exists(),
        "the clone borrows from the cache"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkout_refused_by_github_says_so_and_stops_the_pod() -> anyhow::Result<()> {
    let pod = Pod::start().await?;
    std::fs::write(pod.dir.path().join("secret/token"), "ghp_revoked_token")?;
    let plan = pod.job("t1-job-1", "plan", None, "plan it");
    let (code, lines, all) = pod.step("checkout", &plan).await?;
    assert_ne!(code, 0, "{all}");
    let Some(PodLine::Failed { error, retryable }) = lines.last().cloned() else {
        panic!("no failure said: {all}");
    };
    assert!(!retryable, "a refused token is not retried: {error}");
    assert!(error.starts_with("preparing the workspace failed"), "{error}");
    Ok(())
}
