use mainloop_bus::{Delivery, Handler, HandlerError};
use mainloop_events::Payload;
use mainloop_events::v1::AuthorPermission;

use crate::store::TaskStore;
use crate::task::{Backoff, Command, GitHubComment};

/// Turns JOBS and GITHUB events about a task into commands on it. The task decides whether an
/// observation still matters (the current job and attempt, the current head commit, …).
pub struct Observe {
    pub store: TaskStore,
    pub backoff: Backoff,
    /// Review feedback rounds a task takes up.
    pub max_feedback_rounds: u32,
}

fn command_for(payload: &Payload, backoff: Backoff, max_feedback_rounds: u32) -> Option<Command> {
    Some(match payload {
        Payload::JobSucceeded(e) => Command::JobSucceeded(e.clone()),
        Payload::JobFailed(e) => Command::JobFailed {
            result: e.clone(),
            backoff,
        },
        Payload::IssueCreated(e) => Command::IssueCreated(e.clone()),
        Payload::PullRequestOpened(e) => Command::PullRequestOpened(e.clone()),
        Payload::Reopened(e) => Command::Reopened(e.clone()),
        Payload::GithubEffectFailed(e) => Command::GitHubEffectFailed(e.clone()),
        Payload::CiPassed(e) => Command::CiPassed(e.clone()),
        Payload::CiFailed(e) => Command::CiFailed(e.clone()),
        Payload::CiTimedOut(e) => Command::CiTimedOut(e.clone()),
        Payload::GithubRateLimited(e) => Command::Wait {
            reason: "GitHub rate limit".into(),
            until_ms: e.retry_at_ms,
        },
        Payload::PullRequestMerged(e) => Command::PullRequestMerged(e.clone()),
        Payload::PullRequestClosed(e) => Command::PullRequestClosed(*e),
        Payload::ReviewFeedbackReceived(e) => Command::ReviewFeedback {
            review: e.clone(),
            max_rounds: max_feedback_rounds,
        },
        Payload::PlanReactionReceived(e) => Command::GitHubReaction {
            author: e.author.clone(),
            permission: e.permission(),
            content: e.content.clone(),
        },
        Payload::IssueCommentReceived(e) => Command::GitHubComment(GitHubComment {
            comment_id: e.comment_id,
            author: e.author.clone(),
            permission: e.permission(),
            body: e.body.clone(),
            max_feedback_rounds,
        }),
        _ => return None,
    })
}

/// The GitHub login behind a steering observation that has no write access, if it is one.
fn not_a_steerer(payload: &Payload) -> Option<&str> {
    let may = |p: AuthorPermission| matches!(p, AuthorPermission::Write | AuthorPermission::Admin);
    match payload {
        Payload::IssueCommentReceived(e) if !may(e.permission()) => Some(&e.author),
        Payload::PlanReactionReceived(e) if !may(e.permission()) => Some(&e.author),
        Payload::ReviewFeedbackReceived(e)
            if !may(e.reviewer_permission()) && e.comments.iter().all(|c| !may(c.permission())) =>
        {
            Some(&e.reviewer)
        }
        _ => None,
    }
}

impl Handler for Observe {
    async fn handle(&self, delivery: Delivery) -> Result<(), HandlerError> {
        let event = &delivery.event;
        if let Some(login) = event.payload.as_ref().and_then(not_a_steerer) {
            tracing::info!(task = %event.correlation_id, %login, observed = %event.r#type,
                "ignored: only people with write access (or on GITHUB_STEERERS) steer a task");
        }
        let Some(command) = event
            .payload
            .as_ref()
            .and_then(|p| command_for(p, self.backoff, self.max_feedback_rounds))
        else {
            return Ok(());
        };
        match self
            .store
            .execute(&event.user_id, &event.correlation_id, command, &event.id)
            .await
        {
            Ok(executed) => {
                if !executed.events.is_empty() {
                    tracing::info!(task = %event.correlation_id, observed = %event.r#type, appended = executed.events.len(), "task moved on");
                }
                Ok(())
            }
            Err(err) => super::handler_error(err),
        }
    }
}
