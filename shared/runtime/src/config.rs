//! Settings shared by every service. Each service's own `Config` flattens [`CommonConfig`] and
//! adds its own fields; values come from flags or the environment, never from `std::env` calls
//! scattered through the code.

use std::fmt;
use std::str::FromStr;

use crate::Health;

/// A value that must never reach a log: `Debug` and `Display` print `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The only way to read the value; grep for it to audit where secrets go.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_string()))
    }
}

/// Where a service finds NATS and Postgres.
#[derive(Debug, Clone, clap::Args)]
pub struct CommonConfig {
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
    /// postgres://user:password@host:port/database
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Secret,
    /// JetStream replicas per stream: 1 locally, 3 on a production cluster.
    #[arg(long, env = "NATS_STREAM_REPLICAS", default_value_t = 1)]
    pub stream_replicas: usize,
    /// Where this service reports readiness; shared by all services in `mainloop up`.
    #[arg(skip)]
    pub health: Health,
    /// Test mode: every service also answers `cmd.<service>.test-reset` (emptying its tables),
    /// for test suites (`mainloop up` sets it with `--auth-mode test`). Never for real work.
    #[arg(long, env = "MAINLOOP_TEST_MODE", default_value_t = false)]
    pub test_mode: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Readable lines for a terminal.
    Human,
    /// One JSON object per line, for log collectors.
    Json,
}

#[derive(Debug, Clone, clap::Args)]
pub struct TelemetryConfig {
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "human")]
    pub log_format: LogFormat,
    /// Traces go here over OTLP/HTTP when set; otherwise they stay in-process (ids still flow).
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let secret = Secret::new("postgres://app:hunter2@db/app");
        assert_eq!(format!("{secret} {secret:?}"), "[redacted] [redacted]");
        assert_eq!(secret.expose(), "postgres://app:hunter2@db/app");
    }
}
