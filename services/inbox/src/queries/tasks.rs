use mainloop_events::v1::CommandError;
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::PgPool;

use super::{internal, one};

#[derive(Debug, Deserialize)]
pub struct ListTasks {
    pub user_id: String,
    pub status: Option<String>,
    pub project_id: Option<String>,
    /// A page: at most this many (default 50, at most 200)…
    pub limit: Option<i64>,
    /// …of those after this task in the list (the last of the page before).
    pub before: Option<String>,
}

/// The user's tasks, newest first, a page at a time (keyset: the page after `before`).
pub async fn list(db: PgPool, query: ListTasks) -> Result<Vec<Value>, CommandError> {
    let limit = super::page_size(query.limit)?;
    let page: Vec<(bool, Option<Value>)> = sqlx::query_as(
        "WITH anchor AS (SELECT created_at, id FROM api_tasks WHERE id = $4 AND user_id = $1) \
         SELECT $4::text IS NULL OR EXISTS (SELECT 1 FROM anchor), t.body FROM (SELECT 1) one LEFT JOIN LATERAL \
           (SELECT body, created_at, id FROM api_tasks WHERE user_id = $1 AND ($2::text IS NULL OR status = $2) \
             AND ($3::text IS NULL OR project_id = $3) \
             AND ($4::text IS NULL OR (created_at, id) < (SELECT created_at, id FROM anchor)) \
             ORDER BY created_at DESC, id DESC LIMIT $5) t ON true \
         ORDER BY t.created_at DESC, t.id DESC",
    )
    .bind(&query.user_id)
    .bind(&query.status)
    .bind(&query.project_id)
    .bind(&query.before)
    .bind(limit)
    .fetch_all(&db)
    .await
    .map_err(internal)?;
    if page.first().is_some_and(|(found, _)| !found) {
        return Err(CommandError::not_found("no such task to page from (before)"));
    }
    Ok(page.into_iter().filter_map(|(_, body)| body).collect())
}

#[derive(Debug, Deserialize)]
pub struct TaskId {
    pub user_id: String,
    pub task_id: String,
}

pub async fn get(db: PgPool, query: TaskId) -> Result<Value, CommandError> {
    one(
        &db,
        "SELECT body FROM api_tasks WHERE id = $1 AND user_id = $2",
        &query.task_id,
        &query.user_id,
        "task",
    )
    .await
}

/// `{task, queue_items}`: the task and every queue item it raised.
pub async fn context(db: PgPool, query: TaskId) -> Result<Value, CommandError> {
    let task = get(
        db.clone(),
        TaskId {
            user_id: query.user_id.clone(),
            task_id: query.task_id.clone(),
        },
    )
    .await?;
    let items: Vec<Value> = sqlx::query_scalar(
        "SELECT body FROM api_queue_items WHERE task_id = $1 AND user_id = $2 ORDER BY created_at",
    )
    .bind(&query.task_id)
    .bind(&query.user_id)
    .fetch_all(&db)
    .await
    .map_err(internal)?;
    Ok(json!({ "task": task, "queue_items": items }))
}

/// Every status the task passed through, in order.
pub async fn history(db: PgPool, query: TaskId) -> Result<Vec<Value>, CommandError> {
    get(
        db.clone(),
        TaskId {
            user_id: query.user_id.clone(),
            task_id: query.task_id.clone(),
        },
    )
    .await?;
    sqlx::query_scalar(
        "SELECT json_build_object('status', status, 'event_type', event_type, 'occurred_at', api_time(occurred_at)) \
         FROM task_history WHERE task_id = $1 ORDER BY stream_sequence",
    )
    .bind(&query.task_id)
    .fetch_all(&db)
    .await
    .map_err(internal)
}
