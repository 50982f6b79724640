//! The scheduler owns the task aggregate and its state machine (pending → planning → … →
//! completed), durable timers and the limit on running agents. It is the only writer of TASKS
//! (`task.<user>.<task>`), requests agent runs and GitHub effects on the WORK queue, and reacts
//! to JOBS and GITHUB events.
//!
//! Today it stands on the shared foundation only (bus, streams, its own schema and migrations,
//! readiness); its behaviour arrives with the walking skeleton and its own issue.

mod config;
mod error;
pub mod task;

use mainloop_runtime::service::Foundation;
use sqlx::migrate::Migrator;
use tokio_util::sync::CancellationToken;

pub use config::Config;
pub use error::Error;

pub const NAME: &str = "scheduler";
/// The Postgres schema this service owns; no other service touches it.
pub const SCHEMA: &str = "scheduler";
pub static MIGRATOR: Migrator = sqlx::migrate!();

/// Runs until `shutdown` is cancelled, then drains and returns.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), Error> {
    let foundation = Foundation::start(NAME, SCHEMA, &MIGRATOR, &config.common, &shutdown).await?;
    foundation.readiness.ready();
    shutdown.cancelled().await;
    foundation.stop().await;
    Ok(())
}
