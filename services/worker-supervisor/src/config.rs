use std::path::PathBuf;

use mainloop_runtime::{CommonConfig, Health, Secret};

pub use crate::runner::kubernetes::KubernetesSettings;

#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    #[command(flatten)]
    pub common: CommonConfig,
    #[command(flatten)]
    pub agent: AgentSettings,
    #[command(flatten)]
    pub replica: ReplicaSettings,
    #[command(flatten)]
    pub kubernetes: KubernetesSettings,
}

/// Where agents run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RunnerKind {
    /// Processes on this machine (`mainloop up`, one supervisor).
    Local,
    /// One locked-down Job per job in the cluster (production, any number of supervisors).
    Kubernetes,
}

/// This supervisor among several sharing the work.
#[derive(Debug, Clone, clap::Args)]
pub struct ReplicaSettings {
    #[arg(long = "runner", env = "AGENT_RUNNER", value_enum, default_value = "local")]
    pub runner: RunnerKind,
    /// This replica's name among the supervisors sharing the work (default: the host name,
    /// which in Kubernetes is the pod's). Its own jobs are taken back at once after a restart.
    #[arg(long, env = "WORKER_ID")]
    pub worker_id: Option<String>,
    /// How long a job stays held by a replica that stopped renewing it before another takes it.
    #[arg(long, env = "JOB_LEASE_SECS", default_value_t = 30)]
    pub job_lease_secs: u64,
}

impl Default for ReplicaSettings {
    fn default() -> Self {
        ReplicaSettings {
            runner: RunnerKind::Local,
            worker_id: None,
            job_lease_secs: 30,
        }
    }
}

impl ReplicaSettings {
    pub fn worker_id(&self) -> String {
        self.worker_id
            .clone()
            .filter(|id| !id.trim().is_empty())
            .or_else(|| {
                std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .ok()
                    .map(|h| h.trim().to_string())
                    .filter(|h| !h.is_empty())
            })
            .unwrap_or_else(|| "worker-supervisor".into())
    }
}

/// How agents are run; `mainloop up` takes the same flags.
#[derive(Debug, Clone, clap::Args)]
pub struct AgentSettings {
    /// Cache clones and task clones live here.
    #[arg(long, env = "WORK_DIR", default_value = ".mainloop/work")]
    pub work_dir: PathBuf,
    /// The agent CLI.
    #[arg(long, env = "AGENT_PROGRAM", default_value = "claude")]
    pub agent_program: PathBuf,
    /// Arguments put before the CLI's own (for a wrapper such as `mainloop fake-claude`).
    #[arg(
        long,
        env = "AGENT_ARGS_PREFIX",
        value_delimiter = ' ',
        allow_hyphen_values = true
    )]
    pub agent_args_prefix: Vec<String>,
    #[arg(long, env = "AGENT_MODEL", default_value = "opus")]
    pub agent_model: String,
    /// The Unix user agents run as when mainloop runs as root (default `nobody`), so an agent
    /// cannot read mainloop's environment or files; empty: as mainloop's own user.
    #[arg(long, env = "AGENT_USER")]
    pub agent_user: Option<String>,
    /// Agents running at once; waiting tasks hold no slot.
    #[arg(long, env = "AGENT_SLOTS", default_value_t = 3)]
    pub agent_slots: usize,
    /// A run longer than this is stopped and retried.
    #[arg(long, env = "AGENT_TIMEOUT_SECS", default_value_t = 3600)]
    pub agent_timeout_secs: u64,
    /// Passed to the agent as ANTHROPIC_BASE_URL when set.
    #[arg(long, env = "ANTHROPIC_BASE_URL")]
    pub anthropic_base_url: Option<String>,
    /// Passed to the agent (and redacted from its logs).
    #[arg(long, env = "ANTHROPIC_API_KEY", hide_env_values = true)]
    pub anthropic_api_key: Option<Secret>,
    /// A Claude subscription's token (`claude setup-token`), for people without an API key;
    /// passed to the agent and redacted from its logs.
    #[arg(long, env = "CLAUDE_CODE_OAUTH_TOKEN", hide_env_values = true)]
    pub claude_code_oauth_token: Option<Secret>,
    /// For the supervisor's own clone, fetch and push (never given to the agent).
    #[arg(long = "git-token", env = "GITHUB_TOKEN", hide_env_values = true)]
    pub git_token: Option<Secret>,
}

impl Config {
    /// A local runner's configuration, every other setting at its default (`mainloop up`).
    pub fn new(common: CommonConfig, agent: AgentSettings) -> Self {
        Config {
            common,
            agent,
            replica: ReplicaSettings::default(),
            kubernetes: KubernetesSettings::default(),
        }
    }

    pub fn health(&self) -> Health {
        self.common.health.clone()
    }
}
