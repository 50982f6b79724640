//! Each feed event is published in the trace of the TASKS event that caused it, also when a
//! batch applies several tasks' events at once (its span continues only the first one's).
//! Alone in its test binary: it installs the process's tracing subscriber.

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use futures_util::StreamExt;
use mainloop_bus::Expect;
use mainloop_events::v1::{RepoRef, TaskSpawned};
use mainloop_events::{Envelope, Payload, subjects};
use mainloop_testkit::Infra;
use opentelemetry::trace::{TraceContextExt, TracerProvider};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;

fn spawned(task: &str) -> Envelope {
    Envelope::new(
        "u1",
        task,
        Payload::TaskSpawned(TaskSpawned {
            task_id: task.into(),
            repo: Some(RepoRef {
                owner: "acme".into(),
                name: "widgets".into(),
                html_url: "https://github.com/acme/widgets".into(),
            }),
            description: format!("task {task}"),
            ..Default::default()
        }),
    )
}

#[tokio::test]
async fn each_feed_event_continues_the_trace_of_the_event_that_caused_it() -> anyhow::Result<()> {
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    tracing::subscriber::set_global_default(subscriber)?;

    let infra = Infra::start()?;
    let bus = infra.bus().await?;
    // Published before the inbox starts, so its first read holds all of them.
    let mut traces = BTreeMap::new();
    for task in ["ta", "tb", "tc"] {
        let span = tracing::info_span!("gateway.request", task);
        traces.insert(
            task.to_string(),
            span.context().span().span_context().trace_id().to_string(),
        );
        bus.publish(&subjects::task("u1", task)?, &spawned(task), Expect::Any)
            .instrument(span)
            .await?;
    }
    let shutdown = CancellationToken::new();
    tokio::spawn(mainloop_inbox::run(
        mainloop_inbox::Config::new(infra.common()),
        shutdown.clone(),
    ));

    let mut feed = bus
        .jetstream()
        .get_stream(subjects::INBOX)
        .await?
        .create_consumer(pull::OrderedConfig {
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        })
        .await?
        .messages()
        .await?;
    let mut seen = BTreeMap::new();
    while seen.len() < traces.len() {
        let message = tokio::time::timeout(Duration::from_secs(20), feed.next())
            .await?
            .ok_or_else(|| anyhow::anyhow!("the feed ended"))??;
        let event = Envelope::from_bytes(&message.payload)?;
        let traceparent = mainloop_bus::trace::traceparent_of(message.headers.as_ref()).unwrap_or_default();
        // W3C: version-traceid-spanid-flags.
        let trace = traceparent.split('-').nth(1).unwrap_or_default().to_string();
        seen.insert(event.correlation_id, trace);
    }
    assert_eq!(seen, traces, "each task's card in its own event's trace");
    shutdown.cancel();
    Ok(())
}
