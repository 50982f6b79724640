//! Keyed projections: order per aggregate, one stuck aggregate holds back only itself, and a
//! restart resumes after the low-water mark without losing or re-applying anything.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;

use mainloop_bus::{Bus, Delivery, Expect, HandlerError, KeyedHandler, KeyedSpec, dead_letter, keyed};
use mainloop_events::v1::TaskCancelled;
use mainloop_events::{Envelope, Payload, subjects};
use mainloop_testkit::TestNats;
use tokio_util::sync::CancellationToken;

use crate::helpers::{connect, eventually, spawned};

/// What a projection's database would hold: the low-water mark and, per aggregate, the last
/// sequence applied and every sequence applied, in order.
#[derive(Default)]
struct Store {
    mark: u64,
    applied: BTreeMap<String, Vec<u64>>,
    /// The size of each batch applied.
    batches: Vec<usize>,
}

/// Applies events to a shared [`Store`], skipping what an aggregate already has; fails
/// transiently for the subjects in `blocked`, and refuses `TaskCancelled` events as bad data.
struct Projection {
    store: Arc<Mutex<Store>>,
    blocked: Mutex<HashSet<String>>,
    /// Every batch waits here for a permit (then gives it back) when set.
    gate: Option<Arc<tokio::sync::Semaphore>>,
}

impl Projection {
    fn new(store: &Arc<Mutex<Store>>, blocked: &[&str]) -> Arc<Self> {
        Arc::new(Projection {
            store: store.clone(),
            blocked: Mutex::new(blocked.iter().map(|s| s.to_string()).collect()),
            gate: None,
        })
    }

    fn unblock(&self, subject: &str) {
        if let Ok(mut blocked) = self.blocked.lock() {
            blocked.remove(subject);
        }
    }
}

impl KeyedHandler for Projection {
    /// All or nothing, as a transaction: nothing is stored when one event fails.
    async fn apply(&self, batch: &[Delivery]) -> Result<(), HandlerError> {
        if let Some(gate) = &self.gate {
            drop(
                gate.acquire()
                    .await
                    .map_err(|e| HandlerError::Transient(e.to_string()))?,
            );
        }
        let blocked = self.blocked.lock().map(|b| b.clone()).unwrap_or_default();
        if let Some(stuck) = batch.iter().find(|d| blocked.contains(&d.subject)) {
            return Err(HandlerError::Transient(format!("{} row locked", stuck.subject)));
        }
        if let Some(bad) = batch.iter().find(|d| d.event.r#type == "TaskCancelled") {
            return Err(HandlerError::Permanent(format!(
                "{} refused",
                bad.stream_sequence
            )));
        }
        let mut store = self
            .store
            .lock()
            .map_err(|_| HandlerError::Permanent("poisoned".into()))?;
        store.batches.push(batch.len());
        for delivery in batch {
            let applied = store.applied.entry(delivery.subject.clone()).or_default();
            if applied
                .last()
                .is_some_and(|last| *last >= delivery.stream_sequence)
            {
                continue;
            }
            applied.push(delivery.stream_sequence);
        }
        Ok(())
    }

    async fn resume_after(&self) -> Result<u64, HandlerError> {
        Ok(self.store.lock().map(|s| s.mark).unwrap_or(0))
    }

    async fn checkpoint(&self, sequence: u64) -> Result<(), HandlerError> {
        if let Ok(mut store) = self.store.lock() {
            store.mark = store.mark.max(sequence);
        }
        Ok(())
    }
}

fn spec() -> KeyedSpec {
    KeyedSpec {
        backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(20),
        checkpoint_every: Duration::from_millis(20),
        ..KeyedSpec::new(subjects::TASKS, "test-projection", "task.>")
    }
}

/// Publishes one event per task in `tasks`, in that order; returns their sequences.
async fn publish(bus: &Bus, tasks: &[&str]) -> anyhow::Result<Vec<u64>> {
    let mut sequences = Vec::new();
    for task in tasks {
        let published = bus
            .publish(&subjects::task("u1", task)?, &spawned(task), Expect::Any)
            .await?;
        sequences.push(published.stream_sequence);
    }
    Ok(sequences)
}

fn applied(store: &Arc<Mutex<Store>>, task: &str) -> Vec<u64> {
    store
        .lock()
        .ok()
        .and_then(|s| s.applied.get(&format!("task.u1.{task}")).cloned())
        .unwrap_or_default()
}

fn mark(store: &Arc<Mutex<Store>>) -> u64 {
    store.lock().map(|s| s.mark).unwrap_or(0)
}

#[tokio::test]
async fn a_failing_aggregate_holds_back_only_itself_and_order_holds_per_aggregate() -> anyhow::Result<()> {
    let nats = TestNats::start()?;
    let bus = connect(&nats).await?;
    let order = ["a", "b", "c", "a", "b", "c", "a", "b", "c"];
    let sequences = publish(&bus, &order).await?;
    let store = Arc::new(Mutex::new(Store::default()));
    let projection = Projection::new(&store, &["task.u1.a"]);
    let shutdown = CancellationToken::new();
    let running = tokio::spawn({
        let (bus, projection, shutdown) = (bus.clone(), projection.clone(), shutdown.clone());
        async move { keyed::run(&bus, spec(), projection, shutdown).await }
    });

    let of = |task: &str| -> Vec<u64> {
        order
            .iter()
            .zip(&sequences)
            .filter(|(t, _)| **t == task)
            .map(|(_, s)| *s)
            .collect()
    };
    eventually("b and c applied while a is stuck", || async {
        Ok(applied(&store, "b") == of("b") && applied(&store, "c") == of("c"))
    })
    .await?;
    assert!(applied(&store, "a").is_empty(), "a waits for its first event");
    assert!(
        mark(&store) < sequences[0],
        "the mark stays below a's first event"
    );

    projection.unblock("task.u1.a");
    eventually("a catches up, in order", || async {
        Ok(applied(&store, "a") == of("a"))
    })
    .await?;
    eventually("the mark reaches the end", || async {
        Ok(mark(&store) == sequences[sequences.len() - 1])
    })
    .await?;
    shutdown.cancel();
    running.await??;
    Ok(())
}

#[tokio::test]
async fn a_restart_resumes_after_the_low_water_mark_and_applies_each_event_once() -> anyhow::Result<()> {
    let nats = TestNats::start()?;
    let bus = connect(&nats).await?;
    let order = ["b", "b", "a", "b", "a", "b"];
    let sequences = publish(&bus, &order).await?;
    let store = Arc::new(Mutex::new(Store::default()));

    // First run: a is stuck, so the mark stops before its first event.
    let first = Projection::new(&store, &["task.u1.a"]);
    let shutdown = CancellationToken::new();
    let running = tokio::spawn({
        let (bus, first, shutdown) = (bus.clone(), first.clone(), shutdown.clone());
        async move { keyed::run(&bus, spec(), first, shutdown).await }
    });
    eventually("b applied", || async { Ok(applied(&store, "b").len() == 4) }).await?;
    shutdown.cancel();
    running.await??;
    assert_eq!(mark(&store), sequences[1], "done through the two b's before a");

    // Second run, nothing stuck: reading resumes after the mark; b's later events come again
    // and are skipped; a is applied in order.
    let second = Projection::new(&store, &[]);
    let shutdown = CancellationToken::new();
    let running = tokio::spawn({
        let (bus, second, shutdown) = (bus.clone(), second.clone(), shutdown.clone());
        async move { keyed::run(&bus, spec(), second, shutdown).await }
    });
    eventually("a applied", || async {
        Ok(applied(&store, "a") == vec![sequences[2], sequences[4]])
    })
    .await?;
    eventually("the mark reaches the end", || async {
        Ok(mark(&store) == sequences[5])
    })
    .await?;
    assert_eq!(
        applied(&store, "b"),
        vec![sequences[0], sequences[1], sequences[3], sequences[5]],
        "each of b's events once"
    );
    shutdown.cancel();
    running.await??;
    Ok(())
}

#[tokio::test]
async fn a_message_that_is_not_an_event_is_dead_lettered_and_its_lane_goes_on() -> anyhow::Result<()> {
    let nats = TestNats::start()?;
    let bus = connect(&nats).await?;
    publish(&bus, &["a"]).await?;
    bus.jetstream()
        .publish(subjects::task("u1", "a")?, "not an envelope".into())
        .await?
        .await?;
    let last = publish(&bus, &["a"]).await?;
    let store = Arc::new(Mutex::new(Store::default()));
    let shutdown = CancellationToken::new();
    let running = tokio::spawn({
        let (bus, projection, shutdown) = (bus.clone(), Projection::new(&store, &[]), shutdown.clone());
        async move { keyed::run(&bus, spec(), projection, shutdown).await }
    });
    eventually("a's events on both sides applied", || async {
        Ok(applied(&store, "a").len() == 2 && mark(&store) == last[0])
    })
    .await?;
    let dead = dead_letter::list(&bus, "dead.>").await?;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].subject, "task.u1.a");
    assert_eq!(dead[0].payload, b"not an envelope");
    shutdown.cancel();
    running.await??;
    Ok(())
}

#[tokio::test]
async fn a_backlog_is_applied_in_batches_of_many_aggregates_each_in_order() -> anyhow::Result<()> {
    let nats = TestNats::start()?;
    let bus = connect(&nats).await?;
    let tasks: Vec<String> = (0..20).map(|n| format!("t{n}")).collect();
    let order: Vec<&str> = (0..10).flat_map(|_| tasks.iter().map(String::as_str)).collect();
    let sequences = publish(&bus, &order).await?;
    let store = Arc::new(Mutex::new(Store::default()));
    // The first batches wait at a gate while the reader queues the rest.
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let projection = Arc::new(Projection {
        store: store.clone(),
        blocked: Mutex::default(),
        gate: Some(gate.clone()),
    });
    let shutdown = CancellationToken::new();
    let running = tokio::spawn({
        let (bus, shutdown) = (bus.clone(), shutdown.clone());
        async move { keyed::run(&bus, spec(), projection, shutdown).await }
    });
    let last = sequences[sequences.len() - 1];
    eventually("the reader was handed every event", || async {
        let stream = bus.jetstream().get_stream(subjects::TASKS).await?;
        let mut consumers = stream.consumers();
        while let Some(info) = consumers.next().await {
            if info?.delivered.stream_sequence == last {
                return Ok(true);
            }
        }
        Ok(false)
    })
    .await?;
    gate.add_permits(1);
    eventually("every event applied", || async {
        Ok(mark(&store) == sequences[sequences.len() - 1])
    })
    .await?;
    for task in &tasks {
        let of: Vec<u64> = order
            .iter()
            .zip(&sequences)
            .filter(|(t, _)| **t == task.as_str())
            .map(|(_, s)| *s)
            .collect();
        assert_eq!(applied(&store, task), of, "{task}: each event once, in order");
    }
    let batches = store.lock().map(|s| s.batches.clone()).unwrap_or_default();
    assert_eq!(batches.iter().sum::<usize>(), order.len(), "{batches:?}");
    assert!(
        batches.iter().any(|size| *size > 1),
        "a backlog makes batches of several aggregates' events: {batches:?}"
    );
    shutdown.cancel();
    running.await??;
    Ok(())
}

#[tokio::test]
async fn an_event_refused_in_a_batch_is_dead_lettered_and_everything_else_is_applied() -> anyhow::Result<()> {
    let nats = TestNats::start()?;
    let bus = connect(&nats).await?;
    let before = publish(&bus, &["a", "b", "a", "b"]).await?;
    let cancelled = Envelope::new("u1", "a", Payload::TaskCancelled(TaskCancelled::default()));
    let refused = bus
        .publish(&subjects::task("u1", "a")?, &cancelled, Expect::Any)
        .await?
        .stream_sequence;
    let after = publish(&bus, &["a", "b"]).await?;
    let store = Arc::new(Mutex::new(Store::default()));
    let shutdown = CancellationToken::new();
    let running = tokio::spawn({
        let (bus, projection, shutdown) = (bus.clone(), Projection::new(&store, &[]), shutdown.clone());
        async move { keyed::run(&bus, spec(), projection, shutdown).await }
    });
    eventually("every event done", || async { Ok(mark(&store) == after[1]) }).await?;
    assert_eq!(
        applied(&store, "a"),
        vec![before[0], before[2], after[0]],
        "a goes on after the refused event"
    );
    assert_eq!(applied(&store, "b"), vec![before[1], before[3], after[1]]);
    let dead = dead_letter::list(&bus, "dead.>").await?;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].stream_sequence, refused);
    shutdown.cancel();
    running.await??;
    Ok(())
}
