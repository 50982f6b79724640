//! Calls to the services behind the gateway.

use mainloop_bus::request;
use mainloop_events::v1::TaskAccepted;
use serde_json::Value;

use crate::api_error::ApiError;
use crate::state::{AppState, SERVICE_TIMEOUT};

/// A read-model query to the inbox (`query.inbox.<name>`).
pub async fn inbox_query(state: &AppState, name: &str, query: Value) -> Result<Value, ApiError> {
    Ok(request::send_json(
        &state.bus,
        &format!("query.inbox.{name}"),
        &query,
        SERVICE_TIMEOUT,
    )
    .await?)
}

/// An action on queue items (`cmd.inbox.<name>`).
pub async fn inbox_command(state: &AppState, name: &str, command: Value) -> Result<Value, ApiError> {
    Ok(request::send_json(
        &state.bus,
        &format!("cmd.inbox.{name}"),
        &command,
        SERVICE_TIMEOUT,
    )
    .await?)
}

/// A query to the github-watcher (`query.github.<name>`), which asks GitHub.
pub async fn github_query(
    state: &AppState,
    name: &str,
    query: Value,
) -> Result<Value, request::RequestError> {
    request::send_json(
        &state.bus,
        &format!("query.github.{name}"),
        &query,
        SERVICE_TIMEOUT,
    )
    .await
}

/// A task command to the scheduler (`cmd.scheduler.<name>`).
pub async fn scheduler<C: prost::Message>(
    state: &AppState,
    name: &str,
    command: &C,
) -> Result<TaskAccepted, ApiError> {
    Ok(request::send(
        &state.bus,
        &format!("cmd.scheduler.{name}"),
        command,
        SERVICE_TIMEOUT,
    )
    .await?)
}
