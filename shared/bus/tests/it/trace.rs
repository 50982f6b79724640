use std::sync::Arc;

use mainloop_bus::{ConsumerSpec, Delivery, Expect, Handler, HandlerError, consumer};
use mainloop_events::subjects;
use mainloop_testkit::TestNats;
use opentelemetry::trace::{TraceContextExt, TraceId, TracerProvider};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;

use crate::helpers::{connect, spawned};

struct ReportTrace(mpsc::UnboundedSender<TraceId>);

impl Handler for ReportTrace {
    async fn handle(&self, _: Delivery) -> Result<(), HandlerError> {
        let context = tracing::Span::current().context();
        let _ = self.0.send(context.span().span_context().trace_id());
        Ok(())
    }
}

#[tokio::test]
async fn the_consumer_continues_the_publishers_trace() -> anyhow::Result<()> {
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    tracing::subscriber::set_global_default(subscriber)?;

    let nats = TestNats::start()?;
    let bus = connect(&nats).await?;
    let span = tracing::info_span!("gateway.request");
    let published_trace = span.context().span().span_context().trace_id();
    assert_ne!(published_trace, TraceId::INVALID);
    bus.publish(&subjects::task("u1", "t1")?, &spawned("t1"), Expect::Any)
        .instrument(span)
        .await?;

    let (tx, mut rx) = mpsc::unbounded_channel();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn({
        let (bus, shutdown) = (bus.clone(), shutdown.clone());
        let spec = ConsumerSpec::new(subjects::TASKS, "traced", "task.>");
        async move { consumer::run(&bus, spec, Arc::new(ReportTrace(tx)), shutdown).await }
    });
    let seen = tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv()).await?;
    assert_eq!(seen, Some(published_trace));

    shutdown.cancel();
    running.await??;
    Ok(())
}
