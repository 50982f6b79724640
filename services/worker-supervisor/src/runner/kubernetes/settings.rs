//! How the Kubernetes runner reaches the cluster and shapes each agent's Job. Every agent runs in
//! one worker namespace whose standing objects (the agents' service account, their network
//! policies, the secrets) come from `deploy/`, not from the supervisor, which may only create,
//! read and delete Jobs and read pods and their logs there.

/// Defaults, shared by the command line and [`KubernetesSettings::default`].
pub const NAMESPACE: &str = "mainloop-workers";
pub const WORKER_IMAGE: &str = "ghcr.io/mainloop-dev/mainloop-worker:latest";
pub const GIT_SECRET: &str = "mainloop-git";
pub const AGENT_SECRET: &str = "mainloop-agent";
pub const SERVICE_ACCOUNT: &str = "mainloop-agent";

#[derive(Debug, Clone, clap::Args)]
pub struct KubernetesSettings {
    /// The namespace agents' Jobs run in (with its service account, policies and secrets).
    #[arg(long, env = "KUBE_NAMESPACE", default_value = NAMESPACE)]
    pub kube_namespace: String,
    /// The worker image: the Claude Code CLI, git, and this binary for the Job's own steps.
    #[arg(long, env = "WORKER_IMAGE", default_value = WORKER_IMAGE)]
    pub worker_image: String,
    /// The Secret holding the GitHub token (key `token`), mounted only into the Job's git steps.
    #[arg(long, env = "KUBE_GIT_SECRET", default_value = GIT_SECRET)]
    pub kube_git_secret: String,
    /// The Secret holding the agent's model credentials (`ANTHROPIC_API_KEY` and/or
    /// `CLAUDE_CODE_OAUTH_TOKEN`, each optional).
    #[arg(long, env = "KUBE_AGENT_SECRET", default_value = AGENT_SECRET)]
    pub kube_agent_secret: String,
    /// The agents' service account: no token mounted, no role bound.
    #[arg(long, env = "KUBE_SERVICE_ACCOUNT", default_value = SERVICE_ACCOUNT)]
    pub kube_service_account: String,
    #[arg(long, env = "AGENT_CPU_REQUEST", default_value = "500m")]
    pub agent_cpu_request: String,
    #[arg(long, env = "AGENT_CPU_LIMIT", default_value = "2")]
    pub agent_cpu_limit: String,
    #[arg(long, env = "AGENT_MEMORY_REQUEST", default_value = "1Gi")]
    pub agent_memory_request: String,
    #[arg(long, env = "AGENT_MEMORY_LIMIT", default_value = "4Gi")]
    pub agent_memory_limit: String,
    /// The workspace's size limit (and the pod's ephemeral storage limit).
    #[arg(long, env = "AGENT_DISK_LIMIT", default_value = "10Gi")]
    pub agent_disk_limit: String,
    /// Finished Jobs (and their pods) are deleted by Kubernetes this long after they end.
    #[arg(long, env = "KUBE_JOB_TTL_SECS", default_value_t = 3600)]
    pub kube_job_ttl_secs: i32,
    /// The API server, when not running in the cluster (tests; else the in-cluster config or
    /// the kubeconfig).
    #[arg(long, env = "KUBE_API_URL")]
    pub kube_api_url: Option<String>,
    /// A bearer token file for `KUBE_API_URL`.
    #[arg(long, env = "KUBE_TOKEN_FILE")]
    pub kube_token_file: Option<std::path::PathBuf>,
}

impl Default for KubernetesSettings {
    fn default() -> Self {
        KubernetesSettings {
            kube_namespace: NAMESPACE.into(),
            worker_image: WORKER_IMAGE.into(),
            kube_git_secret: GIT_SECRET.into(),
            kube_agent_secret: AGENT_SECRET.into(),
            kube_service_account: SERVICE_ACCOUNT.into(),
            agent_cpu_request: "500m".into(),
            agent_cpu_limit: "2".into(),
            agent_memory_request: "1Gi".into(),
            agent_memory_limit: "4Gi".into(),
            agent_disk_limit: "10Gi".into(),
            kube_job_ttl_secs: 3600,
            kube_api_url: None,
            kube_token_file: None,
        }
    }
}
