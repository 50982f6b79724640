//! The inbox projects TASKS into the attention queue and the task and project read models,
//! answers queries about them (`query.inbox.*`) and the person's actions on queue items
//! (`cmd.inbox.*`), and publishes the INBOX feed (`inbox.<user>`) that the gateway streams to
//! browsers, and calls the person back with Web Push for items that need them (`push`). Its
//! tables are derived: each transaction stores the stream sequence it applied, and
//! `cmd.inbox.rebuild` (`mainloop rebuild inbox`) drops them and applies TASKS again; the push
//! subscriptions and what the person did to queue items are their own and kept.

mod commands;
mod config;
mod error;
mod outbox;
mod projector;
mod push;
mod queries;

use std::sync::Arc;

use mainloop_bus::KeyedSpec;
use mainloop_events::subjects;
use mainloop_runtime::service::Foundation;
use sqlx::migrate::Migrator;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use commands::rebuild::Rebuilt;
pub use config::Config;
pub use error::Error;

use crate::outbox::Outbox;
use crate::projector::Projector;

pub const NAME: &str = "inbox";
/// The Postgres schema this service owns; no other service touches it.
pub const SCHEMA: &str = "inbox";
pub static MIGRATOR: Migrator = sqlx::migrate!();

/// The projection's name in logs and dead letters (`dead.TASKS.inbox-tasks`).
const PROJECTION: &str = "inbox-tasks";

/// Before order was kept per task, the projection read through a durable consumer of this name;
/// the keyed reader keeps its own place, so that consumer is removed (once; absent is fine).
async fn forget_stream_wide_consumer(bus: &mainloop_bus::Bus) {
    if let Ok(stream) = bus.jetstream().get_stream(subjects::TASKS).await
        && stream.delete_consumer(PROJECTION).await.is_ok()
    {
        tracing::info!("removed the stream-wide consumer of the earlier projection");
    }
}

/// Runs until `shutdown` is cancelled, then drains and returns.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), Error> {
    let foundation = Foundation::start(NAME, SCHEMA, &MIGRATOR, &config.common, &shutdown).await?;
    let (bus, db) = (foundation.bus.clone(), foundation.db.clone());
    let (outbox, publisher) = Outbox::new(db.clone(), bus.clone());
    let shutdown = shutdown.child_token();
    let mut tasks: JoinSet<Result<(), String>> = JoinSet::new();

    let serve = |e: async_nats::SubscribeError| Error::Serve(e.to_string());
    queries::serve_all(&bus, &db, &shutdown, &mut tasks)
        .await
        .map_err(serve)?;
    let context = commands::Context {
        bus: bus.clone(),
        db: db.clone(),
        outbox: outbox.clone(),
    };
    commands::serve_all(&context, &shutdown, &mut tasks)
        .await
        .map_err(serve)?;
    push::serve(&bus, &db, config.push(), &shutdown, &mut tasks)
        .await
        .map_err(serve)?;

    let projector = Arc::new(Projector::new(db.clone(), outbox.clone()));
    foundation.reset_hooks.add({
        let projector = projector.clone();
        move || projector.forget()
    });
    forget_stream_wide_consumer(&bus).await;
    let mut spec = KeyedSpec::new(subjects::TASKS, PROJECTION, "task.>");
    spec.concurrency = config.projection_workers().max(2);
    let (consumer_bus, consumer_shutdown) = (bus.clone(), shutdown.clone());
    tasks.spawn(async move {
        projector::rounds::run(&consumer_bus, spec, projector, consumer_shutdown)
            .await
            .map_err(|e| e.to_string())
    });
    let publisher_shutdown = shutdown.clone();
    tasks.spawn(async move {
        publisher.run(publisher_shutdown).await;
        Ok(())
    });

    foundation.readiness.ready();
    let mut failure = None;
    while let Some(done) = tasks.join_next().await {
        if let Err(reason) = done.map_err(|e| e.to_string()).and_then(|r| r) {
            if !shutdown.is_cancelled() {
                tracing::error!(%reason, "inbox part stopped; stopping the inbox");
                shutdown.cancel();
            }
            failure.get_or_insert(reason);
        }
    }
    foundation.stop().await;
    failure.map_or(Ok(()), |reason| Err(Error::Serve(reason)))
}
