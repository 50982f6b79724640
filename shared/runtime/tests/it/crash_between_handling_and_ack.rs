//! A consumer that dies after its handler committed but before the ack gets the message again
//! when it restarts, and the idempotent handler pattern applies the event once.

use std::sync::Arc;
use std::time::Duration;

use mainloop_bus::{Bus, ConsumerSpec, Delivery, Expect, Handler, HandlerError, consumer};
use mainloop_events::v1::TaskSpawned;
use mainloop_events::{Envelope, Payload, subjects};
use mainloop_runtime::{Secret, db, idempotency};
use mainloop_testkit::{TestNats, TestPostgres};
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("tests/migrations");
const CONSUMER: &str = "spawn-recorder";

/// Records each spawned task in Postgres, claiming the event in the same transaction.
struct RecordSpawn {
    db: PgPool,
    /// Die (hang without acking) after the commit, like a process killed at that instant.
    crash_after_commit: bool,
    report: mpsc::UnboundedSender<(u32, bool)>,
}

impl Handler for RecordSpawn {
    async fn handle(&self, delivery: Delivery) -> Result<(), HandlerError> {
        let transient = |e: sqlx::Error| HandlerError::Transient(e.to_string());
        let Some(Payload::TaskSpawned(spawned)) = &delivery.event.payload else {
            return Err(HandlerError::Permanent("not a TaskSpawned".into()));
        };
        let mut tx = self.db.begin().await.map_err(transient)?;
        let first = idempotency::claim(&mut tx, CONSUMER, &delivery.event.id, delivery.stream_sequence)
            .await
            .map_err(transient)?;
        if first {
            sqlx::query(
                "INSERT INTO spawned_tasks (task_id, times) VALUES ($1, 1) \
                 ON CONFLICT (task_id) DO UPDATE SET times = spawned_tasks.times + 1",
            )
            .bind(&spawned.task_id)
            .execute(&mut *tx)
            .await
            .map_err(transient)?;
        }
        tx.commit().await.map_err(transient)?;
        let _ = self.report.send((delivery.delivered, first));
        if self.crash_after_commit {
            std::future::pending::<()>().await;
        }
        Ok(())
    }
}

fn spec() -> ConsumerSpec {
    ConsumerSpec {
        ack_wait: Duration::from_secs(1),
        ..ConsumerSpec::new(subjects::TASKS, CONSUMER, "task.>")
    }
}

async fn start_consumer(
    nats: &TestNats,
    db: &PgPool,
    crash_after_commit: bool,
) -> anyhow::Result<(tokio::task::JoinHandle<()>, mpsc::UnboundedReceiver<(u32, bool)>)> {
    // A connection of its own, like a separate process.
    let bus = Bus::connect(
        &nats.url(),
        "consumer",
        Duration::from_secs(5),
        &CancellationToken::new(),
    )
    .await?;
    let (report, seen) = mpsc::unbounded_channel();
    let handler = Arc::new(RecordSpawn {
        db: db.clone(),
        crash_after_commit,
        report,
    });
    let task = tokio::spawn(async move {
        let _ = consumer::run(&bus, spec(), handler, CancellationToken::new()).await;
    });
    Ok((task, seen))
}

#[tokio::test]
async fn a_redelivery_after_a_crash_is_applied_once() -> anyhow::Result<()> {
    let (nats, pg) = (TestNats::start()?, TestPostgres::start()?);
    let pool = db::connect(
        &Secret::new(pg.url()),
        "recorder",
        4,
        Duration::from_secs(10),
        &CancellationToken::new(),
    )
    .await?;
    db::migrate(&pool, "recorder", &MIGRATOR).await?;
    let publisher = Bus::connect(
        &nats.url(),
        "publisher",
        Duration::from_secs(5),
        &CancellationToken::new(),
    )
    .await?;
    publisher.ensure_streams(1).await?;
    let event = Envelope::new(
        "u1",
        "t1",
        Payload::TaskSpawned(TaskSpawned {
            task_id: "t1".into(),
            ..Default::default()
        }),
    );
    publisher
        .publish(&subjects::task("u1", "t1")?, &event, Expect::Any)
        .await?;

    let (crashing, mut first_run) = start_consumer(&nats, &pool, true).await?;
    let applied = tokio::time::timeout(Duration::from_secs(5), first_run.recv()).await?;
    assert_eq!(applied, Some((1, true)), "first delivery applies the event");
    crashing.abort();
    let _ = crashing.await;

    let (_restarted, mut second_run) = start_consumer(&nats, &pool, false).await?;
    let again = tokio::time::timeout(Duration::from_secs(10), second_run.recv()).await?;
    assert_eq!(
        again,
        Some((2, false)),
        "the unacked event comes back and is recognised"
    );

    let times: i32 = sqlx::query_scalar("SELECT times FROM spawned_tasks WHERE task_id = 't1'")
        .fetch_one(&pool)
        .await?;
    assert_eq!(times, 1, "applied exactly once");
    let stream = publisher.jetstream().get_stream(subjects::TASKS).await?;
    let mut durable: async_nats::jetstream::consumer::PullConsumer = stream
        .get_consumer(CONSUMER)
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let info = durable.info().await?;
        if info.num_ack_pending == 0 && info.num_pending == 0 {
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the redelivery was never acked: {info:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}
