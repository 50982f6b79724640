//! The scheduler under many tasks: 10,000 tasks spawned through `cmd.scheduler.spawn-task`, 32
//! at a time, each then waiting for its plan job (no worker runs). Measured: the TASKS events
//! the scheduler appended per second, beside raw awaited JetStream publishes with an expected
//! last subject sequence (each to its own subject, as each task's first event is) at the same
//! concurrency in the same run; and how much the process grew with the 10,000 tasks waiting, then
//! after they are touched again (each read back through the scheduler's store). Goals (issue 13):
//! ≥ 10k events/s, ratio ≥ 0.5; ≤ 32 MiB, flat in the number of waiting tasks.
//! `BENCH_TASKS` (10,000), `BENCH_CONCURRENCY` (32).

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use mainloop_bus::request;
use mainloop_events::subjects;
use mainloop_events::v1::{RepoRef, SpawnTask, TaskAccepted};
use mainloop_testkit::Infra;
use tokio_util::sync::CancellationToken;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Resident memory of this process, in KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or_default()
}

async fn stored(bus: &mainloop_bus::Bus, stream: &str) -> anyhow::Result<u64> {
    Ok(bus
        .jetstream()
        .get_stream(stream)
        .await?
        .info()
        .await?
        .state
        .messages)
}

/// Waits until `stream` holds the same number of messages for half a second; that number, and
/// when it was last seen to change.
async fn settled(bus: &mainloop_bus::Bus, stream: &str) -> anyhow::Result<(u64, Instant)> {
    let (mut last, mut changed) = (stored(bus, stream).await?, Instant::now());
    while changed.elapsed() < Duration::from_millis(500) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = stored(bus, stream).await?;
        if now != last {
            (last, changed) = (now, Instant::now());
        }
    }
    Ok((last, changed))
}

fn spawn_command(n: usize) -> SpawnTask {
    SpawnTask {
        user_id: format!("u{}", n % 100),
        task_id: format!("t{n}"),
        repo: Some(RepoRef {
            owner: "acme".into(),
            name: "widgets".into(),
            html_url: "https://github.com/acme/widgets".into(),
        }),
        description: format!("task number {n}: add a quick start"),
        ..Default::default()
    }
}

/// Spawns tasks `range` through the scheduler, `concurrency` at a time; how many it refused.
async fn spawn_all(
    bus: &mainloop_bus::Bus,
    range: std::ops::Range<usize>,
    concurrency: usize,
) -> anyhow::Result<usize> {
    let answers: Vec<Result<TaskAccepted, request::RequestError>> = futures_util::stream::iter(range)
        .map(|n| async move {
            request::send::<_, TaskAccepted>(
                bus,
                "cmd.scheduler.spawn-task",
                &spawn_command(n),
                Duration::from_secs(60),
            )
            .await
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let mut refused = 0;
    for answer in answers {
        match answer {
            Ok(_) => {}
            Err(request::RequestError::Rejected { .. }) => refused += 1,
            Err(err) => return Err(err.into()),
        }
    }
    Ok(refused)
}

/// The baseline: `count` awaited publishes, each the first event of its own subject (expected
/// last subject sequence 0, with a message id), `concurrency` at a time; events per second.
async fn raw_publishes(bus: &mainloop_bus::Bus, count: usize, concurrency: usize) -> anyhow::Result<f64> {
    let js = bus.jetstream().clone();
    let started = Instant::now();
    let acks: Vec<anyhow::Result<()>> = futures_util::stream::iter(0..count)
        .map(|n| {
            let js = js.clone();
            async move {
                let mut headers = async_nats::HeaderMap::new();
                headers.insert("Nats-Msg-Id", format!("raw-{n}").as_str());
                headers.insert("Nats-Expected-Last-Subject-Sequence", "0");
                let subject = subjects::task("raw", &format!("r{n}"))?;
                js.publish_with_headers(subject, headers, vec![0_u8; 160].into())
                    .await?
                    .await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    for ack in acks {
        ack?;
    }
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        mainloop_runtime::tls::install();
        let tasks = env("BENCH_TASKS", 10_000);
        let concurrency = env("BENCH_CONCURRENCY", 32);
        let infra = Infra::start()?;
        let shutdown = CancellationToken::new();
        tokio::spawn(mainloop_scheduler::run(
            mainloop_scheduler::Config {
                common: infra.common(),
                scheduling: Default::default(),
            },
            shutdown.clone(),
        ));
        infra.ready(1).await?;
        let bus = infra.bus().await?;
        // Warm up: a few tasks, so connections and the process's pools exist.
        spawn_all(&bus, tasks..tasks + 100, concurrency).await?;
        let (before_events, _) = settled(&bus, subjects::TASKS).await?;
        let idle = rss_kib();

        let started = Instant::now();
        anyhow::ensure!(spawn_all(&bus, 0..tasks, concurrency).await? == 0, "a spawn was refused");
        // Until the last event the spawns led to (the plan jobs asked for) was appended.
        let (after_events, done) = settled(&bus, subjects::TASKS).await?;
        let (answered, events) = (done - started, after_events - before_events);
        let waiting = rss_kib();
        // Each task touched again: the same spawn again loads the task (and changes nothing).
        spawn_all(&bus, 0..tasks, concurrency).await?;
        let touched = rss_kib();
        let raw = raw_publishes(&bus, events as usize, concurrency).await?;
        shutdown.cancel();

        let rate = events as f64 / answered.as_secs_f64();
        println!(
            "scheduler: {tasks} tasks spawned {concurrency} at a time, {events} TASKS events appended in {:.2} s",
            answered.as_secs_f64()
        );
        println!("  scheduler                         {rate:>9.0} events/s");
        println!("  raw awaited publishes, expected   {raw:>9.0} events/s");
        println!("  ratio: {:.2} (goal >= 0.5, and >= 10k events/s)", rate / raw.max(1.0));
        let mib = |kib: u64| kib as f64 / 1024.0;
        println!(
            "  memory: idle {:.1} MiB; with {tasks} waiting +{:.1} MiB; after each was read again +{:.1} MiB (goal <= 32 MiB, flat)",
            mib(idle),
            mib(waiting.saturating_sub(idle)),
            mib(touched.saturating_sub(idle))
        );
        anyhow::Ok(())
    })
}
