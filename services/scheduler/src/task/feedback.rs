//! The review loop, pure: what reviewers ask on the pull request becomes rounds of feedback.
//!
//! A round takes up every review text, inline review comment and conversation comment addressed
//! to mainloop (`/revise …` or `@mainloop`) that a person with write access left and that no
//! earlier round took up (each is taken up once per task, keyed `review-<id>`, `rc-<id>`,
//! `c-<id>`). In review, feedback starts a round at once (with anything queued); while a job or
//! CI still works on the pull request it is queued for the next round; beyond the round limit
//! it is left to the person. While a round runs, each comment it took up gets 👀; when the job
//! is done, each inline comment gets a reply on its thread, and a round that took up anything
//! else ends with one summary comment on the pull request.

use mainloop_events::Payload;
use mainloop_events::v1::{
    AddReaction, AuthorPermission, FeedbackAddressingStarted, PostComment, ReactionTarget,
    ReplyToReviewComment, ReviewFeedbackQueued, ReviewFeedbackReceived, TaskStatus,
    git_hub_effect_requested::Effect,
};

use super::Task;
use super::follow_ups::{effect, requested};
use super::state::FeedbackRound;
use super::text::{feedback_reply, feedback_summary};

fn writes(permission: i32) -> bool {
    matches!(
        AuthorPermission::try_from(permission).unwrap_or_default(),
        AuthorPermission::Write | AuthorPermission::Admin
    )
}

/// The part of a review on the task's pull request that no round took up yet, from people who
/// may write; an approval asks nothing.
pub fn from_review(task: &Task, review: &ReviewFeedbackReceived) -> Option<FeedbackAddressingStarted> {
    if review.pr_number != task.pr_number || review.review_state == "APPROVED" {
        return None;
    }
    let mut round = FeedbackAddressingStarted::default();
    let review_key = format!("review-{}", review.review_id);
    if review.review_id > 0
        && writes(review.reviewer_permission)
        && !review.review_body.trim().is_empty()
        && !task.feedback_taken.contains(&review_key)
    {
        round.report.push_str(&format!(
            "Review by @{} ({}):\n{}\n\n",
            review.reviewer,
            review.review_state.to_lowercase().replace('_', " "),
            review.review_body.trim()
        ));
        round.comment_ids.push(review_key);
    }
    for comment in &review.comments {
        let key = format!("rc-{}", comment.comment_id);
        if !writes(comment.permission) || task.feedback_taken.contains(&key) {
            continue;
        }
        round.report.push_str(&format!(
            "@{} on {} line {}:\n```diff\n{}\n```\n{}\n\n",
            comment.author,
            comment.path,
            comment.line,
            comment.diff_hunk.trim_end(),
            comment.body.trim()
        ));
        round.comment_ids.push(key);
        round.review_comment_ids.push(comment.comment_id);
    }
    (!round.comment_ids.is_empty()).then_some(round)
}

/// A conversation comment addressed to mainloop (its author's permission is checked by the
/// caller, as for every steering comment).
pub fn from_comment(
    task: &Task,
    comment_id: u64,
    author: &str,
    text: &str,
) -> Option<FeedbackAddressingStarted> {
    let key = format!("c-{comment_id}");
    (!task.feedback_taken.contains(&key)).then(|| FeedbackAddressingStarted {
        comment_ids: vec![key],
        report: format!("@{author} on the pull request:\n{}\n\n", text.trim()),
        conversation_comment_ids: vec![comment_id],
        github_comment_id: comment_id,
        ..Default::default()
    })
}

/// Starts a round with `feedback` (and whatever was queued) when the task is in review, queues
/// it while the pull request is being worked on, and leaves it to the person past `max_rounds`.
pub fn take_up(task: &Task, feedback: FeedbackAddressingStarted, max_rounds: u32) -> Vec<Payload> {
    if task.feedback_rounds >= max_rounds || task.pr_number == 0 {
        return vec![];
    }
    match task.status {
        TaskStatus::UnderReview => {
            let feedback = match task.feedback_queued.clone() {
                Some(queued) => merged(queued, feedback),
                None => feedback,
            };
            vec![Payload::FeedbackAddressingStarted(FeedbackAddressingStarted {
                round: task.feedback_rounds + 1,
                ..feedback
            })]
        }
        TaskStatus::Implementing => vec![Payload::ReviewFeedbackQueued(ReviewFeedbackQueued {
            feedback: Some(feedback),
        })],
        _ => vec![],
    }
}

/// Two pieces of feedback as one round.
pub fn merged(
    mut first: FeedbackAddressingStarted,
    more: FeedbackAddressingStarted,
) -> FeedbackAddressingStarted {
    first.comment_ids.extend(more.comment_ids);
    first.report.push_str(&more.report);
    first.review_comment_ids.extend(more.review_comment_ids);
    first
        .conversation_comment_ids
        .extend(more.conversation_comment_ids);
    first.github_comment_id = first.github_comment_id.max(more.github_comment_id);
    first
}

/// What the review loop still asks of GitHub: 👀 on what the round in hand took up, then the
/// replies once its job is done; and the queued round, once the task is back in review.
pub fn follow_ups(task: &Task) -> Vec<Payload> {
    let mut requests = Vec::new();
    if task.status == TaskStatus::UnderReview
        && let Some(queued) = &task.feedback_queued
    {
        requests.push(Payload::FeedbackAddressingStarted(FeedbackAddressingStarted {
            round: task.feedback_rounds + 1,
            ..queued.clone()
        }));
    }
    if task.status != TaskStatus::Cancelled
        && let Some(round) = &task.feedback_round
    {
        requests.extend(
            on_github(task, round)
                .into_iter()
                .filter(|(kind, _)| !requested(task, kind))
                .map(|(kind, what)| effect(task, &kind, what)),
        );
    }
    requests
}

/// Every effect a round wants on GitHub, by kind (each is requested once).
fn on_github(task: &Task, round: &FeedbackRound) -> Vec<(String, Effect)> {
    let started = &round.started;
    let seen = |target: ReactionTarget, comment_id: u64| {
        Effect::AddReaction(AddReaction {
            comment_id,
            content: "eyes".into(),
            target: target as i32,
        })
    };
    let mut wanted: Vec<(String, Effect)> = started
        .review_comment_ids
        .iter()
        .map(|&id| (format!("eyes-rc-{id}"), seen(ReactionTarget::ReviewComment, id)))
        .chain(
            started
                .conversation_comment_ids
                .iter()
                .map(|&id| (format!("eyes-c-{id}"), seen(ReactionTarget::IssueComment, id))),
        )
        .collect();
    let Some(addressed) = &round.addressed else {
        return wanted;
    };
    wanted.extend(started.review_comment_ids.iter().map(|&id| {
        (
            format!("reply-rc-{id}"),
            Effect::ReplyToReviewComment(ReplyToReviewComment {
                pr_number: task.pr_number,
                comment_id: id,
                body: feedback_reply(started.round, addressed),
            }),
        )
    }));
    // Review texts and conversation comments have no thread of their own to reply on.
    if started.comment_ids.len() > started.review_comment_ids.len() {
        wanted.push((
            format!("feedback-summary-r{}", started.round),
            Effect::PostComment(PostComment {
                issue_number: task.pr_number,
                body: feedback_summary(started.round, addressed),
                watch_reactions: false,
            }),
        ));
    }
    wanted
}
