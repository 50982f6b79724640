//! The agent step (an init container without the GitHub token): the agent CLI run in the task's
//! clone under the same policy as a local run, its lines printed as the job's log with the
//! agent's own credentials removed, what it left uncommitted committed as itself, and its
//! outcome printed last (and left for the deliver step). Deleting the pod (a cancel) sends
//! SIGTERM, which stops the run the way a local cancel does.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mainloop_events::v1::{JobMode, LogSource};
use tokio_util::sync::CancellationToken;

use super::{PodJob, PodLine, agent_secrets, outcome_file, workspaces};
use crate::agent::{AgentConfig, AgentOutcome, AgentRun, run_agent};
use crate::redact::Redactor;

fn mode(job: &PodJob) -> JobMode {
    JobMode::from_str_name(&format!("JOB_MODE_{}", job.mode.to_uppercase())).unwrap_or(JobMode::Plan)
}

fn config(job: &PodJob) -> AgentConfig {
    let mut env: Vec<(String, String)> = vec![
        ("GIT_AUTHOR_NAME".into(), "mainloop".into()),
        ("GIT_AUTHOR_EMAIL".into(), "mainloop@localhost".into()),
        ("GIT_COMMITTER_NAME".into(), "mainloop".into()),
        ("GIT_COMMITTER_EMAIL".into(), "mainloop@localhost".into()),
    ];
    for name in ["ANTHROPIC_BASE_URL", "TRACEPARENT"] {
        if let Ok(value) = std::env::var(name).map(|v| v.trim().to_string())
            && !value.is_empty()
        {
            env.push((name.into(), value));
        }
    }
    env.extend(agent_secrets());
    let timeout = std::env::var("AGENT_TIMEOUT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3600);
    AgentConfig {
        program: std::env::var_os("AGENT_PROGRAM")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("claude")),
        args_prefix: std::env::var("AGENT_ARGS_PREFIX")
            .map(|a| a.split_whitespace().map(String::from).collect())
            .unwrap_or_default(),
        env,
        model: job.model.clone(),
        timeout: Duration::from_secs(timeout),
        run_as: None,
        // Counted by the supervisor, which reads it back from the pod's log.
        on_usage: |usage| PodLine::Usage { usage }.print(),
    }
}

/// Cancelled when Kubernetes stops the pod (SIGTERM on delete or deadline).
fn stopped_by_kubernetes() -> CancellationToken {
    let cancel = CancellationToken::new();
    let token = cancel.clone();
    tokio::spawn(async move {
        if let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            term.recv().await;
            token.cancel();
        }
    });
    cancel
}

pub async fn run(job: &PodJob, root: &Path) -> Result<(), (String, bool)> {
    let workspaces = workspaces(root, None).map_err(|e| (e, true))?;
    let workspace = workspaces.reopen(&job.task_id, &job.owner, &job.name, &job.clone_url, "");
    let secrets: Vec<String> = agent_secrets().into_iter().map(|(_, v)| v).collect();
    let redactor = Redactor::new(&secrets);
    let run = AgentRun {
        mode: mode(job),
        prompt: job.prompt.clone(),
        cwd: workspace.dir.clone(),
        home: workspace.home.clone(),
        resume: None,
        run_id: format!("{}:{}", job.job_id, job.attempt),
    };
    let cancel = stopped_by_kubernetes();
    let log = |source: LogSource, line: String| PodLine::log(source, redactor.clean(&line));
    let outcome = run_agent(&config(job), &run, &cancel, log)
        .await
        .cleaned(&redactor);
    if let AgentOutcome::Done { summary, .. } = &outcome {
        match workspaces.commit_leftovers(&workspace, summary).await {
            Ok(0) => {}
            Ok(files) => PodLine::log(
                LogSource::System,
                format!("the agent left {files} changed file(s) uncommitted; mainloop committed them"),
            ),
            Err(err) => return Err((format!("committing the agent's edits failed: {err}"), true)),
        }
    }
    let json = serde_json::to_vec(&outcome).map_err(|e| (e.to_string(), true))?;
    tokio::fs::write(outcome_file(root, job), json)
        .await
        .map_err(|e| (format!("cannot leave the outcome for delivery: {e}"), true))?;
    PodLine::Outcome { outcome }.print();
    Ok(())
}
