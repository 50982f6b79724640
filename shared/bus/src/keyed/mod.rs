//! Projections that keep order per aggregate, not for the whole stream, and apply events in
//! batches: one slow or failing task holds back that task only, and a backlog is applied many
//! events per transaction.
//!
//! Events are read in stream order by an ordered consumer (ephemeral, without acks) and queued
//! per subject, and a subject is one aggregate (`task.<user>.<task>`). Workers take batches: the
//! events waiting of the aggregates that became ready first, up to `max_batch`, an aggregate in
//! one batch at a time and its events in stream order. A batch is applied all or nothing
//! ([`KeyedHandler::apply`]). When it fails, its aggregates go back to wait and are applied each
//! by itself; an aggregate that fails alone waits with backoff (a transient failure: only its own
//! events wait) or is applied one event at a time, and the event refused is dead-lettered (a
//! permanent one). A quiet stream makes batches of one event, applied as soon as read.
//!
//! Progress is a low-water mark: the highest sequence at and below which every event is done.
//! The handler stores it ([`KeyedHandler::checkpoint`]) and gives it back at start
//! ([`KeyedHandler::resume_after`]). Events above it may be handed over again after a restart,
//! so the handler must skip what it already applied (a per-aggregate checkpoint written in the
//! same transaction as the rows does it). Reading pauses while `max_in_flight` events are read
//! but not done, so a stuck aggregate cannot make memory grow without bound.

mod lanes;
mod progress;
mod read;
mod worker;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use tokio::sync::{Notify, OwnedSemaphorePermit};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::{Bus, BusError, ConsumerSpec, Delivery, HandlerError};
use lanes::Lanes;
use progress::Progress;

/// What a keyed projection reads and how it paces itself.
#[derive(Debug, Clone)]
pub struct KeyedSpec {
    pub stream: String,
    /// Names the projection in logs and dead letters (`dead.<stream>.<name>`).
    pub name: String,
    pub filter_subject: String,
    /// Batches applied at once.
    pub concurrency: usize,
    /// Events in one batch at most.
    pub max_batch: usize,
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
            concurrency: 4,
            max_batch: 500,
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

/// Applies batches of a stream's events and keeps the projection's low-water mark.
pub trait KeyedHandler: Send + Sync + 'static {
    /// Applies `batch` all or nothing: the events of one or more aggregates, each aggregate's
    /// in stream order, skipping any an aggregate already has (a batch may come again after a
    /// restart or a failure).
    fn apply(&self, batch: &[Delivery]) -> impl Future<Output = Result<(), HandlerError>> + Send;
    /// Everything at or below this sequence is done; reading starts after it.
    fn resume_after(&self) -> impl Future<Output = Result<u64, HandlerError>> + Send;
    /// Records that everything at or below `sequence` is done.
    fn checkpoint(&self, sequence: u64) -> impl Future<Output = Result<(), HandlerError>> + Send;
}

/// Runs the projection until `shutdown`: then reading stops, each worker finishes the batch in
/// hand, the low-water mark is stored, and it returns. What was read but not applied is read
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
        progress: Mutex::new(Progress::after(start)),
        lanes: Mutex::new(Lanes::default()),
        ready: Notify::new(),
        retries: TaskTracker::new(),
        shutdown: shutdown.clone(),
        spec,
        handler,
    });
    let checkpoints = tokio::spawn(keep_checkpoint(shared.clone()));
    let workers = TaskTracker::new();
    for _ in 0..shared.spec.concurrency.max(1) {
        workers.spawn(worker::work(shared.clone()));
    }
    workers.close();
    let read = read::read(&shared, start).await;
    workers.wait().await;
    shared.retries.close();
    shared.retries.wait().await;
    checkpoints.abort();
    store_checkpoint(&shared, &mut 0).await;
    read
}

/// What the reader, the workers and the checkpoint keeper share.
struct Shared<H> {
    bus: Bus,
    spec: KeyedSpec,
    handler: Arc<H>,
    dead_letters: ConsumerSpec,
    progress: Mutex<Progress>,
    lanes: Mutex<Lanes<Read>>,
    /// Wakes a worker when an aggregate becomes ready.
    ready: Notify,
    /// Aggregates waiting out a backoff before they are ready again.
    retries: TaskTracker,
    shutdown: CancellationToken,
}

/// An event read and not yet done; its permit keeps a place in `max_in_flight`.
struct Read {
    message: jetstream::Message,
    stream_sequence: u64,
    /// Times it was applied and failed.
    attempts: u32,
    _in_flight: OwnedSemaphorePermit,
}

impl<H> Shared<H> {
    fn finished(&self, sequence: u64) {
        if let Ok(mut progress) = self.progress.lock() {
            progress.finished(sequence);
        }
    }
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
