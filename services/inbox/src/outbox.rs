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

    /// Publishes what is waiting, oldest first; what fails stays for the next flush.
    pub async fn flush(&self) {
        let _turn = self.flushing.lock().await;
        loop {
            let rows: Result<Vec<Waiting>, _> = sqlx::query_as(
                "SELECT position, subject, envelope, traceparent FROM feed_outbox ORDER BY position LIMIT 100",
            )
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
            for (position, subject, bytes, traceparent) in rows {
                let span = tracing::info_span!("inbox.feed", %subject);
                let _ = span.set_parent(mainloop_bus::trace::from_traceparent(&traceparent));
                let published = match Envelope::from_bytes(&bytes) {
                    Ok(event) => self
                        .bus
                        .publish(&subject, &event, Expect::Any)
                        .instrument(span)
                        .await
                        .map(drop)
                        .map_err(|e| e.to_string()),
                    Err(err) => {
                        tracing::error!(position, error = %err, "undecodable outbox row dropped");
                        Ok(())
                    }
                };
                if let Err(err) = published {
                    tracing::warn!(error = %err, "feed publish failed; will retry");
                    return;
                }
                if let Err(err) = sqlx::query("DELETE FROM feed_outbox WHERE position = $1")
                    .bind(position)
                    .execute(&self.db)
                    .await
                {
                    tracing::warn!(error = %err, "outbox row not deleted; it will be published again (deduplicated)");
                    return;
                }
            }
        }
    }
}
