//! Readiness. Each part of a service registers, says when it is ready, and the health routes
//! answer 200 only when every registered part is. `mainloop up` shares one registry across its
//! six services, so the gateway's `/health` speaks for all of them.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::RuntimeError;

#[derive(Debug, Clone, Default)]
pub struct Health {
    components: Arc<Mutex<BTreeMap<String, bool>>>,
}

/// One component's handle on the registry.
#[derive(Debug, Clone)]
pub struct Readiness {
    name: String,
    health: Health,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Report {
    /// "healthy" (all ready) or "starting".
    pub status: &'static str,
    pub components: BTreeMap<String, &'static str>,
}

impl Health {
    /// Adds a component, not ready until it says so.
    pub fn register(&self, name: &str) -> Readiness {
        self.set(name, false);
        Readiness {
            name: name.to_string(),
            health: self.clone(),
        }
    }

    fn set(&self, name: &str, ready: bool) {
        if let Ok(mut components) = self.components.lock() {
            components.insert(name.to_string(), ready);
        }
    }

    pub fn report(&self) -> Report {
        let components: BTreeMap<String, &'static str> = self
            .components
            .lock()
            .map(|c| {
                c.iter()
                    .map(|(k, ready)| (k.clone(), if *ready { "ready" } else { "starting" }))
                    .collect()
            })
            .unwrap_or_default();
        let all_ready = !components.is_empty() && components.values().all(|s| *s == "ready");
        Report {
            status: if all_ready { "healthy" } else { "starting" },
            components,
        }
    }
}

impl Readiness {
    pub fn ready(&self) {
        self.health.set(&self.name, true);
    }

    pub fn not_ready(&self) {
        self.health.set(&self.name, false);
    }
}

async fn readiness(State(health): State<Health>) -> impl IntoResponse {
    let report = health.report();
    let code = if report.status == "healthy" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(report))
}

/// `/health` and `/readyz` answer readiness; `/healthz` only says the process is alive;
/// `/metrics` is Prometheus' page (`crate::metrics`).
pub fn router<S>(health: Health) -> Router<S> {
    crate::metrics::install();
    Router::new()
        .route("/metrics", get(crate::metrics::page))
        .route("/health", get(readiness))
        .route("/readyz", get(readiness))
        .route("/healthz", get(|| async { (StatusCode::OK, "ok") }))
        .with_state(health)
}

/// Serves the health routes alone, for a service running in its own process.
pub async fn serve(addr: &str, health: Health, shutdown: CancellationToken) -> Result<(), RuntimeError> {
    let bind = |source| RuntimeError::Bind {
        addr: addr.to_string(),
        source,
    };
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(bind)?;
    axum::serve(listener, router::<()>(health))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .map_err(bind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthy_only_when_every_component_is_ready() {
        let health = Health::default();
        assert_eq!(
            health.report().status,
            "starting",
            "nothing registered is not healthy"
        );
        let bus = health.register("scheduler");
        let db = health.register("inbox");
        bus.ready();
        assert_eq!(health.report().status, "starting");
        db.ready();
        assert_eq!(health.report().status, "healthy");
        db.not_ready();
        assert_eq!(health.report().components["inbox"], "starting");
    }
}
