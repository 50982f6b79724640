//! The steps of a Kubernetes Job, run inside its pod by this same binary (`mainloop pod-step
//! <step>`): `checkout` clones with the GitHub token, `agent` runs the agent in the clone without
//! it, `deliver` pushes what the agent committed. They share the local runner's code (the
//! workspaces, the agent run and its policy, the secret check) and speak to the supervisor
//! through their output only: one JSON object a line ([`PodLine`]), which the supervisor reads
//! from the pod's log.

mod agent;
mod checkout;
mod deliver;

use std::path::{Path, PathBuf};

use mainloop_events::v1::LogSource;
use serde::{Deserialize, Serialize};

use crate::agent::AgentOutcome;
use crate::git::Git;
use crate::workspace::Workspaces;

/// Where the steps mount their volumes (see the Job spec).
pub const WORK_ROOT: &str = "/work";
pub const REPOS_DIR: &str = "/work/repos";
pub const TASKS_DIR: &str = "/work/tasks";
pub const TOKEN_DIR: &str = "/var/run/secrets/mainloop/git";
/// The job, as JSON, in every step's environment.
pub const JOB_ENV: &str = "MAINLOOP_JOB";

/// What a step needs to know of its job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodJob {
    pub task_id: String,
    pub job_id: String,
    pub attempt: u32,
    /// `plan`, `implement`, `fix`, … (the JobMode's name in lower case).
    pub mode: String,
    pub owner: String,
    pub name: String,
    pub clone_url: String,
    pub default_branch: String,
    /// The branch a code job works on; none while planning.
    pub branch: Option<String>,
    pub prompt: String,
    pub model: String,
    /// The W3C trace context of the job's request, so the agent's work joins its trace.
    #[serde(default)]
    pub traceparent: String,
}

/// One line a step prints. Anything else it prints is shown as the job's stderr.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mainloop", rename_all = "snake_case")]
pub enum PodLine {
    /// A line of the job's log.
    Log { source: Source, line: String },
    /// How the agent's run ended (the agent step's last line).
    Outcome { outcome: AgentOutcome },
    /// What the agent's run used (the agent step, once its result is in).
    Usage { usage: crate::agent::protocol::Usage },
    /// The deliver step pushed (or had nothing to push).
    Delivered { commits: u32, head: String },
    /// A step could not do its part.
    Failed { error: String, retryable: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Agent,
    Stderr,
    System,
}

impl From<LogSource> for Source {
    fn from(source: LogSource) -> Self {
        match source {
            LogSource::Agent => Source::Agent,
            LogSource::System => Source::System,
            _ => Source::Stderr,
        }
    }
}

impl From<Source> for LogSource {
    fn from(source: Source) -> Self {
        match source {
            Source::Agent => LogSource::Agent,
            Source::System => LogSource::System,
            Source::Stderr => LogSource::Stderr,
        }
    }
}

impl PodLine {
    pub fn print(&self) {
        if let Ok(line) = serde_json::to_string(self) {
            println!("{line}");
        }
    }

    pub fn log(source: LogSource, line: impl Into<String>) {
        PodLine::Log {
            source: source.into(),
            line: line.into(),
        }
        .print();
    }
}

/// Where the checkout step records the commit the job starts from: in the cache's volume,
/// which the agent never mounts, so the agent cannot move it to hide a commit from the check.
fn start_file(root: &Path, job: &PodJob) -> PathBuf {
    root.join("repos").join(format!(
        "{}.start",
        crate::runner::kubernetes::short_hash(&job.job_id)
    ))
}

/// Where the agent step leaves its outcome for the deliver step.
fn outcome_file(root: &Path, job: &PodJob) -> PathBuf {
    root.join("tasks").join(format!(
        "{}.outcome.json",
        crate::runner::kubernetes::short_hash(&job.job_id)
    ))
}

/// The agent's credentials in this step's environment: passed to the agent, and never to be
/// seen in its log or its commits.
fn agent_secrets() -> Vec<(String, String)> {
    ["ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN"]
        .into_iter()
        .filter_map(|name| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.is_empty())
                .map(|v| (name.to_string(), v))
        })
        .collect()
}

fn workspaces(root: &Path, token: Option<mainloop_runtime::Secret>) -> Result<Workspaces, String> {
    let git = Git::new(token)
        .with_global_config(&std::env::temp_dir().join("mainloop-git"))
        .map_err(|e| format!("cannot write git's config: {e}"))?;
    Ok(Workspaces::in_pod(root.to_path_buf(), git))
}

/// The GitHub token, from the Secret mounted into the git steps.
fn token() -> Option<mainloop_runtime::Secret> {
    let path = std::env::var_os("MAINLOOP_TOKEN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(TOKEN_DIR))
        .join("token");
    std::fs::read_to_string(path)
        .ok()
        .map(|t| mainloop_runtime::Secret::new(t.trim()))
        .filter(|t| !t.expose().is_empty())
}

/// Runs one step (`args[0]`) and returns the process's exit code: 0 when the step said how it
/// went (even a failure, which the supervisor reads), non-zero only when it could not.
pub fn main(args: &[String]) -> i32 {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("pod-step: no runtime: {err}");
            return 70;
        }
    };
    let job = match std::env::var(JOB_ENV)
        .map_err(|e| e.to_string())
        .and_then(|json| serde_json::from_str::<PodJob>(&json).map_err(|e| e.to_string()))
    {
        Ok(job) => job,
        Err(err) => {
            eprintln!("pod-step: {JOB_ENV} is missing or not a job: {err}");
            return 64;
        }
    };
    let root = std::env::var_os("MAINLOOP_WORK_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(WORK_ROOT));
    let failed = match args.first().map(String::as_str) {
        Some("checkout") => runtime.block_on(checkout::run(&job, &root)),
        Some("agent") => runtime.block_on(agent::run(&job, &root)),
        Some("deliver") => runtime.block_on(deliver::run(&job, &root)),
        other => {
            eprintln!("pod-step: unknown step {other:?}; expected checkout, agent or deliver");
            return 64;
        }
    };
    match failed {
        Ok(()) => 0,
        Err((error, retryable)) => {
            PodLine::Failed { error, retryable }.print();
            // The checkout failing stops the pod (nothing after it can work); the supervisor
            // reads why from this step's last line.
            1
        }
    }
}
