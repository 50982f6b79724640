//! Prometheus metrics: one recorder per process (the `metrics` facade, rendered by
//! `metrics-exporter-prometheus`), installed on first use, and `GET /metrics` beside the health
//! routes (`HEALTH_ADDR`, and the gateway's port in `mainloop up`, where all six services share
//! the process and so the page). What each service records is named in docs/ARCHITECTURE.md,
//! "Metrics"; every name starts `mainloop_`.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::IntoResponse;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Latency buckets in seconds, from a quick handler to a slow agent call.
const BUCKETS: &[f64] = &[
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Installs the process's recorder once; later calls return the same handle. `None` when another
/// recorder was installed first (then this process's metrics are that recorder's business).
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new().set_buckets(BUCKETS).ok()?;
            match builder.install_recorder() {
                Ok(handle) => Some(handle),
                Err(err) => {
                    tracing::warn!(error = %err, "metrics recorder not installed");
                    None
                }
            }
        })
        .as_ref()
}

/// `GET /metrics` in Prometheus' text format.
pub async fn page() -> impl IntoResponse {
    let text = install().map(PrometheusHandle::render).unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}
