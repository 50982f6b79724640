use mainloop_events::v1::{CommandError, InboxItemRead};
use mainloop_events::{Envelope, Payload, subjects};
use serde::{Deserialize, Serialize};

use super::Context;
use crate::queries::internal;

#[derive(Debug, Deserialize)]
pub struct MarkRead {
    pub user_id: String,
    pub item_id: String,
}

#[derive(Debug, Serialize)]
pub struct Done {
    pub status: &'static str,
}

pub async fn handle(context: Context, command: MarkRead) -> Result<Done, CommandError> {
    let subject = subjects::inbox(&command.user_id).map_err(|e| CommandError::invalid(e.to_string()))?;
    let mut tx = context.db.begin().await.map_err(internal)?;
    let task_id: Option<Option<String>> = sqlx::query_scalar(
        "UPDATE queue_items SET read_at = COALESCE(read_at, now()) WHERE id = $1 AND user_id = $2 RETURNING task_id",
    )
    .bind(&command.item_id)
    .bind(&command.user_id)
    .fetch_optional(&mut *tx)
    .await
    .map_err(internal)?;
    let Some(task_id) = task_id else {
        return Err(CommandError::not_found("no such queue item"));
    };
    super::marks::keep(&mut tx, std::slice::from_ref(&command.item_id))
        .await
        .map_err(internal)?;
    let read = Envelope::new(
        &command.user_id,
        task_id.unwrap_or_default(),
        Payload::InboxItemRead(InboxItemRead {
            item_id: command.item_id.clone(),
        }),
    );
    let staged = context
        .outbox
        .add(&mut tx, &subject, &read)
        .await
        .map_err(internal)?;
    tx.commit().await.map_err(internal)?;
    context.outbox.committed_and_published(staged).await;
    Ok(Done { status: "ok" })
}
