//! The whole path from a task's event to the browser: TASKS → the inbox projection → the INBOX
//! feed → the gateway → 1,000 SSE connections of 100 people (ten each), while new tasks'
//! status changes are published at 1,000 events a second. Measured: the time from an event's
//! publishing to its `task:updated` at each connection of its person, beside a raw JetStream
//! hop in the same run (an ordered consumer of TASKS receiving the same events). Goal (issue
//! 13): p50 ≤ 5 ms and p99 ≤ 25 ms at 1,000 events/s. `BENCH_PEOPLE` (100),
//! `BENCH_PER_PERSON` (10), `BENCH_RATE` (1,000/s), `BENCH_SECONDS` (5).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use futures_util::StreamExt;
use mainloop_bus::{Bus, Expect};
use mainloop_events::v1::{PlanningStarted, RepoRef, TaskSpawned};
use mainloop_events::{Envelope, Payload, subjects};
use mainloop_gateway::HttpConfig;
use mainloop_testkit::Infra;
use mainloop_testkit::bench::{env, percentile};
use mainloop_testkit::sse::Frames;
use tokio_util::sync::CancellationToken;

/// When each event was published, by `task:status` (what a card names) and by event id.
type Sent = Arc<Mutex<HashMap<String, Instant>>>;
/// Delays seen, in milliseconds.
type Seen = Arc<Mutex<Vec<f64>>>;

fn note(seen: &Seen, sent: &Sent, key: &str) {
    let arrived = Instant::now();
    let at = sent.lock().ok().and_then(|s| s.get(key).copied());
    if let (Some(at), Ok(mut seen)) = (at, seen.lock()) {
        seen.push(arrived.saturating_duration_since(at).as_secs_f64() * 1000.0);
    }
}

/// Opens one feed and, in the background, notes each `task:updated`'s delay; returns once the
/// feed said `connected`.
async fn follow(
    http: &reqwest::Client,
    url: String,
    sent: Sent,
    seen: Seen,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let response = http.get(url).send().await?.error_for_status()?;
    let mut frames = Frames::new(response.bytes_stream());
    anyhow::ensure!(frames.until("connected").await, "the feed ended");
    Ok(tokio::spawn(async move {
        while let Some(frame) = frames.next().await {
            if frame.event != "task:updated" {
                continue;
            }
            let Ok(card) = serde_json::from_str::<serde_json::Value>(&frame.data) else {
                continue;
            };
            let key = format!(
                "{}:{}",
                card["task_id"].as_str().unwrap_or_default(),
                card["status"].as_str().unwrap_or_default()
            );
            note(&seen, &sent, &key);
        }
    }))
}

/// An ordered consumer of `stream`'s events from now on.
async fn from_now(bus: &Bus, stream: &str) -> anyhow::Result<pull::Ordered> {
    Ok(bus
        .jetstream()
        .get_stream(stream)
        .await?
        .create_consumer(pull::OrderedConfig {
            deliver_policy: DeliverPolicy::New,
            ..Default::default()
        })
        .await?
        .messages()
        .await?)
}

/// The raw hop: an ordered consumer of TASKS from now on, noting each event's delay.
async fn raw_hop(bus: &Bus, sent: Sent, seen: Seen) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let mut messages = from_now(bus, subjects::TASKS).await?;
    Ok(tokio::spawn(async move {
        while let Some(Ok(message)) = messages.next().await {
            if let Ok(event) = Envelope::from_bytes(&message.payload) {
                note(&seen, &sent, &event.id);
            }
        }
    }))
}

/// The projection's share: an ordered consumer of INBOX from now on, noting each card's delay
/// from its task event's publishing to the feed event's storing.
async fn feed_hop(bus: &Bus, sent: Sent, seen: Seen) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let mut messages = from_now(bus, subjects::INBOX).await?;
    Ok(tokio::spawn(async move {
        while let Some(Ok(message)) = messages.next().await {
            if let Ok(Envelope {
                payload: Some(Payload::TaskCardUpdated(card)),
                ..
            }) = Envelope::from_bytes(&message.payload)
            {
                note(
                    &seen,
                    &sent,
                    &format!("{}:{}", card.task_id, card.status().api_name()),
                );
            }
        }
    }))
}

/// Task `n` of person `n % people`: spawned, then planning (two cards), published in order.
async fn publish_task(bus: Bus, n: u64, people: u64, sent: Sent) -> anyhow::Result<()> {
    let (user, task) = (format!("u{}", n % people), format!("t{n}"));
    let subject = subjects::task(&user, &task)?;
    let spawned = Payload::TaskSpawned(TaskSpawned {
        task_id: task.clone(),
        repo: Some(RepoRef {
            owner: "acme".into(),
            name: "widgets".into(),
            html_url: "https://github.com/acme/widgets".into(),
        }),
        description: format!("task number {n}"),
        ..Default::default()
    });
    for (payload, status) in [
        (spawned, "pending"),
        (Payload::PlanningStarted(PlanningStarted::default()), "planning"),
    ] {
        let event = Envelope::new(&user, &task, payload);
        if let Ok(mut sent) = sent.lock() {
            let now = Instant::now();
            sent.insert(format!("{task}:{status}"), now);
            sent.insert(event.id.clone(), now);
        }
        bus.publish(&subject, &event, Expect::Any).await?;
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        mainloop_runtime::tls::install();
        let (people, per_person) = (env("BENCH_PEOPLE", 100), env("BENCH_PER_PERSON", 10));
        let (rate, seconds) = (env("BENCH_RATE", 1000), env("BENCH_SECONDS", 5));
        let infra = Infra::start()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let shutdown = CancellationToken::new();
        tokio::spawn(mainloop_inbox::run(mainloop_inbox::Config::new(infra.common()), shutdown.clone()));
        tokio::spawn(mainloop_gateway::run(
            mainloop_gateway::Config {
                common: infra.common(),
                http: HttpConfig::test_mode(&format!("127.0.0.1:{port}")),
            },
            shutdown.clone(),
        ));
        infra.ready(2).await?;
        let bus = infra.bus().await?;
        let (sent, seen, raw, feed): (Sent, Seen, Seen, Seen) = Default::default();
        let http = reqwest::Client::new();
        let mut followers = Vec::new();
        for connection in 0..people * per_person {
            let url = format!("http://127.0.0.1:{port}/events?user_id_query=u{}", connection % people);
            followers.push(follow(&http, url, sent.clone(), seen.clone()).await?);
        }
        followers.push(raw_hop(&bus, sent.clone(), raw.clone()).await?);
        followers.push(feed_hop(&bus, sent.clone(), feed.clone()).await?);

        // Two events a task, tasks at an even pace: `rate` events a second.
        let events = rate * seconds;
        let started = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_secs_f64(2.0 / rate as f64));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut publishing = tokio::task::JoinSet::new();
        for n in 0..events / 2 {
            tick.tick().await;
            publishing.spawn(publish_task(bus.clone(), n, people, sent.clone()));
        }
        while let Some(published) = publishing.join_next().await {
            published??;
        }
        let wrote = started.elapsed();
        let expected = (events * per_person) as usize;
        let deadline = Instant::now() + Duration::from_secs(60);
        while seen.lock().map(|s| s.len()).unwrap_or_default() < expected && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for follower in followers {
            follower.abort();
        }
        shutdown.cancel();
        let mut seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
        let mut raw = raw.lock().map(|s| s.clone()).unwrap_or_default();
        let mut feed = feed.lock().map(|s| s.clone()).unwrap_or_default();
        for list in [&mut seen, &mut raw, &mut feed] {
            list.sort_by(f64::total_cmp);
        }
        println!(
            "task event → browser: {} connections of {people} people, {events} TASKS events at {rate}/s (published in {:.1} s)",
            people * per_person,
            wrote.as_secs_f64()
        );
        for (name, list, of) in [
            ("at the connections", &seen, expected),
            ("in the INBOX feed", &feed, events as usize),
            ("raw JetStream hop", &raw, events as usize),
        ] {
            println!(
                "  {name:<20} {:>7} of {:>7}  p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms",
                list.len(),
                of,
                percentile(list, 0.5),
                percentile(list, 0.99),
                percentile(list, 1.0)
            );
        }
        println!(
            "  ratio at p50: {:.1}, at p99: {:.1} (goal: p50 <= 5 ms, p99 <= 25 ms)",
            percentile(&seen, 0.5) / percentile(&raw, 0.5).max(0.001),
            percentile(&seen, 0.99) / percentile(&raw, 0.99).max(0.001)
        );
        anyhow::ensure!(seen.len() == expected, "{} of {expected} cards reached the connections", seen.len());
        anyhow::Ok(())
    })
}
