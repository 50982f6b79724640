//! Reading the comments on a task's issue and pull request (a pull request is an issue too). The
//! issue itself is asked for first, conditionally: any new comment changes it, so an unchanged
//! thread costs one 304 (a pull request's thread costs nothing more than the pull request's own
//! poll, whose answer counts its comments). When it changed, the comments since the newest one seen are read (every
//! page), and each new one that mainloop did not write itself (its hidden marker) is reported as
//! `IssueCommentReceived` with its author's permission, then the cursor moves past it. A comment
//! is reported at least once and, by its event id, stored once.

use mainloop_bus::Expect;
use mainloop_events::v1::IssueCommentReceived;
use mainloop_events::{Envelope, Payload, subjects};
use serde_json::Value;

use super::{PollError, Poller};
use crate::permissions;

/// What every comment mainloop writes carries; such comments are never read as input.
const OUR_MARKER: &str = "<!-- mainloop:";

#[derive(Debug, sqlx::FromRow)]
pub struct Thread {
    pub task_id: String,
    pub user_id: String,
    pub owner: String,
    pub name: String,
    pub number: i64,
    pub seen_id: i64,
    pub seen_at: Option<String>,
}

pub const ACTIVE: &str = "SELECT task_id, user_id, owner, name, number, seen_id, seen_at FROM threads \
     WHERE active AND (ended_at IS NULL OR ended_at > now() - interval '7 days')";

/// Reads what is new on `thread`; `Ok(true)` when something was. `known` is whether the thread
/// changed and how many comments it has, when a pull request's own answer said so; else the
/// issue is asked.
pub async fn poll(poller: &Poller, thread: &Thread, known: Option<(bool, u64)>) -> Result<bool, PollError> {
    let number = u64::try_from(thread.number).unwrap_or_default();
    if known.is_some_and(|(_, count)| count == 0) {
        // No comments at all: nothing to read.
        if thread.seen_at.is_none() {
            mark_read(poller, thread).await?;
        }
        return Ok(false);
    }
    let changed = match known {
        Some((changed, _)) => changed,
        None => {
            poller
                .github
                .issue_fetched(&thread.owner, &thread.name, number)
                .await?
                .changed
        }
    };
    if !changed && thread.seen_at.is_some() {
        return Ok(false);
    }
    // An empty cursor: read once, nothing there yet.
    let since = thread.seen_at.as_deref().filter(|s| !s.is_empty());
    let mut comments = poller
        .github
        .comments_since(&thread.owner, &thread.name, number, since)
        .await?;
    comments.sort_by_key(|c| c["id"].as_i64().unwrap_or_default());
    let mut new = false;
    for comment in comments {
        let id = comment["id"].as_i64().unwrap_or_default();
        if id <= thread.seen_id {
            continue;
        }
        new = true;
        if !ours(&comment) {
            report(poller, thread, number, &comment).await?;
        }
        sqlx::query("UPDATE threads SET seen_id = $3, seen_at = $4 WHERE task_id = $1 AND number = $2")
            .bind(&thread.task_id)
            .bind(thread.number)
            .bind(id)
            .bind(comment["updated_at"].as_str().unwrap_or_default())
            .execute(&poller.db)
            .await
            .map_err(|e| PollError::Failed(e.to_string()))?;
    }
    if thread.seen_at.is_none() && !new {
        mark_read(poller, thread).await?;
    }
    Ok(new)
}

/// Read once, nothing there yet: later reads ask only when the thread changed.
async fn mark_read(poller: &Poller, thread: &Thread) -> Result<(), PollError> {
    sqlx::query("UPDATE threads SET seen_at = '' WHERE task_id = $1 AND number = $2 AND seen_at IS NULL")
        .bind(&thread.task_id)
        .bind(thread.number)
        .execute(&poller.db)
        .await
        .map_err(|e| PollError::Failed(e.to_string()))?;
    Ok(())
}

fn ours(comment: &Value) -> bool {
    comment["body"]
        .as_str()
        .is_some_and(|body| body.contains(OUR_MARKER))
}

async fn report(poller: &Poller, thread: &Thread, number: u64, comment: &Value) -> Result<(), PollError> {
    let failed = |e: &dyn std::fmt::Display| PollError::Failed(e.to_string());
    let author = comment["user"]["login"].as_str().unwrap_or_default();
    let permission = permissions::of(poller, &thread.owner, &thread.name, author).await?;
    let comment_id = comment["id"].as_u64().unwrap_or_default();
    let mut event = Envelope::new(
        &thread.user_id,
        &thread.task_id,
        Payload::IssueCommentReceived(IssueCommentReceived {
            issue_number: number,
            comment_id,
            author: author.to_string(),
            permission: permission as i32,
            body: comment["body"].as_str().unwrap_or_default().to_string(),
        }),
    );
    // Read again after a crash, the same comment is the same event.
    event.id = format!("github-comment-{comment_id}");
    let subject = subjects::github(&thread.user_id, &thread.task_id).map_err(|e| failed(&e))?;
    poller
        .bus
        .publish(&subject, &event, Expect::Any)
        .await
        .map_err(|e| failed(&e))?;
    Ok(())
}
