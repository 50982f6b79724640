//! Read-model queries, answered over NATS request/reply as JSON on `query.inbox.<name>`. Every
//! query names its user and sees only that user's rows; another user's id is "not found".

mod projects;
mod queue;
mod tasks;

use std::future::Future;

use mainloop_bus::{Bus, request};
use mainloop_events::v1::CommandError;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sqlx::PgPool;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub async fn serve_all(
    bus: &Bus,
    db: &PgPool,
    shutdown: &CancellationToken,
    tasks: &mut JoinSet<Result<(), String>>,
) -> Result<(), async_nats::SubscribeError> {
    let s = Serve { bus, db, shutdown };
    s.query(tasks, "list-tasks", self::tasks::list).await?;
    s.query(tasks, "get-task", self::tasks::get).await?;
    s.query(tasks, "task-context", self::tasks::context).await?;
    s.query(tasks, "task-history", self::tasks::history).await?;
    s.query(tasks, "list-queue", queue::list).await?;
    s.query(tasks, "get-queue-item", queue::get).await?;
    s.query(tasks, "unread-count", queue::unread_count).await?;
    s.query(tasks, "list-projects", projects::list).await?;
    s.query(tasks, "get-project", projects::get).await?;
    Ok(())
}

struct Serve<'a> {
    bus: &'a Bus,
    db: &'a PgPool,
    shutdown: &'a CancellationToken,
}

impl Serve<'_> {
    async fn query<Req, Resp, Fut>(
        &self,
        tasks: &mut JoinSet<Result<(), String>>,
        name: &'static str,
        handler: fn(PgPool, Req) -> Fut,
    ) -> Result<(), async_nats::SubscribeError>
    where
        Req: DeserializeOwned + Send + 'static,
        Resp: Serialize + 'static,
        Fut: Future<Output = Result<Resp, CommandError>> + Send + 'static,
    {
        let server = request::Server::bind(self.bus, &format!("query.inbox.{name}"), "inbox").await?;
        let (db, shutdown) = (self.db.clone(), self.shutdown.clone());
        tasks.spawn(async move {
            server
                .run_json(shutdown, move |query: Req| handler(db.clone(), query))
                .await;
            Ok(())
        });
        Ok(())
    }
}

pub(crate) fn internal(err: sqlx::Error) -> CommandError {
    tracing::error!(error = %err, "query failed");
    CommandError::new(
        mainloop_events::v1::ErrorCode::Internal,
        "the read model is unavailable",
    )
}

/// The single row `sql` finds for `(id, user)`, or not found.
pub(crate) async fn one(
    db: &PgPool,
    sql: &'static str,
    id: &str,
    user_id: &str,
    what: &str,
) -> Result<Value, CommandError> {
    sqlx::query_scalar::<_, Value>(sql)
        .bind(id)
        .bind(user_id)
        .fetch_optional(db)
        .await
        .map_err(internal)?
        .ok_or_else(|| CommandError::not_found(format!("no such {what}")))
}

/// Items a list page holds when the client does not say: as many as the original's lists held.
const PAGE: i64 = 50;
/// The most a page may hold.
const PAGE_MOST: i64 = 200;

/// The page size asked for, checked.
pub(crate) fn page_size(asked: Option<i64>) -> Result<i64, CommandError> {
    match asked {
        None => Ok(PAGE),
        Some(size) if (1..=PAGE_MOST).contains(&size) => Ok(size),
        Some(_) => Err(CommandError::invalid(format!(
            "limit must be between 1 and {PAGE_MOST}"
        ))),
    }
}
