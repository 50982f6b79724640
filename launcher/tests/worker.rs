//! The worker-supervisor with the fake Claude Code CLI (`mainloop fake-claude`) on real NATS,
//! Postgres and git: a plan job reports the plan; an implement job commits, pushes the branch to
//! the repository and reports the head.

use std::path::Path;
use std::time::Duration;

use mainloop_bus::{Bus, Expect, request};
use mainloop_events::v1::{JobMode, JobRequested, RepoRef, job_succeeded};
use mainloop_events::{Envelope, Payload, subjects};
use mainloop_runtime::Secret;
use mainloop_testkit::Infra;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

fn git(dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A bare repository with one commit on main, like a fresh GitHub repository.
fn origin(dir: &Path) -> anyhow::Result<std::path::PathBuf> {
    let seed = dir.join("seed");
    std::fs::create_dir_all(&seed)?;
    git(&seed, &["init", "-q", "-b", "main"])?;
    std::fs::write(seed.join("README.md"), "# widgets\n")?;
    git(&seed, &["add", "-A"])?;
    git(
        &seed,
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
    let bare = dir.join("widgets.git");
    git(
        dir,
        &[
            "clone",
            "-q",
            "--bare",
            &seed.display().to_string(),
            &bare.display().to_string(),
        ],
    )?;
    Ok(bare)
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

#[tokio::test]
async fn plan_and_implement_jobs_run_the_agent_and_push() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let bare = origin(dir.path())?;
    let infra = Infra::start()?;
    let agent = mainloop_worker_supervisor::AgentSettings {
        work_dir: dir.path().join("work"),
        agent_program: env!("CARGO_BIN_EXE_mainloop").into(),
        agent_args_prefix: vec!["fake-claude".into()],
        agent_model: "sonnet".into(),
        agent_slots: 2,
        agent_timeout_secs: 60,
        anthropic_base_url: None,
        anthropic_api_key: Some(Secret::new("sk-test-secret-key")),
    };
    let shutdown = CancellationToken::new();
    tokio::spawn(mainloop_worker_supervisor::run(
        mainloop_worker_supervisor::Config {
            common: infra.common(),
            agent,
        },
        shutdown.clone(),
    ));
    let bus = infra.bus().await?;
    // The github-watcher's repository lookup, answered here.
    let clone_url = format!("file://{}", bare.display());
    let lookup = request::Server::bind(&bus, "query.github.repo", "test").await?;
    let stop_lookup = shutdown.clone();
    tokio::spawn(lookup.run_json(stop_lookup, move |_: Value| {
        let clone_url = clone_url.clone();
        async move {
            Ok::<_, mainloop_events::v1::CommandError>(
                json!({"clone_url": clone_url, "default_branch": "main"}),
            )
        }
    }));
    infra.ready(1).await?;

    let plan = request(
        JobMode::Plan,
        "t1-job-1",
        "",
        "The request:\nadd a quick start section",
    );
    bus.publish(&subjects::job_work("u1", "t1")?, &plan, Expect::Any)
        .await?;
    let (seq, result) = job_result(&bus, 0).await?;
    let Some(Payload::JobSucceeded(done)) = result.payload else {
        anyhow::bail!("{result:?}")
    };
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

    let implement = request(
        JobMode::Implement,
        "t1-job-2",
        "docs/add-quick-start",
        "Implement the quick start section",
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
    let (_, result) = job_result(&bus, seq).await?;
    let Some(Payload::JobSucceeded(done)) = result.payload else {
        anyhow::bail!("{result:?}")
    };
    let Some(job_succeeded::Outcome::Code(code)) = done.outcome else {
        anyhow::bail!("not code")
    };
    assert_eq!(
        (code.commits, code.branch_name.as_str()),
        (1, "docs/add-quick-start")
    );
    let pushed = git(&bare, &["rev-parse", "refs/heads/docs/add-quick-start"])?;
    assert_eq!(pushed, code.head_sha, "the branch was pushed to the repository");
    let readme = git(&bare, &["show", "docs/add-quick-start:README.md"])?;
    assert!(readme.contains("## Quick start"), "{readme}");

    let logs = bus
        .read_subject(subjects::LOGS, &subjects::log("u1", "t1")?, 0)
        .await?;
    let lines: Vec<String> = logs
        .iter()
        .filter_map(|s| match &s.event.payload {
            Some(Payload::WorkerLog(log)) => Some(log.line.clone()),
            _ => None,
        })
        .collect();
    assert!(
        lines.iter().any(|l| l.contains("I'll read the README first.")),
        "{lines:?}"
    );
    assert!(lines.iter().all(|l| !l.contains("sk-test-secret-key")));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let results = bus
        .read_subject(subjects::JOBS, &subjects::job("u1", "t1")?, 0)
        .await?;
    let succeeded = results
        .iter()
        .filter(|s| matches!(s.event.payload, Some(Payload::JobSucceeded(_))))
        .count();
    assert_eq!(succeeded, 2, "one result per job, however often it was delivered");
    shutdown.cancel();
    Ok(())
}
