//! The projection of TASKS into the inbox's read models. Events are applied one at a time in
//! stream order; each transaction checks and advances the checkpoint with its rows, so a
//! redelivered event is skipped and the tables always equal some prefix of the stream. The INBOX
//! feed events an event causes go to the outbox in the same transaction.

mod queue;
mod tasks;

use chrono::{DateTime, Utc};
use mainloop_bus::{Delivery, Handler, HandlerError};
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
        let checkpoint: Option<i64> =
            sqlx::query_scalar("SELECT stream_sequence FROM checkpoints WHERE projection = $1 FOR UPDATE")
                .bind(TASKS_PROJECTION)
                .fetch_optional(&mut *tx)
                .await
                .map_err(transient)?;
        let sequence = i64::try_from(delivery.stream_sequence).unwrap_or(i64::MAX);
        if checkpoint.is_some_and(|applied| sequence <= applied) {
            return Ok(());
        }
        let applied = apply(&mut tx, &delivery.event, sequence)
            .await
            .map_err(transient)?;
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
        sqlx::query(
            "INSERT INTO checkpoints (projection, stream_sequence) VALUES ($1, $2) \
             ON CONFLICT (projection) DO UPDATE SET stream_sequence = excluded.stream_sequence",
        )
        .bind(TASKS_PROJECTION)
        .bind(sequence)
        .execute(&mut *tx)
        .await
        .map_err(transient)?;
        tx.commit().await.map_err(transient)?;
        self.outbox.flush().await;
        Ok(())
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
