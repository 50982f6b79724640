//! Applying a delivered event at most once. JetStream delivers at least once: after a crash
//! between handling and ack, the same event comes again. A handler therefore does its writes in
//! one transaction that first [`claim`]s the event; a second delivery finds the claim and skips.
//!
//! Every service schema has the ledger table (each service's first migration):
//!
//! ```sql
//! CREATE TABLE processed_events (
//!     consumer        TEXT        NOT NULL,
//!     event_id        TEXT        NOT NULL,
//!     stream_sequence BIGINT      NOT NULL,
//!     processed_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
//!     PRIMARY KEY (consumer, event_id)
//! );
//! ```

use sqlx::PgConnection;

/// Records that `consumer` handles `event_id`. `true`: first time, go ahead in this same
/// transaction. `false`: already applied (by an earlier delivery that committed), do nothing.
pub async fn claim(
    tx: &mut PgConnection,
    consumer: &str,
    event_id: &str,
    stream_sequence: u64,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO processed_events (consumer, event_id, stream_sequence) VALUES ($1, $2, $3) \
         ON CONFLICT (consumer, event_id) DO NOTHING",
    )
    .bind(consumer)
    .bind(event_id)
    .bind(i64::try_from(stream_sequence).unwrap_or(i64::MAX))
    .execute(tx)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}
