//! Reading the reactions on a comment of ours (the "how to steer" comment while a plan waits):
//! GitHub's webhooks do not deliver reactions, so they are polled, conditionally (an unchanged
//! list is a 304). Each new reaction is reported once as `PlanReactionReceived` with its
//! author's permission; the scheduler decides what it means.

use mainloop_bus::Expect;
use mainloop_events::v1::PlanReactionReceived;
use mainloop_events::{Envelope, Payload, subjects};

use super::{PollError, Poller};
use crate::permissions;

#[derive(Debug, sqlx::FromRow)]
pub struct ReactionWatch {
    pub task_id: String,
    pub user_id: String,
    pub owner: String,
    pub name: String,
    pub comment_id: i64,
    pub seen_id: i64,
}

pub const ACTIVE: &str =
    "SELECT task_id, user_id, owner, name, comment_id, seen_id FROM reaction_watches WHERE active";

/// Reads what is new on the comment; `Ok(true)` when something was.
pub async fn poll(poller: &Poller, watch: &ReactionWatch) -> Result<bool, PollError> {
    let failed = |e: &dyn std::fmt::Display| PollError::Failed(e.to_string());
    let comment_id = u64::try_from(watch.comment_id).unwrap_or_default();
    let fetched = poller
        .github
        .reactions_fetched(&watch.owner, &watch.name, comment_id)
        .await?;
    if !fetched.changed {
        return Ok(false);
    }
    let mut reactions = fetched.value.as_array().cloned().unwrap_or_default();
    reactions.sort_by_key(|r| r["id"].as_i64().unwrap_or_default());
    let mut new = false;
    for reaction in reactions {
        let id = reaction["id"].as_i64().unwrap_or_default();
        if id <= watch.seen_id {
            continue;
        }
        new = true;
        let author = reaction["user"]["login"].as_str().unwrap_or_default();
        let permission = permissions::of(poller, &watch.owner, &watch.name, author).await?;
        let mut event = Envelope::new(
            &watch.user_id,
            &watch.task_id,
            Payload::PlanReactionReceived(PlanReactionReceived {
                comment_id,
                author: author.to_string(),
                permission: permission as i32,
                content: reaction["content"].as_str().unwrap_or_default().to_string(),
            }),
        );
        event.id = format!("github-reaction-{id}");
        let subject = subjects::github(&watch.user_id, &watch.task_id).map_err(|e| failed(&e))?;
        poller
            .bus
            .publish(&subject, &event, Expect::Any)
            .await
            .map_err(|e| failed(&e))?;
        sqlx::query("UPDATE reaction_watches SET seen_id = $3 WHERE task_id = $1 AND comment_id = $2")
            .bind(&watch.task_id)
            .bind(watch.comment_id)
            .bind(id)
            .execute(&poller.db)
            .await
            .map_err(|e| failed(&e))?;
    }
    Ok(new)
}
