//! The `/events` fan-out: 1,000 browser connections of 100 people (ten each) while INBOX
//! events for them are published at 1,000 a second; the time from an event's publish to its
//! `task:updated` at each connection, beside a raw JetStream ordered consumer of the same
//! events in the same run. Then memory: what opening the 1,000 idle connections added to this
//! process, less what the same clients cost against a bare SSE server in the same run (so the
//! gateway's own share is left), and what it added to nats-server. Goals (issue 13): p50 ≤ 5 ms
//! and p99 ≤ 25 ms at 1,000 events/s; ≤ 32 KiB a connection, gateway and nats-server together.
//! Last, a reconnect: 1,000 events a person missed (half task cards, half inbox items, whose
//! unread count an inbox stand-in answers) replayed after `Last-Event-ID`, from the request to
//! the last one, beside a raw ordered consumer reading the same 1,000 (goal ≤ 50 ms).
//! `BENCH_PEOPLE` (100), `BENCH_PER_PERSON` (10), `BENCH_RATE` (1,000/s), `BENCH_SECONDS` (5).

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use axum::response::sse::{Event, Sse};
use futures_util::StreamExt;
use mainloop_bus::{Expect, request};
use mainloop_events::v1::{InboxItemAdded, TaskCardUpdated};
use mainloop_events::{Envelope, Payload, subjects};
use mainloop_gateway::HttpConfig;
use mainloop_testkit::Infra;
use mainloop_testkit::bench::{env, percentile};
use mainloop_testkit::sse::Frames;
use tokio_util::sync::CancellationToken;

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or_default()
}

/// Resident memory of process `pid` ("self" for this one), in KiB.
fn rss_kib(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or_default()
}

type Seen = Arc<Mutex<Vec<u64>>>;

/// Opens one feed at `url` and, in the background, notes each `task:updated`'s delay (its
/// description is when it was published); returns once the feed said `connected`.
async fn follow(
    http: &reqwest::Client,
    url: String,
    seen: Seen,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let response = http.get(url).send().await?.error_for_status()?;
    let mut frames = Frames::new(response.bytes_stream());
    anyhow::ensure!(frames.until("connected").await, "the feed ended");
    Ok(tokio::spawn(async move {
        while let Some(frame) = frames.next().await {
            let Ok(card) = serde_json::from_str::<serde_json::Value>(&frame.data) else {
                continue;
            };
            if let Some(at) = card["description"].as_str().and_then(|d| d.parse::<u64>().ok()) {
                let arrived = now_micros();
                if let Ok(mut seen) = seen.lock() {
                    seen.push(arrived.saturating_sub(at));
                }
            }
        }
    }))
}

/// A bare SSE server: `connected`, then nothing. What the clients alone cost is measured on it.
async fn bare_sse() -> anyhow::Result<String> {
    let app = axum::Router::new().route(
        "/events",
        axum::routing::get(|| async {
            let connected = futures_util::stream::once(async {
                Ok::<_, Infallible>(Event::default().event("connected").data("{}"))
            })
            .chain(futures_util::stream::pending());
            Sse::new(connected)
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}

/// Opens `people` × `per_person` feeds (people `p0`…) under `base`; the followers' handles.
async fn open_all(
    base: &str,
    people: u64,
    per_person: u64,
    seen: &Seen,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let http = reqwest::Client::new();
    let mut followers = Vec::new();
    for connection in 0..people * per_person {
        let url = format!("{base}/events?user_id_query=p{}", connection % people);
        followers.push(follow(&http, url, seen.clone()).await?);
    }
    Ok(followers)
}

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        mainloop_runtime::tls::install();
        let people = env("BENCH_PEOPLE", 100);
        let per_person = env("BENCH_PER_PERSON", 10);
        let rate = env("BENCH_RATE", 1000);
        let seconds = env("BENCH_SECONDS", 5);
        let connections = people * per_person;
        let infra = Infra::start()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let shutdown = CancellationToken::new();
        tokio::spawn(mainloop_gateway::run(
            mainloop_gateway::Config {
                common: infra.common(),
                http: HttpConfig::test_mode(&format!("127.0.0.1:{port}")),
            },
            shutdown.clone(),
        ));
        infra.ready(1).await?;
        let bus = infra.bus().await?;
        let nats_pid = infra.nats.pid().to_string();

        // Memory: the clients alone against a bare server, then the same against the gateway.
        let ignored: Seen = Arc::default();
        let before = rss_kib("self");
        let bare = open_all(&bare_sse().await?, people, per_person, &ignored).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let clients_only = rss_kib("self").saturating_sub(before);
        let (before, nats_before) = (rss_kib("self"), rss_kib(&nats_pid));
        let seen: Seen = Arc::default();
        let followers = open_all(&format!("http://127.0.0.1:{port}"), people, per_person, &seen).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let with_gateway = rss_kib("self").saturating_sub(before);
        let at_nats = rss_kib(&nats_pid).saturating_sub(nats_before);
        for follower in bare {
            follower.abort();
        }

        // The raw baseline: one ordered consumer of the whole stream, as the gateway has.
        let raw: Seen = Arc::default();
        let mut messages = bus
            .jetstream()
            .get_stream(subjects::INBOX)
            .await?
            .create_consumer(pull::OrderedConfig {
                deliver_policy: DeliverPolicy::New,
                ..Default::default()
            })
            .await?
            .messages()
            .await?;
        let raw_seen = raw.clone();
        let raw_follower = tokio::spawn(async move {
            while let Some(Ok(message)) = messages.next().await {
                let Ok(event) = Envelope::from_bytes(&message.payload) else {
                    continue;
                };
                if let Some(Payload::TaskCardUpdated(card)) = event.payload
                    && let Ok(at) = card.description.parse::<u64>()
                {
                    let arrived = now_micros();
                    if let Ok(mut seen) = raw_seen.lock() {
                        seen.push(arrived.saturating_sub(at));
                    }
                }
            }
        });

        // The events, at a steady pace, round the people.
        let started = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_secs(1) / rate as u32);
        let total = rate * seconds;
        let mut publishing = Vec::new();
        for n in 0..total {
            tick.tick().await;
            let (bus, user) = (bus.clone(), format!("p{}", n % people));
            publishing.push(tokio::spawn(async move {
                let card = Payload::TaskCardUpdated(TaskCardUpdated {
                    task_id: format!("{user}-task"),
                    description: now_micros().to_string(),
                    ..Default::default()
                });
                let subject = subjects::inbox(&user)?;
                bus.publish(&subject, &Envelope::new(&user, format!("{user}-task"), card), Expect::Any)
                    .await?;
                anyhow::Ok(())
            }));
        }
        for published in publishing {
            published.await??;
        }
        let wrote = started.elapsed();
        let expected = (total * per_person) as usize;
        let deadline = Instant::now() + Duration::from_secs(30);
        while seen.lock().map(|s| s.len()).unwrap_or_default() < expected && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for follower in followers {
            follower.abort();
        }
        raw_follower.abort();
        let replay = replay(&bus, port, &shutdown).await?;
        shutdown.cancel();
        let mut seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
        let mut raw = raw.lock().map(|s| s.clone()).unwrap_or_default();
        seen.sort_unstable();
        let seen = milliseconds(&seen);
        raw.sort_unstable();
        let raw = milliseconds(&raw);
        println!(
            "/events fan-out: {connections} connections of {people} people, {total} events at {rate}/s (published in {:.1} s)",
            wrote.as_secs_f64()
        );
        for (name, list, of) in [
            ("at the connections", &seen, expected),
            ("raw ordered consumer", &raw, total as usize),
        ] {
            println!(
                "  {name:<22} {:>7} of {:>7}  p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms",
                list.len(),
                of,
                percentile(list, 0.5),
                percentile(list, 0.99),
                percentile(list, 1.0)
            );
        }
        println!(
            "  ratio at p50: {:.2}, at p99: {:.2} (goal: p50 <= 5 ms, p99 <= 25 ms)",
            percentile(&seen, 0.5) / percentile(&raw, 0.5).max(0.001),
            percentile(&seen, 0.99) / percentile(&raw, 0.99).max(0.001)
        );
        let per = |kib: u64| kib as f64 / connections as f64;
        println!(
            "  memory a connection: gateway {:.1} KiB ({:.1} with the clients, {:.1} for the clients alone), nats-server {:.1} KiB (goal <= 32 KiB together)",
            per(with_gateway.saturating_sub(clients_only)),
            per(with_gateway),
            per(clients_only),
            per(at_nats)
        );
        println!(
            "a reconnect replaying 1,000 missed events (half inbox items), median of 5: {:.2} ms; raw ordered consumer {:.2} ms; ratio {:.2} (goal <= 50 ms)",
            replay.0,
            replay.1,
            replay.0 / replay.1.max(0.001)
        );
        anyhow::Ok(())
    })
}

fn median(mut runs: Vec<f64>) -> f64 {
    runs.sort_by(f64::total_cmp);
    runs.get(runs.len() / 2).copied().unwrap_or_default()
}

/// 1,000 events for one person who is away, then five reconnects from before them: the time from
/// the request to the 1,000th event, and a raw ordered consumer's time to read them (ms, medians).
async fn replay(
    bus: &mainloop_bus::Bus,
    port: u16,
    shutdown: &CancellationToken,
) -> anyhow::Result<(f64, f64)> {
    let inbox = request::Server::bind(bus, "query.inbox.unread-count", "inbox").await?;
    tokio::spawn(inbox.run_json(shutdown.clone(), |_: serde_json::Value| async {
        Ok(serde_json::json!({"count": 500}))
    }));
    let subject = subjects::inbox("away")?;
    let before = bus.last_sequence(subjects::INBOX, "inbox.>").await?;
    for n in 0..1000 {
        let payload = if n % 2 == 0 {
            Payload::TaskCardUpdated(TaskCardUpdated {
                task_id: format!("t{n}"),
                description: "missed".into(),
                ..Default::default()
            })
        } else {
            Payload::InboxItemAdded(InboxItemAdded {
                item_id: format!("i{n}"),
                task_id: format!("t{n}"),
                ..Default::default()
            })
        };
        bus.publish(
            &subject,
            &Envelope::new("away", format!("t{n}"), payload),
            Expect::Any,
        )
        .await?;
    }
    let http = reqwest::Client::new();
    let (mut feed, mut raw) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let at = Instant::now();
        let response = http
            .get(format!("http://127.0.0.1:{port}/events?user_id_query=away"))
            .header("last-event-id", before.to_string())
            .send()
            .await?
            .error_for_status()?;
        let mut frames = response.bytes_stream();
        let (mut buffer, mut heard) = (String::new(), 0);
        while heard < 1000 {
            let chunk = tokio::time::timeout(Duration::from_secs(30), frames.next())
                .await?
                .ok_or_else(|| anyhow::anyhow!("the feed ended"))??;
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buffer.find("\n\n") {
                let frame: String = buffer.drain(..end + 2).collect();
                if frame.contains("task:updated") || frame.contains("inbox:updated") {
                    heard += 1;
                }
            }
        }
        feed.push(at.elapsed().as_secs_f64() * 1000.0);
        let at = Instant::now();
        let mut messages = bus
            .jetstream()
            .get_stream(subjects::INBOX)
            .await?
            .create_consumer(pull::OrderedConfig {
                filter_subject: subject.clone(),
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: before + 1,
                },
                ..Default::default()
            })
            .await?
            .messages()
            .await?
            .take(1000);
        while let Some(message) = messages.next().await {
            message?;
        }
        raw.push(at.elapsed().as_secs_f64() * 1000.0);
    }
    Ok((median(feed), median(raw)))
}

/// Sorted microseconds as milliseconds.
fn milliseconds(micros: &[u64]) -> Vec<f64> {
    micros.iter().map(|us| *us as f64 / 1000.0).collect()
}
