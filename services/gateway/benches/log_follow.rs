//! Worker logs followed live: 20 jobs each write 500 lines a second to LOGS (as the
//! worker-supervisor does, one event per line) while a browser-like client follows each job's
//! task over `GET /tasks/{id}/logs/stream`; the time from a line's publish to its `log` event at
//! the follower, beside a raw JetStream subscriber's time for the same lines in the same run.
//! Goal: p99 ≤ 50 ms. `BENCH_JOBS` (20), `BENCH_LINES_PER_SEC` (500), `BENCH_SECONDS` (5).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use futures_util::StreamExt;
use mainloop_bus::Expect;
use mainloop_events::v1::{LogSource, RepoRef, TaskSpawned, WorkerLog};
use mainloop_events::{Envelope, Payload, subjects};
use mainloop_gateway::HttpConfig;
use mainloop_testkit::Infra;
use tokio_util::sync::CancellationToken;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Microseconds since the epoch: the line carries when it was written.
fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or_default()
}

/// The write time a line carries ("… @<micros>").
fn written(line: &str) -> Option<u64> {
    line.rsplit_once('@')?.1.parse().ok()
}

/// The write time of the line in an SSE `log` event's data.
fn written_in(data: &str) -> Option<u64> {
    let event: serde_json::Value = serde_json::from_str(data).ok()?;
    written(event["logs"].as_str()?)
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize] as f64 / 1000.0
}

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        mainloop_runtime::tls::install();
        let jobs = env("BENCH_JOBS", 20);
        let rate = env("BENCH_LINES_PER_SEC", 500);
        let seconds = env("BENCH_SECONDS", 5);
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
        let base = format!("http://127.0.0.1:{port}");

        // The tasks exist (their status is read from TASKS).
        for job in 0..jobs {
            let task = format!("t{job}");
            let spawned = Payload::TaskSpawned(TaskSpawned {
                task_id: task.clone(),
                repo: Some(RepoRef {
                    owner: "acme".into(),
                    name: "widgets".into(),
                    html_url: "https://github.com/acme/widgets".into(),
                }),
                description: "write a lot".into(),
                ..Default::default()
            });
            bus.publish(&subjects::task("bench", &task)?, &Envelope::new("bench", &task, spawned), Expect::Any)
                .await?;
        }

        // Followers: one per task over SSE, and one raw JetStream subscriber for all.
        let browser: Arc<Mutex<Vec<u64>>> = Arc::default();
        let raw: Arc<Mutex<Vec<u64>>> = Arc::default();
        let mut followers = Vec::new();
        for job in 0..jobs {
            let (base, seen) = (base.clone(), browser.clone());
            let response = reqwest::Client::new()
                .get(format!("{base}/tasks/t{job}/logs/stream?user_id_query=bench"))
                .send()
                .await?
                .error_for_status()?;
            followers.push(tokio::spawn(async move {
                let mut frames = response.bytes_stream();
                let mut buffer = String::new();
                while let Some(Ok(chunk)) = frames.next().await {
                    buffer.push_str(&String::from_utf8_lossy(&chunk));
                    while let Some(end) = buffer.find("\n\n") {
                        let frame: String = buffer.drain(..end + 2).collect();
                        let data = frame.lines().find_map(|l| l.strip_prefix("data:"));
                        if let Some(at) = data.and_then(written_in) {
                            let arrived = now_micros();
                            if let Ok(mut seen) = seen.lock() {
                                seen.push(arrived.saturating_sub(at));
                            }
                        }
                    }
                }
            }));
        }
        let consumer = bus
            .jetstream()
            .get_stream(subjects::LOGS)
            .await?
            .create_consumer(pull::OrderedConfig {
                filter_subject: "log.bench.>".into(),
                deliver_policy: DeliverPolicy::New,
                ..Default::default()
            })
            .await?;
        let mut messages = consumer.messages().await?;
        let raw_seen = raw.clone();
        let raw_follower = tokio::spawn(async move {
            while let Some(Ok(message)) = messages.next().await {
                let Ok(event) = Envelope::from_bytes(&message.payload) else {
                    continue;
                };
                if let Some(Payload::WorkerLog(log)) = event.payload
                    && let Some(at) = written(&log.line)
                {
                    let arrived = now_micros();
                    if let Ok(mut seen) = raw_seen.lock() {
                        seen.push(arrived.saturating_sub(at));
                    }
                }
            }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;

        // The jobs write, each at its own steady pace.
        let started = Instant::now();
        let writers: Vec<_> = (0..jobs)
            .map(|job| {
                let bus = bus.clone();
                tokio::spawn(async move {
                    let task = format!("t{job}");
                    let subject = subjects::log("bench", &task)?;
                    let mut tick = tokio::time::interval(Duration::from_secs(1) / rate as u32);
                    for n in 1..=rate * seconds {
                        tick.tick().await;
                        let line = Payload::WorkerLog(WorkerLog {
                            job_id: format!("{task}-job-1"),
                            attempt: 1,
                            source: LogSource::Agent as i32,
                            line: format!("line {n} @{}", now_micros()),
                            line_no: n,
                        });
                        bus.publish(&subject, &Envelope::new("bench", &task, line), Expect::Any).await?;
                    }
                    anyhow::Ok(())
                })
            })
            .collect();
        for writer in writers {
            writer.await??;
        }
        let wrote = started.elapsed();
        let expected = (jobs * rate * seconds) as usize;
        let deadline = Instant::now() + Duration::from_secs(30);
        while browser.lock().map(|s| s.len()).unwrap_or_default() < expected && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        shutdown.cancel();
        for follower in followers {
            follower.abort();
        }
        raw_follower.abort();
        let mut browser = browser.lock().map(|s| s.clone()).unwrap_or_default();
        let mut raw = raw.lock().map(|s| s.clone()).unwrap_or_default();
        browser.sort_unstable();
        raw.sort_unstable();
        println!(
            "worker logs followed live: {jobs} jobs x {rate} lines/s for {seconds} s ({expected} lines written in {:.1} s)",
            wrote.as_secs_f64()
        );
        for (name, seen) in [("over SSE (logs/stream)", &browser), ("raw JetStream consumer", &raw)] {
            println!(
                "  {name:<24} {:>6} lines  p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms",
                seen.len(),
                percentile(seen, 0.5),
                percentile(seen, 0.99),
                percentile(seen, 1.0)
            );
        }
        println!(
            "  ratio SSE/raw at p99: {:.2} (goal: p99 <= 50 ms over SSE)",
            percentile(&browser, 0.99) / percentile(&raw, 0.99).max(0.001)
        );
        anyhow::Ok(())
    })
}
