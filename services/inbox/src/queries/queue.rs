use mainloop_events::v1::CommandError;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::PgPool;

use super::{internal, one};

#[derive(Debug, Deserialize)]
pub struct ListQueue {
    pub user_id: String,
    pub status: Option<String>,
    #[serde(default)]
    pub unread_only: bool,
    pub task_id: Option<String>,
    /// A page: at most this many (default 50, at most 200)…
    pub limit: Option<i64>,
    /// …of those after this item in the list (the last of the page before).
    pub before: Option<String>,
}

/// Urgent first, then newest, a page at a time (keyset: the page after `before`). Status
/// defaults to pending.
pub async fn list(db: PgPool, query: ListQueue) -> Result<Vec<Value>, CommandError> {
    let status = query.status.unwrap_or_else(|| "pending".into());
    if !["pending", "responded", "expired", "cancelled"].contains(&status.as_str()) {
        return Err(CommandError::invalid(format!("unknown queue status {status:?}")));
    }
    let limit = super::page_size(query.limit)?;
    let page: Vec<(bool, Option<Value>)> = sqlx::query_as(
        "WITH anchor AS (SELECT rank, created_at, id FROM api_queue_items WHERE id = $5 AND user_id = $1) \
         SELECT $5::text IS NULL OR EXISTS (SELECT 1 FROM anchor), q.body FROM (SELECT 1) one LEFT JOIN LATERAL \
           (SELECT body, rank, created_at, id FROM api_queue_items WHERE user_id = $1 AND status = $2 \
             AND (NOT $3 OR read_at IS NULL) AND ($4::text IS NULL OR task_id = $4) \
             AND ($5::text IS NULL OR rank > (SELECT rank FROM anchor) OR (rank = (SELECT rank FROM anchor) \
               AND (created_at, id) < (SELECT created_at, id FROM anchor))) \
             ORDER BY rank, created_at DESC, id DESC LIMIT $6) q ON true \
         ORDER BY q.rank, q.created_at DESC, q.id DESC",
    )
    .bind(&query.user_id)
    .bind(&status)
    .bind(query.unread_only)
    .bind(&query.task_id)
    .bind(&query.before)
    .bind(limit)
    .fetch_all(&db)
    .await
    .map_err(internal)?;
    if page.first().is_some_and(|(found, _)| !found) {
        return Err(CommandError::not_found("no such item to page from (before)"));
    }
    Ok(page.into_iter().filter_map(|(_, body)| body).collect())
}

#[derive(Debug, Deserialize)]
pub struct ItemId {
    pub user_id: String,
    pub item_id: String,
}

pub async fn get(db: PgPool, query: ItemId) -> Result<Value, CommandError> {
    one(
        &db,
        "SELECT body FROM api_queue_items WHERE id = $1 AND user_id = $2",
        &query.item_id,
        &query.user_id,
        "queue item",
    )
    .await
}

#[derive(Debug, Deserialize)]
pub struct UserOnly {
    pub user_id: String,
}

#[derive(Debug, Serialize)]
pub struct Count {
    pub count: i64,
}

/// Pending items that need the person and that they have not read; notifications need nothing
/// and are not counted.
pub async fn unread_count(db: PgPool, query: UserOnly) -> Result<Count, CommandError> {
    let count = sqlx::query_scalar(
        "SELECT count(*) FROM queue_items WHERE user_id = $1 AND status = 'pending' AND read_at IS NULL \
         AND item_type NOT IN ('notification', 'feedback_addressed')",
    )
    .bind(&query.user_id)
    .fetch_one(&db)
    .await
    .map_err(internal)?;
    Ok(Count { count })
}
