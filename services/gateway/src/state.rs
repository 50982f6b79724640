use std::time::Duration;

use mainloop_bus::Bus;
use mainloop_runtime::{Health, Secret};

use crate::auth::AuthMode;

/// How long the gateway waits for another service to answer.
pub const SERVICE_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Clone)]
pub struct Auth {
    pub mode: AuthMode,
    pub token: Option<Secret>,
    pub user: String,
    pub proxy: crate::auth::proxy::ProxySettings,
}

#[derive(Clone)]
pub struct AppState {
    pub bus: Bus,
    /// The gateway's own schema: per-person API tokens.
    pub db: sqlx::PgPool,
    pub health: Health,
    pub auth: Auth,
    /// Origins allowed to call the API from a browser page elsewhere.
    pub cors_origins: Vec<String>,
    /// Host names this gateway answers to besides the loopback names.
    pub served_hosts: Vec<String>,
    /// Per-person rate limits.
    pub limits: crate::limits::Limits,
    /// What GitHub signs webhook deliveries with; none: deliveries are refused.
    pub webhook_secret: Option<Secret>,
    /// How long `/events` stays quiet before it says `heartbeat`.
    pub heartbeat: Duration,
    /// What the `/events` feeds hear, heard once for all of them.
    pub feeds: crate::feeds::Feeds,
}
