//! Projections that keep order per aggregate, not for the whole stream: one slow or failing
//! task holds back that task only.
//!
//! Events are read in stream order by an ordered consumer (ephemeral, without acks) and handed
//! to one lane per subject, and a subject is one aggregate (`task.<user>.<task>`). A lane handles
//! its events one at a time, in stream order; lanes run side by side. A transient failure is
//! retried in place, with backoff, so only its own lane waits; a permanent one is dead-lettered
//! and the lane goes on.
//!
//! Progress is a low-water mark: the highest sequence at and below which every event is done.
//! The handler stores it ([`KeyedHandler::checkpoint`]) and gives it back at start
//! ([`KeyedHandler::resume_after`]). Events above it may be handed over again after a restart,
//! so the handler must skip what it already applied (a per-aggregate checkpoint written in the
//! same transaction as the rows does it). Reading pauses while `max_in_flight` events are read
//! but not done, so a stuck lane cannot make memory grow without bound.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull};
use futures_util::StreamExt;
use mainloop_events::Envelope;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::metrics::Outcome;
use crate::{Bus, BusError, ConsumerSpec, Delivery, Handler, HandlerError, dead_letter, trace};

/// The longest wait before reading again after the server went away.
const REOPEN_AT_MOST: Duration = Duration::from_secs(1);

/// What a keyed projection reads and how it paces itself.
#[derive(Debug, Clone)]
pub struct KeyedSpec {
    pub stream: String,
    /// Names the projection in logs and dead letters (`dead.<stream>.<name>`).
    pub name: String,
    pub filter_subject: String,
    /// Handlers running at once, across lanes.
    pub concurrency: usize,
    /// Events read but not yet done before reading pauses.
    pub max_in_flight: usize,
    /// First retry delay of a transient failure; doubles per attempt, capped at `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// How often the low-water mark is stored while it moves.
    pub checkpoint_every: Duration,
}

impl KeyedSpec {
    pub fn new(stream: &str, name: &str, filter_subject: &str) -> Self {
        KeyedSpec {
            stream: stream.to_string(),
            name: name.to_string(),
            filter_subject: filter_subject.to_string(),
            concurrency: 16,
            max_in_flight: 4096,
            backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
            checkpoint_every: Duration::from_millis(200),
        }
    }

    fn retry_delay(&self, attempt: u32) -> Duration {
        self.backoff
            .saturating_mul(1 << attempt.min(20))
            .min(self.max_backoff)
    }
}

/// A [`Handler`] that also keeps the projection's low-water mark.
pub trait KeyedHandler: Handler {
    /// Everything at or below this sequence is done; reading starts after it.
    fn resume_after(&self) -> impl Future<Output = Result<u64, HandlerError>> + Send;
    /// Records that everything at or below `sequence` is done.
    fn checkpoint(&self, sequence: u64) -> impl Future<Output = Result<(), HandlerError>> + Send;
}

/// Runs the projection until `shutdown`: then reading stops, each lane finishes the event in
/// hand, the low-water mark is stored, and it returns. What was read but not handled is read
/// again at the next start.
pub async fn run<H: KeyedHandler>(
    bus: &Bus,
    spec: KeyedSpec,
    handler: Arc<H>,
    shutdown: CancellationToken,
) -> Result<(), BusError> {
    let Some(start) = resume_point(&spec, handler.as_ref(), &shutdown).await else {
        return Ok(());
    };
    let shared = Arc::new(Shared {
        bus: bus.clone(),
        dead_letters: ConsumerSpec::new(&spec.stream, &spec.name, &spec.filter_subject),
        running: Arc::new(Semaphore::new(spec.concurrency.max(1))),
        progress: Mutex::new(Progress::after(start)),
        queues: Mutex::new(HashMap::new()),
        lanes: TaskTracker::new(),
        shutdown: shutdown.clone(),
        spec,
        handler,
    });
    let checkpoints = tokio::spawn(keep_checkpoint(shared.clone()));
    let read = read(&shared, start).await;
    shared.lanes.close();
    shared.lanes.wait().await;
    checkpoints.abort();
    store_checkpoint(&shared, &mut 0).await;
    read
}

/// What the reader, the lanes and the checkpoint keeper share.
struct Shared<H> {
    bus: Bus,
    spec: KeyedSpec,
    handler: Arc<H>,
    dead_letters: ConsumerSpec,
    running: Arc<Semaphore>,
    progress: Mutex<Progress>,
    /// Events waiting per subject; a subject has a lane while it has an entry here.
    queues: Mutex<HashMap<String, VecDeque<Read>>>,
    lanes: TaskTracker,
    shutdown: CancellationToken,
}

/// An event read and not yet done; its permit keeps a place in `max_in_flight`.
struct Read {
    message: jetstream::Message,
    stream_sequence: u64,
    _in_flight: OwnedSemaphorePermit,
}

async fn resume_point<H: KeyedHandler>(
    spec: &KeyedSpec,
    handler: &H,
    shutdown: &CancellationToken,
) -> Option<u64> {
    let mut attempt = 0;
    loop {
        match handler.resume_after().await {
            Ok(sequence) => return Some(sequence),
            Err(err) => {
                tracing::warn!(projection = %spec.name, error = %err, "no resume point yet; retrying")
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return None,
            () = tokio::time::sleep(spec.retry_delay(attempt)) => attempt += 1,
        }
    }
}

/// Reads in stream order and hands each event to its lane, opening the consumer again from the
/// next sequence whenever it ends.
async fn read<H: KeyedHandler>(shared: &Arc<Shared<H>>, start: u64) -> Result<(), BusError> {
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
                    let Ok(info) = message.info().map(|i| {
                        crate::metrics::lag(&shared.spec.stream, &shared.spec.name, i.pending);
                        i.stream_sequence
                    }) else {
                        tracing::error!("message without JetStream metadata; skipped");
                        continue;
                    };
                    if info < next {
                        continue;
                    }
                    next = info + 1;
                    let permit = tokio::select! {
                        () = shared.shutdown.cancelled() => return Ok(()),
                        permit = in_flight.clone().acquire_owned() => permit,
                    };
                    let Ok(permit) = permit else { return Ok(()) };
                    dispatch(
                        shared,
                        Read {
                            message,
                            stream_sequence: info,
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
        .get_stream(&shared.spec.stream)
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

/// Queues the event on its subject's lane, starting the lane if it has none.
fn dispatch<H: KeyedHandler>(shared: &Arc<Shared<H>>, read: Read) {
    if let Ok(mut progress) = shared.progress.lock() {
        progress.started(read.stream_sequence);
    }
    let key = read.message.subject.to_string();
    let start_lane = match shared.queues.lock() {
        Ok(mut queues) => match queues.get_mut(&key) {
            Some(queue) => {
                queue.push_back(read);
                false
            }
            None => {
                queues.insert(key.clone(), VecDeque::from([read]));
                true
            }
        },
        Err(_) => false,
    };
    if start_lane {
        shared.lanes.spawn(lane(shared.clone(), key));
    }
}

/// Handles one subject's events in order until its queue is empty (or shutdown).
async fn lane<H: KeyedHandler>(shared: Arc<Shared<H>>, key: String) {
    while !shared.shutdown.is_cancelled() {
        let next = match shared.queues.lock() {
            Ok(mut queues) => {
                let next = queues.get_mut(&key).and_then(VecDeque::pop_front);
                if next.is_none() {
                    queues.remove(&key);
                }
                next
            }
            Err(_) => None,
        };
        let Some(read) = next else { return };
        let Ok(_running) = shared.running.clone().acquire_owned().await else {
            return;
        };
        if handle(&shared, &read).await
            && let Ok(mut progress) = shared.progress.lock()
        {
            progress.finished(read.stream_sequence);
        }
    }
}

/// Handles one event until it is applied or dead-lettered (`true`), or shutdown (`false`).
async fn handle<H: KeyedHandler>(shared: &Shared<H>, read: &Read) -> bool {
    let message = &read.message;
    let span = tracing::info_span!(
        "bus.handle",
        stream = %shared.spec.stream,
        projection = %shared.spec.name,
        subject = %message.subject,
        seq = read.stream_sequence,
    );
    let _ = span.set_parent(trace::extract(message.headers.as_ref()));
    let event = match Envelope::from_bytes(&message.payload) {
        Ok(event) => event,
        Err(err) => return bury(shared, read, 1, &err.to_string()).instrument(span).await,
    };
    let mut attempt = 0u32;
    let (stream, name) = (&shared.spec.stream, &shared.spec.name);
    loop {
        let started = std::time::Instant::now();
        let delivery = Delivery {
            event: event.clone(),
            subject: message.subject.to_string(),
            stream_sequence: read.stream_sequence,
            delivered: attempt + 1,
        };
        let handled = shared.handler.handle(delivery).instrument(span.clone()).await;
        let outcome = match &handled {
            Ok(()) => Outcome::Done,
            Err(HandlerError::Permanent(_)) => Outcome::DeadLettered,
            Err(_) => Outcome::Retried,
        };
        crate::metrics::handled(stream, name, outcome, started.elapsed());
        let wait = match handled {
            Ok(()) => return true,
            Err(HandlerError::Permanent(reason)) => {
                return bury(shared, read, attempt + 1, &reason).instrument(span).await;
            }
            Err(HandlerError::RetryAfter { reason, after }) => {
                tracing::warn!(parent: &span, %reason, retry_in = ?after, "told to wait; this lane waits");
                after
            }
            Err(HandlerError::Transient(reason)) => {
                let delay = shared.spec.retry_delay(attempt);
                tracing::warn!(parent: &span, %reason, retry_in = ?delay, "handler failed; this lane retries");
                delay
            }
        };
        attempt = attempt.saturating_add(1);
        tokio::select! {
            () = shared.shutdown.cancelled() => return false,
            () = tokio::time::sleep(wait) => {}
        }
    }
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
                tracing::error!(%reason, "event dead-lettered; its lane goes on");
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

async fn keep_checkpoint<H: KeyedHandler>(shared: Arc<Shared<H>>) {
    let mut stored = 0;
    loop {
        tokio::time::sleep(shared.spec.checkpoint_every).await;
        store_checkpoint(&shared, &mut stored).await;
    }
}

async fn store_checkpoint<H: KeyedHandler>(shared: &Shared<H>, stored: &mut u64) {
    let Some(done) = shared.progress.lock().ok().map(|p| p.done_through) else {
        return;
    };
    if done <= *stored {
        return;
    }
    match shared.handler.checkpoint(done).await {
        Ok(()) => *stored = done,
        Err(err) => {
            tracing::warn!(projection = %shared.spec.name, error = %err, "checkpoint not stored; will retry")
        }
    }
}

/// Which read events are done, in stream order.
#[derive(Debug)]
struct Progress {
    /// Every event at or below this is done.
    done_through: u64,
    /// Events read after it, in order, with whether each is done.
    open: VecDeque<(u64, bool)>,
}

impl Progress {
    fn after(done_through: u64) -> Self {
        Progress {
            done_through,
            open: VecDeque::new(),
        }
    }

    fn started(&mut self, sequence: u64) {
        self.open.push_back((sequence, false));
    }

    fn finished(&mut self, sequence: u64) {
        if let Ok(at) = self.open.binary_search_by_key(&sequence, |(s, _)| *s) {
            self.open[at].1 = true;
        }
        while let Some((sequence, true)) = self.open.front().copied() {
            self.done_through = sequence;
            self.open.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Progress;

    #[test]
    fn the_low_water_mark_moves_only_over_events_that_are_all_done() {
        let mut progress = Progress::after(10);
        for sequence in [11, 12, 14, 15] {
            progress.started(sequence);
        }
        progress.finished(12);
        progress.finished(14);
        assert_eq!(progress.done_through, 10, "11 is still open");
        progress.finished(11);
        assert_eq!(progress.done_through, 14, "gaps in the stream are not waited for");
        progress.finished(15);
        assert_eq!(progress.done_through, 15);
        assert!(progress.open.is_empty());
    }
}
