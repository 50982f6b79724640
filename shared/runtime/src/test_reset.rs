//! Test mode's reset, for the original client's `POST /internal/test/reset`: with
//! `MAINLOOP_TEST_MODE`, each service answers `cmd.<service>.test-reset` by emptying every table
//! of its schema (not its migrations) and forgetting what it keeps in memory (the hooks it
//! registered). Never served otherwise. The gateway purges the streams and asks each service.

use std::sync::{Arc, Mutex, PoisonError};

use mainloop_bus::{Bus, request};
use mainloop_events::v1::{CommandError, ErrorCode};
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

type Hook = Box<dyn Fn() + Send + Sync>;

/// What a service forgets on a reset, besides its tables.
#[derive(Clone, Default)]
pub struct ResetHooks(Arc<Mutex<Vec<Hook>>>);

impl ResetHooks {
    pub fn add(&self, hook: impl Fn() + Send + Sync + 'static) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Box::new(hook));
    }

    fn run(&self) {
        for hook in self.0.lock().unwrap_or_else(PoisonError::into_inner).iter() {
            hook();
        }
    }
}

/// The subject a service's reset is asked on.
pub fn subject(service: &str) -> String {
    format!("cmd.{service}.test-reset")
}

/// Answers `cmd.<service>.test-reset` until `shutdown`.
pub async fn serve(
    bus: &Bus,
    db: PgPool,
    service: &str,
    hooks: ResetHooks,
    shutdown: CancellationToken,
) -> Result<(), async_nats::SubscribeError> {
    let server = request::Server::bind(bus, &subject(service), service).await?;
    let service = service.to_string();
    tokio::spawn(async move {
        server
            .run_json(shutdown, move |_: Value| {
                let (db, hooks, service) = (db.clone(), hooks.clone(), service.clone());
                async move {
                    empty_tables(&db).await.map_err(|err| {
                        tracing::error!(error = %err, "test reset failed");
                        CommandError::new(ErrorCode::Internal, "the tables could not be emptied")
                    })?;
                    hooks.run();
                    tracing::warn!(%service, "TEST MODE: every table emptied, as a test suite asked");
                    Ok::<_, CommandError>(json!({"status": "ok"}))
                }
            })
            .await;
    });
    Ok(())
}

/// Every table of the connection's schema, but the migrations' record.
async fn empty_tables(db: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::query(
        "DO $$ DECLARE t text; BEGIN \
           FOR t IN SELECT tablename FROM pg_tables WHERE schemaname = current_schema() \
             AND tablename <> '_sqlx_migrations' LOOP \
             EXECUTE format('TRUNCATE TABLE %I CASCADE', t); \
           END LOOP; \
         END $$",
    )
    .execute(db)
    .await?;
    Ok(())
}
