//! Checkpoints of projections that keep order per aggregate (`mainloop_bus::keyed`), in the
//! service's own schema: `task_checkpoints` holds the last stream sequence applied to each
//! aggregate's rows, written in the same transaction as those rows, so a batch handed over again
//! skips what its aggregates already have; `checkpoints` holds each projection's low-water mark,
//! where reading resumes.

use std::collections::HashMap;

use sqlx::{PgConnection, PgPool};

/// The checkpoints of `subjects`, locked until the transaction ends, so two replicas never
/// apply the same aggregate's events at once. Locked in one order, so two batches cannot
/// deadlock. Unless `wait`, a checkpoint locked elsewhere (a replica, a slow transaction) fails
/// at once (SQLSTATE 55P03), so a batch of many aggregates is not held by one: they are then
/// applied each by itself, and only the held one waits.
pub async fn lock(
    tx: &mut PgConnection,
    mut subjects: Vec<String>,
    wait: bool,
) -> Result<HashMap<String, i64>, sqlx::Error> {
    subjects.sort_unstable();
    subjects.dedup();
    sqlx::query(
        "INSERT INTO task_checkpoints (subject, stream_sequence) \
         SELECT s, 0 FROM UNNEST($1::text[]) AS s ORDER BY s ON CONFLICT (subject) DO NOTHING",
    )
    .bind(&subjects)
    .execute(&mut *tx)
    .await?;
    let rows: Vec<(String, i64)> = sqlx::query_as(if wait {
        "SELECT subject, stream_sequence FROM task_checkpoints WHERE subject = ANY($1) \
         ORDER BY subject FOR UPDATE"
    } else {
        "SELECT subject, stream_sequence FROM task_checkpoints WHERE subject = ANY($1) \
         ORDER BY subject FOR UPDATE NOWAIT"
    })
    .bind(&subjects)
    .fetch_all(&mut *tx)
    .await?;
    Ok(rows.into_iter().collect())
}

/// Moves each subject's checkpoint to the last sequence applied.
pub async fn advance(tx: &mut PgConnection, applied: &HashMap<String, i64>) -> Result<(), sqlx::Error> {
    if applied.is_empty() {
        return Ok(());
    }
    let (subjects, sequences): (Vec<&str>, Vec<i64>) = applied.iter().map(|(s, q)| (s.as_str(), *q)).unzip();
    sqlx::query(
        "UPDATE task_checkpoints c SET stream_sequence = a.seq \
         FROM UNNEST($1::text[], $2::bigint[]) AS a(subject, seq) WHERE c.subject = a.subject",
    )
    .bind(subjects)
    .bind(sequences)
    .execute(&mut *tx)
    .await?;
    Ok(())
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
