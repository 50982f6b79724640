//! `/chat` and `/conversations`: the main thread. A chat turn waits for the model's answer;
//! conversations are listed, read, created, renamed and searched.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use mainloop_bus::request;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api_error::ApiError;
use crate::auth::User;
use crate::extract::{Body, Params, id};
use crate::state::AppState;

/// A turn may call the model several times (tools); the original route allowed 120 s.
const TURN_TIMEOUT: Duration = Duration::from_secs(120);

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/chat", post(chat))
        .route("/conversations", get(list).post(create))
        .route("/conversations/search", get(search))
        .route("/conversations/{id}", get(one).patch(rename))
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

#[derive(Debug, Deserialize, Default)]
struct NewConversation {
    title: Option<String>,
}

/// `POST /conversations` (`{}` or `{"title": …}`): a new, empty conversation.
async fn create(
    State(state): State<AppState>,
    User(user): User,
    Body(body): Body<NewConversation>,
) -> Result<Json<Value>, ApiError> {
    let command = json!({"user_id": user, "title": body.title});
    Ok(Json(
        request::send_json(
            &state.bus,
            "cmd.conversation.create",
            &command,
            crate::state::SERVICE_TIMEOUT,
        )
        .await?,
    ))
}

#[derive(Debug, Deserialize)]
struct Renamed {
    title: String,
}

/// `PATCH /conversations/{id}` (`{title}`).
async fn rename(
    State(state): State<AppState>,
    User(user): User,
    Path(conversation): Path<String>,
    Body(body): Body<Renamed>,
) -> Result<Json<Value>, ApiError> {
    let command =
        json!({"user_id": user, "conversation_id": id(&conversation, "conversation")?, "title": body.title});
    Ok(Json(
        request::send_json(
            &state.bus,
            "cmd.conversation.rename",
            &command,
            crate::state::SERVICE_TIMEOUT,
        )
        .await?,
    ))
}

#[derive(Debug, Deserialize)]
struct SearchParams {
    q: Option<String>,
    limit: Option<i64>,
}

/// `GET /conversations/search?q=…&limit=…`: the person's messages that match, best first.
async fn search(
    State(state): State<AppState>,
    User(user): User,
    Params(params): Params<SearchParams>,
) -> Result<Json<Value>, ApiError> {
    let query = json!({"user_id": user, "q": params.q.unwrap_or_default(), "limit": params.limit});
    Ok(Json(
        request::send_json(
            &state.bus,
            "query.conversation.search",
            &query,
            crate::state::SERVICE_TIMEOUT,
        )
        .await?,
    ))
}
