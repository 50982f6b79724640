//! `/chat` and `/conversations`: the main thread. A chat turn waits for the model's answer.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use mainloop_bus::request;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api_error::ApiError;
use crate::auth::User;
use crate::extract::{Body, id};
use crate::state::AppState;

/// A turn may call the model several times (tools); the original route allowed 120 s.
const TURN_TIMEOUT: Duration = Duration::from_secs(120);

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/chat", post(chat))
        .route("/conversations", get(list))
        .route("/conversations/{id}", get(one))
}

#[derive(Debug, Deserialize)]
struct ChatBody {
    message: String,
    conversation_id: Option<String>,
}

async fn chat(
    State(state): State<AppState>,
    User(user): User,
    Body(body): Body<ChatBody>,
) -> Result<Json<Value>, ApiError> {
    let conversation_id = match body.conversation_id {
        Some(conversation) => Some(id(&conversation, "conversation")?),
        None => None,
    };
    let command = json!({"user_id": user, "conversation_id": conversation_id, "message": body.message});
    Ok(Json(
        request::send_json(
            &state.bus,
            "cmd.conversation.post-message",
            &command,
            TURN_TIMEOUT,
        )
        .await?,
    ))
}

async fn list(State(state): State<AppState>, User(user): User) -> Result<Json<Value>, ApiError> {
    let query = json!({"user_id": user});
    Ok(Json(
        request::send_json(
            &state.bus,
            "query.conversation.list",
            &query,
            crate::state::SERVICE_TIMEOUT,
        )
        .await?,
    ))
}

async fn one(
    State(state): State<AppState>,
    User(user): User,
    Path(conversation): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let query = json!({"user_id": user, "conversation_id": id(&conversation, "conversation")?});
    Ok(Json(
        request::send_json(
            &state.bus,
            "query.conversation.get",
            &query,
            crate::state::SERVICE_TIMEOUT,
        )
        .await?,
    ))
}
