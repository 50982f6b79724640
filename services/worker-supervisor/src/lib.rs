//! The worker-supervisor runs coding agents: it takes job requests from the WORK queue
//! (`work.jobs.>`), prepares the task's workspace (a clone sharing the cached repository's objects), runs the agent
//! (Claude Code headless) in it, pushes what it committed, and reports on JOBS
//! (`job.<user>.<task>`) and LOGS (`log.<user>.<task>`). Only running agents take a slot.

pub mod agent;
mod cleanup;
mod config;
mod error;
pub mod git;
mod jobs;
mod metrics;
mod patience;
pub mod pod;
mod redact;
pub mod runner;
mod sessions;
pub mod workspace;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mainloop_bus::{ConsumerSpec, consumer};
use mainloop_events::subjects;
use mainloop_runtime::service::Foundation;
use sqlx::migrate::Migrator;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

pub use config::{AgentSettings, Config, ReplicaSettings, RunnerKind};
pub use error::Error;

use crate::agent::AgentConfig;
use crate::jobs::lease::{self, Leases};
use crate::jobs::{JobQueue, Jobs};
use crate::runner::Runner;
use crate::runner::kubernetes::KubernetesRunner;
use crate::runner::local::LocalRunner;
use crate::workspace::Workspaces;

pub const NAME: &str = "worker-supervisor";
/// The Postgres schema this service owns; no other service touches it.
pub const SCHEMA: &str = "worker_supervisor";
pub static MIGRATOR: Migrator = sqlx::migrate!();

/// Runs until `shutdown` is cancelled, then stops running agents and returns.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), Error> {
    let foundation = Foundation::start(NAME, SCHEMA, &MIGRATOR, &config.common, &shutdown).await?;
    let settings = &config.agent;
    let mut env = vec![
        ("GIT_AUTHOR_NAME".to_string(), "mainloop".to_string()),
        ("GIT_AUTHOR_EMAIL".to_string(), "mainloop@localhost".to_string()),
        ("GIT_COMMITTER_NAME".to_string(), "mainloop".to_string()),
        (
            "GIT_COMMITTER_EMAIL".to_string(),
            "mainloop@localhost".to_string(),
        ),
    ];
    let mut secrets: Vec<String> = settings
        .git_token
        .iter()
        .map(|t| t.expose().to_string())
        .collect();
    if let Some(url) = &settings.anthropic_base_url {
        env.push(("ANTHROPIC_BASE_URL".into(), url.clone()));
    }
    for (name, secret) in [
        ("ANTHROPIC_API_KEY", &settings.anthropic_api_key),
        ("CLAUDE_CODE_OAUTH_TOKEN", &settings.claude_code_oauth_token),
    ] {
        if let Some(secret) = secret {
            env.push((name.into(), secret.expose().to_string()));
            secrets.push(secret.expose().to_string());
        }
    }
    let run_as = agent_user(settings)?;
    let mut work_dir = std::path::absolute(&settings.work_dir).map_err(|e| Error::Setup(e.to_string()))?;
    if let Some((uid, gid)) = run_as {
        // The agent's user must be able to walk down to its task's directory.
        work_dir = mainloop_local_servers::reachable_dir(&work_dir, uid, gid)
            .map_err(|e| Error::Setup(format!("no work dir the agent's user can reach: {e}")))?;
        tracing::info!(uid, work_dir = %work_dir.display(), "agents run as their own user");
    }
    let git = git::Git::new(settings.git_token.clone())
        .with_global_config(&work_dir)
        .map_err(|e| {
            Error::Setup(format!(
                "cannot write git's config in {}: {e}",
                work_dir.display()
            ))
        })?;
    let workspaces = Workspaces::new(work_dir, git, run_as);
    let redactor = redact::Redactor::new(&secrets);
    let runner: Arc<dyn Runner> = match config.replica.runner {
        RunnerKind::Local => Arc::new(LocalRunner {
            workspaces: workspaces.clone(),
            sessions: sessions::Sessions {
                db: foundation.db.clone(),
            },
            agent: AgentConfig {
                program: settings.agent_program.clone(),
                args_prefix: settings.agent_args_prefix.clone(),
                env,
                model: settings.agent_model.clone(),
                timeout: Duration::from_secs(settings.agent_timeout_secs),
                run_as,
                on_usage: metrics::agent_used,
            },
            redactor: redactor.clone(),
        }),
        RunnerKind::Kubernetes => Arc::new(
            KubernetesRunner::connect(config.kubernetes.clone(), settings)
                .await
                .map_err(|e| Error::Setup(e.to_string()))?,
        ),
    };
    let worker_id = config.replica.worker_id();
    tracing::info!(runner = runner.name(), worker_id, "agents run here");
    let jobs = Arc::new(Jobs {
        bus: foundation.bus.clone(),
        runner,
        leases: Leases {
            db: foundation.db.clone(),
            worker_id,
            lease: Duration::from_secs(config.replica.job_lease_secs.max(3)),
        },
        slots: Arc::new(Semaphore::new(settings.agent_slots.max(1))),
        running: Mutex::new(HashMap::new()),
        redactor,
        shutdown: shutdown.clone(),
    });
    let taken = jobs
        .recover(true)
        .await
        .map_err(|e| Error::Setup(e.to_string()))?;
    if taken > 0 {
        tracing::warn!(taken, "jobs interrupted by a stop were taken over");
    }
    tokio::spawn(lease::maintain(jobs.clone(), shutdown.clone()));
    tokio::spawn(lease::hear_cancellations(jobs.clone(), shutdown.clone()));
    // Work items are recorded and acked at once; the runs themselves wait for a slot.
    let spec = ConsumerSpec {
        concurrency: 4,
        prefetch: 4,
        ..ConsumerSpec::new(subjects::WORK, "worker-supervisor-jobs", "work.jobs.>")
    };
    let cleanup = Arc::new(cleanup::Cleanup {
        db: foundation.db.clone(),
        workspaces,
    });
    let cleanup_spec = ConsumerSpec {
        max_deliver: u32::MAX,
        ..ConsumerSpec::new(subjects::TASKS, "worker-supervisor-cleanup", "task.>")
    };
    let (cleanup_bus, cleanup_shutdown) = (foundation.bus.clone(), shutdown.clone());
    let cleaning = tokio::spawn(async move {
        if let Err(err) = consumer::run(&cleanup_bus, cleanup_spec, cleanup, cleanup_shutdown).await {
            tracing::error!(error = %err, "workspace cleanup stopped");
        }
    });
    foundation.readiness.ready();
    let result = consumer::run(&foundation.bus, spec, Arc::new(JobQueue(jobs)), shutdown.clone()).await;
    let _ = cleaning.await;
    foundation.stop().await;
    result.map_err(|e| Error::Setup(e.to_string()))
}

/// Who agents run as: as root, an unprivileged user (`AGENT_USER`, default `nobody`) so an agent
/// cannot read the supervisor's environment (the GitHub token) or files; otherwise as us.
fn agent_user(settings: &AgentSettings) -> Result<Option<(u32, u32)>, Error> {
    if !mainloop_local_servers::is_root() {
        return Ok(None);
    }
    let name = settings.agent_user.as_deref().unwrap_or("nobody").trim();
    if name.is_empty() {
        tracing::warn!("AGENT_USER is empty: agents run as root and can read everything mainloop can");
        return Ok(None);
    }
    match mainloop_local_servers::user_ids(name) {
        Ok(Some(ids)) => Ok(Some(ids)),
        Ok(None) => Err(Error::Setup(format!(
            "AGENT_USER {name} does not exist; create it or name another unprivileged user"
        ))),
        Err(err) => Err(Error::Setup(format!("cannot look up AGENT_USER {name}: {err}"))),
    }
}
