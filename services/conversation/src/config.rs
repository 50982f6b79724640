use mainloop_runtime::{CommonConfig, Health, Secret};

#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    #[command(flatten)]
    pub common: CommonConfig,
    #[command(flatten)]
    pub llm: LlmSettings,
}

/// The chat model; `mainloop up` takes the same flags.
#[derive(Debug, Clone, clap::Args)]
pub struct LlmSettings {
    /// The Anthropic Messages API root.
    #[arg(long, env = "ANTHROPIC_BASE_URL", default_value = "https://api.anthropic.com")]
    pub chat_api_url: String,
    #[arg(long, env = "ANTHROPIC_API_KEY", hide_env_values = true)]
    pub chat_api_key: Option<Secret>,
    #[arg(long, env = "CHAT_MODEL", default_value = "claude-sonnet-4-5")]
    pub chat_model: String,
    /// Repository URLs must start with this (GitHub Enterprise: your server).
    #[arg(long, env = "GITHUB_WEB_URL", default_value = "https://github.com")]
    pub github_web_url: String,
}

impl Config {
    pub fn health(&self) -> Health {
        self.common.health.clone()
    }
}
