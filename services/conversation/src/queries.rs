//! Conversations and their messages, in the original API's shapes.

use mainloop_events::v1::{CommandError, ErrorCode};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::PgPool;

#[derive(Debug, Deserialize)]
pub struct ListConversations {
    pub user_id: String,
}

fn internal(err: sqlx::Error) -> CommandError {
    tracing::error!(error = %err, "conversation query failed");
    CommandError::new(ErrorCode::Internal, "the conversation store is unavailable")
}

/// Most recently updated first: the client opens the first.
pub async fn list(db: PgPool, query: ListConversations) -> Result<Value, CommandError> {
    let conversations: Vec<Value> = sqlx::query_scalar(
        "SELECT body FROM api_conversations WHERE user_id = $1 ORDER BY updated_at DESC LIMIT 100",
    )
    .bind(&query.user_id)
    .fetch_all(&db)
    .await
    .map_err(internal)?;
    Ok(json!({"total": conversations.len(), "conversations": conversations}))
}

#[derive(Debug, Deserialize)]
pub struct GetConversation {
    pub user_id: String,
    pub conversation_id: String,
}

pub async fn get(db: PgPool, query: GetConversation) -> Result<Value, CommandError> {
    let conversation: Option<Value> =
        sqlx::query_scalar("SELECT body FROM api_conversations WHERE id = $1 AND user_id = $2")
            .bind(&query.conversation_id)
            .bind(&query.user_id)
            .fetch_optional(&db)
            .await
            .map_err(internal)?;
    let conversation = conversation.ok_or_else(|| CommandError::not_found("no such conversation"))?;
    let messages: Vec<Value> =
        sqlx::query_scalar("SELECT body FROM api_messages WHERE conversation_id = $1 ORDER BY created_at")
            .bind(&query.conversation_id)
            .fetch_all(&db)
            .await
            .map_err(internal)?;
    Ok(json!({"conversation": conversation, "messages": messages}))
}
