use mainloop_runtime::{CommonConfig, Health, Secret};

#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    #[command(flatten)]
    pub common: CommonConfig,
    #[command(flatten)]
    pub llm: LlmSettings,
}

/// Which kind of chat model answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Provider {
    /// Anthropic when `ANTHROPIC_API_KEY` is set, else an OpenAI-compatible server when
    /// `OPENAI_BASE_URL` is set, else Anthropic (whose replies then say the key is missing).
    Auto,
    Anthropic,
    Openai,
    /// The Claude Code CLI, signed in to a Claude subscription (`CHAT_CLI`).
    ClaudeCode,
}

/// The chat model; `mainloop up` takes the same flags.
#[derive(Debug, Clone, clap::Args)]
pub struct LlmSettings {
    #[arg(long, env = "CHAT_PROVIDER", value_enum, default_value = "auto")]
    pub chat_provider: Provider,
    /// The Anthropic Messages API root.
    #[arg(long, env = "ANTHROPIC_BASE_URL", default_value = "https://api.anthropic.com")]
    pub chat_api_url: String,
    #[arg(long, env = "ANTHROPIC_API_KEY", hide_env_values = true)]
    pub chat_api_key: Option<Secret>,
    /// An OpenAI-compatible API root with its version path (Ollama: http://localhost:11434/v1).
    #[arg(long, env = "OPENAI_BASE_URL")]
    pub openai_base_url: Option<String>,
    #[arg(long, env = "OPENAI_API_KEY", hide_env_values = true)]
    pub openai_api_key: Option<Secret>,
    /// The Claude Code CLI, for `claude-code`.
    #[arg(long, env = "CHAT_CLI", default_value = "claude")]
    pub chat_cli: std::path::PathBuf,
    /// Arguments put before the CLI's own (for a wrapper such as `mainloop fake-claude`).
    #[arg(
        long,
        env = "CHAT_CLI_ARGS_PREFIX",
        value_delimiter = ' ',
        allow_hyphen_values = true
    )]
    pub chat_cli_args_prefix: Vec<String>,
    /// The mainloop binary the CLI starts as `<it> mcp-relay <socket>` to reach mainloop's
    /// tools (default: this program).
    #[arg(long, env = "CHAT_MCP_RELAY")]
    pub chat_mcp_relay: Option<std::path::PathBuf>,
    /// The model's name at the provider.
    #[arg(long, env = "CHAT_MODEL", default_value = "claude-sonnet-4-5")]
    pub chat_model: String,
    /// A conversation with more messages than this outside its summary is compacted.
    #[arg(long, env = "COMPACT_AFTER", default_value_t = 40)]
    pub compact_after: i64,
    /// Compaction keeps this many newest messages word for word.
    #[arg(long, env = "COMPACT_KEEP", default_value_t = 20)]
    pub compact_keep: i64,
    /// Characters of memory of earlier days (the pyramid of summaries) a turn is given at most.
    #[arg(long, env = "MEMORY_CHARS", default_value_t = 4_000)]
    pub memory_chars: usize,
    /// Repository URLs must start with this (GitHub Enterprise: your server).
    #[arg(long, env = "GITHUB_WEB_URL", default_value = "https://github.com")]
    pub github_web_url: String,
}

impl Config {
    pub fn health(&self) -> Health {
        self.common.health.clone()
    }
}

impl LlmSettings {
    /// Anthropic at `url` (tests and tools that build settings by hand).
    pub fn anthropic(url: &str, key: Option<Secret>, model: &str) -> Self {
        LlmSettings {
            chat_provider: Provider::Anthropic,
            chat_api_url: url.to_string(),
            chat_api_key: key,
            openai_base_url: None,
            openai_api_key: None,
            chat_cli: "claude".into(),
            chat_cli_args_prefix: vec![],
            chat_mcp_relay: None,
            chat_model: model.to_string(),
            compact_after: 40,
            compact_keep: 20,
            memory_chars: 4_000,
            github_web_url: "https://github.com".into(),
        }
    }

    /// The provider these settings choose (`auto` resolved).
    pub fn provider(&self) -> Provider {
        match self.chat_provider {
            Provider::Auto if self.chat_api_key.is_none() && self.openai_base_url.is_some() => {
                Provider::Openai
            }
            Provider::Auto => Provider::Anthropic,
            chosen => chosen,
        }
    }

    /// The chat model these settings choose.
    pub fn model(&self) -> std::sync::Arc<dyn crate::models::ChatModel> {
        match self.provider() {
            Provider::Openai => std::sync::Arc::new(crate::models::openai::OpenAi::new(
                self.openai_base_url
                    .as_deref()
                    .unwrap_or("http://localhost:11434/v1"),
                self.openai_api_key.clone(),
                &self.chat_model,
            )),
            Provider::ClaudeCode => {
                let relay = self
                    .chat_mcp_relay
                    .clone()
                    .or_else(|| std::env::current_exe().ok())
                    .unwrap_or_else(|| "mainloop".into());
                std::sync::Arc::new(crate::models::claude_code::ClaudeCode::new(
                    &self.chat_cli,
                    &self.chat_cli_args_prefix,
                    &relay,
                    &self.chat_model,
                ))
            }
            _ => std::sync::Arc::new(crate::models::anthropic::Anthropic::new(
                &self.chat_api_url,
                self.chat_api_key.clone(),
                &self.chat_model,
            )),
        }
    }
}
