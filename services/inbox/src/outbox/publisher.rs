//! The one publisher of a process's outbox. It takes the rows of committed transactions as they
//! are handed over, everything waiting at once, and publishes them in position order, many in
//! flight on one connection (so stored in that order); a task beside it deletes them. A transaction's rows
//! come with the same people's older rows still in the table, so a person's feed keeps its order
//! even when another replica or a failed publish left rows behind. Every [`SWEEP_EVERY`], and at
//! start, it sweeps the table: what a crash or a failed publish left is published oldest first.
//! Positions published lately are remembered, so a row read back before its delete is deleted,
//! not sent again.

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use mainloop_bus::{Bus, Expect};
use mainloop_events::Envelope;
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::{Committed, Row};

/// How often the table is swept for rows left behind.
pub const SWEEP_EVERY: Duration = Duration::from_secs(2);

/// Rows read and sent per round of a sweep.
const SWEEP_AT_ONCE: i64 = 500;

/// Positions remembered as published.
const REMEMBERED: usize = 16_384;

pub struct Publisher {
    db: PgPool,
    bus: Bus,
    handed: mpsc::UnboundedReceiver<Committed>,
    recent: Recent,
}

impl Publisher {
    pub(super) fn new(db: PgPool, bus: Bus, handed: mpsc::UnboundedReceiver<Committed>) -> Self {
        Publisher {
            db,
            bus,
            handed,
            recent: Recent::default(),
        }
    }

    /// Publishes until `shutdown`, then publishes what was handed over before it and returns.
    /// Deleting what was published runs beside it ([`delete`]), so the next rows need not wait.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let (published, to_delete) = mpsc::unbounded_channel();
        let deleting = tokio::spawn(delete(self.db.clone(), to_delete));
        self.sweep(&published).await;
        let mut sweeps = tokio::time::interval(SWEEP_EVERY);
        sweeps.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        sweeps.reset();
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                handed = self.handed.recv() => match handed {
                    Some(first) => {
                        let mut batch = vec![first];
                        while let Ok(more) = self.handed.try_recv() {
                            batch.push(more);
                        }
                        self.publish_committed(batch, &published).await;
                    }
                    None => break,
                },
                _ = sweeps.tick() => self.sweep(&published).await,
            }
        }
        self.handed.close();
        let mut rest = Vec::new();
        while let Ok(more) = self.handed.try_recv() {
            rest.push(more);
        }
        self.publish_committed(rest, &published).await;
        drop(published);
        let _ = deleting.await;
    }

    /// Publishes the rows of transactions that committed, in position order, and tells who waits.
    async fn publish_committed(&mut self, batch: Vec<Committed>, published: &Published) {
        let (mut rows, mut waiting, mut behind) = (Vec::new(), Vec::new(), false);
        for committed in batch {
            behind |= committed.staged.behind;
            rows.extend(committed.staged.rows);
            waiting.extend(committed.published);
        }
        if behind {
            self.sweep(published).await;
        } else if !rows.is_empty() {
            rows.sort_unstable_by_key(|row| row.position);
            rows.dedup_by_key(|row| row.position);
            self.publish(rows, published).await;
        }
        for tried in waiting {
            let _ = tried.send(());
        }
    }

    /// Publishes what waits in the table, oldest first; stops at the first failure.
    async fn sweep(&mut self, published: &Published) {
        let mut after = 0;
        loop {
            let rows = sqlx::query_as::<_, Row>(
                "SELECT position, subject, envelope, traceparent FROM feed_outbox \
                 WHERE position > $1 ORDER BY position LIMIT $2",
            )
            .bind(after)
            .bind(SWEEP_AT_ONCE)
            .fetch_all(&self.db)
            .await;
            let rows = match rows {
                Ok(rows) => rows,
                Err(err) => {
                    tracing::warn!(error = %err, "outbox unreadable; will retry");
                    return;
                }
            };
            let full = i64::try_from(rows.len()).unwrap_or(i64::MAX) >= SWEEP_AT_ONCE;
            let Some(last) = rows.last().map(|row| row.position) else {
                return;
            };
            if !self.publish(rows, published).await || !full {
                return;
            }
            after = last;
        }
    }

    /// Publishes `rows` (in order) but those published lately, and has them all deleted; `true`
    /// when every row was published.
    async fn publish(&mut self, rows: Vec<Row>, published: &Published) -> bool {
        let (again, fresh): (Vec<Row>, Vec<Row>) = rows
            .into_iter()
            .partition(|row| self.recent.contains(row.position));
        let (sent, complete) = send_all(&self.bus, fresh).await;
        for position in &sent {
            self.recent.insert(*position);
        }
        let done: Vec<i64> = again.iter().map(|row| row.position).chain(sent).collect();
        if !done.is_empty() && published.send(done).is_err() {
            tracing::debug!("the outbox deleter has stopped; the rows are swept at the next start");
        }
        complete
    }
}

/// Positions published, to be deleted.
type Published = mpsc::UnboundedSender<Vec<i64>>;

/// Deletes published rows, everything waiting in one statement; what fails is tried again with
/// the next (a row left is only published again, and stored once).
async fn delete(db: PgPool, mut published: mpsc::UnboundedReceiver<Vec<i64>>) {
    let mut undeleted: Vec<i64> = Vec::new();
    while let Some(first) = published.recv().await {
        undeleted.extend(first);
        while let Ok(more) = published.try_recv() {
            undeleted.extend(more);
        }
        let deleted = sqlx::query("DELETE FROM feed_outbox WHERE position = ANY($1)")
            .bind(&undeleted)
            .execute(&db)
            .await;
        match deleted {
            Ok(_) => undeleted.clear(),
            Err(err) => {
                tracing::warn!(error = %err, "outbox rows not deleted; the next delete tries again");
                tokio::time::sleep(SWEEP_EVERY).await;
            }
        }
    }
}

/// Sends every row, then waits for each to be stored; the positions stored before the first
/// failure (an undecodable row counts as done: it is dropped), and whether there was none.
async fn send_all(bus: &Bus, rows: Vec<Row>) -> (Vec<i64>, bool) {
    let mut sent = Vec::with_capacity(rows.len());
    let mut complete = true;
    for row in rows {
        let span = tracing::info_span!("inbox.feed", subject = %row.subject);
        let _ = span.set_parent(mainloop_bus::trace::from_traceparent(&row.traceparent));
        let event = match Envelope::from_bytes(&row.envelope) {
            Ok(event) => event,
            Err(err) => {
                tracing::error!(position = row.position, error = %err, "undecodable outbox row dropped");
                sent.push((row.position, None));
                continue;
            }
        };
        match bus.send(&row.subject, &event, Expect::Any).instrument(span).await {
            Ok(pending) => sent.push((row.position, Some(pending))),
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

/// The last [`REMEMBERED`] positions published.
#[derive(Default)]
struct Recent {
    order: VecDeque<i64>,
    set: HashSet<i64>,
}

impl Recent {
    fn insert(&mut self, position: i64) {
        if !self.set.insert(position) {
            return;
        }
        self.order.push_back(position);
        if self.order.len() > REMEMBERED
            && let Some(oldest) = self.order.pop_front()
        {
            self.set.remove(&oldest);
        }
    }

    fn contains(&self, position: i64) -> bool {
        self.set.contains(&position)
    }
}

#[cfg(test)]
mod tests {
    use super::{REMEMBERED, Recent};

    #[test]
    fn recent_positions_are_remembered_up_to_a_bound_oldest_forgotten_first() {
        let mut recent = Recent::default();
        for position in 0..i64::try_from(REMEMBERED).unwrap_or(i64::MAX) + 2 {
            recent.insert(position);
        }
        recent.insert(5);
        assert!(
            !recent.contains(0) && !recent.contains(1),
            "the two oldest are forgotten"
        );
        assert!(recent.contains(2) && recent.contains(5));
        assert_eq!(recent.order.len(), REMEMBERED);
        assert_eq!(recent.set.len(), REMEMBERED);
    }
}
