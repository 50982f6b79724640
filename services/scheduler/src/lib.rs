//! The scheduler owns the task aggregate and its state machine (pending → planning → … →
//! completed): the only writer of TASKS (`task.<user>.<task>`). It answers the people's commands
//! (`cmd.scheduler.*`), turns agent results (JOBS) and GitHub observations (GITHUB) into task
//! events, and hands the jobs and GitHub effects a task needs to the WORK queue. Nothing waits in
//! a loop: a task waiting on a person or on CI is just its events, and one waiting to retry a job
//! is a row in its `timers` table.

mod commands;
mod config;
mod error;
mod reactions;
pub mod store;
pub mod task;
mod timers;

use std::sync::Arc;

use mainloop_bus::{ConsumerSpec, consumer};
use mainloop_events::subjects;
use mainloop_runtime::service::Foundation;
use sqlx::migrate::Migrator;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use config::{Config, SchedulingSettings};
pub use error::Error;

use crate::reactions::{Dispatch, Observe};
use crate::store::TaskStore;

pub const NAME: &str = "scheduler";
/// The Postgres schema this service owns; no other service touches it.
pub const SCHEMA: &str = "scheduler";
pub static MIGRATOR: Migrator = sqlx::migrate!();

/// Deliveries before a message that keeps failing transiently is dead-lettered (~16 hours).
const PATIENT: u32 = 1000;

/// Runs until `shutdown` is cancelled, then drains and returns.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), Error> {
    let foundation = Foundation::start(NAME, SCHEMA, &MIGRATOR, &config.common, &shutdown).await?;
    let bus = foundation.bus.clone();
    let store = TaskStore::new(bus.clone());
    foundation.reset_hooks.add({
        let store = store.clone();
        move || store.forget_all()
    });
    // A part that fails stops the scheduler's other parts, not whoever else shares `shutdown`.
    let shutdown = shutdown.child_token();
    let mut tasks: JoinSet<Result<(), String>> = JoinSet::new();
    commands::serve_all(&store, &shutdown, &mut tasks, config.scheduling.accept_test_seeds)
        .await
        .map_err(|e| Error::Serve(e.to_string()))?;

    let observe = Arc::new(Observe {
        store: store.clone(),
        backoff: config.scheduling.backoff(),
        max_feedback_rounds: config.scheduling.max_feedback_rounds,
    });
    for (stream, durable, filter) in [
        (subjects::JOBS, "scheduler-jobs", "job.>"),
        (subjects::GITHUB, "scheduler-github", "github.>"),
    ] {
        let (bus, observe, shutdown) = (bus.clone(), observe.clone(), shutdown.clone());
        // Losing a result would strand a task: retry for hours (backoff caps at a minute).
        let spec = ConsumerSpec {
            max_deliver: PATIENT,
            ..ConsumerSpec::new(stream, durable, filter)
        };
        tasks.spawn(async move {
            consumer::run(&bus, spec, observe, shutdown)
                .await
                .map_err(|e| e.to_string())
        });
    }
    let (timer_db, timer_store, timer_shutdown) = (foundation.db.clone(), store.clone(), shutdown.clone());
    tasks.spawn(async move {
        timers::run(timer_db, timer_store, timer_shutdown).await;
        Ok(())
    });
    let dispatch = Arc::new(Dispatch {
        bus: bus.clone(),
        store,
        db: foundation.db.clone(),
        waits: config.scheduling.waits(),
    });
    let spec = ConsumerSpec {
        max_deliver: PATIENT,
        ..ConsumerSpec::new(subjects::TASKS, "scheduler-tasks", "task.>")
    };
    let (consumer_bus, consumer_shutdown) = (bus.clone(), shutdown.clone());
    tasks.spawn(async move {
        consumer::run(&consumer_bus, spec, dispatch, consumer_shutdown)
            .await
            .map_err(|e| e.to_string())
    });

    foundation.readiness.ready();
    let mut failure = None;
    while let Some(done) = tasks.join_next().await {
        let outcome = done.map_err(|e| e.to_string()).and_then(|r| r);
        if let Err(reason) = outcome {
            if !shutdown.is_cancelled() {
                tracing::error!(%reason, "scheduler part stopped; stopping the scheduler");
                shutdown.cancel();
            }
            failure.get_or_insert(reason);
        }
    }
    foundation.stop().await;
    failure.map_or(Ok(()), |reason| Err(Error::Serve(reason)))
}
