//! `/projects`: the repositories tasks ran on.

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api_error::ApiError;
use crate::auth::User;
use crate::extract::{Params, id};
use crate::services::inbox_query;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/projects", get(list))
        .route("/projects/{id}", get(one))
        .route("/projects/{id}/detail", get(detail))
        .route("/projects/{id}/refresh", post(refresh))
}

#[derive(Debug, Deserialize)]
struct ListParams {
    limit: Option<i64>,
}

async fn list(
    State(state): State<AppState>,
    User(user): User,
    Params(p): Params<ListParams>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        inbox_query(
            &state,
            "list-projects",
            json!({"user_id": user, "limit": p.limit}),
        )
        .await?,
    ))
}

async fn project(state: &AppState, user: &str, project: &str) -> Result<Value, ApiError> {
    inbox_query(
        state,
        "get-project",
        json!({"user_id": user, "project_id": id(project, "project")?}),
    )
    .await
}

async fn one(
    State(state): State<AppState>,
    User(user): User,
    Path(p): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(project(&state, &user, &p).await?))
}

/// The project with its tasks. Open pull requests and recent commits come from GitHub through
/// the github-watcher; until it answers such queries they are empty lists.
async fn detail(
    State(state): State<AppState>,
    User(user): User,
    Path(p): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let project = project(&state, &user, &p).await?;
    let tasks = inbox_query(
        &state,
        "list-tasks",
        json!({"user_id": user, "project_id": project["id"]}),
    )
    .await?;
    Ok(Json(
        json!({"project": project, "open_prs": [], "recent_commits": [], "tasks": tasks}),
    ))
}

async fn refresh(
    State(state): State<AppState>,
    User(user): User,
    Path(p): Path<String>,
) -> Result<Json<Value>, ApiError> {
    project(&state, &user, &p).await?;
    Ok(Json(json!({"status": "ok"})))
}
