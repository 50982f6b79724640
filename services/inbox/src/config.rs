use mainloop_runtime::{CommonConfig, Health};

#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    #[command(flatten)]
    pub common: CommonConfig,
    /// Who runs this server, told to push services with each Web Push (a `mailto:` or `https:`
    /// contact, RFC 8292)
    #[arg(long, env = "PUSH_CONTACT", default_value = "mailto:mainloop@localhost")]
    pub push_contact: String,
    /// Seconds a push service has to answer one push
    #[arg(long, env = "PUSH_TIMEOUT_SECS", default_value_t = 10)]
    pub push_timeout_secs: u64,
    /// Batches of TASKS events applied at once (default: one per CPU, 2 to 8)
    #[arg(long, env = "INBOX_PROJECTION_WORKERS")]
    pub projection_workers: Option<usize>,
}

impl Config {
    /// The defaults, for running the inbox inside another program (`mainloop up`, tests).
    pub fn new(common: CommonConfig) -> Self {
        Config {
            common,
            push_contact: "mailto:mainloop@localhost".into(),
            push_timeout_secs: 10,
            projection_workers: None,
        }
    }

    /// Batches applied at once. A batch is mostly Postgres's and this process's CPU, so more
    /// workers than CPUs only queue for them (measured on two cores: four workers added about a
    /// millisecond at p50 over two); at least two, so one task that waits never holds the rest.
    pub fn projection_workers(&self) -> usize {
        self.projection_workers.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map_or(2, usize::from)
                .clamp(2, 8)
        })
    }

    pub fn push(&self) -> crate::push::PushSettings {
        crate::push::PushSettings {
            contact: self.push_contact.clone(),
            allow_loopback_http: self.common.test_mode,
            timeout: std::time::Duration::from_secs(self.push_timeout_secs),
        }
    }

    pub fn health(&self) -> Health {
        self.common.health.clone()
    }
}
