//! A worker takes a batch from the lanes, applies it, and decides what a failure means: a batch
//! of several aggregates goes back to wait, each aggregate to be applied by itself; an aggregate
//! alone that fails for now waits out a backoff (only its events wait); one whose data is
//! refused is applied an event at a time and the refused event is dead-lettered.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mainloop_events::Envelope;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::lanes::Part;
use super::{KeyedHandler, Read, Shared};
use crate::metrics::Outcome;
use crate::{Delivery, HandlerError, dead_letter, trace};

/// A read event with its decoded envelope.
struct Item {
    read: Read,
    delivery: Delivery,
}

/// Takes and applies batches until shutdown.
pub(super) async fn work<H: KeyedHandler>(shared: Arc<Shared<H>>) {
    while !shared.shutdown.is_cancelled() {
        let (parts, more) = match shared.lanes.lock() {
            Ok(mut lanes) => (lanes.take(shared.spec.max_batch.max(1)), lanes.has_ready()),
            Err(_) => return,
        };
        if more {
            shared.ready.notify_one();
        }
        if parts.is_empty() {
            tokio::select! {
                () = shared.shutdown.cancelled() => return,
                () = shared.ready.notified() => continue,
            }
        }
        let parts = decode(&shared, parts).await;
        apply_batch(&shared, parts).await;
    }
}

/// Decodes each event; one that is not an event is dead-lettered and done.
async fn decode<H>(shared: &Shared<H>, parts: Vec<Part<Read>>) -> Vec<(String, Vec<Item>)> {
    let mut decoded = Vec::with_capacity(parts.len());
    for (key, reads) in parts {
        let mut items = Vec::with_capacity(reads.len());
        for read in reads {
            match Envelope::from_bytes(&read.message.payload) {
                Ok(event) => {
                    let delivery = Delivery {
                        event,
                        subject: key.clone(),
                        stream_sequence: read.stream_sequence,
                        delivered: read.attempts + 1,
                        traceparent: trace::traceparent_of(read.message.headers.as_ref()),
                    };
                    items.push(Item { read, delivery });
                }
                Err(err) => {
                    if bury(shared, &read, read.attempts + 1, &err.to_string()).await {
                        shared.finished(read.stream_sequence);
                    }
                }
            }
        }
        decoded.push((key, items));
    }
    decoded
}

async fn apply_batch<H: KeyedHandler>(shared: &Arc<Shared<H>>, parts: Vec<(String, Vec<Item>)>) {
    let batch: Vec<Delivery> = parts
        .iter()
        .flat_map(|(_, items)| items.iter().map(|i| i.delivery.clone()))
        .collect();
    let outcome = if batch.is_empty() {
        Ok(())
    } else {
        let first = parts.iter().find_map(|(_, items)| items.first());
        apply(shared, &batch, first.map(|i| &i.read), parts.len()).await
    };
    match outcome {
        Ok(()) => {
            for (key, items) in parts {
                for item in &items {
                    shared.finished(item.read.stream_sequence);
                }
                done(shared, &key);
            }
        }
        Err(err) if parts.len() > 1 => {
            tracing::debug!(projection = %shared.spec.name, error = %err, aggregates = parts.len(),
                "batch failed; its aggregates are applied each by itself");
            for (key, items) in parts.into_iter().rev() {
                put_back(shared, key, items, Duration::ZERO);
            }
        }
        Err(HandlerError::Permanent(_)) => {
            for (key, items) in parts {
                one_at_a_time(shared, key, items).await;
            }
        }
        Err(err) => {
            for (key, items) in parts {
                let wait = backoff(shared, &items, &err);
                put_back(shared, key, items, wait);
            }
        }
    }
}

/// Applies a batch once, in a span that continues the first event's trace.
async fn apply<H: KeyedHandler>(
    shared: &Shared<H>,
    batch: &[Delivery],
    first: Option<&Read>,
    aggregates: usize,
) -> Result<(), HandlerError> {
    let span = tracing::info_span!(
        "bus.apply",
        stream = %shared.spec.stream,
        projection = %shared.spec.name,
        events = batch.len(),
        aggregates,
        first_seq = first.map(|r| r.stream_sequence),
    );
    let _ = span.set_parent(trace::extract(first.and_then(|r| r.message.headers.as_ref())));
    let started = Instant::now();
    let applied = shared.handler.apply(batch).instrument(span).await;
    let outcome = match &applied {
        Ok(()) => Outcome::Done,
        Err(HandlerError::Permanent(_)) => Outcome::DeadLettered,
        Err(_) => Outcome::Retried,
    };
    crate::metrics::handled(&shared.spec.stream, &shared.spec.name, outcome, started.elapsed());
    applied
}

/// Applies one aggregate's events one by one: the event refused is dead-lettered and the rest
/// go on; one that fails for now waits, with what follows it, for a retry.
async fn one_at_a_time<H: KeyedHandler>(shared: &Arc<Shared<H>>, key: String, items: Vec<Item>) {
    let mut items = items.into_iter();
    while let Some(item) = items.next() {
        let applied = apply(shared, std::slice::from_ref(&item.delivery), Some(&item.read), 1).await;
        match applied {
            Ok(()) => shared.finished(item.read.stream_sequence),
            Err(HandlerError::Permanent(reason)) => {
                if !bury(shared, &item.read, item.delivery.delivered, &reason).await {
                    return;
                }
                shared.finished(item.read.stream_sequence);
            }
            Err(err) => {
                let rest: Vec<Item> = std::iter::once(item).chain(items).collect();
                let wait = backoff(shared, &rest, &err);
                put_back(shared, key, rest, wait);
                return;
            }
        }
    }
    done(shared, &key);
}

fn backoff<H>(shared: &Shared<H>, items: &[Item], err: &HandlerError) -> Duration {
    let attempts = items.first().map_or(0, |i| i.read.attempts);
    let wait = match err {
        HandlerError::RetryAfter { after, .. } => *after,
        _ => shared.spec.retry_delay(attempts),
    };
    tracing::warn!(projection = %shared.spec.name, error = %err, retry_in = ?wait,
        "an aggregate's events failed; they wait, the others go on");
    wait
}

/// The aggregate's batch is applied: it takes part in batches again.
fn done<H>(shared: &Shared<H>, key: &str) {
    let ready = shared.lanes.lock().is_ok_and(|mut lanes| lanes.done(key));
    if ready {
        shared.ready.notify_one();
    }
}

/// The aggregate's events wait first again, after `wait`, to be applied by themselves; until
/// then later events of the aggregate queue behind them. At shutdown they are left unapplied
/// (read again at the next start).
fn put_back<H: KeyedHandler>(shared: &Arc<Shared<H>>, key: String, items: Vec<Item>, wait: Duration) {
    let reads: Vec<Read> = items
        .into_iter()
        .map(|mut item| {
            item.read.attempts += 1;
            item.read
        })
        .collect();
    let back = move |shared: &Shared<H>| {
        if let Ok(mut lanes) = shared.lanes.lock() {
            lanes.put_back(key, reads, true);
        }
        shared.ready.notify_one();
    };
    if wait.is_zero() {
        back(shared);
        return;
    }
    let (shutdown, retries) = (shared.shutdown.clone(), shared.retries.clone());
    let shared = shared.clone();
    retries.spawn(async move {
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = tokio::time::sleep(wait) => back(shared.as_ref()),
        }
    });
}

/// Stores the dead letter, retrying until it is stored (`true`) or shutdown (`false`).
async fn bury<H>(shared: &Shared<H>, read: &Read, deliveries: u32, reason: &str) -> bool {
    loop {
        match dead_letter::record(
            &shared.bus,
            &shared.dead_letters,
            &read.message,
            read.stream_sequence,
            deliveries,
            reason,
        )
        .await
        {
            Ok(()) => {
                tracing::error!(%reason, seq = read.stream_sequence, "event dead-lettered; its aggregate goes on");
                crate::metrics::dead_lettered(&shared.spec.stream, &shared.spec.name);
                return true;
            }
            Err(err) => tracing::error!(%reason, error = %err, "could not store dead letter; will retry"),
        }
        tokio::select! {
            () = shared.shutdown.cancelled() => return false,
            () = tokio::time::sleep(shared.spec.max_backoff) => {}
        }
    }
}
