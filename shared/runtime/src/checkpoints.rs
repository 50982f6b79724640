//! Checkpoints of projections that keep order per aggregate (`mainloop_bus::keyed`), in the
//! service's own schema: `task_checkpoints` holds the last stream sequence applied to each
//! aggregate's rows, claimed and moved in the same transaction as those rows ([`claim`], one
//! round trip), so a batch handed over again skips what its aggregates already have;
//! `checkpoints` holds each projection's low-water mark, where reading resumes.

use std::collections::HashMap;

use sqlx::{PgConnection, PgPool};

/// A projection's generation: a rebuild starts a new one (the service keeps them in
/// `projection_generations`). A batch holds its generation's row (`FOR KEY SHARE`, which a
/// rebuild's `FOR UPDATE` waits for) and writes nothing once another is in force.
#[derive(Debug, Clone, Copy)]
pub struct Generation<'a> {
    pub projection: &'a str,
    pub number: i64,
}

/// One statement: whether the generation holds (`fence`); the batch's subjects and their last
/// sequences (`batch`, `$1` and `$2`); the checkpoints of subjects seen for the first time
/// created at their last sequence (`created`, locked by being new; they were at 0); the others
/// locked (`locked`) and moved forward (`moved`). It answers where each checkpoint was; a row
/// `(NULL, NULL)` says the generation does not hold, and then nothing was touched.
macro_rules! claim_statement {
    ($held:expr, $lock:expr) => {
        concat!(
            "WITH fence AS (SELECT ", $held, " AS held), ",
            "batch AS (SELECT b.subject, b.last FROM UNNEST($1::text[], $2::bigint[]) AS b(subject, last), fence ",
            "WHERE fence.held), ",
            "created AS (INSERT INTO task_checkpoints (subject, stream_sequence) ",
            "SELECT subject, last FROM batch ORDER BY subject ",
            "ON CONFLICT (subject) DO NOTHING RETURNING subject, 0::bigint AS stream_sequence), ",
            "locked AS (SELECT c.subject, c.stream_sequence FROM task_checkpoints c JOIN batch b USING (subject) ",
            "ORDER BY c.subject ", $lock, "), ",
            "moved AS (UPDATE task_checkpoints c SET stream_sequence = GREATEST(c.stream_sequence, b.last) ",
            "FROM locked l JOIN batch b USING (subject) WHERE c.subject = l.subject) ",
            "SELECT subject, stream_sequence FROM locked UNION ALL ",
            "SELECT subject, stream_sequence FROM created UNION ALL ",
            "SELECT NULL, NULL FROM fence WHERE NOT fence.held"
        )
    };
}

/// Whether the generation named by `$3` (projection) and `$4` (number) is in force; a missing
/// row is generation 0.
macro_rules! generation_holds {
    () => {
        "COALESCE((SELECT generation FROM projection_generations WHERE projection = $3 FOR KEY SHARE), 0) = $4"
    };
}

/// Claims a batch for this transaction: locks the checkpoints of its subjects (`batch`: each
/// subject's last sequence in it), so two replicas never apply the same aggregate's events at
/// once, and moves each to that sequence; answers where each was (0 for a subject seen for the
/// first time), so the caller applies only the events above it. The moves count only if the
/// transaction commits, with the rows. Locked in one order, so two batches cannot deadlock.
/// Unless `wait`, a checkpoint locked elsewhere (a replica, a slow transaction) fails at once
/// (SQLSTATE 55P03), so a batch of many aggregates is not held by one: they are then applied
/// each by itself, and only the held one waits. With a `generation`, it is held in the same
/// round trip and `None` says another is in force (nothing is claimed then).
pub async fn claim(
    tx: &mut PgConnection,
    generation: Option<Generation<'_>>,
    batch: &HashMap<String, i64>,
    wait: bool,
) -> Result<Option<HashMap<String, i64>>, sqlx::Error> {
    let mut claimed = HashMap::with_capacity(batch.len());
    let mut remaining: Vec<(&str, i64)> = batch.iter().map(|(s, q)| (s.as_str(), *q)).collect();
    // A checkpoint another transaction created after a statement's snapshot is neither created
    // nor seen by it; the next statement sees it.
    for _ in 0..3 {
        let Some(found) = claim_once(tx, generation, &remaining, wait).await? else {
            return Ok(None);
        };
        remaining.retain(|(subject, _)| !found.contains_key(*subject));
        claimed.extend(found);
        if remaining.is_empty() {
            return Ok(Some(claimed));
        }
    }
    Err(sqlx::Error::Protocol(
        "checkpoints created by another transaction stayed out of sight".into(),
    ))
}

async fn claim_once(
    tx: &mut PgConnection,
    generation: Option<Generation<'_>>,
    batch: &[(&str, i64)],
    wait: bool,
) -> Result<Option<HashMap<String, i64>>, sqlx::Error> {
    let statement = match (generation.is_some(), wait) {
        (true, true) => claim_statement!(generation_holds!(), "FOR UPDATE OF c"),
        (true, false) => claim_statement!(generation_holds!(), "FOR UPDATE OF c NOWAIT"),
        (false, true) => claim_statement!("true", "FOR UPDATE OF c"),
        (false, false) => claim_statement!("true", "FOR UPDATE OF c NOWAIT"),
    };
    let (subjects, lasts): (Vec<&str>, Vec<i64>) = batch.iter().copied().unzip();
    let mut query = sqlx::query_as(statement).bind(subjects).bind(lasts);
    if let Some(generation) = generation {
        query = query.bind(generation.projection).bind(generation.number);
    }
    let rows: Vec<(Option<String>, Option<i64>)> = query.fetch_all(&mut *tx).await?;
    let mut claimed = HashMap::with_capacity(rows.len());
    for row in rows {
        match row {
            (Some(subject), Some(sequence)) => claimed.insert(subject, sequence),
            _ => return Ok(None),
        };
    }
    Ok(Some(claimed))
}

/// The last sequence of each subject in a batch of `(subject, sequence)`.
pub fn last_sequences<'a>(batch: impl IntoIterator<Item = (&'a str, u64)>) -> HashMap<String, i64> {
    let mut last: HashMap<String, i64> = HashMap::new();
    for (subject, sequence) in batch {
        let sequence = i64::try_from(sequence).unwrap_or(i64::MAX);
        let at = last.entry(subject.to_string()).or_default();
        *at = (*at).max(sequence);
    }
    last
}

/// The low-water mark of `projection`, if it stored one.
pub async fn low_water(db: &PgPool, projection: &str) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT stream_sequence FROM checkpoints WHERE projection = $1")
        .bind(projection)
        .fetch_optional(db)
        .await
}

/// Stores the low-water mark of `projection`; it only ever moves forward.
pub async fn store_low_water(
    db: impl sqlx::PgExecutor<'_>,
    projection: &str,
    sequence: u64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO checkpoints (projection, stream_sequence) VALUES ($1, $2) \
         ON CONFLICT (projection) DO UPDATE \
         SET stream_sequence = GREATEST(checkpoints.stream_sequence, excluded.stream_sequence)",
    )
    .bind(projection)
    .bind(i64::try_from(sequence).unwrap_or(i64::MAX))
    .execute(db)
    .await?;
    Ok(())
}
