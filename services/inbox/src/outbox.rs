//! Feed events wait here, written in the transaction that caused them, until they are published
//! to INBOX. Publishing uses the event's own id as `Nats-Msg-Id`, so publishing a row twice (a
//! crash after publish, before delete) stores it once. Each row keeps the trace of the event that
//! caused it, and is published in that trace.

use std::sync::Arc;

use mainloop_bus::{Bus, Expect};
use mainloop_events::Envelope;
use sqlx::{PgConnection, PgPool};
use tokio::sync::Mutex;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// A row waiting: its position, subject, envelope and the trace that caused it.
type Waiting = (i64, String, Vec<u8>, String);

/// Rows read and sent per round.
const FLUSH_AT_ONCE: i64 = 500;

#[derive(Clone)]
pub struct Outbox {
    db: PgPool,
    bus: Bus,
    /// One flusher at a time keeps the feed in commit order.
    flushing: Arc<Mutex<()>>,
}

impl Outbox {
    pub fn new(db: PgPool, bus: Bus) -> Self {
        Outbox {
            db,
            bus,
            flushing: Arc::default(),
        }
    }

    pub async fn add(
        &self,
        tx: &mut PgConnection,
        subject: &str,
        event: &Envelope,
    ) -> Result<(), sqlx::Error> {
        // The trace of the event that caused it, continued when it is published.
        let traceparent = mainloop_bus::trace::traceparent().unwrap_or_default();
        sqlx::query("INSERT INTO feed_outbox (subject, envelope, traceparent) VALUES ($1, $2, $3)")
            .bind(subject)
            .bind(event.to_bytes())
            .bind(traceparent)
            .execute(tx)
            .await?;
        Ok(())
    }

    /// Adds many events in one statement, in order.
    pub async fn add_all(
        &self,
        tx: &mut PgConnection,
        events: &[(String, Envelope)],
    ) -> Result<(), sqlx::Error> {
        if events.is_empty() {
            return Ok(());
        }
        let traceparent = mainloop_bus::trace::traceparent().unwrap_or_default();
        let subjects: Vec<&str> = events.iter().map(|(s, _)| s.as_str()).collect();
        let envelopes: Vec<Vec<u8>> = events.iter().map(|(_, e)| e.to_bytes()).collect();
        sqlx::query(
            "INSERT INTO feed_outbox (subject, envelope, traceparent) \
             SELECT s, e, $3 FROM UNNEST($1::text[], $2::bytea[]) WITH ORDINALITY AS r(s, e, n) ORDER BY n",
        )
        .bind(subjects)
        .bind(envelopes)
        .bind(traceparent)
        .execute(tx)
        .await?;
        Ok(())
    }

    /// Publishes what is waiting, oldest first, many rows in flight at once (sent in order on
    /// one connection, so stored in order); what fails stays for the next flush.
    pub async fn flush(&self) {
        let _turn = self.flushing.lock().await;
        loop {
            let rows: Result<Vec<Waiting>, _> = sqlx::query_as(
                "SELECT position, subject, envelope, traceparent FROM feed_outbox ORDER BY position LIMIT $1",
            )
            .bind(FLUSH_AT_ONCE)
            .fetch_all(&self.db)
            .await;
            let rows = match rows {
                Ok(rows) if rows.is_empty() => return,
                Ok(rows) => rows,
                Err(err) => {
                    tracing::warn!(error = %err, "outbox unreadable; will retry");
                    return;
                }
            };
            let full = rows.len() as i64 == FLUSH_AT_ONCE;
            let (published, complete) = self.publish(rows).await;
            if !published.is_empty()
                && let Err(err) = sqlx::query("DELETE FROM feed_outbox WHERE position = ANY($1)")
                    .bind(&published)
                    .execute(&self.db)
                    .await
            {
                tracing::warn!(error = %err, "outbox rows not deleted; they will be published again (deduplicated)");
                return;
            }
            // A short read took everything there was; what commits later is flushed by its own
            // committer (every commit is followed by a flush), so no empty read is needed.
            if !complete || !full {
                return;
            }
        }
    }

    /// Sends every row, then waits for each to be stored; the positions stored before the first
    /// failure, and whether there was none.
    async fn publish(&self, rows: Vec<Waiting>) -> (Vec<i64>, bool) {
        let mut sent = Vec::with_capacity(rows.len());
        let mut complete = true;
        for (position, subject, bytes, traceparent) in rows {
            let span = tracing::info_span!("inbox.feed", %subject);
            let _ = span.set_parent(mainloop_bus::trace::from_traceparent(&traceparent));
            let event = match Envelope::from_bytes(&bytes) {
                Ok(event) => event,
                Err(err) => {
                    tracing::error!(position, error = %err, "undecodable outbox row dropped");
                    sent.push((position, None));
                    continue;
                }
            };
            match self
                .bus
                .send(&subject, &event, Expect::Any)
                .instrument(span)
                .await
            {
                Ok(pending) => sent.push((position, Some(pending))),
                Err(err) => {
                    tracing::warn!(error = %err, "feed publish failed; will retry");
                    complete = false;
                    break;
                }
            }
        }
        let mut published = Vec::with_capacity(sent.len());
        for (position, pending) in sent {
            if let Some(pending) = pending
                && let Err(err) = pending.stored().await
            {
                tracing::warn!(error = %err, "feed publish failed; will retry");
                return (published, false);
            }
            published.push(position);
        }
        (published, complete)
    }
}
