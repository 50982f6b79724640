use mainloop_runtime::{CommonConfig, Health};

#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    #[command(flatten)]
    pub common: CommonConfig,
    /// Where the HTTP API, the SSE feed and the web app are served.
    #[arg(long, env = "HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: String,
}

impl Config {
    pub fn health(&self) -> Health {
        self.common.health.clone()
    }
}
