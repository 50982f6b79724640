//! Feed events wait here, written in the transaction that caused them, until they are published
//! to INBOX. The transaction gets its rows back ([`Staged`]), together with the rows of the same
//! people still waiting before them (another replica's, or a publish that failed); once it has
//! committed, it hands them to the [`publisher`], which publishes them in order from memory and
//! deletes them, so the feed costs the transaction no read and the caller no wait. Publishing
//! uses the event's own id as `Nats-Msg-Id`, so a row published twice (a crash after publish,
//! before delete; two replicas) is stored once. Each row keeps the trace of the event that caused
//! it, and is published in that trace. What a crash or a failed publish leaves behind is swept
//! from the table in order.

pub mod publisher;

use mainloop_events::Envelope;
use sqlx::{PgConnection, PgPool};
use tokio::sync::{mpsc, oneshot};

pub use publisher::Publisher;

/// Older rows of the same people read back with a transaction's own at most; beyond that the
/// publisher drains the table in order instead.
const OLDER_AT_MOST: i64 = 500;

/// A row waiting: its position, subject, envelope and the trace that caused it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Row {
    pub position: i64,
    pub subject: String,
    pub envelope: Vec<u8>,
    pub traceparent: String,
}

/// What a transaction wrote to the outbox, with the same people's older rows, in order; to be
/// handed to the publisher once the transaction has committed (and never if it did not).
#[must_use = "committed rows are published only when handed to the outbox"]
#[derive(Debug, Default)]
pub struct Staged {
    rows: Vec<Row>,
    /// Too many older rows wait: the publisher drains the table in order.
    behind: bool,
}

/// A row read back by the transaction that wrote it, or an older one of the same subject.
#[derive(sqlx::FromRow)]
struct ReadBack {
    #[sqlx(flatten)]
    row: Row,
    older: bool,
}

/// Rows committed and handed over, and who waits for them to be published.
struct Committed {
    staged: Staged,
    published: Option<oneshot::Sender<()>>,
}

#[derive(Clone)]
pub struct Outbox {
    committed: mpsc::UnboundedSender<Committed>,
}

impl Outbox {
    /// The outbox and its publisher, which runs apart ([`Publisher::run`]).
    pub fn new(db: PgPool, bus: mainloop_bus::Bus) -> (Self, Publisher) {
        let (committed, handed) = mpsc::unbounded_channel();
        (Outbox { committed }, Publisher::new(db, bus, handed))
    }

    /// Writes one event in `tx`, in the current trace.
    pub async fn add(
        &self,
        tx: &mut PgConnection,
        subject: &str,
        event: &Envelope,
    ) -> Result<Staged, sqlx::Error> {
        self.add_all(tx, &[(subject.to_string(), event.clone(), None)])
            .await
    }

    /// Writes many events in `tx` in one statement, in order, and reads back the rows of the
    /// same subjects still waiting before them. Each is published in the trace given with it
    /// (the event that caused it), or else in the current one.
    pub async fn add_all(
        &self,
        tx: &mut PgConnection,
        events: &[(String, Envelope, Option<String>)],
    ) -> Result<Staged, sqlx::Error> {
        if events.is_empty() {
            return Ok(Staged::default());
        }
        let current = mainloop_bus::trace::traceparent().unwrap_or_default();
        let subjects: Vec<&str> = events.iter().map(|(s, _, _)| s.as_str()).collect();
        let envelopes: Vec<Vec<u8>> = events.iter().map(|(_, e, _)| e.to_bytes()).collect();
        let traces: Vec<&str> = events
            .iter()
            .map(|(_, _, trace)| trace.as_deref().unwrap_or(&current))
            .collect();
        // `older` reads the snapshot the statement started with: committed rows, not `new`.
        let rows: Vec<ReadBack> = sqlx::query_as(
            "WITH new AS ( \
                INSERT INTO feed_outbox (subject, envelope, traceparent) \
                SELECT s, e, t FROM UNNEST($1::text[], $2::bytea[], $3::text[]) WITH ORDINALITY AS r(s, e, t, n) \
                ORDER BY n \
                RETURNING position, subject, envelope, traceparent \
             ), older AS ( \
                SELECT position, subject, envelope, traceparent FROM feed_outbox \
                WHERE subject = ANY($1) ORDER BY position LIMIT $4 \
             ) \
             SELECT *, true AS older FROM older UNION ALL SELECT *, false FROM new ORDER BY position",
        )
        .bind(subjects)
        .bind(envelopes)
        .bind(traces)
        .bind(OLDER_AT_MOST)
        .fetch_all(tx)
        .await?;
        let older = rows.iter().filter(|read| read.older).count();
        Ok(Staged {
            behind: i64::try_from(older).unwrap_or(i64::MAX) >= OLDER_AT_MOST,
            rows: rows.into_iter().map(|read| read.row).collect(),
        })
    }

    /// Hands rows whose transaction committed to the publisher, and returns at once.
    pub fn committed(&self, staged: Staged) {
        self.hand_over(staged, None);
    }

    /// Hands rows whose transaction committed to the publisher, and waits until it tried to
    /// publish them (what failed is published by a later sweep).
    pub async fn committed_and_published(&self, staged: Staged) {
        let (published, tried) = oneshot::channel();
        self.hand_over(staged, Some(published));
        // A publisher gone (shutdown) leaves the rows to the next start.
        let _ = tried.await;
    }

    fn hand_over(&self, staged: Staged, published: Option<oneshot::Sender<()>>) {
        if staged.rows.is_empty() {
            return;
        }
        if self.committed.send(Committed { staged, published }).is_err() {
            tracing::debug!("the outbox publisher has stopped; the rows wait for the next start");
        }
    }
}
