//! Notifications: what the person may like to know and need not act on (a plan approved, and by
//! whom; CI failed and is being fixed, round n of N; review feedback addressed; merged;
//! cancelled, and by whom). Low priority, so they sort after everything that needs the person,
//! and left out of the unread count, which counts only what needs them; the UI folds them away.

use mainloop_events::Payload;
use mainloop_events::v1::{CompletionReason, InboxItemType, Priority};
use serde_json::json;

use super::queue::NewItem;

/// Who did it, as the person reads it: "you" in mainloop, "@login on GitHub".
fn who(by: &str) -> String {
    match by.strip_prefix("github:") {
        Some(login) => format!("@{login} on GitHub"),
        None if by == "pr_closed" => "GitHub (its pull request was closed without merging)".into(),
        None if by == "expired" => "mainloop".into(),
        None => "you".into(),
    }
}

fn short_sha(sha: &str) -> &str {
    sha.get(..7).unwrap_or(sha)
}

fn note(title: String, content: String, context: serde_json::Value) -> NewItem {
    NewItem {
        item_type: InboxItemType::Notification,
        api_type: "notification",
        priority: Priority::Low,
        api_priority: "low",
        title,
        content,
        options: vec![],
        context,
    }
}

/// The notification `payload` makes, if any; `short` names the task.
pub(super) fn about(payload: &Payload, short: &str, pr_url: Option<String>) -> Option<NewItem> {
    Some(match payload {
        Payload::PlanApproved(e) => note(
            format!("Plan approved: {short}"),
            format!(
                "Revision {} of the plan was approved by {}. Implementing it now.",
                e.plan_revision,
                who(&e.approved_by)
            ),
            json!({"approved_by": e.approved_by}),
        ),
        Payload::CiFixStarted(e) => note(
            format!("CI failed: {short}"),
            if e.max_fixes > 0 {
                format!(
                    "CI failed on {}. Fixing it: round {} of {}.",
                    short_sha(&e.head_sha),
                    e.iteration,
                    e.max_fixes
                )
            } else {
                format!(
                    "CI failed on {}. Fixing it: round {}.",
                    short_sha(&e.head_sha),
                    e.iteration
                )
            },
            json!({"pr_url": pr_url, "round": e.iteration, "of": e.max_fixes}),
        ),
        Payload::FeedbackAddressed(e) => NewItem {
            item_type: InboxItemType::FeedbackAddressed,
            api_type: "feedback_addressed",
            ..note(
                format!("Feedback addressed: {short}"),
                format!(
                    "Round {}: {}{}",
                    e.round,
                    if e.summary.trim().is_empty() {
                        "the agent is done with the reviewers' comments."
                    } else {
                        e.summary.trim()
                    },
                    if e.commits > 0 {
                        format!(
                            " Pushed {}; CI checks it before review resumes.",
                            short_sha(&e.head_sha)
                        )
                    } else {
                        " Nothing changed; back in review.".to_string()
                    }
                ),
                json!({"pr_url": pr_url, "round": e.round, "head_sha": e.head_sha}),
            )
        },
        Payload::TaskCompleted(e) if e.reason() == CompletionReason::PrMerged => note(
            format!("Merged: {short}"),
            "The pull request was merged. The task is done.".into(),
            json!({"pr_url": pr_url}),
        ),
        Payload::TaskCancelled(e) => note(
            format!("Cancelled: {short}"),
            format!("Cancelled by {}: {}.", who(&e.cancelled_by), e.reason),
            json!({"cancelled_by": e.cancelled_by}),
        ),
        _ => return None,
    })
}
