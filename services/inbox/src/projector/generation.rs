//! The projection's generation. A rebuild ([`start_new`]) drops every derived row and starts a
//! new generation in one transaction; each batch and checkpoint holds the generation row it was
//! read for (`FOR KEY SHARE`, which the rebuild's `FOR UPDATE` waits for and then makes stale),
//! so a replica still working for the old generation writes nothing into the new rows, and
//! notices within a second ([`super::rounds`]) that it must read TASKS again from the start.

use sqlx::{PgConnection, PgPool};

use super::TASKS_PROJECTION;

/// One run of the projection over TASKS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Generation {
    pub number: i64,
    /// Events up to this sequence were announced on the feed before the rebuild.
    pub replay_through: i64,
}

/// The generation now in force, and where it has got to (0: nothing applied yet).
pub(super) async fn current(db: &PgPool) -> Result<(Generation, i64), sqlx::Error> {
    // Generation 0 when its row is missing (a test mode's reset empties every table).
    let (number, replay_through, done): (i64, i64, Option<i64>) = sqlx::query_as(
        "SELECT COALESCE(g.generation, 0), COALESCE(g.replay_through, 0), c.stream_sequence \
         FROM (SELECT $1::text AS projection) p \
         LEFT JOIN projection_generations g ON g.projection = p.projection \
         LEFT JOIN checkpoints c ON c.projection = p.projection",
    )
    .bind(TASKS_PROJECTION)
    .fetch_one(db)
    .await?;
    Ok((
        Generation {
            number,
            replay_through,
        },
        done.unwrap_or(0),
    ))
}

/// Holds generation `number` until the transaction ends; `false` when a rebuild replaced it.
/// A missing row is generation 0.
pub(super) async fn hold(tx: &mut PgConnection, number: i64) -> Result<bool, sqlx::Error> {
    let now: Option<i64> = sqlx::query_scalar(
        "SELECT generation FROM projection_generations WHERE projection = $1 FOR KEY SHARE",
    )
    .bind(TASKS_PROJECTION)
    .fetch_optional(tx)
    .await?;
    Ok(now.unwrap_or(0) == number)
}

/// Drops the rows derived from TASKS (what the person did to queue items is kept apart and
/// stays) and starts a new generation that announces nothing up to `replay_through`.
pub async fn start_new(db: &PgPool, replay_through: u64) -> Result<Generation, sqlx::Error> {
    let mut tx = db.begin().await?;
    sqlx::query(
        "INSERT INTO projection_generations (projection, generation, replay_through) \
         VALUES ($1, 0, 0) ON CONFLICT (projection) DO NOTHING",
    )
    .bind(TASKS_PROJECTION)
    .execute(&mut *tx)
    .await?;
    sqlx::query("SELECT 1 FROM projection_generations WHERE projection = $1 FOR UPDATE")
        .bind(TASKS_PROJECTION)
        .execute(&mut *tx)
        .await?;
    let number: i64 = sqlx::query_scalar(
        "UPDATE projection_generations SET generation = generation + 1, replay_through = $2 \
         WHERE projection = $1 RETURNING generation",
    )
    .bind(TASKS_PROJECTION)
    .bind(i64::try_from(replay_through).unwrap_or(i64::MAX))
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query("TRUNCATE task_history, queue_items, tasks, projects, task_checkpoints")
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM checkpoints WHERE projection = $1")
        .bind(TASKS_PROJECTION)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Generation {
        number,
        replay_through: i64::try_from(replay_through).unwrap_or(i64::MAX),
    })
}
