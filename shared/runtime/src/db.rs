//! Postgres for one service: a pool whose connections see only the service's own schema (its
//! `search_path`), and that schema's migrations, recorded in the schema's own
//! `_sqlx_migrations` table. No service reads another's schema.

use std::str::FromStr;
use std::time::{Duration, Instant};

use sqlx::PgPool;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio_util::sync::CancellationToken;

use crate::{RuntimeError, Secret};

/// A pooled connection idle this long is pinged before it is used again.
const PING_WHEN_IDLE_FOR: Duration = Duration::from_secs(5);

fn check_schema(schema: &str) -> Result<(), RuntimeError> {
    let ok = !schema.is_empty() && schema.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(RuntimeError::BadSchema(schema.to_string()))
    }
}

/// Connects (retrying while Postgres starts, until `give_up_after` or `shutdown`), creates
/// `schema` if needed, and confines every connection to it.
pub async fn connect(
    url: &Secret,
    schema: &str,
    max_connections: u32,
    give_up_after: Duration,
    shutdown: &CancellationToken,
) -> Result<PgPool, RuntimeError> {
    check_schema(schema)?;
    let options = PgConnectOptions::from_str(url.expose())?
        .application_name(&format!("mainloop-{schema}"))
        .options([("search_path", schema)]);
    let deadline = Instant::now() + give_up_after;
    let mut delay = Duration::from_millis(100);
    let pool = loop {
        let attempt = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            // sqlx pings every connection it hands out: a round trip before each query. Only a
            // connection idle for a while is asked whether it still lives; a busy one just ran.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for > PING_WHEN_IDLE_FOR {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            })
            .connect_with(options.clone())
            .await;
        match attempt {
            Ok(pool) => break pool,
            Err(err) if Instant::now() < deadline && !shutdown.is_cancelled() => {
                tracing::warn!(%schema, error = %err, retry_in = ?delay, "Postgres not reachable yet");
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = shutdown.cancelled() => {}
                }
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            Err(err) => return Err(err.into()),
        }
    };
    create_schema(&pool, schema).await?;
    Ok(pool)
}

async fn create_schema(pool: &PgPool, schema: &str) -> Result<(), RuntimeError> {
    // Replicas starting together may race to create it; the loser sees it exists.
    // `schema` passed check_schema: lowercase letters and underscores only.
    let sql = sqlx::AssertSqlSafe(format!("CREATE SCHEMA IF NOT EXISTS {schema}"));
    if let Err(err) = sqlx::query(sql).execute(pool).await {
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
                .bind(schema)
                .fetch_one(pool)
                .await?;
        if !exists {
            return Err(err.into());
        }
    }
    Ok(())
}

/// Applies the service's pending migrations. Safe to run from every replica at every start:
/// sqlx holds an advisory lock while it migrates and skips what is already applied.
pub async fn migrate(pool: &PgPool, schema: &str, migrator: &Migrator) -> Result<(), RuntimeError> {
    migrator.run(pool).await.map_err(|source| RuntimeError::Migrate {
        schema: schema.to_string(),
        source,
    })
}
