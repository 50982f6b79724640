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
pub(crate) struct ReadBack {
    #[sqlx(flatten)]
    row: Row,
    older: bool,
}

/// The common table expressions that write a transaction's feed rows (`new`) and read the same
/// subjects' rows still waiting (`older`, the snapshot the statement started with: committed
/// rows, not `new`), given the placeholders of [`FeedRows::bind`]'s four values: subjects,
/// envelopes, traces and how many older rows at most. Another statement of the transaction can
/// carry them ([`feed_read_back`] ends it), so writing the feed costs no round trip of its own.
macro_rules! feed_rows {
    ($subjects:literal, $envelopes:literal, $traces:literal, $at_most:literal) => {
        concat!(
            "new AS (INSERT INTO feed_outbox (subject, envelope, traceparent) ",
            "SELECT s, e, t FROM UNNEST(",
            $subjects,
            "::text[], ",
            $envelopes,
            "::bytea[], ",
            $traces,
            "::text[]) WITH ORDINALITY AS r(s, e, t, n) ORDER BY n ",
            "RETURNING position, subject, envelope, traceparent), ",
            "older AS (SELECT position, subject, envelope, traceparent FROM feed_outbox ",
            "WHERE subject = ANY(",
            $subjects,
            ") ORDER BY position LIMIT ",
            $at_most,
            ")"
        )
    };
}
pub(crate) use feed_rows;

/// The end of a statement that carries [`feed_rows`]: its rows read back as [`ReadBack`].
macro_rules! feed_read_back {
    () => {
        "SELECT *, true AS older FROM older UNION ALL SELECT *, false FROM new ORDER BY position"
    };
}
pub(crate) use feed_read_back;

/// A transaction's feed events as the values [`feed_rows`] writes, each in the trace given with
/// it (the event that caused it), or else in the current one.
pub(crate) struct FeedRows<'a> {
    subjects: Vec<&'a str>,
    envelopes: Vec<Vec<u8>>,
    traces: Vec<String>,
}

impl<'a> FeedRows<'a> {
    pub(crate) fn of(events: &'a [(String, Envelope, Option<String>)]) -> Self {
        let current = mainloop_bus::trace::traceparent().unwrap_or_default();
        FeedRows {
            subjects: events.iter().map(|(s, _, _)| s.as_str()).collect(),
            envelopes: events.iter().map(|(_, e, _)| e.to_bytes()).collect(),
            traces: events
                .iter()
                .map(|(_, _, trace)| trace.clone().unwrap_or_else(|| current.clone()))
                .collect(),
        }
    }

    /// Binds the four values of [`feed_rows`], in order, after those `query` has.
    pub(crate) fn bind<'q, O>(
        self,
        query: sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>
    where
        'a: 'q,
    {
        query
            .bind(self.subjects)
            .bind(self.envelopes)
            .bind(self.traces)
            .bind(OLDER_AT_MOST)
    }
}

impl From<Vec<ReadBack>> for Staged {
    fn from(rows: Vec<ReadBack>) -> Self {
        let older = rows.iter().filter(|read| read.older).count();
        Staged {
            behind: i64::try_from(older).unwrap_or(i64::MAX) >= OLDER_AT_MOST,
            rows: rows.into_iter().map(|read| read.row).collect(),
        }
    }
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
        let query = sqlx::query_as(concat!(
            "WITH ",
            feed_rows!("$1", "$2", "$3", "$4"),
            " ",
            feed_read_back!()
        ));
        let rows = FeedRows::of(events).bind(query).fetch_all(tx).await?;
        Ok(Staged::from(rows))
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
