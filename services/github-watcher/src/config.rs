use mainloop_runtime::{CommonConfig, Health};

#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    #[command(flatten)]
    pub common: CommonConfig,
}

impl Config {
    pub fn health(&self) -> Health {
        self.common.health.clone()
    }
}
