//! `/push`: Web Push for the person's browsers. `GET /push/key` gives the server's VAPID public
//! key (the `applicationServerKey` of `pushManager.subscribe`); `POST /push/subscriptions` takes
//! what `PushSubscription.toJSON()` gives (`{endpoint, keys: {p256dh, auth}}`) and
//! `DELETE /push/subscriptions` (`{endpoint}`) ends one. The inbox keeps them and sends.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api_error::ApiError;
use crate::auth::User;
use crate::extract::Body;
use crate::services::inbox_command;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/push/key", get(key)).route(
        "/push/subscriptions",
        axum::routing::post(subscribe).delete(unsubscribe),
    )
}

#[derive(Debug, Deserialize)]
struct Keys {
    p256dh: String,
    auth: String,
}

#[derive(Debug, Deserialize)]
struct NewSubscription {
    endpoint: String,
    keys: Keys,
}

#[derive(Debug, Deserialize)]
struct Ended {
    endpoint: String,
}

async fn key(State(state): State<AppState>, User(_): User) -> Result<Json<Value>, ApiError> {
    Ok(Json(inbox_command(&state, "push-key", json!({})).await?))
}

async fn subscribe(
    State(state): State<AppState>,
    User(user): User,
    Body(body): Body<NewSubscription>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let command = json!({"user_id": user, "endpoint": body.endpoint,
        "p256dh": body.keys.p256dh, "auth": body.keys.auth});
    inbox_command(&state, "push-subscribe", command).await?;
    Ok((StatusCode::CREATED, Json(json!({"status": "ok"}))))
}

async fn unsubscribe(
    State(state): State<AppState>,
    User(user): User,
    Body(body): Body<Ended>,
) -> Result<Json<Value>, ApiError> {
    let command = json!({"user_id": user, "endpoint": body.endpoint});
    Ok(Json(inbox_command(&state, "push-unsubscribe", command).await?))
}
