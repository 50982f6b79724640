//! Claiming a batch's checkpoints in one statement, against real Postgres: created at first
//! sight, moved only with a commit, refused at once unless asked to wait, fenced by the
//! projection's generation, and a checkpoint another transaction creates meanwhile is seen.

use std::collections::HashMap;
use std::time::Duration;

use mainloop_runtime::checkpoints::{self, Generation};
use mainloop_runtime::{Secret, db};
use mainloop_testkit::TestPostgres;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

async fn schema(pg: &TestPostgres) -> anyhow::Result<PgPool> {
    let pool = db::connect(
        &Secret::new(pg.url()),
        "ck",
        4,
        Duration::from_secs(10),
        &CancellationToken::new(),
    )
    .await?;
    sqlx::raw_sql(
        "CREATE TABLE task_checkpoints (subject TEXT PRIMARY KEY, stream_sequence BIGINT NOT NULL); \
         CREATE TABLE projection_generations (projection TEXT PRIMARY KEY, generation BIGINT NOT NULL, \
            replay_through BIGINT NOT NULL DEFAULT 0);",
    )
    .execute(&pool)
    .await?;
    Ok(pool)
}

fn batch(items: &[(&str, i64)]) -> HashMap<String, i64> {
    items.iter().map(|(s, q)| (s.to_string(), *q)).collect()
}

async fn stored(pool: &PgPool) -> anyhow::Result<HashMap<String, i64>> {
    let rows: Vec<(String, i64)> = sqlx::query_as("SELECT subject, stream_sequence FROM task_checkpoints")
        .fetch_all(pool)
        .await?;
    Ok(rows.into_iter().collect())
}

#[tokio::test]
async fn a_claim_answers_where_each_checkpoint_was_and_moves_it_only_with_a_commit() -> anyhow::Result<()> {
    let pg = TestPostgres::start()?;
    let pool = schema(&pg).await?;

    let mut tx = pool.begin().await?;
    let was = checkpoints::claim(&mut tx, None, &batch(&[("a", 5), ("b", 7)]), false).await?;
    assert_eq!(was, Some(batch(&[("a", 0), ("b", 0)])), "first sight: at 0");
    tx.commit().await?;
    assert_eq!(stored(&pool).await?, batch(&[("a", 5), ("b", 7)]));

    let mut tx = pool.begin().await?;
    let was = checkpoints::claim(&mut tx, None, &batch(&[("a", 9), ("c", 2)]), false).await?;
    assert_eq!(was, Some(batch(&[("a", 5), ("c", 0)])));
    tx.rollback().await?;
    assert_eq!(
        stored(&pool).await?,
        batch(&[("a", 5), ("b", 7)]),
        "a rollback moves nothing"
    );

    // An older batch handed over again never moves a checkpoint back.
    let mut tx = pool.begin().await?;
    let was = checkpoints::claim(&mut tx, None, &batch(&[("b", 3)]), true).await?;
    assert_eq!(was, Some(batch(&[("b", 7)])));
    tx.commit().await?;
    assert_eq!(stored(&pool).await?["b"], 7);
    Ok(())
}

#[tokio::test]
async fn a_checkpoint_held_elsewhere_fails_a_batch_at_once_unless_it_waits() -> anyhow::Result<()> {
    let pg = TestPostgres::start()?;
    let pool = schema(&pg).await?;
    let mut first = pool.begin().await?;
    checkpoints::claim(&mut first, None, &batch(&[("a", 1)]), true).await?;
    first.commit().await?;

    let mut holder = pool.begin().await?;
    checkpoints::claim(&mut holder, None, &batch(&[("a", 4)]), true).await?;
    let mut other = pool.begin().await?;
    let refused = checkpoints::claim(&mut other, None, &batch(&[("a", 6), ("b", 6)]), false).await;
    let code = match refused {
        Err(sqlx::Error::Database(err)) => err.code().map(|c| c.to_string()),
        other => anyhow::bail!("expected a lock failure, got {other:?}"),
    };
    assert_eq!(code.as_deref(), Some("55P03"));
    other.rollback().await?;

    let waiter_pool = pool.clone();
    let waiter = tokio::spawn(async move {
        let mut tx = waiter_pool.begin().await?;
        let was = checkpoints::claim(&mut tx, None, &batch(&[("a", 6)]), true).await?;
        tx.commit().await?;
        anyhow::Ok(was)
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiter.is_finished(), "it waits for the holder");
    holder.commit().await?;
    assert_eq!(
        waiter.await??,
        Some(batch(&[("a", 4)])),
        "and sees where the holder left it"
    );
    assert_eq!(stored(&pool).await?["a"], 6);
    Ok(())
}

#[tokio::test]
async fn a_checkpoint_created_meanwhile_by_another_transaction_is_claimed_not_missed() -> anyhow::Result<()> {
    let pg = TestPostgres::start()?;
    let pool = schema(&pg).await?;
    let mut creator = pool.begin().await?;
    checkpoints::claim(&mut creator, None, &batch(&[("new", 3)]), true).await?;

    let second_pool = pool.clone();
    let second = tokio::spawn(async move {
        let mut tx = second_pool.begin().await?;
        let was = checkpoints::claim(&mut tx, None, &batch(&[("new", 8), ("other", 8)]), true).await?;
        tx.commit().await?;
        anyhow::Ok(was)
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    creator.commit().await?;
    assert_eq!(second.await??, Some(batch(&[("new", 3), ("other", 0)])));
    assert_eq!(stored(&pool).await?, batch(&[("new", 8), ("other", 8)]));
    Ok(())
}

#[tokio::test]
async fn a_claim_for_a_generation_no_longer_in_force_touches_nothing() -> anyhow::Result<()> {
    let pg = TestPostgres::start()?;
    let pool = schema(&pg).await?;
    let old = Generation {
        projection: "tasks",
        number: 0,
    };
    let mut tx = pool.begin().await?;
    assert!(
        checkpoints::claim(&mut tx, Some(old), &batch(&[("a", 1)]), false)
            .await?
            .is_some(),
        "no row: generation 0"
    );
    tx.commit().await?;

    sqlx::query("INSERT INTO projection_generations (projection, generation) VALUES ('tasks', 1)")
        .execute(&pool)
        .await?;
    let mut tx = pool.begin().await?;
    let was = checkpoints::claim(&mut tx, Some(old), &batch(&[("a", 5), ("b", 5)]), false).await?;
    assert_eq!(was, None);
    tx.commit().await?;
    assert_eq!(
        stored(&pool).await?,
        batch(&[("a", 1)]),
        "nothing created or moved"
    );

    let new = Generation {
        projection: "tasks",
        number: 1,
    };
    let mut tx = pool.begin().await?;
    let was = checkpoints::claim(&mut tx, Some(new), &batch(&[("a", 5), ("b", 5)]), false).await?;
    assert_eq!(was, Some(batch(&[("a", 1), ("b", 0)])));
    tx.commit().await?;
    Ok(())
}
