//! The gateway is mainloop's only HTTP surface: the REST API of the original web client, the SSE
//! feed of the INBOX, CHAT and LOGS streams, authentication, and the web app. It holds no task
//! state; it sends commands over NATS request/reply and reads the inbox's projections.
//!
mod api_error;
pub mod auth;
mod config;
mod cors;
mod error;
mod extract;
mod feeds;
mod guard;
mod limits;
mod metrics;
mod routes;
mod server;
mod services;
pub mod session;
mod signature;
mod state;

use mainloop_runtime::service::Foundation;
use sqlx::migrate::Migrator;
use tokio_util::sync::CancellationToken;

pub use auth::proxy::ProxySettings;
pub use auth::{AuthMode, api_tokens};
pub use config::{Bound, Config, HttpConfig};
pub use error::Error;
pub use extract::BODY_TIMEOUT;

pub const NAME: &str = "gateway";
/// The Postgres schema this service owns; no other service touches it.
pub const SCHEMA: &str = "gateway";
pub static MIGRATOR: Migrator = sqlx::migrate!();

/// Serves HTTP until `shutdown` is cancelled, then finishes open requests and returns.
pub async fn run(mut config: Config, shutdown: CancellationToken) -> Result<(), Error> {
    config.http = config.http.checked().map_err(Error::Config)?;
    let http = |source| Error::Http {
        addr: config.http.http_addr.clone(),
        source,
    };
    let listener = match config.http.bound.take() {
        Some(bound) => tokio::net::TcpListener::from_std(bound).map_err(http)?,
        None => tokio::net::TcpListener::bind(&config.http.http_addr)
            .await
            .map_err(http)?,
    };
    let foundation = Foundation::start(NAME, SCHEMA, &MIGRATOR, &config.common, &shutdown).await?;
    let mut tasks = tokio::task::JoinSet::new();
    let feeds = feeds::Feeds::start(&foundation.bus, &mut tasks, &shutdown)
        .await
        .map_err(Error::Feeds)?;
    tracing::info!(addr = %config.http.http_addr, "gateway listening");
    foundation.readiness.ready();
    let state = state::AppState {
        bus: foundation.bus.clone(),
        db: foundation.db.clone(),
        health: config.health(),
        auth: state::Auth {
            mode: config.http.auth_mode.clone(),
            token: config.http.api_token.clone(),
            user: config.http.user.clone(),
            proxy: config.http.proxy.clone(),
        },
        cors_origins: config.http.cors_origins.clone(),
        served_hosts: config.http.served_hosts(),
        limits: limits::Limits::default(),
        webhook_secret: config.http.github_webhook_secret.clone(),
        heartbeat: std::time::Duration::from_secs(config.http.sse_heartbeat_secs.max(1)),
        feeds,
    };
    server::serve(listener, routes::app(state), shutdown.clone()).await;
    tasks.shutdown().await;
    foundation.stop().await;
    Ok(())
}
