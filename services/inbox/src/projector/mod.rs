//! The projection of TASKS into the inbox's read models, in order per task (`mainloop_bus::keyed`):
//! tasks are applied side by side, and one slow or failing task holds back only itself. Each
//! transaction checks and advances its task's checkpoint with the task's rows, so an event handed
//! over again after a restart is skipped, and each task's rows always equal some prefix of its
//! history. The INBOX feed events an event causes go to the outbox in the same transaction. An
//! event the database refuses as data (bad bytes, a broken constraint) is dead-lettered and noted
//! on its task, and the projection goes on: one bad event stops one task's history, never
//! everyone's. The low-water mark of the whole stream is kept in `checkpoints`.

mod notifications;
mod queue;
mod tasks;

use chrono::{DateTime, Utc};
use mainloop_bus::{Delivery, Handler, HandlerError, KeyedHandler};
use mainloop_events::{Envelope, Payload, subjects};
use sqlx::{PgConnection, PgPool};

use crate::outbox::Outbox;

pub const TASKS_PROJECTION: &str = "tasks";

pub struct Projector {
    pub db: PgPool,
    pub outbox: Outbox,
}

/// What applying one event changed, for the feed.
pub(crate) struct Applied {
    pub feed: Vec<Payload>,
}

impl Handler for Projector {
    async fn handle(&self, delivery: Delivery) -> Result<(), HandlerError> {
        let transient = |e: sqlx::Error| HandlerError::Transient(e.to_string());
        let mut tx = self.db.begin().await.map_err(transient)?;
        let sequence = i64::try_from(delivery.stream_sequence).unwrap_or(i64::MAX);
        if task_applied(&mut tx, &delivery.subject)
            .await
            .map_err(transient)?
            >= sequence
        {
            return Ok(());
        }
        let applied = match apply(&mut tx, &delivery.event, sequence).await {
            Ok(applied) => applied,
            Err(err) if refused_data(&err) => {
                drop(tx);
                self.note_unapplied(&delivery.event, &err).await;
                // Dead-lettered; the projection goes on with the next event, for everyone.
                return Err(HandlerError::Permanent(format!(
                    "event {} cannot be applied: {err}",
                    delivery.event.id
                )));
            }
            Err(err) => return Err(transient(err)),
        };
        let subject =
            subjects::inbox(&delivery.event.user_id).map_err(|e| HandlerError::Permanent(e.to_string()))?;
        for payload in applied.feed {
            let feed_event = Envelope::new(&delivery.event.user_id, &delivery.event.correlation_id, payload)
                .caused_by(&delivery.event.id);
            self.outbox
                .add(&mut tx, &subject, &feed_event)
                .await
                .map_err(transient)?;
        }
        sqlx::query("UPDATE task_checkpoints SET stream_sequence = $2 WHERE subject = $1")
            .bind(&delivery.subject)
            .bind(sequence)
            .execute(&mut *tx)
            .await
            .map_err(transient)?;
        tx.commit().await.map_err(transient)?;
        self.outbox.flush().await;
        Ok(())
    }
}

impl KeyedHandler for Projector {
    async fn resume_after(&self) -> Result<u64, HandlerError> {
        let done: Option<i64> =
            sqlx::query_scalar("SELECT stream_sequence FROM checkpoints WHERE projection = $1")
                .bind(TASKS_PROJECTION)
                .fetch_optional(&self.db)
                .await
                .map_err(|e| HandlerError::Transient(e.to_string()))?;
        Ok(done.and_then(|d| u64::try_from(d).ok()).unwrap_or(0))
    }

    async fn checkpoint(&self, sequence: u64) -> Result<(), HandlerError> {
        sqlx::query(
            "INSERT INTO checkpoints (projection, stream_sequence) VALUES ($1, $2) \
             ON CONFLICT (projection) DO UPDATE \
             SET stream_sequence = GREATEST(checkpoints.stream_sequence, excluded.stream_sequence)",
        )
        .bind(TASKS_PROJECTION)
        .bind(i64::try_from(sequence).unwrap_or(i64::MAX))
        .execute(&self.db)
        .await
        .map(drop)
        .map_err(|e| HandlerError::Transient(e.to_string()))
    }
}

/// The last sequence applied to the task of `subject`, locked until the transaction ends, so
/// two replicas never apply the same task's events at once.
async fn task_applied(tx: &mut PgConnection, subject: &str) -> Result<i64, sqlx::Error> {
    sqlx::query(
        "INSERT INTO task_checkpoints (subject, stream_sequence) VALUES ($1, 0) \
         ON CONFLICT (subject) DO NOTHING",
    )
    .bind(subject)
    .execute(&mut *tx)
    .await?;
    sqlx::query_scalar("SELECT stream_sequence FROM task_checkpoints WHERE subject = $1 FOR UPDATE")
        .bind(subject)
        .fetch_one(&mut *tx)
        .await
}

impl Projector {
    /// Says on the task that part of its history could not be applied (best effort).
    async fn note_unapplied(&self, event: &Envelope, err: &sqlx::Error) {
        let note = format!(
            "this task's history could not be applied: {} ({err})",
            event.r#type
        );
        let note = mainloop_events::text::storable(&note);
        let noted = sqlx::query("UPDATE tasks SET history_error = $2 WHERE id = $1")
            .bind(&event.correlation_id)
            .bind(note.as_ref())
            .execute(&self.db)
            .await;
        if let Err(noted) = noted {
            tracing::error!(error = %noted, task = %event.correlation_id, "could not note the unapplied event");
        }
        tracing::error!(event = %event.id, kind = %event.r#type, error = %err, "event refused by the database; dead-lettered");
    }
}

/// The database refused the data itself (SQLSTATE class 22: bad bytes, out of range; class 23:
/// a broken constraint): trying again cannot help. Anything else (a lost connection) can.
fn refused_data(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| code.starts_with("22") || code.starts_with("23")),
        sqlx::Error::Encode(_) => true,
        _ => false,
    }
}

pub(crate) fn occurred_at(event: &Envelope) -> DateTime<Utc> {
    event
        .occurred_at
        .as_ref()
        .and_then(|t| DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0)))
        .unwrap_or_else(Utc::now)
}

async fn apply(tx: &mut PgConnection, event: &Envelope, sequence: i64) -> Result<Applied, sqlx::Error> {
    let Some(payload) = &event.payload else {
        return Ok(Applied { feed: vec![] });
    };
    let mut feed = Vec::new();
    if tasks::apply(tx, event, payload, sequence).await?
        && let Some(card) = tasks::card(tx, &event.correlation_id).await?
    {
        feed.push(Payload::TaskCardUpdated(card));
    }
    feed.extend(queue::apply(tx, event, payload).await?);
    Ok(Applied { feed })
}
