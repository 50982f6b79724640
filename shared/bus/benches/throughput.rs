//! Publish and consume N events through raw async-nats and through the bus library, in the same
//! run against the same throw-away nats-server, alternating rounds; prints the median rates and
//! the bus/raw ratio. `BENCH_EVENTS` (default 20000) and `BENCH_ROUNDS` (default 3) tune it.
//!
//! Every side publishes with 32 concurrent publishers, each awaiting its acks (the bus always
//! waits for the stored sequence), and consumes from a durable pull consumer with explicit acks.
//! Two baselines: raw async-nats publishing the same bytes with a `Nats-Msg-Id` header (the same
//! job: deduplicated storage, which costs the server work) and raw async-nats with no header at
//! all. The goal (bus >= 80% of raw) is judged against the first; both are printed.
//!
//! Then projections: `BENCH_PROJECTION_EVENTS` (default 4000) events spread over 100 tasks,
//! applied by a handler that awaits `work` per transaction (0, and 1 ms standing in for a
//! database transaction), once through the stream-wide ordered consumer (one event per
//! transaction) and once through the keyed projection (order per task, batches of many tasks'
//! events per transaction); prints the keyed/ordered ratio of the rates, and each beside raw
//! async-nats reading the same events through an ordered consumer (the floor: what the server
//! and client cost before any handling).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull};
use futures_util::StreamExt;
use mainloop_bus::{
    Bus, ConsumerSpec, Delivery, Expect, Handler, HandlerError, KeyedHandler, KeyedSpec, consumer, keyed,
};
use mainloop_events::v1::WorkerLog;
use mainloop_events::{Envelope, Payload, subjects};
use mainloop_testkit::TestNats;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

const PUBLISHERS: usize = 32;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn event(i: usize) -> Envelope {
    Envelope::new(
        "bench",
        "t1",
        Payload::WorkerLog(WorkerLog {
            job_id: "job-1".into(),
            attempt: 1,
            line: format!("line {i}: compiling mainloop-bus v0.1.0 (/work/main/shared/bus)"),
            line_no: i as u64,
            ..Default::default()
        }),
    )
}

async fn publish_raw(js: &jetstream::Context, n: usize, dedupe: bool) -> anyhow::Result<Duration> {
    let payloads: Vec<(String, bytes::Bytes)> = (0..n)
        .map(|i| {
            let event = event(i);
            (event.id.clone(), event.to_bytes().into())
        })
        .collect();
    let payloads = Arc::new(payloads);
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for p in 0..PUBLISHERS {
        let (js, payloads) = (js.clone(), payloads.clone());
        tasks.spawn(async move {
            for i in (p..payloads.len()).step_by(PUBLISHERS) {
                let (id, payload) = &payloads[i];
                if dedupe {
                    let mut headers = async_nats::HeaderMap::new();
                    headers.insert(async_nats::header::NATS_MESSAGE_ID, id.as_str());
                    js.publish_with_headers("log.bench.t1", headers, payload.clone())
                        .await?
                        .await?;
                } else {
                    js.publish("log.bench.t1", payload.clone()).await?.await?;
                }
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(started.elapsed())
}

async fn publish_bus(bus: &Bus, n: usize) -> anyhow::Result<Duration> {
    let events: Arc<Vec<Envelope>> = Arc::new((0..n).map(event).collect());
    let subject = subjects::log("bench", "t1")?;
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for p in 0..PUBLISHERS {
        let (bus, events, subject) = (bus.clone(), events.clone(), subject.clone());
        tasks.spawn(async move {
            for i in (p..events.len()).step_by(PUBLISHERS) {
                bus.publish(&subject, &events[i], Expect::Any).await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(started.elapsed())
}

async fn consume_raw(js: &jetstream::Context, durable: &str, n: usize) -> anyhow::Result<Duration> {
    let stream = js.get_stream(subjects::LOGS).await?;
    let consumer = stream
        .create_consumer(pull::Config {
            durable_name: Some(durable.to_string()),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await?;
    let started = Instant::now();
    let mut messages = consumer.messages().await?;
    for _ in 0..n {
        let message = messages
            .next()
            .await
            .ok_or_else(|| anyhow::anyhow!("stream ended"))??;
        message.ack().await.map_err(|e| anyhow::anyhow!(e))?;
    }
    Ok(started.elapsed())
}

struct Count {
    seen: AtomicU64,
    target: u64,
    done: Notify,
}

impl Handler for Count {
    async fn handle(&self, _: Delivery) -> Result<(), HandlerError> {
        if self.seen.fetch_add(1, Ordering::Relaxed) + 1 == self.target {
            self.done.notify_one();
        }
        Ok(())
    }
}

async fn consume_bus(bus: &Bus, durable: &str, n: usize) -> anyhow::Result<Duration> {
    let counter = Arc::new(Count {
        seen: AtomicU64::new(0),
        target: n as u64,
        done: Notify::new(),
    });
    let shutdown = CancellationToken::new();
    let spec = ConsumerSpec {
        concurrency: env_usize("BENCH_CONCURRENCY", 16),
        ..ConsumerSpec::new(subjects::LOGS, durable, "log.>")
    };
    let started = Instant::now();
    let running = tokio::spawn({
        let (bus, counter, shutdown) = (bus.clone(), counter.clone(), shutdown.clone());
        async move { consumer::run(&bus, spec, counter, shutdown).await }
    });
    counter.done.notified().await;
    let took = started.elapsed();
    shutdown.cancel();
    running.await??;
    Ok(took)
}

/// Counts applied events after awaiting `work` for each, as a projection's transaction would.
struct Apply {
    count: Count,
    work: Duration,
    resume_after: u64,
}

impl Handler for Apply {
    async fn handle(&self, delivery: Delivery) -> Result<(), HandlerError> {
        if !self.work.is_zero() {
            tokio::time::sleep(self.work).await;
        }
        self.count.handle(delivery).await
    }
}

impl KeyedHandler for Apply {
    /// One transaction per batch.
    async fn apply(&self, batch: &[Delivery]) -> Result<(), HandlerError> {
        if !self.work.is_zero() {
            tokio::time::sleep(self.work).await;
        }
        for delivery in batch {
            self.count.handle(delivery.clone()).await?;
        }
        Ok(())
    }

    async fn resume_after(&self) -> Result<u64, HandlerError> {
        Ok(self.resume_after)
    }

    async fn checkpoint(&self, _: u64) -> Result<(), HandlerError> {
        Ok(())
    }
}

/// Publishes `n` events spread over 100 tasks; returns the sequence before the first.
async fn publish_tasks(bus: &Bus, n: usize) -> anyhow::Result<u64> {
    let mut tasks = bus.jetstream().get_stream(subjects::TASKS).await?;
    tasks.purge().await?;
    let before = tasks.info().await?.state.last_sequence;
    let mut publishing = JoinSet::new();
    for p in 0..PUBLISHERS {
        let bus = bus.clone();
        publishing.spawn(async move {
            for i in (p..n).step_by(PUBLISHERS) {
                let task = format!("t{}", i % 100);
                let Some(payload) = event(i).payload else {
                    anyhow::bail!("a log event without payload")
                };
                let event = Envelope::new("bench", &task, payload);
                bus.publish(&subjects::task("bench", &task)?, &event, Expect::Any)
                    .await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = publishing.join_next().await {
        done??;
    }
    Ok(before)
}

/// Applies the `n` events after `after` with a stream-wide ordered consumer or keyed lanes.
async fn project(
    bus: &Bus,
    name: &str,
    keyed_lanes: bool,
    n: usize,
    after: u64,
    work: Duration,
) -> anyhow::Result<Duration> {
    let apply = Arc::new(Apply {
        count: Count {
            seen: AtomicU64::new(0),
            target: n as u64,
            done: Notify::new(),
        },
        work,
        resume_after: after,
    });
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    let running = tokio::spawn({
        let (bus, apply, shutdown, name) = (bus.clone(), apply.clone(), shutdown.clone(), name.to_string());
        async move {
            if keyed_lanes {
                keyed::run(
                    &bus,
                    KeyedSpec::new(subjects::TASKS, &name, "task.>"),
                    apply,
                    shutdown,
                )
                .await
            } else {
                let spec = ConsumerSpec {
                    ordered: true,
                    ..ConsumerSpec::new(subjects::TASKS, &name, "task.>")
                };
                consumer::run(&bus, spec, apply, shutdown).await
            }
        }
    });
    apply.count.done.notified().await;
    let took = started.elapsed();
    shutdown.cancel();
    running.await??;
    Ok(took)
}

/// The floor: raw async-nats reading the same `n` events after `after` through an ordered
/// consumer, decoding nothing.
async fn read_raw_ordered(js: &jetstream::Context, n: usize, after: u64) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let consumer = js
        .get_stream(subjects::TASKS)
        .await?
        .create_consumer(pull::OrderedConfig {
            filter_subject: "task.>".into(),
            deliver_policy: jetstream::consumer::DeliverPolicy::ByStartSequence {
                start_sequence: after + 1,
            },
            ..Default::default()
        })
        .await?;
    let mut messages = consumer.messages().await?;
    for _ in 0..n {
        messages
            .next()
            .await
            .ok_or_else(|| anyhow::anyhow!("the ordered consumer ended"))??;
    }
    Ok(started.elapsed())
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let n = env_usize("BENCH_EVENTS", 20_000);
    let rounds = env_usize("BENCH_ROUNDS", 3);
    let nats = TestNats::start()?;
    tokio::runtime::Runtime::new()?.block_on(async {
        let bus = Bus::connect(&nats.url(), "bench", Duration::from_secs(5), &CancellationToken::new()).await?;
        bus.ensure_streams(1).await?;
        let raw = async_nats::connect(nats.url()).await?;
        let js = jetstream::new(raw);
        let mut logs = js.get_stream(subjects::LOGS).await?;

        // [plain raw, raw with Nats-Msg-Id, bus] × [publish, consume] rates per round.
        let mut rates: [[Vec<f64>; 2]; 3] = Default::default();
        for round in 0..rounds {
            for (side, dedupe) in [(0, false), (1, true)] {
                logs.purge().await?;
                rates[side][0].push(n as f64 / publish_raw(&js, n, dedupe).await?.as_secs_f64());
                rates[side][1].push(n as f64 / consume_raw(&js, &format!("raw-{side}-{round}"), n).await?.as_secs_f64());
            }
            logs.purge().await?;
            rates[2][0].push(n as f64 / publish_bus(&bus, n).await?.as_secs_f64());
            rates[2][1].push(n as f64 / consume_bus(&bus, &format!("bus-{round}"), n).await?.as_secs_f64());
        }
        let payload = event(0).to_bytes().len();
        println!("bus throughput: {n} events of {payload} bytes, {rounds} alternating rounds, medians (events/s)");
        for (i, what) in ["publish", "consume"].into_iter().enumerate() {
            let plain = median(rates[0][i].clone());
            let raw = median(rates[1][i].clone());
            let ours = median(rates[2][i].clone());
            println!(
                "  {what}: raw+msg-id {raw:>8.0} | mainloop-bus {ours:>8.0} | ratio {:.2} (goal >= 0.80) | raw, no headers {plain:>8.0} (ratio {:.2})",
                ours / raw,
                ours / plain
            );
        }
        logs.info().await?;

        let n = env_usize("BENCH_PROJECTION_EVENTS", 4000);
        println!("projections: {n} events over 100 tasks, {rounds} alternating rounds, medians (events/s)");
        let mut floor = Vec::new();
        for _ in 0..rounds {
            let after = publish_tasks(&bus, n).await?;
            floor.push(n as f64 / read_raw_ordered(&js, n, after).await?.as_secs_f64());
        }
        let floor = median(floor);
        println!("  raw async-nats ordered consumer, reading only: {floor:>8.0}");
        for work in [Duration::ZERO, Duration::from_millis(1)] {
            let mut rates: [Vec<f64>; 2] = Default::default();
            for round in 0..rounds {
                for (side, keyed_lanes) in [(0, false), (1, true)] {
                    let after = publish_tasks(&bus, n).await?;
                    let name = format!("projection-{side}-{round}-{}", work.as_micros());
                    let took = project(&bus, &name, keyed_lanes, n, after, work).await?;
                    rates[side].push(n as f64 / took.as_secs_f64());
                }
            }
            let (ordered, lanes) = (median(rates[0].clone()), median(rates[1].clone()));
            println!(
                "  {:>4} µs per transaction: stream-wide ordered {ordered:>8.0} | keyed batches {lanes:>8.0} | ratio {:.2} | keyed / raw reading {:.2}",
                work.as_micros(),
                lanes / ordered,
                lanes / floor
            );
        }
        anyhow::Ok(())
    })
}
