use std::time::Duration;

use mainloop_bus::request::{self, RequestError};
use mainloop_events::v1::{CommandError, ErrorCode, InboxItemResolved, RetryTask, ReviewPlan, TaskAccepted};
use mainloop_events::{Envelope, Payload, subjects};
use serde::Deserialize;
use serde_json::Value;

use super::Context;
use super::mark_read::Done;
use crate::outbox::Staged;
use crate::queries::internal;

#[derive(Debug, Deserialize)]
pub struct Respond {
    pub user_id: String,
    pub item_id: String,
    pub response: String,
}

const APPROVALS: &[&str] = &[
    "approve",
    "approved",
    "lgtm",
    "looks good",
    "ship it",
    "go ahead",
    "yes",
    "👍",
    "✅",
];

/// What a response to a plan review means. Only whole answers approve: "approve? no" is a revision.
fn plan_decision(response: &str) -> (&'static str, String) {
    let text = response.trim();
    let lower = text.to_lowercase();
    let lower = lower.trim_end_matches(['.', '!']);
    if APPROVALS.contains(&lower) {
        ("approve", String::new())
    } else if lower == "cancel" {
        ("cancel", String::new())
    } else {
        ("revise", text.to_string())
    }
}

pub async fn handle(context: Context, command: Respond) -> Result<Done, CommandError> {
    if command.response.trim().is_empty() {
        return Err(CommandError::invalid("the response is empty"));
    }
    // The row stays locked while the scheduler decides, so the projection (which resolves the
    // item when the task moves on) waits for this response to be recorded, not the other way.
    let mut tx = context.db.begin().await.map_err(internal)?;
    match decide(&context, &mut tx, &command).await {
        Ok((task_id, response)) => record_response(&context, tx, &command, &task_id, &response).await?,
        Err(err) => {
            // Rolled back now, not when the connection is next used: until then the item's lock
            // would hold back the projection and the person's next try.
            if let Err(rollback) = tx.rollback().await {
                tracing::warn!(error = %rollback, "rollback failed; the connection is dropped");
            }
            return Err(err);
        }
    }
    Ok(Done { status: "ok" })
}

/// Locks the item, checks the response and hands it to whoever acts on it; the task and the
/// response to record.
async fn decide(
    context: &Context,
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    command: &Respond,
) -> Result<(String, String), CommandError> {
    let item: Option<(Option<String>, String, String, Value)> = sqlx::query_as(
        "SELECT task_id, item_type, status, context FROM queue_items WHERE id = $1 AND user_id = $2 FOR UPDATE",
    )
    .bind(&command.item_id)
    .bind(&command.user_id)
    .fetch_optional(&mut **tx)
    .await
    .map_err(internal)?;
    let Some((task_id, item_type, status, item_context)) = item else {
        return Err(CommandError::not_found("no such queue item"));
    };
    if status != "pending" {
        return Err(CommandError::conflict(format!("this item was already {status}")));
    }
    let task_id = task_id.unwrap_or_default();
    let (user_id, response) = (command.user_id.clone(), command.response.trim().to_string());
    match item_type.as_str() {
        "plan_review" => {
            if response == "Request changes" {
                return Err(CommandError::invalid("say what should change in the plan"));
            }
            let (action, feedback) = plan_decision(&response);
            let revision = item_context
                .get("plan_revision")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            let review = ReviewPlan {
                user_id,
                task_id: task_id.clone(),
                action: action.into(),
                plan_revision: u32::try_from(revision).unwrap_or(0),
                feedback,
            };
            forward(context, "review-plan", &review).await?;
        }
        "error" => match response.to_lowercase().as_str() {
            "retry" => {
                forward(
                    context,
                    "retry-task",
                    &RetryTask {
                        user_id,
                        task_id: task_id.clone(),
                    },
                )
                .await?;
            }
            // The task already ended: dismissing (or "cancel", as items made before said)
            // only resolves the item; the task stays failed and can still be retried.
            "dismiss" | "cancel" => {}
            _ => return Err(CommandError::invalid("respond with Retry or Dismiss")),
        },
        "question" => {
            return Err(CommandError::invalid(
                "answer questions on the task card (answer-questions)",
            ));
        }
        "routing_suggestion" => {
            super::route::apply(
                context,
                &user_id,
                &task_id,
                &command.item_id,
                &response,
                &item_context,
            )
            .await?;
        }
        _ => {}
    }
    Ok((task_id, response))
}

pub(super) async fn forward<C: prost::Message>(
    context: &Context,
    name: &str,
    command: &C,
) -> Result<TaskAccepted, CommandError> {
    match request::send(
        &context.bus,
        &format!("cmd.scheduler.{name}"),
        command,
        Duration::from_secs(10),
    )
    .await
    {
        Ok(accepted) => Ok(accepted),
        Err(RequestError::Rejected { code, message }) => Err(CommandError::new(code, message)),
        Err(err) => Err(CommandError::new(ErrorCode::Unavailable, err.to_string())),
    }
}

async fn record_response(
    context: &Context,
    mut tx: sqlx::Transaction<'_, sqlx::Postgres>,
    command: &Respond,
    task_id: &str,
    response: &str,
) -> Result<(), CommandError> {
    let subject = subjects::inbox(&command.user_id).map_err(|e| CommandError::invalid(e.to_string()))?;
    let changed = sqlx::query(
        "UPDATE queue_items SET status = 'responded', response = $3, responded_at = now(), read_at = COALESCE(read_at, now()) \
         WHERE id = $1 AND user_id = $2 AND status = 'pending'",
    )
    .bind(&command.item_id)
    .bind(&command.user_id)
    .bind(response)
    .execute(&mut *tx)
    .await
    .map_err(internal)?
    .rows_affected();
    let mut staged = Staged::default();
    if changed == 1 {
        super::marks::keep(&mut tx, std::slice::from_ref(&command.item_id))
            .await
            .map_err(internal)?;
        let resolved = Envelope::new(
            &command.user_id,
            task_id,
            Payload::InboxItemResolved(InboxItemResolved {
                item_id: command.item_id.clone(),
                resolution: "responded".into(),
            }),
        );
        staged = context
            .outbox
            .add(&mut tx, &subject, &resolved)
            .await
            .map_err(internal)?;
    }
    tx.commit().await.map_err(internal)?;
    context.outbox.committed_and_published(staged).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::plan_decision;

    #[test]
    fn only_whole_answers_approve() {
        assert_eq!(plan_decision("Approve").0, "approve");
        assert_eq!(plan_decision(" LGTM! ").0, "approve");
        assert_eq!(
            plan_decision("approve? no, make it shorter"),
            ("revise", "approve? no, make it shorter".into())
        );
        assert_eq!(plan_decision("Cancel").0, "cancel");
        assert_eq!(plan_decision("Use A").0, "revise");
    }
}
