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
}

impl Config {
    /// The defaults, for running the inbox inside another program (`mainloop up`, tests).
    pub fn new(common: CommonConfig) -> Self {
        Config {
            common,
            push_contact: "mailto:mainloop@localhost".into(),
            push_timeout_secs: 10,
        }
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
