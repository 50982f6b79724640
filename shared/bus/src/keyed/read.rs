//! The reader: one ordered consumer from the low-water mark, queueing each event on its
//! aggregate's lane, opened again from the next sequence whenever it ends or fails.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull};
use futures_util::StreamExt;
use tokio::sync::Semaphore;

use super::{KeyedHandler, Read, Shared};
use crate::BusError;

/// The longest wait before reading again after the server went away.
const REOPEN_AT_MOST: Duration = Duration::from_secs(1);

/// Reads in stream order until shutdown.
pub(super) async fn read<H: KeyedHandler>(shared: &Arc<Shared<H>>, start: u64) -> Result<(), BusError> {
    let in_flight = Arc::new(Semaphore::new(shared.spec.max_in_flight.max(1)));
    let mut next = start + 1;
    let mut attempt = 0;
    while !shared.shutdown.is_cancelled() {
        let mut messages = match open(shared, next).await {
            Ok(messages) => messages,
            Err(err) => {
                tracing::warn!(projection = %shared.spec.name, error = %err, "cannot read; retrying");
                pause(shared, &mut attempt).await;
                continue;
            }
        };
        loop {
            let item = tokio::select! {
                () = shared.shutdown.cancelled() => return Ok(()),
                item = messages.next() => item,
            };
            match item {
                Some(Ok(message)) => {
                    attempt = 0;
                    let Ok(sequence) = message.info().map(|i| {
                        crate::metrics::lag(&shared.spec.stream, &shared.spec.name, i.pending);
                        i.stream_sequence
                    }) else {
                        tracing::error!("message without JetStream metadata; skipped");
                        continue;
                    };
                    if sequence < next {
                        continue;
                    }
                    next = sequence + 1;
                    let permit = tokio::select! {
                        () = shared.shutdown.cancelled() => return Ok(()),
                        permit = in_flight.clone().acquire_owned() => permit,
                    };
                    let Ok(permit) = permit else { return Ok(()) };
                    queue(
                        shared,
                        Read {
                            message,
                            stream_sequence: sequence,
                            attempts: 0,
                            _in_flight: permit,
                        },
                    );
                }
                Some(Err(err)) => {
                    tracing::warn!(projection = %shared.spec.name, error = %err, "reading failed; reopening");
                    pause(shared, &mut attempt).await;
                    break;
                }
                None => break,
            }
        }
    }
    Ok(())
}

/// Waits before reading again: short, since the server is usually back within a second or two
/// (a restart) and every moment here delays every task.
async fn pause<H>(shared: &Shared<H>, attempt: &mut u32) {
    let delay = shared.spec.retry_delay(*attempt).min(REOPEN_AT_MOST);
    *attempt += 1;
    tokio::select! {
        () = shared.shutdown.cancelled() => {}
        () = tokio::time::sleep(delay) => {}
    }
}

async fn open<H>(shared: &Shared<H>, from: u64) -> Result<pull::Ordered, BusError> {
    let fail = |reason: String| BusError::Consumer {
        stream: shared.spec.stream.clone(),
        consumer: shared.spec.name.clone(),
        reason,
    };
    let stream = shared
        .bus
        .jetstream()
        .get_stream_no_info(&shared.spec.stream)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            filter_subject: shared.spec.filter_subject.clone(),
            deliver_policy: jetstream::consumer::DeliverPolicy::ByStartSequence { start_sequence: from },
            ..Default::default()
        })
        .await
        .map_err(|e| fail(e.to_string()))?;
    consumer.messages().await.map_err(|e| fail(e.to_string()))
}

/// Queues the event on its aggregate's lane and wakes a worker if that made it ready.
fn queue<H>(shared: &Shared<H>, read: Read) {
    if let Ok(mut progress) = shared.progress.lock() {
        progress.started(read.stream_sequence);
    }
    let key = read.message.subject.to_string();
    let ready = shared.lanes.lock().is_ok_and(|mut lanes| lanes.add(key, read));
    if ready {
        shared.ready.notify_one();
    }
}
