//! Reading a pull request's reviews and inline review comments, when the pull request's own
//! answer changed (a review moves its `updated_at`, a review comment its count). Each new review
//! is reported once as `ReviewFeedbackReceived` with its inline comments (path, line, diff hunk)
//! and everyone's permission; new comments outside a new review (replies) are reported together.
//! Comments mainloop wrote (its hidden marker) are never read, and a review with nothing else
//! in it (our own replies on threads come as such reviews) is not reported. The scheduler
//! decides what to do.

use mainloop_bus::Expect;
use mainloop_events::v1::{ReviewComment, ReviewFeedbackReceived};
use mainloop_events::{Envelope, Payload, subjects};
use serde_json::Value;

use super::{PollError, Poller, Watch};
use crate::permissions;

const OUR_MARKER: &str = "<!-- mainloop:";

/// `with_comments`: the pull request says it has inline comments (else they are not asked for).
pub async fn poll(poller: &Poller, watch: &Watch, with_comments: bool) -> Result<bool, PollError> {
    let failed = |e: &dyn std::fmt::Display| PollError::Failed(e.to_string());
    let number = u64::try_from(watch.pr_number).unwrap_or_default();
    let (seen_review, seen_comment): (i64, i64) = sqlx::query_as(
        "INSERT INTO review_cursors (task_id) VALUES ($1) ON CONFLICT (task_id) DO UPDATE SET task_id = excluded.task_id \
         RETURNING seen_review_id, seen_comment_id",
    )
    .bind(&watch.task_id)
    .fetch_one(&poller.db)
    .await
    .map_err(|e| failed(&e))?;
    let mut reviews = poller.github.reviews(&watch.owner, &watch.name, number).await?;
    let mut comments = if with_comments {
        poller
            .github
            .review_comments(&watch.owner, &watch.name, number)
            .await?
    } else {
        Vec::new()
    };
    let id = |v: &Value, key: &str| v[key].as_i64().unwrap_or_default();
    reviews.retain(|r| id(r, "id") > seen_review);
    reviews.sort_by_key(|r| id(r, "id"));
    comments.retain(|c| id(c, "id") > seen_comment);
    comments.sort_by_key(|c| id(c, "id"));
    if reviews.is_empty() && comments.is_empty() {
        return Ok(false);
    }
    let newest_review = reviews.last().map_or(seen_review, |r| id(r, "id"));
    let newest_comment = comments.last().map_or(seen_comment, |c| id(c, "id"));
    for review in &reviews {
        let review_id = id(review, "id");
        let own: Vec<&Value> = comments
            .iter()
            .filter(|c| id(c, "pull_request_review_id") == review_id)
            .collect();
        let reviewer = review["user"]["login"].as_str().unwrap_or_default();
        let body = review["body"].as_str().unwrap_or_default();
        let comments = read_comments(poller, watch, &own).await?;
        if body.trim().is_empty() && comments.is_empty() {
            // Nothing to read: our own replies come as such reviews.
            continue;
        }
        let feedback = ReviewFeedbackReceived {
            pr_number: number,
            review_state: review["state"].as_str().unwrap_or_default().to_uppercase(),
            comments,
            review_id: u64::try_from(review_id).unwrap_or_default(),
            reviewer: reviewer.to_string(),
            reviewer_permission: permissions::of(poller, &watch.owner, &watch.name, reviewer).await? as i32,
            review_body: body.to_string(),
        };
        report(poller, watch, format!("github-review-{review_id}"), feedback).await?;
    }
    let reviewed: Vec<i64> = reviews.iter().map(|r| id(r, "id")).collect();
    let loose: Vec<&Value> = comments
        .iter()
        .filter(|c| !reviewed.contains(&id(c, "pull_request_review_id")))
        .collect();
    let loose = read_comments(poller, watch, &loose).await?;
    if !loose.is_empty() {
        let feedback = ReviewFeedbackReceived {
            pr_number: number,
            comments: loose,
            ..Default::default()
        };
        report(
            poller,
            watch,
            format!("github-review-comments-{newest_comment}"),
            feedback,
        )
        .await?;
    }
    sqlx::query("UPDATE review_cursors SET seen_review_id = $2, seen_comment_id = $3 WHERE task_id = $1")
        .bind(&watch.task_id)
        .bind(newest_review)
        .bind(newest_comment)
        .execute(&poller.db)
        .await
        .map_err(|e| failed(&e))?;
    Ok(true)
}

/// The comments as events carry them, without ours, with each author's permission.
async fn read_comments(
    poller: &Poller,
    watch: &Watch,
    comments: &[&Value],
) -> Result<Vec<ReviewComment>, PollError> {
    let mut read = Vec::with_capacity(comments.len());
    for comment in comments {
        let body = comment["body"].as_str().unwrap_or_default();
        if body.contains(OUR_MARKER) {
            continue;
        }
        let author = comment["user"]["login"].as_str().unwrap_or_default();
        read.push(ReviewComment {
            comment_id: comment["id"].as_u64().unwrap_or_default(),
            author: author.to_string(),
            body: body.to_string(),
            path: comment["path"].as_str().unwrap_or_default().to_string(),
            line: u32::try_from(comment["line"].as_u64().unwrap_or_default()).unwrap_or_default(),
            diff_hunk: comment["diff_hunk"].as_str().unwrap_or_default().to_string(),
            permission: permissions::of(poller, &watch.owner, &watch.name, author).await? as i32,
        });
    }
    Ok(read)
}

async fn report(
    poller: &Poller,
    watch: &Watch,
    id: String,
    feedback: ReviewFeedbackReceived,
) -> Result<(), PollError> {
    let failed = |e: &dyn std::fmt::Display| PollError::Failed(e.to_string());
    let mut event = Envelope::new(
        &watch.user_id,
        &watch.task_id,
        Payload::ReviewFeedbackReceived(feedback),
    );
    // Read again after a crash, the same review is the same event.
    event.id = id;
    let subject = subjects::github(&watch.user_id, &watch.task_id).map_err(|e| failed(&e))?;
    poller
        .bus
        .publish(&subject, &event, Expect::Any)
        .await
        .map_err(|e| failed(&e))?;
    Ok(())
}
