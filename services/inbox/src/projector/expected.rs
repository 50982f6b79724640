//! A batch applied in one round trip on what this process expects. When it wrote every task of
//! the batch last (`cache`), or the batch opens a task with its spawn, the projector knows where
//! each checkpoint stands, so it folds the events in before asking Postgres and sends the claim
//! and the writes together, one statement that commits by itself. The claim there checks the
//! expectation: the projection's generation holds, and each checkpoint is where it was expected
//! (absent, for a new task) and is locked and moved on; when not, `inbox_claimed_as_expected`
//! raises, the statement changes nothing and the batch goes the long way (a transaction that
//! reads what it needs first). The check runs before the writes: it is the main query's one-time
//! filter, and the writing sub-statements run after it.

use std::collections::HashMap;

use sqlx::PgPool;

use super::TASKS_PROJECTION;
use super::tasks::{Save, save_rows};
use crate::outbox::{ReadBack, Staged, feed_rows};

/// Where a subject's checkpoint is expected (0: not there yet) and its last sequence in the batch.
pub(super) struct Expected {
    pub subject: String,
    pub at: i64,
    pub last: i64,
}

impl Expected {
    /// Each subject's expectation: where it is expected (`at`; 0 when absent) and its `last`.
    pub(super) fn all(last: &HashMap<String, i64>, at: &HashMap<String, i64>) -> Vec<Expected> {
        last.iter()
            .map(|(subject, last)| Expected {
                subject: subject.clone(),
                at: at.get(subject).copied().unwrap_or(0),
                last: *last,
            })
            .collect()
    }
}

/// Claims the batch's checkpoints as `expected` in `generation` and writes `save`, in one
/// statement; the outbox rows staged. An error (the expectation failed, a lock held elsewhere)
/// leaves everything as it was.
pub(super) async fn apply(
    db: &PgPool,
    generation: i64,
    expected: &[Expected],
    save: Save<'_>,
) -> Result<Staged, sqlx::Error> {
    let query = sqlx::query_as(concat!(
        "WITH fence AS (SELECT COALESCE((SELECT generation FROM projection_generations \
            WHERE projection = $35 FOR KEY SHARE), 0) = $36 AS held), \
         batch AS (SELECT * FROM UNNEST($37::text[], $38::bigint[], $39::bigint[]) AS b(subject, expected, last)), \
         created AS (INSERT INTO task_checkpoints (subject, stream_sequence) \
            SELECT subject, last FROM batch WHERE expected = 0 ORDER BY subject \
            ON CONFLICT (subject) DO NOTHING RETURNING subject), \
         locked AS (SELECT c.subject, c.stream_sequence FROM task_checkpoints c JOIN batch b USING (subject) \
            WHERE b.expected > 0 ORDER BY c.subject FOR UPDATE OF c NOWAIT), \
         moved AS (UPDATE task_checkpoints c SET stream_sequence = b.last FROM locked l JOIN batch b USING (subject) \
            WHERE c.subject = l.subject AND l.stream_sequence = b.expected RETURNING c.subject), \
         verdict AS (SELECT inbox_claimed_as_expected(fence.held AND \
            (SELECT count(*) FROM created) + (SELECT count(*) FROM moved) = (SELECT count(*) FROM batch)) AS ok \
            FROM fence), ",
        save_rows!(),
        " SELECT * FROM (SELECT *, true AS older FROM older UNION ALL SELECT *, false FROM new) r \
         WHERE (SELECT ok FROM verdict) ORDER BY position"
    ));
    let rows: Vec<ReadBack> = save
        .bind(query)
        .bind(TASKS_PROJECTION)
        .bind(generation)
        .bind(expected.iter().map(|e| e.subject.as_str()).collect::<Vec<_>>())
        .bind(expected.iter().map(|e| e.at).collect::<Vec<_>>())
        .bind(expected.iter().map(|e| e.last).collect::<Vec<_>>())
        .fetch_all(db)
        .await?;
    Ok(Staged::from(rows))
}
