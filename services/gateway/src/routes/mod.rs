mod chat;
mod events;
mod login;
mod logs;
mod projects;
mod push;
mod queue;
mod tasks;
mod test_support;
mod web;
mod webhooks;

use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use axum::{Json, Router};
use mainloop_runtime::health;
use serde_json::json;

use crate::state::AppState;

/// Request bodies are small (a chat message, answers); anything bigger is refused with 413.
const BODY_LIMIT: usize = 64 * 1024;

pub fn app(state: AppState) -> Router {
    let api = Router::new()
        .route(
            "/api",
            get(|state: axum::extract::State<AppState>| async move {
                let auth = match state.auth.mode {
                    crate::auth::AuthMode::Local => "local",
                    crate::auth::AuthMode::Token => "token",
                    crate::auth::AuthMode::Proxy => "proxy",
                    crate::auth::AuthMode::Test => "test",
                };
                Json(json!({"message": "Mainloop API", "version": env!("CARGO_PKG_VERSION"), "auth_mode": auth}))
            }),
        )
        .merge(chat::router())
        .merge(tasks::router())
        .merge(logs::router())
        .merge(queue::router())
        .merge(projects::router())
        .merge(push::router())
        .merge(events::router())
        .merge(test_support::router())
        .fallback(|| async { crate::api_error::ApiError::not_found("no such route") })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::limits::limit,
        ));
    Router::new()
        .merge(health::router(state.health.clone()))
        .merge(web::router())
        .merge(login::router())
        .merge(webhooks::router())
        .merge(api)
        // After routing, so each request is counted under the route it matched.
        .route_layer(axum::middleware::from_fn(crate::metrics::measure))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn(crate::api_error::json_errors))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::guard::guard,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::cors::cors,
        ))
        .with_state(state)
}
