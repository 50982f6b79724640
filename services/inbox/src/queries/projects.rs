use mainloop_events::v1::CommandError;
use serde::Deserialize;
use serde_json::Value;
use sqlx::PgPool;

use super::{internal, one};

#[derive(Debug, Deserialize)]
pub struct ListProjects {
    pub user_id: String,
    pub limit: Option<i64>,
}

/// Most recently used first; 20 unless asked, at most 100.
pub async fn list(db: PgPool, query: ListProjects) -> Result<Vec<Value>, CommandError> {
    let limit = query.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(CommandError::invalid("limit must be between 1 and 100"));
    }
    sqlx::query_scalar("SELECT body FROM api_projects WHERE user_id = $1 ORDER BY last_used_at DESC LIMIT $2")
        .bind(&query.user_id)
        .bind(limit)
        .fetch_all(&db)
        .await
        .map_err(internal)
}

#[derive(Debug, Deserialize)]
pub struct ProjectId {
    pub user_id: String,
    pub project_id: String,
}

pub async fn get(db: PgPool, query: ProjectId) -> Result<Value, CommandError> {
    one(
        &db,
        "SELECT body FROM api_projects WHERE id = $1 AND user_id = $2",
        &query.project_id,
        &query.user_id,
        "project",
    )
    .await
}
