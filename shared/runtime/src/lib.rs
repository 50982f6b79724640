//! What every mainloop service runs on, so services hold only their own logic:
//! [`config`] (typed settings from flags and environment, secrets that never print),
//! [`telemetry`] (human or JSON logs, OpenTelemetry traces exported over OTLP when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set), [`shutdown`] (SIGINT/SIGTERM become one cancellation
//! token), [`db`] (a Postgres pool confined to the service's own schema, with its migrations),
//! [`idempotency`] (apply a delivered event at most once), [`health`] (readiness answers) and
//! [`metrics`] (Prometheus, beside health).

pub mod checkpoints;
pub mod config;
pub mod db;
mod error;
pub mod health;
pub mod idempotency;
pub mod metrics;
pub mod shutdown;
pub mod telemetry;
pub mod test_reset;
pub mod tls;

pub use config::{CommonConfig, Secret, TelemetryConfig};
pub use error::RuntimeError;
pub use health::{Health, Readiness};
pub mod service;
