//! The gateway is mainloop's only HTTP surface: the REST API of the original web client, the SSE
//! feed of the INBOX, CHAT and LOGS streams, authentication, and the web app. It holds no task
//! state; it sends commands over NATS request/reply and reads the inbox's projections.
//!
//! Today it serves health (for every service registered in the shared registry) and the web
//! app's shell; the API arrives with the walking skeleton.

mod config;
mod error;
mod routes;

use mainloop_runtime::service::Foundation;
use sqlx::migrate::Migrator;
use tokio_util::sync::CancellationToken;

pub use config::Config;
pub use error::Error;

pub const NAME: &str = "gateway";
/// The Postgres schema this service owns; no other service touches it.
pub const SCHEMA: &str = "gateway";
pub static MIGRATOR: Migrator = sqlx::migrate!();

/// Serves HTTP until `shutdown` is cancelled, then finishes open requests and returns.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), Error> {
    let http = |source| Error::Http {
        addr: config.http_addr.clone(),
        source,
    };
    let listener = tokio::net::TcpListener::bind(&config.http_addr)
        .await
        .map_err(http)?;
    let foundation = Foundation::start(NAME, SCHEMA, &MIGRATOR, &config.common, &shutdown).await?;
    tracing::info!(addr = %config.http_addr, "gateway listening");
    foundation.readiness.ready();
    axum::serve(listener, routes::app(config.health()))
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .await
        .map_err(http)?;
    foundation.stop().await;
    Ok(())
}
