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
}

/// The user's tasks, newest first, at most 50.
pub async fn list(db: PgPool, query: ListTasks) -> Result<Vec<Value>, CommandError> {
    sqlx::query_scalar(
        "SELECT body FROM api_tasks WHERE user_id = $1 AND ($2::text IS NULL OR status = $2) \
         AND ($3::text IS NULL OR project_id = $3) ORDER BY created_at DESC LIMIT 50",
    )
    .bind(&query.user_id)
    .bind(&query.status)
    .bind(&query.project_id)
    .fetch_all(&db)
    .await
    .map_err(internal)
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
