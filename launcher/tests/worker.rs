//! The worker-supervisor with the fake Claude Code CLI (`mainloop fake-claude`) on real NATS,
//! Postgres and git, against the fake GitHub's git over authenticated smart HTTP (a private
//! repository: even cloning needs the token): a plan job reports the plan and cannot write; an
//! implement job continues the plan's agent session, its uncommitted edits are committed, the
//! branch is pushed with the supervisor's credentials, and the agent's own git has none.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use mainloop_bus::{Bus, Expect, request};
use mainloop_events::v1::{JobMode, JobRequested, RepoRef, job_succeeded};
use mainloop_events::{Envelope, Payload, subjects};
use mainloop_runtime::Secret;
use mainloop_testkit::{Infra, git};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "ghp_worker_test_token_0123456789";

/// The fake GitHub with a private `acme/widgets`; returns its base URL.
async fn fake_github(root: &Path) -> anyhow::Result<String> {
    let url = mainloop_fakes::github::FakeGitHub::new(root.to_path_buf(), TOKEN)
        .serve(tokio::net::TcpListener::bind("127.0.0.1:0").await?)
        .await?;
    reqwest::Client::new()
        .post(format!("{url}/_control/repos"))
        .json(&json!({"owner": "acme", "name": "widgets", "files": {"README.md": "# widgets\n"}}))
        .send()
        .await?
        .error_for_status()?;
    Ok(url)
}

/// Every file under `dir` that contains `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
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
            } else if std::fs::read(&path).is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
            {
                found.push(path);
            }
        }
    }
    found
}

async fn job_result(bus: &Bus, after: u64) -> anyhow::Result<(u64, Envelope)> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let events = bus
            .read_subject(subjects::JOBS, &subjects::job("u1", "t1")?, after)
            .await?;
        if let Some(done) = events.iter().find(|s| {
            matches!(
                s.event.payload,
                Some(Payload::JobSucceeded(_) | Payload::JobFailed(_))
            )
        }) {
            return Ok((done.stream_sequence, done.event.clone()));
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "no result; events so far: {:?}",
            events.iter().map(|e| &e.event.r#type).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn request(mode: JobMode, job: &str, branch: &str, prompt: &str) -> Envelope {
    Envelope::new(
        "u1",
        "t1",
        Payload::JobRequested(JobRequested {
            job_id: job.into(),
            attempt: 1,
            mode: mode as i32,
            repo: Some(RepoRef {
                owner: "acme".into(),
                name: "widgets".into(),
                html_url: String::new(),
            }),
            branch_name: branch.into(),
            prompt: prompt.into(),
            ..Default::default()
        }),
    )
}

/// A worker-supervisor on fresh infrastructure, with the repository lookup answered from the
/// fake GitHub, as the github-watcher would.
struct Setup {
    dir: tempfile::TempDir,
    infra: Infra,
    bus: Bus,
    github_root: std::path::PathBuf,
    github_url: String,
    shutdown: CancellationToken,
}

impl Setup {
    async fn start(api_key: Option<&str>) -> anyhow::Result<Setup> {
        Self::start_as(api_key, None).await
    }

    /// With `agent_user`, agents run as that user, from a copy of the fake CLI it can reach.
    async fn start_as(api_key: Option<&str>, agent_user: Option<&str>) -> anyhow::Result<Setup> {
        mainloop_runtime::tls::install();
        let dir = tempfile::tempdir()?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        let program = match agent_user {
            Some(_) => {
                let copy = dir.path().join("bin/mainloop");
                std::fs::create_dir_all(dir.path().join("bin"))?;
                std::fs::copy(env!("CARGO_BIN_EXE_mainloop"), &copy)?;
                copy
            }
            None => env!("CARGO_BIN_EXE_mainloop").into(),
        };
        let github_root = dir.path().join("github");
        let github = fake_github(&github_root).await?;
        let infra = Infra::start()?;
        let agent = mainloop_worker_supervisor::AgentSettings {
            work_dir: dir.path().join("work"),
            agent_program: program,
            agent_args_prefix: vec!["fake-claude".into()],
            agent_model: "sonnet".into(),
            agent_slots: 2,
            agent_timeout_secs: 60,
            anthropic_base_url: None,
            anthropic_api_key: api_key.map(Secret::new),
            claude_code_oauth_token: None,
            git_token: Some(Secret::new(TOKEN)),
            // The fake CLI is this test build's binary, which another user may not reach.
            agent_user: Some(agent_user.unwrap_or_default().to_string()),
        };
        let shutdown = CancellationToken::new();
        tokio::spawn(mainloop_worker_supervisor::run(
            mainloop_worker_supervisor::Config::new(infra.common(), agent),
            shutdown.clone(),
        ));
        let bus = infra.bus().await?;
        let clone_url = format!("{github}/acme/widgets.git");
        let lookup = request::Server::bind(&bus, "query.github.repo", "test").await?;
        tokio::spawn(lookup.run_json(shutdown.clone(), move |_: Value| {
            let clone_url = clone_url.clone();
            async move {
                Ok::<_, mainloop_events::v1::CommandError>(
                    json!({"clone_url": clone_url, "default_branch": "main"}),
                )
            }
        }));
        infra.ready(1).await?;
        Ok(Setup {
            dir,
            infra,
            bus,
            github_root,
            github_url: github,
            shutdown,
        })
    }

    fn bare(&self) -> std::path::PathBuf {
        self.github_root.join("acme").join("widgets.git")
    }

    async fn logs(&self) -> anyhow::Result<Vec<String>> {
        let logs = self
            .bus
            .read_subject(subjects::LOGS, &subjects::log("u1", "t1")?, 0)
            .await?;
        Ok(logs
            .iter()
            .filter_map(|s| match &s.event.payload {
                Some(Payload::WorkerLog(log)) => Some(log.line.clone()),
                _ => None,
            })
            .collect())
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        self.shutdown.cancel();
        let _ = &self.infra;
    }
}

// Multi-threaded: the test runs git against the fake GitHub, which serves on this runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_and_implement_jobs_run_the_agent_and_push() -> anyhow::Result<()> {
    let setup = Setup::start(Some("sk-test-secret-key")).await?;
    let bus = &setup.bus;

    let plan = request(
        JobMode::Plan,
        "t1-job-1",
        "",
        "The request:\nadd a quick start section\n(write notes while planning)",
    );
    bus.publish(&subjects::job_work("u1", "t1")?, &plan, Expect::Any)
        .await?;
    let (seq, result) = job_result(bus, 0).await?;
    let Some(Payload::JobSucceeded(done)) = result.payload else {
        anyhow::bail!("{result:?}")
    };
    let plan_session = done.agent_session_id.clone();
    let Some(job_succeeded::Outcome::Plan(plan_outcome)) = done.outcome else {
        anyhow::bail!("not a plan")
    };
    assert!(
        plan_outcome
            .plan_text
            .starts_with("# Plan: add a quick start section"),
        "{}",
        plan_outcome.plan_text
    );
    assert_eq!(result.causation_id, plan.id);
    let worktree = setup.dir.path().join("work/tasks/t1/repo");
    assert!(!worktree.join("NOTES.md").exists(), "planning wrote a file");
    assert_eq!(
        git(&worktree, &["status", "--porcelain"])?,
        "",
        "planning changed the worktree"
    );

    let implement = request(
        JobMode::Implement,
        "t1-job-2",
        "docs/add-quick-start",
        "Implement the quick start section, but leave it uncommitted",
    );
    bus.publish(&subjects::job_work("u1", "t1")?, &implement, Expect::Any)
        .await?;
    // The same request again (a redelivery) runs nothing twice.
    bus.publish(
        &subjects::job_work("u1", "t1")?,
        &Envelope {
            id: mainloop_events::new_event_id(),
            ..implement.clone()
        },
        Expect::Any,
    )
    .await?;
    let (_, result) = job_result(bus, seq).await?;
    let Some(Payload::JobSucceeded(done)) = result.payload else {
        anyhow::bail!("{result:?}")
    };
    assert_eq!(
        done.agent_session_id, plan_session,
        "the implement job continued the plan's session"
    );
    let Some(job_succeeded::Outcome::Code(code)) = done.outcome else {
        anyhow::bail!("not code")
    };
    assert_eq!(
        (code.commits, code.branch_name.as_str()),
        (1, "docs/add-quick-start"),
        "the edits the agent left uncommitted were committed"
    );
    let bare = setup.bare();
    let pushed = git(&bare, &["rev-parse", "refs/heads/docs/add-quick-start"])?;
    assert_eq!(
        pushed, code.head_sha,
        "the branch was pushed over authenticated HTTP"
    );
    let readme = git(&bare, &["show", "docs/add-quick-start:README.md"])?;
    assert!(readme.contains("## Quick start"), "{readme}");

    let lines = setup.logs().await?;
    assert!(
        lines.iter().any(|l| l.contains("I'll read the README first.")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!("resuming agent session {plan_session}"))),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("Resuming our conversation")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("mainloop committed them")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .all(|l| !l.contains("sk-test-secret-key") && !l.contains(TOKEN))
    );

    // The agent's git has no credentials: a push with the agent's environment is refused.
    let home = setup.dir.path().join("work/tasks/t1/home");
    let agent_push = std::process::Command::new("git")
        .args(["push", "origin", "HEAD:refs/heads/pushed-by-agent"])
        .current_dir(&worktree)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", &home)
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()?;
    assert!(!agent_push.status.success(), "the agent's push went through");
    assert!(
        String::from_utf8_lossy(&agent_push.stderr).contains("could not read Username"),
        "{}",
        String::from_utf8_lossy(&agent_push.stderr)
    );
    assert!(
        git(
            &bare,
            &["rev-parse", "--verify", "--quiet", "refs/heads/pushed-by-agent"]
        )
        .is_err()
    );
    let leaked = files_containing(&setup.dir.path().join("work"), TOKEN.as_bytes());
    assert!(leaked.is_empty(), "the token is in {leaked:?}");

    tokio::time::sleep(Duration::from_millis(500)).await;
    let results = bus
        .read_subject(subjects::JOBS, &subjects::job("u1", "t1")?, 0)
        .await?;
    let succeeded = results
        .iter()
        .filter(|s| matches!(s.event.payload, Some(Payload::JobSucceeded(_))))
        .count();
    assert_eq!(succeeded, 2, "one result per job, however often it was delivered");
    Ok(())
}

/// Without a key or login the agent cannot work; the job fails once, for good, naming the fix.
#[tokio::test]
async fn no_agent_credentials_is_a_permanent_failure_naming_the_settings() -> anyhow::Result<()> {
    let setup = Setup::start(None).await?;
    let plan = request(
        JobMode::Plan,
        "t1-job-1",
        "",
        "The request:\nadd a quick start section",
    );
    setup
        .bus
        .publish(&subjects::job_work("u1", "t1")?, &plan, Expect::Any)
        .await?;
    let (_, result) = job_result(&setup.bus, 0).await?;
    let Some(Payload::JobFailed(failed)) = result.payload else {
        anyhow::bail!("{result:?}")
    };
    assert!(!failed.retryable, "{failed:?}");
    assert!(
        failed.error.contains("ANTHROPIC_API_KEY") && failed.error.contains("CLAUDE_CODE_OAUTH_TOKEN"),
        "{}",
        failed.error
    );
    Ok(())
}

/// As root, agents run as an unprivileged user: the task's clone is theirs, the supervisor's
/// environment (where the GitHub token lives) is not readable to them, and the work still gets
/// committed and pushed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_root_the_agent_runs_as_its_own_user_and_cannot_read_the_supervisor() -> anyhow::Result<()> {
    let root = std::fs::metadata("/proc/self")?.uid() == 0;
    let Some((nobody, _)) = mainloop_local_servers::user_ids("nobody")? else {
        anyhow::bail!("this machine has no `nobody` user")
    };
    let setup = Setup::start_as(Some("sk-test-secret-key"), Some("nobody")).await?;
    let bus = &setup.bus;
    let implement = request(
        JobMode::Implement,
        "t1-job-1",
        "docs/add-quick-start",
        "Implement the quick start section (peek at your parent's environment)",
    );
    bus.publish(&subjects::job_work("u1", "t1")?, &implement, Expect::Any)
        .await?;
    let (_, result) = job_result(bus, 0).await?;
    let Some(Payload::JobSucceeded(done)) = result.payload else {
        anyhow::bail!("{result:?}")
    };
    let Some(job_succeeded::Outcome::Code(code)) = done.outcome else {
        anyhow::bail!("not code")
    };
    assert_eq!(code.commits, 1);
    let pushed = git(&setup.bare(), &["rev-parse", "refs/heads/docs/add-quick-start"])?;
    assert_eq!(
        pushed, code.head_sha,
        "the agent's commit was pushed by the supervisor"
    );
    let lines = setup.logs().await?;
    let ran_as = if root {
        nobody
    } else {
        std::fs::metadata("/proc/self")?.uid()
    };
    assert!(
        lines
            .iter()
            .any(|l| l == &format!("fake-claude: running as uid {ran_as}")),
        "{lines:?}"
    );
    if root {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("parent environment: not readable")),
            "the agent read the supervisor's environment: {lines:?}"
        );
        let repo = setup.dir.path().join("work/tasks/t1/repo");
        assert_eq!(
            std::fs::metadata(repo.join("README.md"))?.uid(),
            nobody,
            "the clone is the agent's"
        );
        assert_eq!(std::fs::metadata(repo.join(".git/index"))?.uid(), nobody);
    }
    Ok(())
}

/// GitHub's git endpoint is down when a job starts: the job waits it out (saying so in its log)
/// instead of failing an attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_github_outage_at_the_start_of_a_job_costs_no_attempt() -> anyhow::Result<()> {
    let setup = Setup::start(Some("sk-test-secret-key")).await?;
    reqwest::Client::new()
        .post(format!("{}/_control/faults", setup.github_url))
        .json(&json!({"route": "GIT", "status": 503, "for_ms": 2500}))
        .send()
        .await?
        .error_for_status()?;
    let plan = request(
        JobMode::Plan,
        "t1-job-1",
        "",
        "The request:\nadd a quick start section",
    );
    setup
        .bus
        .publish(&subjects::job_work("u1", "t1")?, &plan, Expect::Any)
        .await?;
    let (_, result) = job_result(&setup.bus, 0).await?;
    assert!(
        matches!(result.payload, Some(Payload::JobSucceeded(_))),
        "{result:?}"
    );
    let lines = setup.logs().await?;
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("GitHub unavailable (preparing the workspace failed")),
        "{lines:?}"
    );
    Ok(())
}

/// What an agent writes into its clone's `.git` (a hook, an fsmonitor command, a push URL)
/// never runs with the supervisor's rights or redirects the push: the supervisor's git in the
/// clone has hooks and fsmonitor off, and the push goes from the cache to GitHub's clone URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_the_agent_writes_into_git_runs_or_redirects_the_push() -> anyhow::Result<()> {
    let setup = Setup::start(Some("sk-test-secret-key")).await?;
    let bus = &setup.bus;
    let plan = request(
        JobMode::Plan,
        "t1-job-1",
        "",
        "The request:\nadd a quick start section",
    );
    bus.publish(&subjects::job_work("u1", "t1")?, &plan, Expect::Any)
        .await?;
    let (seq, _) = job_result(bus, 0).await?;

    // The agent (anyone with its rights) plants things in its clone.
    let clone = setup.dir.path().join("work/tasks/t1/repo");
    let ran = setup.dir.path().join("ran");
    let marker = |what: &str| format!("sh -c 'echo {what} >> {}'", ran.display());
    git(&clone, &["config", "core.fsmonitor", &marker("fsmonitor")])?;
    git(
        &clone,
        &[
            "config",
            "remote.origin.pushurl",
            "http://127.0.0.1:9/elsewhere.git",
        ],
    )?;
    let hooks = clone.join(".git/hooks");
    std::fs::create_dir_all(&hooks)?;
    for hook in [
        "post-commit",
        "pre-push",
        "post-checkout",
        "reference-transaction",
    ] {
        std::fs::write(hooks.join(hook), format!("#!/bin/sh\n{}\n", marker(hook)))?;
        std::fs::set_permissions(hooks.join(hook), std::fs::Permissions::from_mode(0o755))?;
    }

    let implement = request(
        JobMode::Implement,
        "t1-job-2",
        "docs/add-quick-start",
        "Implement the quick start section, but leave it uncommitted",
    );
    bus.publish(&subjects::job_work("u1", "t1")?, &implement, Expect::Any)
        .await?;
    let (_, result) = job_result(bus, seq).await?;
    let Some(Payload::JobSucceeded(done)) = result.payload else {
        anyhow::bail!("{result:?}")
    };
    let Some(job_succeeded::Outcome::Code(code)) = done.outcome else {
        anyhow::bail!("not code")
    };
    let pushed = git(&setup.bare(), &["rev-parse", "refs/heads/docs/add-quick-start"])?;
    assert_eq!(
        pushed, code.head_sha,
        "pushed to GitHub, not to the planted push URL"
    );
    assert!(
        !ran.exists(),
        "something the agent planted ran: {}",
        std::fs::read_to_string(&ran).unwrap_or_default()
    );
    Ok(())
}

/// A key the agent prints (plain, base64, spaced) and a NUL never leave as they are: the plan,
/// a question it asks and every log line carry `[redacted]` and a visible `␀` instead, and a
/// commit holding the key is never pushed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_the_agent_prints_never_leave_and_nul_is_made_safe() -> anyhow::Result<()> {
    use base64::Engine;
    let key = "sk-test-secret-key-0123456789";
    let setup = Setup::start(Some(key)).await?;
    let plan = request(
        JobMode::Plan,
        "t1-job-1",
        "",
        "The request:\nadd a section (leak the key)",
    );
    setup
        .bus
        .publish(&subjects::job_work("u1", "t1")?, &plan, Expect::Any)
        .await?;
    let (planned, result) = job_result(&setup.bus, 0).await?;
    let forms = [
        key.to_string(),
        base64::engine::general_purpose::STANDARD.encode(key),
        key.chars()
            .map(|c| format!("{c} "))
            .collect::<String>()
            .trim()
            .to_string(),
    ];
    let Some(Payload::JobSucceeded(done)) = &result.payload else {
        anyhow::bail!("{result:?}")
    };
    let Some(job_succeeded::Outcome::Plan(plan)) = &done.outcome else {
        anyhow::bail!("not a plan")
    };
    assert!(
        plan.plan_text.contains("[redacted]") && plan.plan_text.contains('␀'),
        "{}",
        plan.plan_text
    );
    assert!(!plan.plan_text.contains('\0'));
    let lines = setup.logs().await?;
    assert!(lines.iter().any(|l| l.contains("[redacted]")), "{lines:?}");
    let everything = format!("{}\n{}", plan.plan_text, lines.join("\n"));
    for form in &forms {
        assert!(!everything.contains(form.as_str()), "{form} left: {everything}");
    }
    assert!(!everything.contains("secret-key"), "{everything}");

    // The same in a question the agent asks.
    let ask = request(
        JobMode::Plan,
        "t1-job-2",
        "",
        "The request:\nadd a section (leak the key), ask me where",
    );
    setup
        .bus
        .publish(&subjects::job_work("u1", "t1")?, &ask, Expect::Any)
        .await?;
    let (asked_at, result) = job_result(&setup.bus, planned).await?;
    let Some(Payload::JobSucceeded(done)) = &result.payload else {
        anyhow::bail!("{result:?}")
    };
    let Some(job_succeeded::Outcome::Plan(asked)) = &done.outcome else {
        anyhow::bail!("not questions")
    };
    let question = asked
        .questions
        .first()
        .map(|q| q.question.clone())
        .unwrap_or_default();
    assert!(
        question.contains("[redacted]") && question.contains('␀') && !question.contains('\0'),
        "{question}"
    );
    for form in &forms {
        assert!(!question.contains(form.as_str()), "{form} left: {question}");
    }

    // A commit that holds the key (its message, here) is never pushed: the job fails for good,
    // with the reason and without the key.
    let implement = request(
        JobMode::Implement,
        "t1-job-3",
        "docs/leaky",
        "Implement the quick start section (leak the key)",
    );
    setup
        .bus
        .publish(&subjects::job_work("u1", "t1")?, &implement, Expect::Any)
        .await?;
    let (_, result) = job_result(&setup.bus, asked_at).await?;
    let Some(Payload::JobFailed(refused)) = &result.payload else {
        anyhow::bail!("{result:?}")
    };
    assert!(
        refused.error.contains("contain a configured secret") && !refused.retryable,
        "{refused:?}"
    );
    assert!(
        git(&setup.bare(), &["rev-parse", "--verify", "refs/heads/docs/leaky"]).is_err(),
        "nothing was pushed"
    );
    let lines = setup.logs().await?.join("\n");
    for form in &forms {
        assert!(!lines.contains(form.as_str()), "{form} in the logs");
    }
    Ok(())
}
