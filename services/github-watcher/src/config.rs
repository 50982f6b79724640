use mainloop_runtime::{CommonConfig, Health, Secret};

#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    #[command(flatten)]
    pub common: CommonConfig,
    #[command(flatten)]
    pub github: GitHubSettings,
}

/// Where GitHub is; `mainloop up` takes the same flags.
#[derive(Debug, Clone, clap::Args)]
pub struct GitHubSettings {
    /// The REST API root (GitHub Enterprise: https://HOST/api/v3).
    #[arg(long, env = "GITHUB_API_URL", default_value = "https://api.github.com")]
    pub github_api_url: String,
    #[arg(long, env = "GITHUB_TOKEN", hide_env_values = true)]
    pub github_token: Option<Secret>,
    /// How often open pull requests are checked for CI results and merges after something
    /// happened or while CI runs.
    #[arg(long, env = "GITHUB_POLL_INTERVAL_MS", default_value_t = 15_000)]
    pub github_poll_interval_ms: u64,
    /// While nothing happens on a pull request its interval doubles, up to this.
    #[arg(long, env = "GITHUB_POLL_MAX_INTERVAL_MS", default_value_t = 240_000)]
    pub github_poll_max_interval_ms: u64,
    /// Where webhooks arrive (a delivery from the repository within a day), polling is only the
    /// fallback for a lost delivery, this often.
    #[arg(long, env = "GITHUB_POLL_WITH_WEBHOOKS_MS", default_value_t = 3_600_000)]
    pub github_poll_with_webhooks_ms: u64,
    /// A head on which nothing reports CI (no check suite, run or status) for this long goes to
    /// review as "no CI".
    #[arg(long, env = "CI_GRACE_SECS", default_value_t = 180)]
    pub ci_grace_secs: u64,
    /// CI still pending after this long ends the wait with a CI-timeout item (retry waits again).
    #[arg(long, env = "CI_TIMEOUT_SECS", default_value_t = 3 * 3600)]
    pub ci_timeout_secs: u64,
    /// Who may steer tasks from GitHub (comments, reactions, reviews), as comma-separated
    /// logins; unset: everyone with write access to the repository.
    #[arg(long, env = "GITHUB_STEERERS", default_value = "")]
    pub github_steerers: String,
}

impl Config {
    pub fn health(&self) -> Health {
        self.common.health.clone()
    }
}
