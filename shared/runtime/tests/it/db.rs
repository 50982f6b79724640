use std::time::Duration;

use mainloop_runtime::{RuntimeError, Secret, db};
use mainloop_testkit::TestPostgres;
use tokio_util::sync::CancellationToken;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("tests/migrations");

#[tokio::test]
async fn migrations_apply_to_an_empty_database_inside_the_service_schema_and_are_idempotent()
-> anyhow::Result<()> {
    let pg = TestPostgres::start()?;
    let url = Secret::new(pg.url());
    let pool = db::connect(
        &url,
        "svc_one",
        2,
        Duration::from_secs(10),
        &CancellationToken::new(),
    )
    .await?;
    db::migrate(&pool, "svc_one", &MIGRATOR).await?;
    db::migrate(&pool, "svc_one", &MIGRATOR).await?;

    let tables: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_schema::text, table_name::text FROM information_schema.tables \
         WHERE table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2",
    )
    .fetch_all(&pool)
    .await?;
    let expected = [
        ("svc_one", "_sqlx_migrations"),
        ("svc_one", "processed_events"),
        ("svc_one", "spawned_tasks"),
    ];
    assert_eq!(tables, expected.map(|(s, t)| (s.to_string(), t.to_string())));
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(&pool)
        .await?;
    assert_eq!(applied, 1);

    // A second service gets its own schema and its own migration history.
    let other = db::connect(
        &url,
        "svc_two",
        2,
        Duration::from_secs(10),
        &CancellationToken::new(),
    )
    .await?;
    db::migrate(&other, "svc_two", &MIGRATOR).await?;
    let schemas: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT table_schema) FROM information_schema.tables WHERE table_name = '_sqlx_migrations'",
    )
    .fetch_one(&other)
    .await?;
    assert_eq!(schemas, 2);
    Ok(())
}

#[tokio::test]
async fn a_schema_name_that_could_inject_sql_is_refused() -> anyhow::Result<()> {
    let pg = TestPostgres::start()?;
    let url = Secret::new(pg.url());
    let result = db::connect(
        &url,
        "x; DROP TABLE y",
        1,
        Duration::from_secs(5),
        &CancellationToken::new(),
    )
    .await;
    assert!(matches!(result, Err(RuntimeError::BadSchema(_))), "{result:?}");
    Ok(())
}
