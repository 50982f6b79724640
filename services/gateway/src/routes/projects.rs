//! `/projects`: the repositories tasks ran on.

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api_error::ApiError;
use crate::auth::User;
use crate::extract::{Params, id};
use crate::services::{github_query, inbox_query};
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

/// The project with its tasks, and from GitHub (through the github-watcher, which keeps what it
/// fetched for five minutes) its open pull requests, newest commits and description. GitHub
/// unreachable or refusing: the lists are empty and `github_error` says why; the page still
/// shows the tasks. A pull request is mainloop's when one of the project's tasks opened it.
async fn detail(
    State(state): State<AppState>,
    User(user): User,
    Path(p): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let mut project = project(&state, &user, &p).await?;
    let tasks = inbox_query(
        &state,
        "list-tasks",
        json!({"user_id": user, "project_id": project["id"]}),
    )
    .await?;
    let looked = github_query(&state, "project", repo_of(&project, false)).await;
    let (open_prs, recent_commits, github_error) = match looked {
        Ok(github) => {
            for key in ["description", "avatar_url", "default_branch", "open_issue_count"] {
                if !github[key].is_null() {
                    project[key] = github[key].clone();
                }
            }
            (
                ours(&github["open_prs"], &tasks),
                github["recent_commits"].clone(),
                Value::Null,
            )
        }
        Err(err) => {
            tracing::warn!(error = %err, "project details from GitHub unavailable");
            (json!([]), json!([]), json!(err.to_string()))
        }
    };
    Ok(Json(
        json!({"project": project, "open_prs": open_prs, "recent_commits": recent_commits,
        "tasks": tasks, "github_error": github_error}),
    ))
}

/// `{owner, name}` of a project, for the github-watcher.
fn repo_of(project: &Value, refresh: bool) -> Value {
    json!({"owner": project["owner"], "name": project["name"], "refresh": refresh})
}

/// Each pull request marked `is_mainloop` when a task opened it (or, as the original had it,
/// its branch names mainloop or a feature).
fn ours(pulls: &Value, tasks: &Value) -> Value {
    let opened: Vec<&Value> = tasks
        .as_array()
        .map_or(&[][..], Vec::as_slice)
        .iter()
        .map(|t| &t["pr_number"])
        .filter(|n| !n.is_null())
        .collect();
    let marked: Vec<Value> = pulls
        .as_array()
        .map_or(&[][..], Vec::as_slice)
        .iter()
        .map(|pull| {
            let branch = pull["head_ref"].as_str().unwrap_or_default();
            let mut pull = pull.clone();
            pull["is_mainloop"] = json!(
                opened.contains(&&pull["number"])
                    || branch.contains("mainloop")
                    || branch.contains("feature/")
            );
            pull
        })
        .collect();
    Value::Array(marked)
}

/// Asks GitHub again now instead of waiting for what was kept to age.
async fn refresh(
    State(state): State<AppState>,
    User(user): User,
    Path(p): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let project = project(&state, &user, &p).await?;
    github_query(&state, "project", repo_of(&project, true)).await?;
    Ok(Json(json!({"status": "ok"})))
}
