//! Every service's migrations, on an empty database, twice.

use std::time::Duration;

use mainloop_runtime::{Secret, db};
use mainloop_testkit::TestPostgres;
use sqlx::migrate::Migrator;
use tokio_util::sync::CancellationToken;

const SERVICES: &[(&str, &Migrator)] = &[
    (mainloop_gateway::SCHEMA, &mainloop_gateway::MIGRATOR),
    (mainloop_conversation::SCHEMA, &mainloop_conversation::MIGRATOR),
    (mainloop_scheduler::SCHEMA, &mainloop_scheduler::MIGRATOR),
    (
        mainloop_worker_supervisor::SCHEMA,
        &mainloop_worker_supervisor::MIGRATOR,
    ),
    (
        mainloop_github_watcher::SCHEMA,
        &mainloop_github_watcher::MIGRATOR,
    ),
    (mainloop_inbox::SCHEMA, &mainloop_inbox::MIGRATOR),
];

#[tokio::test]
async fn every_service_migrates_an_empty_database_into_its_own_schema_idempotently() -> anyhow::Result<()> {
    let pg = TestPostgres::start()?;
    let url = Secret::new(pg.url());
    for (schema, migrator) in SERVICES {
        let pool = db::connect(
            &url,
            schema,
            2,
            Duration::from_secs(10),
            &CancellationToken::new(),
        )
        .await?;
        db::migrate(&pool, schema, migrator).await?;
        db::migrate(&pool, schema, migrator).await?;
        let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
            .fetch_one(&pool)
            .await?;
        assert_eq!(applied, i64::try_from(migrator.iter().count())?, "{schema}");
        let ledger: Option<String> = sqlx::query_scalar("SELECT to_regclass('processed_events')::text")
            .fetch_one(&pool)
            .await?;
        assert_eq!(
            ledger.as_deref(),
            Some("processed_events"),
            "{schema} has no ledger"
        );
        pool.close().await;
    }
    let pool = sqlx::PgPool::connect(&pg.url()).await?;
    let schemas: Vec<String> = sqlx::query_scalar(
        "SELECT table_schema::text FROM information_schema.tables WHERE table_name = '_sqlx_migrations' ORDER BY 1",
    )
    .fetch_all(&pool)
    .await?;
    let mut expected: Vec<String> = SERVICES.iter().map(|(s, _)| (*s).to_string()).collect();
    expected.sort();
    assert_eq!(schemas, expected, "each service has its own migration history");
    Ok(())
}
