//! The inbox projection catching up on a backlog, beside a plain batched writer in the same run
//! on the same servers.
//!
//! `BENCH_TASKS` tasks (2,000) of 10 events each (spawned … completed, the life of a task) are in
//! TASKS before anything reads them. Measured: the time until the inbox has applied every event
//! (every task shows `completed`, which per-task order makes the last thing applied) and until
//! its feed is published (the outbox is empty), counted from the inbox's start (its migrations
//! included); beside it the baseline, a plain writer that
//! pulls 500 at a time from a durable consumer, stores them with one set-based insert and acks
//! the batch with one AckAll. Goal (issue 13): ≥ 20,000 events/s, ratio near 1.
//!
//! Then a steady load: `BENCH_RATE` events/s (1,000) for `BENCH_SECONDS` (10) of new tasks'
//! status changes; the lag from each event's publishing to its card reaching INBOX (the feed the
//! browsers read), p50/p99. Goal: p99 ≤ 100 ms.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull};
use futures_util::StreamExt;
use mainloop_bus::{Bus, Expect};
use mainloop_events::v1::{
    CodePushed, CodeReadyForReview, ImplementationStarted, IssueLinked, PlanApproved, PlanProposed,
    PlanningStarted, PullRequestLinked, RepoRef, TaskCompleted, TaskSpawned,
};
use mainloop_events::{Envelope, Payload, subjects};
use mainloop_testkit::Infra;
use mainloop_testkit::bench::{env, percentile};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

const PUBLISHERS: usize = 32;

/// The life of task `n`, in order.
fn life(n: usize) -> Vec<Payload> {
    vec![
        Payload::TaskSpawned(TaskSpawned {
            repo: Some(RepoRef {
                owner: "acme".into(),
                name: format!("widgets-{}", n % 50),
                html_url: format!("https://github.com/acme/widgets-{}", n % 50),
            }),
            description: format!("task number {n}: add a quick start section"),
            ..Default::default()
        }),
        Payload::PlanningStarted(PlanningStarted::default()),
        Payload::IssueLinked(IssueLinked {
            issue_url: format!("https://github.com/acme/widgets/issues/{n}"),
            issue_number: n as u64,
        }),
        Payload::PlanProposed(PlanProposed {
            plan_text: "1. Write the section.\n2. Link it from the top.".into(),
            revision: 1,
            ..Default::default()
        }),
        Payload::PlanApproved(PlanApproved {
            branch_name: format!("mainloop/task-{n}"),
            ..Default::default()
        }),
        Payload::ImplementationStarted(ImplementationStarted {
            branch_name: format!("mainloop/task-{n}"),
            ..Default::default()
        }),
        Payload::CodePushed(CodePushed {
            head_sha: format!("{n:040x}"),
            ..Default::default()
        }),
        Payload::PullRequestLinked(PullRequestLinked {
            pr_url: format!("https://github.com/acme/widgets/pull/{n}"),
            pr_number: n as u64,
            ..Default::default()
        }),
        Payload::CodeReadyForReview(CodeReadyForReview::default()),
        Payload::TaskCompleted(TaskCompleted::default()),
    ]
}

fn user(n: usize) -> String {
    format!("u{}", n % 100)
}

/// Publishes every task's life, `PUBLISHERS` tasks at a time, each task's events in order.
async fn publish_lives(bus: &Bus, tasks: std::ops::Range<usize>) -> anyhow::Result<u64> {
    let published: Vec<anyhow::Result<u64>> = futures_util::stream::iter(tasks)
        .map(|n| async move {
            let subject = subjects::task(&user(n), &format!("t{n}"))?;
            let mut last = 0;
            for payload in life(n) {
                let event = Envelope::new(user(n), format!("t{n}"), payload);
                last = bus.publish(&subject, &event, Expect::Any).await?.stream_sequence;
            }
            anyhow::Ok(last)
        })
        .buffer_unordered(PUBLISHERS)
        .collect()
        .await;
    let mut last = 0;
    for sequence in published {
        last = last.max(sequence?);
    }
    Ok(last)
}

/// The baseline: a plain writer that pulls `batch` at a time, inserts them with one UNNEST and
/// acks the batch once, until it stored `count` events; events per second.
async fn plain_writer(bus: &Bus, db: &PgPool, count: usize) -> anyhow::Result<f64> {
    sqlx::query("CREATE TABLE plain_events (seq bigint PRIMARY KEY, subject text NOT NULL, event_id text NOT NULL, payload bytea NOT NULL)")
        .execute(db)
        .await?;
    let stream = bus.jetstream().get_stream(subjects::TASKS).await?;
    let consumer = stream
        .create_consumer(pull::Config {
            durable_name: Some("plain-writer".into()),
            filter_subject: "task.>".into(),
            ack_policy: jetstream::consumer::AckPolicy::All,
            max_ack_pending: 10_000,
            ..Default::default()
        })
        .await?;
    let started = Instant::now();
    let mut stored = 0;
    while stored < count {
        let mut batch = consumer.fetch().max_messages(500).messages().await?;
        let (mut seqs, mut subjects, mut ids, mut payloads) = (vec![], vec![], vec![], vec![]);
        let mut last = None;
        while let Some(message) = batch.next().await {
            let message = message.map_err(|e| anyhow::anyhow!("{e}"))?;
            let event = Envelope::from_bytes(&message.payload)?;
            seqs.push(i64::try_from(
                message
                    .info()
                    .map_err(|e| anyhow::anyhow!("{e}"))?
                    .stream_sequence,
            )?);
            subjects.push(message.subject.to_string());
            ids.push(event.id);
            payloads.push(message.payload.to_vec());
            last = Some(message);
        }
        let Some(last) = last else { continue };
        sqlx::query(
            "INSERT INTO plain_events (seq, subject, event_id, payload) \
             SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::bytea[]) ON CONFLICT DO NOTHING",
        )
        .bind(&seqs)
        .bind(&subjects)
        .bind(&ids)
        .bind(&payloads)
        .execute(db)
        .await?;
        last.ack().await.map_err(|e| anyhow::anyhow!("{e}"))?;
        stored += seqs.len();
    }
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

async fn scalar(db: &PgPool, sql: &'static str) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(sql).fetch_one(db).await?)
}

/// Polls `sql` until it returns `want`; when it first did.
async fn until(db: &PgPool, sql: &'static str, want: i64, limit: Duration) -> anyhow::Result<Instant> {
    let deadline = Instant::now() + limit;
    loop {
        let got = scalar(db, sql).await?;
        if got == want {
            return Ok(Instant::now());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{sql} gave {got}, not {want}, in {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn start_inbox(infra: &Infra, shutdown: &CancellationToken) {
    tokio::spawn(mainloop_inbox::run(
        mainloop_inbox::Config::new(infra.common()),
        shutdown.clone(),
    ));
}

/// The steady load: new tasks spawned and planned at `rate` events/s for `seconds`; each
/// event's lag from its publishing to its card on INBOX, sorted (milliseconds).
async fn steady(bus: &Bus, first_task: usize, rate: usize, seconds: usize) -> anyhow::Result<Vec<f64>> {
    let acked: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let mut feed = bus.client().subscribe("inbox.>").await?;
    let total = rate * seconds;
    let seen = {
        let acked = acked.clone();
        tokio::spawn(async move {
            let mut lags = Vec::with_capacity(total);
            while lags.len() < total {
                let Some(message) = feed.next().await else { break };
                let arrived = Instant::now();
                let Ok(event) = Envelope::from_bytes(&message.payload) else {
                    continue;
                };
                if !matches!(event.payload, Some(Payload::TaskCardUpdated(_))) {
                    continue;
                }
                let sent = acked
                    .lock()
                    .ok()
                    .and_then(|a| a.get(&event.causation_id).copied());
                if let Some(sent) = sent {
                    lags.push(arrived.saturating_duration_since(sent).as_secs_f64() * 1000.0);
                }
            }
            lags
        })
    };
    // Two status changes per task (spawned, planning), in order: a task every 2/rate s.
    let mut tick = tokio::time::interval(Duration::from_secs_f64(2.0 / rate as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut sends = tokio::task::JoinSet::new();
    for n in first_task..first_task + total / 2 {
        tick.tick().await;
        let (bus, acked) = (bus.clone(), acked.clone());
        sends.spawn(async move {
            let subject = subjects::task(&user(n), &format!("t{n}"))?;
            for payload in life(n).into_iter().take(2) {
                let event = Envelope::new(user(n), format!("t{n}"), payload);
                if let Ok(mut acked) = acked.lock() {
                    acked.insert(event.id.clone(), Instant::now());
                }
                bus.publish(&subject, &event, Expect::Any).await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = sends.join_next().await {
        done??;
    }
    let mut lags = tokio::time::timeout(Duration::from_secs(60), seen).await??;
    anyhow::ensure!(
        lags.len() == total,
        "{} of {total} cards reached INBOX",
        lags.len()
    );
    lags.sort_by(f64::total_cmp);
    Ok(lags)
}

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        mainloop_runtime::tls::install();
        let tasks = env("BENCH_TASKS", 2_000) as usize;
        let (rate, seconds) = (
            env("BENCH_RATE", 1_000) as usize,
            env("BENCH_SECONDS", 10) as usize,
        );
        let events = tasks * 10;
        let infra = Infra::start()?;
        let bus = infra.bus().await?;
        let db = PgPool::connect(&infra.pg.url()).await?;
        publish_lives(&bus, 0..tasks).await?;

        let plain = plain_writer(&bus, &db, events).await?;

        let shutdown = CancellationToken::new();
        let started = Instant::now();
        start_inbox(&infra, &shutdown);
        infra.ready(1).await?;
        let applied = until(
            &db,
            "SELECT count(*) FROM inbox.tasks WHERE status = 'completed'",
            i64::try_from(tasks)?,
            Duration::from_secs(900),
        )
        .await?;
        let published = until(&db, "SELECT count(*) FROM inbox.feed_outbox", 0, Duration::from_secs(300)).await?;
        let history = scalar(&db, "SELECT count(*) FROM inbox.task_history").await?;
        anyhow::ensure!(
            history == i64::try_from(tasks * 7)?,
            "{history} status changes stored, not {}",
            tasks * 7
        );
        let rate_applied = events as f64 / (applied - started).as_secs_f64();
        println!("inbox projection: {events} events of {tasks} tasks in TASKS before the inbox starts");
        println!(
            "  inbox, applied                    {rate_applied:>9.0} events/s ({:.2} s)",
            (applied - started).as_secs_f64()
        );
        println!(
            "  inbox, feed published             {:>9.0} events/s ({:.2} s)",
            events as f64 / (published - started).as_secs_f64(),
            (published - started).as_secs_f64()
        );
        println!("  plain batched writer              {plain:>9.0} events/s");
        println!("  ratio: {:.2} (goal >= 20,000 events/s)", rate_applied / plain.max(1.0));

        let lags = steady(&bus, tasks, rate, seconds).await?;
        println!(
            "steady load: {rate} events/s for {seconds} s, event published -> its card on INBOX: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (goal p99 <= 100 ms)",
            percentile(&lags, 0.5),
            percentile(&lags, 0.99),
            percentile(&lags, 1.0)
        );
        shutdown.cancel();
        anyhow::Ok(())
    })
}
