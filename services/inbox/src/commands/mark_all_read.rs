use mainloop_events::v1::{CommandError, InboxItemRead};
use mainloop_events::{Envelope, Payload, subjects};
use serde::Deserialize;

use super::Context;
use super::mark_read::Done;
use crate::queries::internal;

#[derive(Debug, Deserialize)]
pub struct MarkAllRead {
    pub user_id: String,
}

pub async fn handle(context: Context, command: MarkAllRead) -> Result<Done, CommandError> {
    let subject = subjects::inbox(&command.user_id).map_err(|e| CommandError::invalid(e.to_string()))?;
    let mut tx = context.db.begin().await.map_err(internal)?;
    let read: Vec<(String, Option<String>)> = sqlx::query_as(
        "UPDATE queue_items SET read_at = now() WHERE user_id = $1 AND read_at IS NULL RETURNING id, task_id",
    )
    .bind(&command.user_id)
    .fetch_all(&mut *tx)
    .await
    .map_err(internal)?;
    let ids: Vec<String> = read.iter().map(|(id, _)| id.clone()).collect();
    super::marks::keep(&mut tx, &ids).await.map_err(internal)?;
    let events: Vec<(String, Envelope, Option<String>)> = read
        .into_iter()
        .map(|(item_id, task_id)| {
            let event = Envelope::new(
                &command.user_id,
                task_id.unwrap_or_default(),
                Payload::InboxItemRead(InboxItemRead { item_id }),
            );
            (subject.clone(), event, None)
        })
        .collect();
    let staged = context.outbox.add_all(&mut tx, &events).await.map_err(internal)?;
    tx.commit().await.map_err(internal)?;
    context.outbox.committed_and_published(staged).await;
    Ok(Done { status: "ok" })
}
