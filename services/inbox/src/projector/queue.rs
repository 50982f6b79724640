//! Queue items: what needs the person. Each item is born from one event (its id is that event's
//! id) and resolves itself when the task moves past what it asked; a reminder makes a waiting
//! question or plan review unread again.

use mainloop_events::v1::{
    ApprovalKind, ApprovalReminded, InboxItemAdded, InboxItemResolved, InboxItemType, Priority,
};
use mainloop_events::{Envelope, Payload};
use serde_json::{Value, json};
use sqlx::PgConnection;

use super::occurred_at;
use super::tasks::Task;

pub(super) struct NewItem {
    pub item_type: InboxItemType,
    pub api_type: &'static str,
    pub priority: Priority,
    pub api_priority: &'static str,
    pub title: String,
    pub content: String,
    pub options: Vec<String>,
    pub context: Value,
}

/// Applies one event to the queue; `task` is the task's row with the event folded in.
pub(super) async fn apply(
    tx: &mut PgConnection,
    event: &Envelope,
    payload: &Payload,
    task: Option<&Task>,
) -> Result<Vec<Payload>, sqlx::Error> {
    let mut feed = Vec::new();
    // First what the event makes moot, then what it asks.
    let moot: &[&str] = match payload {
        Payload::PlanApproved(_) | Payload::PlanRevisionRequested(_) => &["plan_review"],
        Payload::QuestionsAnswered(_) => &["question"],
        Payload::TaskRetried(_) => &["error"],
        Payload::NeedsApproval(_) => &["plan_review", "question"],
        Payload::FeedbackAddressingStarted(_) => &["code_ready"],
        Payload::TaskCompleted(_) | Payload::TaskCancelled(_) => &[
            "plan_review",
            "question",
            "code_ready",
            "error",
            "approval",
            "routing_suggestion",
        ],
        // A failed task asks one thing: retry or not. What it asked before can no longer be done.
        Payload::TaskFailed(_) => &["plan_review", "question", "code_ready", "approval"],
        _ => &[],
    };
    if !moot.is_empty() {
        let resolution = match payload {
            Payload::TaskCancelled(_) | Payload::TaskFailed(_) => "cancelled",
            Payload::NeedsApproval(_) => "superseded",
            _ => "responded",
        };
        let resolved: Vec<String> = sqlx::query_scalar(
            "UPDATE queue_items SET status = $3, responded_at = COALESCE(responded_at, $4) \
             WHERE task_id = $1 AND status = 'pending' AND item_type = ANY($2) RETURNING id",
        )
        .bind(&event.correlation_id)
        .bind(moot)
        .bind(if resolution == "cancelled" {
            "cancelled"
        } else {
            "responded"
        })
        .bind(occurred_at(event))
        .fetch_all(&mut *tx)
        .await?;
        feed.extend(resolved.into_iter().map(|item_id| {
            Payload::InboxItemResolved(InboxItemResolved {
                item_id,
                resolution: resolution.to_string(),
            })
        }));
    }

    if let Payload::ApprovalReminded(reminded) = payload {
        feed.extend(resurface(tx, event, reminded).await?);
        return Ok(feed);
    }
    let Some(item) = task.and_then(|task| new_item(task, payload)) else {
        return Ok(feed);
    };
    let inserted = sqlx::query(
        "INSERT INTO queue_items (id, user_id, task_id, item_type, priority, title, content, context, options, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (id) DO NOTHING",
    )
    .bind(&event.id)
    .bind(&event.user_id)
    .bind(&event.correlation_id)
    .bind(item.api_type)
    .bind(item.api_priority)
    .bind(&item.title)
    .bind(&item.content)
    .bind(&item.context)
    .bind(&item.options)
    .bind(occurred_at(event))
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 1 {
        feed.push(Payload::InboxItemAdded(InboxItemAdded {
            item_id: event.id.clone(),
            task_id: event.correlation_id.clone(),
            item_type: item.item_type as i32,
            priority: item.priority as i32,
            title: item.title,
            content: item.content,
            options: item.options,
            context_json: item.context.to_string(),
        }));
    }
    Ok(feed)
}

#[derive(sqlx::FromRow)]
struct Resurfaced {
    id: String,
    item_type: String,
    priority: String,
    title: String,
    content: String,
    options: Vec<String>,
    context: Value,
}

/// A question or plan review waited long: its pending item is unread again (and says how often
/// it was reminded), and goes out on the feed again.
async fn resurface(
    tx: &mut PgConnection,
    event: &Envelope,
    reminded: &ApprovalReminded,
) -> Result<Vec<Payload>, sqlx::Error> {
    let item_type = match reminded.kind() {
        ApprovalKind::AnswerQuestions => "question",
        ApprovalKind::PlanReview => "plan_review",
        _ => return Ok(vec![]),
    };
    let items: Vec<Resurfaced> = sqlx::query_as(
        "UPDATE queue_items SET read_at = NULL, \
           context = context || jsonb_build_object('reminded', $3::int, 'waited_secs', $4::bigint) \
         WHERE task_id = $1 AND status = 'pending' AND item_type = $2 \
         RETURNING id, item_type, priority, title, content, options, context",
    )
    .bind(&event.correlation_id)
    .bind(item_type)
    .bind(i32::try_from(reminded.nth).unwrap_or(i32::MAX))
    .bind(i64::try_from(reminded.waited_secs).unwrap_or(i64::MAX))
    .fetch_all(&mut *tx)
    .await?;
    Ok(items
        .into_iter()
        .map(|item| {
            Payload::InboxItemAdded(InboxItemAdded {
                item_id: item.id,
                task_id: event.correlation_id.clone(),
                item_type: if item.item_type == "question" {
                    InboxItemType::Question
                } else {
                    InboxItemType::PlanReview
                } as i32,
                priority: if item.priority == "high" {
                    Priority::High
                } else {
                    Priority::Normal
                } as i32,
                title: item.title,
                content: item.content,
                options: item.options,
                context_json: item.context.to_string(),
            })
        })
        .collect())
}

/// The item `payload` asks of the person about `task`, if any.
fn new_item(task: &Task, payload: &Payload) -> Option<NewItem> {
    let (issue_url, pr_url, repo_url) = (&task.issue_url, task.pr_url.clone(), &task.repo_url);
    let questions = &task.pending_questions;
    let short: String = task.description.chars().take(60).collect();
    Some(match payload {
        Payload::NeedsApproval(asked) if asked.kind() == ApprovalKind::PlanReview => NewItem {
            item_type: InboxItemType::PlanReview,
            api_type: "plan_review",
            priority: Priority::High,
            api_priority: "high",
            title: asked.title.clone(),
            content: asked.summary.clone(),
            options: asked.options.clone(),
            context: json!({"plan_revision": asked.plan_revision, "issue_url": issue_url}),
        },
        Payload::NeedsApproval(asked) if asked.kind() == ApprovalKind::AnswerQuestions => NewItem {
            item_type: InboxItemType::Question,
            api_type: "question",
            priority: Priority::High,
            api_priority: "high",
            title: asked.title.clone(),
            content: asked.summary.clone(),
            options: vec![],
            context: json!({"questions": questions}),
        },
        Payload::CodeReadyForReview(ready) => NewItem {
            item_type: InboxItemType::CodeReady,
            api_type: "code_ready",
            priority: Priority::Normal,
            api_priority: "normal",
            title: format!("Code ready for review: {short}"),
            content: if ready.note.is_empty() {
                format!(
                    "CI is green on pull request #{}. It is ready for your review.",
                    ready.pr_number
                )
            } else {
                format!(
                    "Pull request #{} is ready for your review. {}",
                    ready.pr_number, ready.note
                )
            },
            options: vec![],
            context: json!({
                "pr_url": if ready.pr_url.is_empty() { pr_url } else { Some(ready.pr_url.clone()) },
                "ci": if ready.note.is_empty() { "passed" } else { "none" },
                "files": ready.files.iter().map(|f| json!({"filename": f.filename,
                    "additions": f.additions, "deletions": f.deletions, "status": f.status}))
                    .collect::<Vec<_>>(),
            }),
        },
        // The person decides where a message goes: to this task, or to a new one on its
        // repository.
        Payload::RoutingSuggested(suggested) => NewItem {
            item_type: InboxItemType::RoutingSuggestion,
            api_type: "routing_suggestion",
            priority: Priority::High,
            api_priority: "high",
            title: format!("Is this about \"{short}\"?"),
            content: suggested.message.clone(),
            options: vec!["Route to this task".into(), "Create new task".into()],
            context: json!({"message": suggested.message, "source": suggested.source,
                "suggestion_id": suggested.suggestion_id, "repo_url": repo_url}),
        },
        Payload::TaskFailed(failed) => NewItem {
            item_type: InboxItemType::Error,
            api_type: "error",
            priority: Priority::Urgent,
            api_priority: "urgent",
            title: format!("Task failed: {short}"),
            content: failed.error.clone(),
            // A failed task cannot be cancelled; the person retries it or lets it be.
            options: vec!["Retry".into(), "Dismiss".into()],
            context: json!({}),
        },
        _ => return super::notifications::about(payload, &short, pr_url),
    })
}
