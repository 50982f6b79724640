//! Logs and traces, set up once per process. Spans always get OpenTelemetry ids, so the
//! `traceparent` the bus carries links services even when nothing is exported; with
//! `OTEL_EXPORTER_OTLP_ENDPOINT` set, spans are also exported over OTLP/HTTP.

use opentelemetry::trace::TracerProvider;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::RuntimeError;
use crate::config::{LogFormat, TelemetryConfig};

/// Flushes exported spans when dropped; keep it alive in `main`.
pub struct TelemetryGuard {
    provider: SdkTracerProvider,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        let _ = self.provider.shutdown();
    }
}

/// Installs the global subscriber: `RUST_LOG` filters (default `info`), logs go to stderr.
pub fn init(service: &'static str, config: &TelemetryConfig) -> Result<TelemetryGuard, RuntimeError> {
    crate::metrics::install();
    let resource = Resource::builder().with_service_name(service).build();
    let mut builder = SdkTracerProvider::builder().with_resource(resource);
    if config.otlp_endpoint.is_some() {
        // The exporter reads OTEL_EXPORTER_OTLP_ENDPOINT (and the other OTEL_* settings) itself.
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()
            .map_err(|e| RuntimeError::Telemetry(e.to_string()))?;
        builder = builder.with_batch_exporter(exporter);
    }
    let provider = builder.build();
    opentelemetry::global::set_tracer_provider(provider.clone());

    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,async_nats=warn"));
    let logs = match config.log_format {
        LogFormat::Human => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .compact()
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .json()
            .boxed(),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(logs)
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer(service)))
        .try_init()
        .map_err(|e| RuntimeError::Telemetry(e.to_string()))?;
    Ok(TelemetryGuard { provider })
}
