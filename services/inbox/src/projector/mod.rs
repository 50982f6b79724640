//! The projection of TASKS into the inbox's read models, in order per task and in batches
//! (`mainloop_bus::keyed`): a batch of many tasks' events is one transaction of a few round
//! trips, or one statement when this process knows where the batch's tasks stand
//! ([`expected`]). It claims its tasks' checkpoints (locked and moved in one statement), reads only the
//! rows and projects it does not already have ([`cache`]), folds every event not yet applied into them in
//! memory, and writes the rows with their status history and the feed events for the outbox
//! (one statement), and the queue items; so a batch handed over again after a restart is skipped, and each task's
//! rows always equal some prefix of its history. An event
//! the database refuses as data (bad bytes, a broken constraint) fails its batch; the keyed
//! reader then applies its task alone, an event at a time, and the refused event is
//! dead-lettered and noted on its task: one bad event stops one task's history, never
//! everyone's. The low-water mark of the whole stream is kept in `checkpoints`.
//!
//! A rebuild (`mainloop rebuild inbox`) starts a new [`generation`]: the rows are dropped and
//! TASKS is applied again from the start, without announcing on the feed what was announced
//! before; what the person did to queue items is applied again to the items the replay makes.

mod cache;
mod expected;
pub mod generation;
mod notifications;
mod queue;
pub mod rounds;
mod tasks;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use mainloop_bus::{Delivery, HandlerError, KeyedHandler};
use mainloop_events::{Envelope, Payload, subjects};
use mainloop_runtime::checkpoints;
use sqlx::{PgConnection, PgPool};

use crate::outbox::{Outbox, Staged};
use queue::Queue;
use tasks::Task;

pub const TASKS_PROJECTION: &str = "tasks";

pub struct Projector {
    db: PgPool,
    outbox: Outbox,
    /// The generation this run applies, learned at its start (`resume_after`).
    generation: AtomicI64,
    /// Events up to here were announced on the feed before a rebuild: not announced again.
    replay_through: AtomicI64,
    /// The task rows this process wrote last.
    rows: cache::Rows,
    /// The projects this process saw committed.
    projects: cache::Projects,
    /// How many batches went which way.
    ways: Ways,
}

/// How many batches were applied in one statement on what the process expected, and how many
/// in a transaction that reads first (also `mainloop_inbox_batches_total{way}` on `/metrics`).
#[derive(Default)]
struct Ways {
    one_statement: AtomicU64,
    transaction: AtomicU64,
}

impl Ways {
    fn count(&self, one_statement: bool) {
        let (counter, way) = match one_statement {
            true => (&self.one_statement, "one statement"),
            false => (&self.transaction, "transaction"),
        };
        counter.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("mainloop_inbox_batches_total", "way" => way).increment(1);
    }
}

/// Why a batch was not applied.
#[derive(Debug, thiserror::Error)]
enum BatchError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("the projection was rebuilt; this run stops and reads TASKS again from the start")]
    Rebuilt,
}

/// The rows of a batch's tasks, by task id (`None`: not spawned yet).
type TaskRows = HashMap<String, Option<Task>>;

/// A feed event waiting for the outbox: its subject, envelope and the trace of the event that
/// caused it (a batch's span continues only its first event's).
type FeedEvent = (String, Envelope, Option<String>);

/// What a batch's transaction wrote: its feed events, and each task's subject, the checkpoint
/// it moved there and its row, and the projects it named (kept once committed).
struct Applied {
    staged: Staged,
    rows: Vec<(String, i64, Task)>,
    projects: HashMap<tasks::ProjectKey, tasks::Project>,
}

/// What a batch wrote besides the task rows.
#[derive(Default)]
struct Written {
    history: Vec<tasks::StatusChange>,
    feed: Vec<FeedEvent>,
}

impl Projector {
    pub fn new(db: PgPool, outbox: Outbox) -> Self {
        Projector {
            db,
            outbox,
            generation: AtomicI64::new(-1),
            replay_through: AtomicI64::new(0),
            rows: cache::Rows::default(),
            projects: cache::Projects::default(),
            ways: Ways::default(),
        }
    }

    /// Forgets the rows and projects it keeps (a test mode's reset emptied the tables).
    pub fn forget(&self) {
        self.rows.forget();
        self.projects.forget();
    }

    /// The generation this run applies.
    pub fn generation(&self) -> i64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Applies the batch's new events in one transaction; the feed events it committed, or
    /// `None` when all were applied before.
    async fn apply_batch(&self, batch: &[Delivery]) -> Result<Option<Staged>, BatchError> {
        let generation = self.generation();
        match self.apply_as_expected(batch).await {
            Ok(Some(applied)) => {
                self.ways.count(true);
                self.rows.keep(generation, applied.rows);
                self.projects.keep(generation, applied.projects);
                return Ok(Some(applied.staged));
            }
            Ok(None) => {}
            Err(err) => tracing::debug!(error = %err, "the batch was not as expected; applied the long way"),
        }
        self.ways.count(false);
        let mut tx = self.db.begin().await?;
        match self.write_batch(&mut tx, batch).await {
            Ok(Some(applied)) => {
                tx.commit().await?;
                self.rows.keep(generation, applied.rows);
                self.projects.keep(generation, applied.projects);
                Ok(Some(applied.staged))
            }
            Ok(None) => Ok(tx.rollback().await.map(|()| None)?),
            Err(err) => {
                // Rolled back now, not when the connection is next used: until then its locks
                // (checkpoints, items) would hold back these tasks' retry and the person.
                if let Err(rollback) = tx.rollback().await {
                    tracing::warn!(error = %rollback, "rollback failed; the connection is dropped");
                }
                Err(err)
            }
        }
    }

    /// Writes the batch's new events in `tx`; `None` when all were applied before.
    async fn write_batch(
        &self,
        tx: &mut PgConnection,
        batch: &[Delivery],
    ) -> Result<Option<Applied>, BatchError> {
        let replay_through = self.replay_through.load(Ordering::Acquire);
        let last = checkpoints::last_sequences(batch.iter().map(|d| (d.subject.as_str(), d.stream_sequence)));
        let generation = checkpoints::Generation {
            projection: TASKS_PROJECTION,
            number: self.generation(),
        };
        let one_task = last.len() == 1;
        let Some(done) = checkpoints::claim(&mut *tx, Some(generation), &last, one_task).await? else {
            return Err(BatchError::Rebuilt);
        };
        let fresh: Vec<&Delivery> = batch
            .iter()
            .filter(|d| sequence(d) > done.get(&d.subject).copied().unwrap_or(0))
            .collect();
        if fresh.is_empty() {
            return Ok(None);
        }
        let mut rows = self.rows_of(&mut *tx, &fresh, &done).await?;
        let mut queue = Queue::load(&mut *tx, &touching_pending(&fresh), one_task).await?;
        // Never from what this process keeps: a project it remembers may be gone (a reset).
        let named = tasks::projects(&mut *tx, &spawns(&fresh, &rows)).await?;
        let written = fold(&fresh, &mut rows, &named.projects, &mut queue, replay_through)?;
        let save = tasks::Save::new(
            rows.values().flatten(),
            &written.history,
            &named.used,
            &written.feed,
        );
        let staged = tasks::save(&mut *tx, save).await?;
        queue.save(&mut *tx).await?;
        let rows = to_keep(last, &done, &fresh, &rows);
        Ok(Some(Applied {
            staged,
            rows,
            projects: named.projects,
        }))
    }

    /// Applies the batch in one statement when this process knows where each of its tasks
    /// stands ([`expected`]); `None` when it does not, or when the batch needs more than that
    /// statement (pending queue items, a project not known, a new queue item, events already
    /// applied), and an error when the expectation proved wrong: then nothing was written.
    async fn apply_as_expected(&self, batch: &[Delivery]) -> Result<Option<Applied>, sqlx::Error> {
        let generation = self.generation();
        let Some((at, mut rows)) = self.expectation(batch, generation) else {
            return Ok(None);
        };
        let last = checkpoints::last_sequences(batch.iter().map(|d| (d.subject.as_str(), d.stream_sequence)));
        if last
            .iter()
            .any(|(subject, last)| at.get(subject).is_none_or(|at| last <= at))
        {
            return Ok(None);
        }
        let fresh: Vec<&Delivery> = batch
            .iter()
            .filter(|d| sequence(d) > at.get(&d.subject).copied().unwrap_or(0))
            .collect();
        if !touching_pending(&fresh).is_empty() {
            return Ok(None);
        }
        let Some(named) = self.known_projects(generation, &spawns(&fresh, &rows)) else {
            return Ok(None);
        };
        let mut queue = Queue::default();
        let replay_through = self.replay_through.load(Ordering::Acquire);
        let written = fold(&fresh, &mut rows, &named.projects, &mut queue, replay_through)?;
        if !queue.unchanged() {
            return Ok(None);
        }
        let expected = expected::Expected::all(&last, &at);
        let save = tasks::Save::new(
            rows.values().flatten(),
            &written.history,
            &named.used,
            &written.feed,
        );
        let staged = expected::apply(&self.db, generation, &expected, save).await?;
        Ok(Some(Applied {
            staged,
            rows: to_keep(last, &at, &fresh, &rows),
            projects: named.projects,
        }))
    }

    /// The projects the batch's spawns name, each with its last use, when this process knows
    /// them all (in `generation`).
    fn known_projects(
        &self,
        generation: i64,
        spawns: &[(&Envelope, &mainloop_events::v1::TaskSpawned)],
    ) -> Option<tasks::Named> {
        let mut named = tasks::Named::default();
        for (event, spawn) in spawns {
            let key = tasks::project_key(event, spawn);
            let project = self.projects.known(generation, &key)?;
            named.used.retain(|(id, _)| *id != project.id);
            named.used.push((project.id.clone(), occurred_at(event)));
            named.projects.insert(key, project);
        }
        Some(named)
    }

    /// Where this process expects each subject of the batch to stand, and its task's row: the
    /// checkpoint and row it wrote last in `generation`, or none yet for a task the batch opens
    /// with its spawn; `None` when a subject is neither.
    fn expectation(&self, batch: &[Delivery], generation: i64) -> Option<(HashMap<String, i64>, TaskRows)> {
        let (mut at, mut rows) = (HashMap::new(), HashMap::new());
        for delivery in batch {
            let (subject, task) = (&delivery.subject, &delivery.event.correlation_id);
            if at.contains_key(subject) {
                continue;
            }
            if let Some((sequence, row)) = self.rows.kept(subject, task, generation) {
                at.insert(subject.clone(), sequence);
                rows.insert(task.clone(), Some(row));
            } else if matches!(delivery.event.payload, Some(Payload::TaskSpawned(_)))
                && !rows.contains_key(task)
            {
                at.insert(subject.clone(), 0);
            } else {
                return None;
            }
        }
        Some((at, rows))
    }

    /// The stored rows of the fresh events' tasks, by id: those this process wrote last and
    /// nobody moved since, as kept; none for a task whose whole history is in the batch (never
    /// applied, its spawn first); the rest read in one statement.
    async fn rows_of(
        &self,
        tx: &mut PgConnection,
        fresh: &[&Delivery],
        done: &HashMap<String, i64>,
    ) -> Result<HashMap<String, Option<Task>>, sqlx::Error> {
        let generation = self.generation();
        let (mut rows, mut unknown, mut seen) = (HashMap::new(), Vec::new(), HashSet::new());
        for delivery in fresh {
            let (subject, task) = (&delivery.subject, &delivery.event.correlation_id);
            if !seen.insert(task) {
                continue;
            }
            let claimed = done.get(subject).copied().unwrap_or(0);
            let spawned_here = matches!(delivery.event.payload, Some(Payload::TaskSpawned(_)));
            if let Some(row) = self.rows.current(subject, task, generation, claimed) {
                rows.insert(task.clone(), Some(row));
            } else if !(claimed == 0 && spawned_here) {
                unknown.push(task.clone());
            }
        }
        let stored = tasks::load(&mut *tx, &unknown).await?;
        rows.extend(stored.into_iter().map(|(id, task)| (id, Some(task))));
        Ok(rows)
    }
}

/// Folds the fresh events into their tasks' `rows` and the `queue`, in order; what the batch
/// then writes besides the rows: status changes and feed events (none for what a rebuild
/// replays up to `replay_through`).
fn fold(
    fresh: &[&Delivery],
    rows: &mut HashMap<String, Option<Task>>,
    projects: &HashMap<tasks::ProjectKey, tasks::Project>,
    queue: &mut Queue,
    replay_through: i64,
) -> Result<Written, sqlx::Error> {
    let mut written = Written::default();
    for &delivery in fresh {
        let task = rows.entry(delivery.event.correlation_id.clone()).or_default();
        let announce = sequence(delivery) > replay_through;
        apply_one(delivery, task, projects, queue, &mut written, announce)?;
    }
    Ok(written)
}

/// The tasks whose events resolve or resurface queue items they already have.
fn touching_pending(fresh: &[&Delivery]) -> Vec<String> {
    fresh
        .iter()
        .filter(|d| d.event.payload.as_ref().is_some_and(queue::touches_pending))
        .map(|d| d.event.correlation_id.clone())
        .collect()
}

/// What the process keeps of a batch once it commits: each task's subject, the checkpoint the
/// claim moved it to (`last`, or where it was if that was further) and the task's row.
fn to_keep(
    last: HashMap<String, i64>,
    done: &HashMap<String, i64>,
    fresh: &[&Delivery],
    rows: &HashMap<String, Option<Task>>,
) -> Vec<(String, i64, Task)> {
    let task_of: HashMap<&str, &str> = fresh
        .iter()
        .map(|d| (d.subject.as_str(), d.event.correlation_id.as_str()))
        .collect();
    last.into_iter()
        .filter_map(|(subject, sequence)| {
            let row = rows.get(*task_of.get(subject.as_str())?)?.clone()?;
            let moved_to = sequence.max(done.get(&subject).copied().unwrap_or(0));
            Some((subject, moved_to, row))
        })
        .collect()
}

/// The first `TaskSpawned` of each task the batch does not know yet, in stream order.
fn spawns<'a>(
    fresh: &[&'a Delivery],
    known: &HashMap<String, Option<Task>>,
) -> Vec<(&'a Envelope, &'a mainloop_events::v1::TaskSpawned)> {
    let mut seen = HashSet::new();
    fresh
        .iter()
        .filter_map(|d| match &d.event.payload {
            Some(Payload::TaskSpawned(spawned))
                if !known.contains_key(&d.event.correlation_id)
                    && seen.insert(d.event.correlation_id.as_str()) =>
            {
                Some((&d.event, spawned))
            }
            _ => None,
        })
        .collect()
}

/// Folds one event into its task and applies it to the queue, noting what goes out on the feed
/// when it is to be `announce`d (not when a rebuild replays what was announced before).
fn apply_one(
    delivery: &Delivery,
    task: &mut Option<Task>,
    projects: &HashMap<tasks::ProjectKey, tasks::Project>,
    queue: &mut Queue,
    written: &mut Written,
    announce: bool,
) -> Result<(), sqlx::Error> {
    let (event, seq) = (&delivery.event, sequence(delivery));
    let Some(payload) = &event.payload else {
        return Ok(());
    };
    let at = occurred_at(event);
    let project = match (payload, &task) {
        (Payload::TaskSpawned(spawned), None) => projects.get(&tasks::project_key(event, spawned)).cloned(),
        _ => None,
    };
    let evolved = tasks::evolve(task, event, payload, seq, at, project);
    written.history.extend(evolved.status);
    let mut feed = Vec::new();
    if evolved.changed
        && let Some(task) = task.as_ref()
    {
        feed.push(Payload::TaskCardUpdated(tasks::card(task)));
    }
    feed.extend(queue.apply(event, payload, task.as_ref()));
    if feed.is_empty() || !announce {
        return Ok(());
    }
    let subject = subjects::inbox(&event.user_id).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    for payload in feed {
        let feed_event = Envelope::new(&event.user_id, &event.correlation_id, payload).caused_by(&event.id);
        written
            .feed
            .push((subject.clone(), feed_event, delivery.traceparent.clone()));
    }
    Ok(())
}

fn sequence(delivery: &Delivery) -> i64 {
    i64::try_from(delivery.stream_sequence).unwrap_or(i64::MAX)
}

impl KeyedHandler for Projector {
    async fn apply(&self, batch: &[Delivery]) -> Result<(), HandlerError> {
        match self.apply_batch(batch).await {
            Ok(Some(staged)) => {
                self.outbox.committed(staged);
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(BatchError::Database(err)) if refused_data(&err) => {
                if let [one] = batch {
                    self.note_unapplied(&one.event, &err).await;
                }
                Err(HandlerError::Permanent(format!(
                    "the batch cannot be applied: {err}"
                )))
            }
            Err(err) => Err(HandlerError::Transient(err.to_string())),
        }
    }

    async fn resume_after(&self) -> Result<u64, HandlerError> {
        let (generation, done) = generation::current(&self.db)
            .await
            .map_err(|e| HandlerError::Transient(e.to_string()))?;
        self.replay_through
            .store(generation.replay_through, Ordering::Release);
        self.generation.store(generation.number, Ordering::Release);
        Ok(u64::try_from(done).unwrap_or(0))
    }

    async fn checkpoint(&self, sequence: u64) -> Result<(), HandlerError> {
        self.store_checkpoint(sequence)
            .await
            .map_err(|e| HandlerError::Transient(e.to_string()))
    }
}

impl Projector {
    /// Stores the low-water mark, unless a rebuild replaced this run's generation.
    async fn store_checkpoint(&self, sequence: u64) -> Result<(), BatchError> {
        let mut tx = self.db.begin().await?;
        if !generation::hold(&mut tx, self.generation()).await? {
            tx.rollback().await?;
            return Err(BatchError::Rebuilt);
        }
        checkpoints::store_low_water(&mut *tx, TASKS_PROJECTION, sequence).await?;
        tx.commit().await?;
        Ok(())
    }
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

#[cfg(test)]
mod tests;
