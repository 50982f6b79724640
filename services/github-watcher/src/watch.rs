//! Which pull requests to watch and which comment threads to read, learned from TASKS: a task's
//! repository when it is spawned, its issue and pull request when they are linked, and the end of
//! watching when the task ends. A new watch, and a push of ours (`CodePushed`,
//! `FeedbackAddressed`), make the poller look at the pull request at once: a quiet pull request
//! may otherwise be polled only every few minutes.
//!
//! A projection in order per task, in batches (`mainloop_bus::keyed`): a batch is one
//! transaction that locks its tasks' checkpoints, applies the events they do not have yet and
//! moves the checkpoints, so a batch handed over again (a restart, a replica) applies nothing
//! twice, and one task's trouble holds back that task only.

use mainloop_bus::{Delivery, HandlerError, KeyedHandler};
use mainloop_events::{Envelope, Payload};
use mainloop_runtime::checkpoints;
use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::{PgConnection, PgPool, Postgres};

/// Starts reading the comments of issue or pull request `$2` of task `$1`.
const THREAD: &str = "INSERT INTO threads (task_id, user_id, owner, name, number) \
     SELECT task_id, user_id, owner, name, $2 FROM task_repos WHERE task_id = $1 \
     ON CONFLICT (task_id, number) DO UPDATE SET active = true";

pub struct Watches {
    pub db: PgPool,
    /// Task ids whose pull request the poller should look at now.
    pub nudge: Option<tokio::sync::mpsc::UnboundedSender<String>>,
}

/// The projection's name in `checkpoints`.
pub const PROJECTION: &str = "watches";

/// What `event` changes in the watches, if anything.
fn statement(event: &Envelope) -> Option<Query<'_, Postgres, PgArguments>> {
    Some(match &event.payload {
        Some(Payload::TaskSpawned(spawned)) => {
            let repo = spawned.repo.clone().unwrap_or_default();
            sqlx::query("INSERT INTO task_repos (task_id, user_id, owner, name) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING")
                .bind(&event.correlation_id)
                .bind(&event.user_id)
                .bind(repo.owner)
                .bind(repo.name)
        }
        Some(Payload::IssueLinked(linked)) => sqlx::query(THREAD)
            .bind(&event.correlation_id)
            .bind(i64::try_from(linked.issue_number).unwrap_or(i64::MAX)),
        Some(Payload::PullRequestLinked(linked)) => sqlx::query(
            "INSERT INTO watches (task_id, user_id, owner, name, pr_number) \
             SELECT task_id, user_id, owner, name, $2 FROM task_repos WHERE task_id = $1 \
             ON CONFLICT (task_id) DO UPDATE SET pr_number = excluded.pr_number, active = true, \
             reported = NULL, head_sha = NULL, head_seen_at = NULL",
        )
        .bind(&event.correlation_id)
        .bind(i64::try_from(linked.pr_number).unwrap_or(i64::MAX)),
        // A task that ended is not watched; a cancelled or failed one's comments are still
        // read for a week (`/retry`), more slowly as nothing happens.
        Some(Payload::TaskCompleted(_) | Payload::TaskCancelled(_) | Payload::TaskFailed(_)) => sqlx::query(
            "WITH threads AS (UPDATE threads SET active = NOT $2, ended_at = now() WHERE task_id = $1), \
                 reactions AS (UPDATE reaction_watches SET active = false WHERE task_id = $1) \
                 UPDATE watches SET active = false WHERE task_id = $1",
        )
        .bind(&event.correlation_id)
        .bind(matches!(event.payload, Some(Payload::TaskCompleted(_)))),
        // Approved: reactions on the plan comment no longer steer.
        Some(Payload::PlanApproved(_)) => {
            sqlx::query("UPDATE reaction_watches SET active = false WHERE task_id = $1")
                .bind(&event.correlation_id)
        }
        // A pull request the cancellation closed is watched again once it is reopened, never
        // before: it would be seen closed and cancel the task again.
        Some(Payload::TaskRetried(retried)) => sqlx::query(
            "WITH threads AS (UPDATE threads SET active = true, ended_at = NULL WHERE task_id = $1) \
             UPDATE watches SET active = true, reported = NULL, head_sha = NULL, head_seen_at = NULL \
             WHERE task_id = $1 AND NOT $2",
        )
        .bind(&event.correlation_id)
        .bind(retried.reopens_on_github),
        Some(Payload::ReopenedOnGithub(reopened)) => sqlx::query(
            "UPDATE watches SET active = true, reported = NULL, head_sha = NULL, head_seen_at = NULL \
             WHERE task_id = $1 AND pr_number = $2",
        )
        .bind(&event.correlation_id)
        .bind(i64::try_from(reopened.pr_number).unwrap_or(i64::MAX)),
        _ => return None,
    })
}

/// Whether `event` should make the poller look at the task's pull request now: a new (or
/// renewed) watch, or a push of ours.
fn nudges(event: &Envelope) -> bool {
    matches!(
        &event.payload,
        Some(
            Payload::IssueLinked(_)
                | Payload::PullRequestLinked(_)
                | Payload::TaskRetried(_)
                | Payload::ReopenedOnGithub(_)
                | Payload::CodePushed(_)
                | Payload::FeedbackAddressed(_)
        )
    )
}

/// Applies one event in `tx`.
async fn apply_one(tx: &mut PgConnection, event: &Envelope) -> Result<(), sqlx::Error> {
    let Some(query) = statement(event) else {
        return Ok(());
    };
    query.execute(&mut *tx).await?;
    // A pull request is a thread of comments too.
    if let Some(Payload::PullRequestLinked(linked)) = &event.payload {
        sqlx::query(THREAD)
            .bind(&event.correlation_id)
            .bind(i64::try_from(linked.pr_number).unwrap_or(i64::MAX))
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

impl Watches {
    /// Applies the batch's events its tasks do not have yet, in one transaction; the tasks to
    /// look at now.
    async fn apply_batch(&self, batch: &[Delivery]) -> Result<Vec<String>, sqlx::Error> {
        let mut tx = self.db.begin().await?;
        match write_batch(&mut tx, batch).await {
            Ok(nudged) => {
                tx.commit().await?;
                Ok(nudged)
            }
            Err(err) => {
                // At once, not when the connection is next used: its locks would hold the retry.
                if let Err(rollback) = tx.rollback().await {
                    tracing::warn!(error = %rollback, "rollback failed; the connection is dropped");
                }
                Err(err)
            }
        }
    }
}

async fn write_batch(tx: &mut PgConnection, batch: &[Delivery]) -> Result<Vec<String>, sqlx::Error> {
    let last = checkpoints::last_sequences(batch.iter().map(|d| (d.subject.as_str(), d.stream_sequence)));
    let done = checkpoints::claim(&mut *tx, None, &last, last.len() == 1)
        .await?
        .unwrap_or_default();
    let mut nudged = Vec::new();
    for delivery in batch {
        let sequence = i64::try_from(delivery.stream_sequence).unwrap_or(i64::MAX);
        if sequence <= done.get(&delivery.subject).copied().unwrap_or(0) {
            continue;
        }
        apply_one(&mut *tx, &delivery.event).await?;
        if nudges(&delivery.event) {
            nudged.push(delivery.event.correlation_id.clone());
        }
    }
    Ok(nudged)
}

impl KeyedHandler for Watches {
    async fn apply(&self, batch: &[Delivery]) -> Result<(), HandlerError> {
        let nudged = self
            .apply_batch(batch)
            .await
            .map_err(|e| HandlerError::Transient(e.to_string()))?;
        if let Some(nudge) = &self.nudge {
            for task in nudged {
                let _ = nudge.send(task);
            }
        }
        Ok(())
    }

    async fn resume_after(&self) -> Result<u64, HandlerError> {
        let transient = |e: sqlx::Error| HandlerError::Transient(e.to_string());
        let done = checkpoints::low_water(&self.db, PROJECTION)
            .await
            .map_err(transient)?;
        Ok(done.and_then(|d| u64::try_from(d).ok()).unwrap_or(0))
    }

    async fn checkpoint(&self, sequence: u64) -> Result<(), HandlerError> {
        checkpoints::store_low_water(&self.db, PROJECTION, sequence)
            .await
            .map_err(|e| HandlerError::Transient(e.to_string()))
    }
}

/// Before order was kept per task, the watches were applied through a durable consumer of the
/// same name, stream-wide in order. Its acknowledged floor is where this projection starts when
/// it has no mark of its own; then the consumer is removed (once; absent is fine).
pub async fn take_over_from_stream_wide_consumer(bus: &mainloop_bus::Bus, watches: &Watches) {
    let Ok(stream) = bus.jetstream().get_stream(mainloop_events::subjects::TASKS).await else {
        return;
    };
    let Ok(mut consumer) = stream
        .get_consumer::<async_nats::jetstream::consumer::pull::Config>("github-watch")
        .await
    else {
        return;
    };
    let floor = match consumer.info().await {
        Ok(info) => info.ack_floor.stream_sequence,
        Err(_) => return,
    };
    let kept = match checkpoints::low_water(&watches.db, PROJECTION).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => checkpoints::store_low_water(&watches.db, PROJECTION, floor).await,
        Err(err) => Err(err),
    };
    if let Err(err) = kept {
        tracing::warn!(error = %err, "the stream-wide consumer's place was not kept; trying at the next start");
        return;
    }
    if stream.delete_consumer("github-watch").await.is_ok() {
        tracing::info!(floor, "took over from the stream-wide watch consumer");
    }
}
