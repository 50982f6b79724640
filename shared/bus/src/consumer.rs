//! Durable pull consumers with the delivery rules every service relies on:
//!
//! - at-least-once: a message is acked only after its handler returned `Ok`;
//! - a transient failure is nakked with exponential backoff and comes back;
//! - a message that still fails on its `max_deliver`-th delivery, or fails permanently, or is not
//!   a valid envelope, goes to the dead-letter stream with its reason and is then terminated.
//!
//! The server-side consumer redelivers without limit; the limit is enforced here, after the dead
//! letter is safely stored. So a crash at any point redelivers rather than drops.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer::pull};
use futures_util::StreamExt;
use mainloop_events::Envelope;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::metrics::{self, Outcome};
use crate::{Bus, BusError, dead_letter, trace};

/// What a consumer reads and how hard it tries.
#[derive(Debug, Clone)]
pub struct ConsumerSpec {
    pub stream: String,
    /// The durable name; replicas of a service share it and so share the work.
    pub durable: String,
    /// One subject filter (NATS 2.9 allows only one).
    pub filter_subject: String,
    /// Handlers running at once.
    pub concurrency: usize,
    /// One message at a time, in stream order, the next only after this one is acked: for
    /// projections that keep a checkpoint and must never apply a later event first.
    pub ordered: bool,
    /// Messages pulled ahead of the handlers. High for quick handlers (projections); keep it at 1
    /// for slow work, since a prefetched message's ack_wait is already running.
    pub prefetch: usize,
    /// Deliveries before a failing message is dead-lettered.
    pub max_deliver: u32,
    /// How long a delivery may stay unacked before the server gives it to someone else.
    pub ack_wait: Duration,
    /// First nak delay; doubles per delivery, capped at `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
}

impl ConsumerSpec {
    pub fn new(stream: &str, durable: &str, filter_subject: &str) -> Self {
        ConsumerSpec {
            stream: stream.to_string(),
            durable: durable.to_string(),
            filter_subject: filter_subject.to_string(),
            concurrency: 16,
            ordered: false,
            prefetch: 256,
            max_deliver: 5,
            // Short, so work held by a consumer that died is handed out again soon; handlers
            // that run longer keep their claim with progress acks.
            ack_wait: Duration::from_secs(10),
            backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(60),
        }
    }

    fn nak_delay(&self, delivered: u32) -> Duration {
        let doublings = delivered.saturating_sub(1).min(20);
        self.backoff.saturating_mul(1 << doublings).min(self.max_backoff)
    }
}

/// One delivery of an event.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub event: Envelope,
    pub subject: String,
    pub stream_sequence: u64,
    /// 1 on first delivery.
    pub delivered: u32,
    /// The trace the event was published in (W3C `traceparent`), for what it causes in a batch
    /// whose span continues another event's trace.
    pub traceparent: Option<String>,
}

/// Why a handler did not finish.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HandlerError {
    /// Worth trying again later (a database or network hiccup).
    #[error("transient: {0}")]
    Transient(String),
    /// Will never succeed (bad data, a bug); dead-lettered at once.
    #[error("permanent: {0}")]
    Permanent(String),
    /// The other side said when to come back (a rate limit's reset): retried then, without
    /// ever being dead-lettered for it: waiting on a limit is not failing.
    #[error("waiting {after:?}: {reason}")]
    RetryAfter { reason: String, after: Duration },
}

/// Handles deliveries. Handlers must be idempotent: a delivery may repeat after a crash.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, delivery: Delivery) -> impl Future<Output = Result<(), HandlerError>> + Send;
}

/// Creates the durable consumer if needed and handles messages until `shutdown`; then stops
/// pulling, lets in-flight handlers finish, and returns.
pub async fn run<H: Handler>(
    bus: &Bus,
    spec: ConsumerSpec,
    handler: Arc<H>,
    shutdown: CancellationToken,
) -> Result<(), BusError> {
    let consumer = create(bus, &spec).await?;
    let messages = consumer
        .stream()
        .max_messages_per_batch(if spec.ordered { 1 } else { spec.prefetch.max(1) })
        .messages()
        .await
        .map_err(|e| consumer_error(&spec, e.to_string()))?;
    // Stops pulling on shutdown or on a fatal error; handlers already running finish first.
    let stop = shutdown.child_token();
    let fatal: Mutex<Option<BusError>> = Mutex::new(None);
    messages
        .take_until(stop.clone().cancelled_owned())
        .for_each_concurrent(
            if spec.ordered { 1 } else { spec.concurrency.max(1) },
            |next| async {
                match next {
                    Ok(message) => process(bus, &spec, handler.as_ref(), message).await,
                    Err(err) => {
                        use async_nats::jetstream::consumer::pull::MessagesErrorKind as Kind;
                        if matches!(err.kind(), Kind::ConsumerDeleted | Kind::PushBasedConsumer) {
                            if let Ok(mut fatal) = fatal.lock() {
                                *fatal = Some(consumer_error(&spec, err.to_string()));
                            }
                            stop.cancel();
                        } else {
                            tracing::warn!(consumer = %spec.durable, error = %err, "pull failed; retrying");
                        }
                    }
                }
            },
        )
        .await;
    match fatal.into_inner().ok().flatten() {
        Some(err) => Err(err),
        None if shutdown.is_cancelled() => Ok(()),
        None => Err(consumer_error(&spec, "message stream ended".into())),
    }
}

fn consumer_error(spec: &ConsumerSpec, reason: String) -> BusError {
    BusError::Consumer {
        stream: spec.stream.clone(),
        consumer: spec.durable.clone(),
        reason,
    }
}

async fn create(
    bus: &Bus,
    spec: &ConsumerSpec,
) -> Result<jetstream::consumer::Consumer<pull::Config>, BusError> {
    let fail = |reason: String| consumer_error(spec, reason);
    let stream = bus
        .jetstream()
        .get_stream(&spec.stream)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let config = pull::Config {
        durable_name: Some(spec.durable.clone()),
        filter_subject: spec.filter_subject.clone(),
        ack_policy: jetstream::consumer::AckPolicy::Explicit,
        ack_wait: spec.ack_wait,
        max_deliver: -1,
        // Everything prefetched or being handled is unacked; more would only wait in a buffer.
        max_ack_pending: if spec.ordered {
            1
        } else {
            i64::try_from(4 * spec.prefetch.max(1) + spec.concurrency.max(1)).unwrap_or(1024)
        },
        deliver_policy: jetstream::consumer::DeliverPolicy::All,
        ..Default::default()
    };
    stream
        .get_or_create_consumer(&spec.durable, config)
        .await
        .map_err(|e| fail(e.to_string()))
}

async fn process<H: Handler>(bus: &Bus, spec: &ConsumerSpec, handler: &H, message: jetstream::Message) {
    let (stream_sequence, delivered) = match message.info() {
        Ok(info) => {
            metrics::lag(&spec.stream, &spec.durable, info.pending);
            (
                info.stream_sequence,
                u32::try_from(info.delivered).unwrap_or(u32::MAX),
            )
        }
        Err(err) => {
            tracing::error!(error = %err, "message without JetStream metadata; leaving it to redelivery");
            return;
        }
    };
    let span = tracing::info_span!(
        "bus.handle",
        stream = %spec.stream,
        consumer = %spec.durable,
        subject = %message.subject,
        seq = stream_sequence,
        delivered,
    );
    let _ = span.set_parent(trace::extract(message.headers.as_ref()));

    let started = std::time::Instant::now();
    let outcome = match Envelope::from_bytes(&message.payload) {
        Ok(event) => {
            let delivery = Delivery {
                event,
                subject: message.subject.to_string(),
                stream_sequence,
                delivered,
                traceparent: trace::traceparent_of(message.headers.as_ref()),
            };
            let handling = handler.handle(delivery).instrument(span.clone());
            with_progress(&message, spec.ack_wait, handling).await
        }
        Err(err) => Err(HandlerError::Permanent(err.to_string())),
    };

    let _entered = span.enter();
    let counted = |outcome| metrics::handled(&spec.stream, &spec.durable, outcome, started.elapsed());
    let ack = match outcome {
        Ok(()) => {
            counted(Outcome::Done);
            message.ack_with(AckKind::Ack).await
        }
        Err(HandlerError::RetryAfter { reason, after }) => {
            tracing::warn!(%reason, retry_in = ?after, "told to wait; will retry then");
            counted(Outcome::Retried);
            message.ack_with(AckKind::Nak(Some(after))).await
        }
        // An ordered projection must never skip an event: it waits out transient trouble.
        Err(HandlerError::Transient(reason)) if spec.ordered || delivered < spec.max_deliver => {
            let delay = spec.nak_delay(delivered);
            tracing::warn!(%reason, retry_in = ?delay, "handler failed; will retry");
            counted(Outcome::Retried);
            message.ack_with(AckKind::Nak(Some(delay))).await
        }
        Err(failure) => {
            let reason = failure.to_string();
            match dead_letter::record(bus, spec, &message, stream_sequence, delivered, &reason).await {
                Ok(()) => {
                    tracing::error!(%reason, "message dead-lettered");
                    counted(Outcome::DeadLettered);
                    metrics::dead_lettered(&spec.stream, &spec.durable);
                    message.ack_with(AckKind::Term).await
                }
                Err(err) => {
                    tracing::error!(%reason, error = %err, "could not store dead letter; will retry");
                    message.ack_with(AckKind::Nak(Some(spec.max_backoff))).await
                }
            }
        }
    };
    if let Err(err) = ack {
        // The server will redeliver after ack_wait; idempotent handlers make that harmless.
        tracing::warn!(error = %err, "ack not sent");
    }
}

/// Runs `handling`, telling the server every third of `ack_wait` that the message is still being
/// worked on, so a slow handler keeps it and a dead one loses it within one `ack_wait`.
async fn with_progress<F: Future<Output = Result<(), HandlerError>>>(
    message: &jetstream::Message,
    ack_wait: Duration,
    handling: F,
) -> Result<(), HandlerError> {
    tokio::pin!(handling);
    // Most handlers finish at once; they should not pay for a timer.
    if let Some(outcome) = futures_util::FutureExt::now_or_never(handling.as_mut()) {
        return outcome;
    }
    let mut ticks = tokio::time::interval((ack_wait / 3).max(Duration::from_millis(100)));
    ticks.tick().await;
    loop {
        tokio::select! {
            outcome = &mut handling => return outcome,
            _ = ticks.tick() => {
                if let Err(err) = message.ack_with(AckKind::Progress).await {
                    tracing::warn!(error = %err, "progress ack not sent");
                }
            }
        }
    }
}
