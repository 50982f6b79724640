//! The conversation service owns the main thread: conversations, messages and their summaries,
//! and the calls to the chat LLM. It turns a person's confirmed request into a spawn command for
//! the scheduler and publishes the conversation's events on CHAT (`chat.<user>.<conversation>`).
//!
//! Today it stands on the shared foundation only (bus, streams, its own schema and migrations,
//! readiness); its behaviour arrives with the walking skeleton and its own issue.

mod config;
mod error;

use mainloop_runtime::service::Foundation;
use sqlx::migrate::Migrator;
use tokio_util::sync::CancellationToken;

pub use config::Config;
pub use error::Error;

pub const NAME: &str = "conversation";
/// The Postgres schema this service owns; no other service touches it.
pub const SCHEMA: &str = "conversation";
pub static MIGRATOR: Migrator = sqlx::migrate!();

/// Runs until `shutdown` is cancelled, then drains and returns.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), Error> {
    let foundation = Foundation::start(NAME, SCHEMA, &MIGRATOR, &config.common, &shutdown).await?;
    foundation.readiness.ready();
    shutdown.cancelled().await;
    foundation.stop().await;
    Ok(())
}
