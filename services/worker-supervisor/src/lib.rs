//! The worker-supervisor runs coding agents: it takes job requests from the WORK queue
//! (`work.jobs.>`), prepares a workspace, runs the agent as a local process or a Kubernetes Job,
//! and reports on JOBS (`job.<user>.<task>`) and LOGS (`log.<user>.<task>`).
//!
//! Today it stands on the shared foundation only (bus, streams, its own schema and migrations,
//! readiness); its behaviour arrives with the walking skeleton and its own issue.

pub mod agent;
mod config;
mod error;

use mainloop_runtime::service::Foundation;
use sqlx::migrate::Migrator;
use tokio_util::sync::CancellationToken;

pub use config::Config;
pub use error::Error;

pub const NAME: &str = "worker-supervisor";
/// The Postgres schema this service owns; no other service touches it.
pub const SCHEMA: &str = "worker_supervisor";
pub static MIGRATOR: Migrator = sqlx::migrate!();

/// Runs until `shutdown` is cancelled, then drains and returns.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), Error> {
    let foundation = Foundation::start(NAME, SCHEMA, &MIGRATOR, &config.common, &shutdown).await?;
    foundation.readiness.ready();
    shutdown.cancelled().await;
    foundation.stop().await;
    Ok(())
}
