use mainloop_runtime::{CommonConfig, Health, Secret};

use crate::auth::AuthMode;

#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    #[command(flatten)]
    pub common: CommonConfig,
    #[command(flatten)]
    pub http: HttpConfig,
}

/// How the gateway faces browsers; `mainloop up` takes the same flags.
#[derive(Debug, Clone, clap::Args)]
pub struct HttpConfig {
    /// Where the HTTP API, the SSE feed and the web app are served.
    #[arg(long, env = "HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: String,
    /// local: one user, no login (loopback only); token: a bearer token; test: X-User-ID.
    #[arg(long, env = "AUTH_MODE", value_enum, default_value = "local")]
    pub auth_mode: AuthMode,
    /// The token for `--auth-mode token`.
    #[arg(long, env = "MAINLOOP_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<Secret>,
    /// The user that local and token modes act as.
    #[arg(long, env = "MAINLOOP_USER", default_value = crate::auth::LOCAL_USER)]
    pub user: String,
    /// Extra browser origins allowed to call the API, comma-separated.
    #[arg(long, env = "CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,
}

impl Config {
    pub fn health(&self) -> Health {
        self.common.health.clone()
    }
}
