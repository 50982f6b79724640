//! `/tasks`: the original task API. Reads come from the inbox's read model; actions go to the
//! scheduler, which checks them against the task's state.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use mainloop_events::v1::{Answer, AnswerQuestions, CancelTask, RetryTask, ReviewPlan, StartImplementation};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api_error::ApiError;
use crate::auth::User;
use crate::extract::{Body, Params, id};
use crate::services::{inbox_query, scheduler};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/tasks", get(list))
        .route("/tasks/{id}", get(one))
        .route("/tasks/{id}/context", get(context))
        .route("/tasks/{id}/history", get(history))
        .route("/tasks/{id}/cancel", post(cancel))
        .route("/tasks/{id}/retry", post(retry))
        .route("/tasks/{id}/answer-questions", post(answer_questions))
        .route("/tasks/{id}/approve-plan", post(approve_plan))
        .route("/tasks/{id}/start-implementation", post(start_implementation))
}

#[derive(Debug, Deserialize)]
struct ListParams {
    status: Option<String>,
    project_id: Option<String>,
    /// A page of at most this many (default 50, at most 200)…
    limit: Option<i64>,
    /// …after this task (the last one of the page before).
    before: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    User(user): User,
    Params(p): Params<ListParams>,
) -> Result<Json<Value>, ApiError> {
    let before = p.before.as_deref().map(|b| id(b, "task")).transpose()?;
    let query = json!({"user_id": user, "status": p.status, "project_id": p.project_id,
        "limit": p.limit, "before": before});
    Ok(Json(inbox_query(&state, "list-tasks", query).await?))
}

pub(super) async fn by_id(state: &AppState, name: &str, user: &str, task: &str) -> Result<Value, ApiError> {
    inbox_query(
        state,
        name,
        json!({"user_id": user, "task_id": id(task, "task")?}),
    )
    .await
}

async fn one(
    State(state): State<AppState>,
    User(user): User,
    Path(task): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(by_id(&state, "get-task", &user, &task).await?))
}

async fn context(
    State(state): State<AppState>,
    User(user): User,
    Path(task): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(by_id(&state, "task-context", &user, &task).await?))
}

async fn history(
    State(state): State<AppState>,
    User(user): User,
    Path(task): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(by_id(&state, "task-history", &user, &task).await?))
}

fn task_id(task: &str) -> Result<String, ApiError> {
    id(task, "task")
}

async fn cancel(
    State(state): State<AppState>,
    User(user): User,
    Path(task): Path<String>,
) -> Result<Json<Value>, ApiError> {
    scheduler(
        &state,
        "cancel-task",
        &CancelTask {
            user_id: user,
            task_id: task_id(&task)?,
        },
    )
    .await?;
    Ok(Json(json!({"status": "cancelled"})))
}

async fn retry(
    State(state): State<AppState>,
    User(user): User,
    Path(task): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let task_id = task_id(&task)?;
    scheduler(
        &state,
        "retry-task",
        &RetryTask {
            user_id: user,
            task_id: task_id.clone(),
        },
    )
    .await?;
    Ok(Json(json!({"status": "retried", "task_id": task_id})))
}

#[derive(Debug, Deserialize)]
struct AnswersBody {
    #[serde(default)]
    answers: BTreeMap<String, Value>,
    #[serde(default = "answer_action")]
    action: String,
}

fn answer_action() -> String {
    "answer".into()
}

/// `answers` maps question ids to the chosen label or text (a list for multi-select).
async fn answer_questions(
    State(state): State<AppState>,
    User(user): User,
    Path(task): Path<String>,
    Body(body): Body<AnswersBody>,
) -> Result<Json<Value>, ApiError> {
    let mut answers = Vec::with_capacity(body.answers.len());
    for (question_id, value) in body.answers {
        let values = match value {
            Value::String(text) => vec![text],
            Value::Array(items) => items
                .into_iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "the answer to {question_id} must be text or a list of texts"
                )));
            }
        };
        answers.push(Answer {
            question_id,
            header: String::new(),
            values,
        });
    }
    let count = answers.len();
    let command = AnswerQuestions {
        user_id: user,
        task_id: task_id(&task)?,
        answers,
        action: body.action,
    };
    scheduler(&state, "answer-questions", &command).await?;
    Ok(Json(
        json!({"status": "ok", "message": format!("Sent {count} answer(s) to task")}),
    ))
}

#[derive(Debug, Deserialize)]
struct ApproveParams {
    action: Option<String>,
    revision_text: Option<String>,
    /// Ours: the plan revision the person saw, so a stale page cannot approve a newer plan.
    plan_revision: Option<u32>,
}

async fn approve_plan(
    State(state): State<AppState>,
    User(user): User,
    Path(task): Path<String>,
    Params(p): Params<ApproveParams>,
) -> Result<Json<Value>, ApiError> {
    let action = p.action.unwrap_or_else(|| "approve".into());
    let command = ReviewPlan {
        user_id: user,
        task_id: task_id(&task)?,
        action: action.clone(),
        plan_revision: p.plan_revision.unwrap_or(0),
        feedback: p.revision_text.unwrap_or_default(),
    };
    scheduler(&state, "review-plan", &command).await?;
    Ok(Json(json!({"status": "ok", "action": action})))
}

async fn start_implementation(
    State(state): State<AppState>,
    User(user): User,
    Path(task): Path<String>,
) -> Result<Json<Value>, ApiError> {
    scheduler(
        &state,
        "start-implementation",
        &StartImplementation {
            user_id: user,
            task_id: task_id(&task)?,
        },
    )
    .await?;
    Ok(Json(json!({"status": "ok"})))
}
