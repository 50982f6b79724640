//! `/queue`: the attention queue.

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api_error::ApiError;
use crate::auth::User;
use crate::extract::{Body, Params, id};
use crate::services::{inbox_command, inbox_query};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/queue", get(list))
        .route("/queue/unread/count", get(unread_count))
        .route("/queue/read-all", post(read_all))
        .route("/queue/{id}", get(one))
        .route("/queue/{id}/read", post(read))
        .route("/queue/{id}/respond", post(respond))
}

#[derive(Debug, Deserialize)]
struct ListParams {
    status: Option<String>,
    #[serde(default)]
    unread_only: bool,
    task_id: Option<String>,
    /// A page of at most this many (default 50, at most 200)…
    limit: Option<i64>,
    /// …after this item (the last one of the page before).
    before: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    User(user): User,
    Params(p): Params<ListParams>,
) -> Result<Json<Value>, ApiError> {
    let before = p.before.as_deref().map(|b| id(b, "queue item")).transpose()?;
    let query = json!({"user_id": user, "status": p.status, "unread_only": p.unread_only, "task_id": p.task_id,
        "limit": p.limit, "before": before});
    Ok(Json(inbox_query(&state, "list-queue", query).await?))
}

async fn unread_count(State(state): State<AppState>, User(user): User) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        inbox_query(&state, "unread-count", json!({"user_id": user})).await?,
    ))
}

async fn one(
    State(state): State<AppState>,
    User(user): User,
    Path(item): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let query = json!({"user_id": user, "item_id": id(&item, "queue item")?});
    Ok(Json(inbox_query(&state, "get-queue-item", query).await?))
}

async fn read(
    State(state): State<AppState>,
    User(user): User,
    Path(item): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let command = json!({"user_id": user, "item_id": id(&item, "queue item")?});
    Ok(Json(inbox_command(&state, "mark-read", command).await?))
}

async fn read_all(State(state): State<AppState>, User(user): User) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        inbox_command(&state, "mark-all-read", json!({"user_id": user})).await?,
    ))
}

#[derive(Debug, Deserialize)]
struct RespondBody {
    response: String,
    #[serde(default)]
    #[allow(dead_code)]
    metadata: Value,
}

async fn respond(
    State(state): State<AppState>,
    User(user): User,
    Path(item): Path<String>,
    Body(body): Body<RespondBody>,
) -> Result<Json<Value>, ApiError> {
    let command = json!({"user_id": user, "item_id": id(&item, "queue item")?, "response": body.response});
    inbox_command(&state, "respond", command).await?;
    Ok(Json(json!({"status": "ok", "message": "Response sent"})))
}
