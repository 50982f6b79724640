//! Worker logs followed live: 20 jobs each write 500 lines a second to LOGS (as the
//! worker-supervisor does, one event per line) while a browser-like client follows each job's
//! task over `GET /tasks/{id}/logs/stream`; the time from a line's publish to its `log` event at
//! the follower, beside a raw JetStream subscriber's time for the same lines in the same run.
//! Goal: p99 ≤ 50 ms. `BENCH_JOBS` (20), `BENCH_LINES_PER_SEC` (500), `BENCH_SECONDS` (5).
//!
//! Then a long log read: a task with 20,000 lines (`BENCH_LONG_LINES`), its last 1,000 asked for
//! with `GET /tasks/{id}/logs?tail=1000`, beside reading the whole subject one message at a time
//! (what the endpoint did before) and a raw ordered consumer reading just those 1,000 from where
//! they start, in the same run. Goal: ≤ 50 ms.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use futures_util::StreamExt;
use mainloop_bus::Expect;
use mainloop_events::v1::{LogSource, RepoRef, TaskSpawned, WorkerLog};
use mainloop_events::{Envelope, Payload, subjects};
use mainloop_gateway::HttpConfig;
use mainloop_testkit::Infra;
use mainloop_testkit::bench::{Steal, env, percentile};
use tokio_util::sync::CancellationToken;

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
        // The inbox says whose a task is, for the long read.
        tokio::spawn(mainloop_inbox::run(
            mainloop_inbox::Config::new(infra.common()),
            shutdown.clone(),
        ));
        infra.ready(2).await?;
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
        let steal = Steal::start();
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
        let stolen = steal.share();
        let expected = (jobs * rate * seconds) as usize;
        let deadline = Instant::now() + Duration::from_secs(30);
        while browser.lock().map(|s| s.len()).unwrap_or_default() < expected && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for follower in &followers {
            follower.abort();
        }
        raw_follower.abort();
        let long = long_read(&bus, &base, env("BENCH_LONG_LINES", 20_000)).await?;
        shutdown.cancel();
        for follower in followers {
            follower.abort();
        }
        raw_follower.abort();
        let mut browser = browser.lock().map(|s| s.clone()).unwrap_or_default();
        let mut raw = raw.lock().map(|s| s.clone()).unwrap_or_default();
        browser.sort_unstable();
        let browser = milliseconds(&browser);
        raw.sort_unstable();
        let raw = milliseconds(&raw);
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
        if let Some(stolen) = stolen {
            println!("  CPU time the host took from this machine meanwhile (steal): {:.1}%", stolen * 100.0);
        }
        long.print();
        anyhow::Ok(())
    })
}

/// The long read's medians of five, in ms.
struct LongRead {
    lines: u64,
    endpoint: f64,
    whole_subject: f64,
    raw: f64,
}

impl LongRead {
    fn print(&self) {
        println!("a {}-line log, its last 1,000 lines (median of 5):", self.lines);
        println!(
            "  GET /tasks/{{id}}/logs?tail=1000        {:>9.2} ms",
            self.endpoint
        );
        println!(
            "  the whole subject, a get a message     {:>9.2} ms",
            self.whole_subject
        );
        println!("  raw ordered consumer, just those 1,000 {:>9.2} ms", self.raw);
        println!(
            "  ratio endpoint/raw: {:.2}, endpoint/whole subject: {:.3} (goal: <= 50 ms)",
            self.endpoint / self.raw.max(0.001),
            self.endpoint / self.whole_subject.max(0.001)
        );
    }
}

fn median(mut runs: Vec<f64>) -> f64 {
    runs.sort_by(f64::total_cmp);
    runs.get(runs.len() / 2).copied().unwrap_or_default()
}

/// Writes `lines` lines to one task's log, then times reading its last 1,000 three ways.
async fn long_read(bus: &mainloop_bus::Bus, base: &str, lines: u64) -> anyhow::Result<LongRead> {
    let task = "long";
    let spawned = Payload::TaskSpawned(TaskSpawned {
        task_id: task.into(),
        repo: Some(RepoRef {
            owner: "acme".into(),
            name: "widgets".into(),
            html_url: "https://github.com/acme/widgets".into(),
        }),
        description: "write a long log".into(),
        ..Default::default()
    });
    bus.publish(
        &subjects::task("bench", task)?,
        &Envelope::new("bench", task, spawned),
        Expect::Any,
    )
    .await?;
    let subject = subjects::log("bench", task)?;
    futures_util::stream::iter(1..=lines)
        .map(|n| {
            let subject = subject.clone();
            async move {
                let line = Payload::WorkerLog(WorkerLog {
                    job_id: "long-job-1".into(),
                    attempt: 1,
                    source: LogSource::Agent as i32,
                    line: format!("line {n}"),
                    line_no: n,
                });
                bus.publish(&subject, &Envelope::new("bench", task, line), Expect::Any)
                    .await
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    let http = reqwest::Client::new();
    let url = format!("{base}/tasks/{task}/logs?tail=1000&user_id_query=bench");
    // Until the inbox knows the task.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !http.get(&url).send().await?.status().is_success() {
        anyhow::ensure!(Instant::now() < deadline, "the long task never became readable");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (mut endpoint, mut whole, mut raw) = (Vec::new(), Vec::new(), Vec::new());
    let read = bus.read_last(subjects::LOGS, &subject, 1000).await?;
    let start = read.first().map(|s| s.stream_sequence).unwrap_or(1);
    for _ in 0..5 {
        let at = Instant::now();
        let body: serde_json::Value = http.get(&url).send().await?.error_for_status()?.json().await?;
        endpoint.push(at.elapsed().as_secs_f64() * 1000.0);
        let at = Instant::now();
        let all = bus.read_subject(subjects::LOGS, &subject, 0).await?;
        whole.push(at.elapsed().as_secs_f64() * 1000.0);
        // The endpoint's lines are the whole subject's last 1,000, in order.
        let last: Vec<String> = all[all.len().saturating_sub(1000)..]
            .iter()
            .filter_map(|s| match &s.event.payload {
                Some(Payload::WorkerLog(log)) => Some(format!("[claude] {}", log.line)),
                _ => None,
            })
            .collect();
        anyhow::ensure!(
            all.len() as u64 == lines && body["logs"].as_str() == Some(last.join("\n").as_str()),
            "the endpoint did not give the whole subject's last 1,000 lines"
        );
        let at = Instant::now();
        let consumer = bus
            .jetstream()
            .get_stream(subjects::LOGS)
            .await?
            .create_consumer(pull::OrderedConfig {
                filter_subject: subject.clone(),
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: start,
                },
                ..Default::default()
            })
            .await?;
        let mut messages = consumer.messages().await?.take(1000);
        let mut count = 0;
        while let Some(message) = messages.next().await {
            message?;
            count += 1;
        }
        raw.push(at.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(count == 1000, "the raw read got {count}");
    }
    Ok(LongRead {
        lines,
        endpoint: median(endpoint),
        whole_subject: median(whole),
        raw: median(raw),
    })
}

/// Sorted microseconds as milliseconds.
fn milliseconds(micros: &[u64]) -> Vec<f64> {
    micros.iter().map(|us| *us as f64 / 1000.0).collect()
}
