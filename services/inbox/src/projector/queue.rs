//! Queue items: what needs the person. Each item is born from one event (its id is that event's
//! id) and resolves itself when the task moves past what it asked; a reminder makes a waiting
//! question or plan review unread again. A batch loads the pending items of the tasks whose
//! events resolve or resurface some ([`touches_pending`]) once (locked), folds its events into
//! them in memory ([`Queue::apply`], pure) and writes the new and changed items back with a
//! statement each.

use mainloop_events::v1::{
    ApprovalKind, ApprovalReminded, InboxItemAdded, InboxItemResolved, InboxItemType, Priority,
};
use std::collections::HashMap;

use chrono::{DateTime, Utc};
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

/// A queue item as the projection holds it while a batch is applied.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub(crate) struct Item {
    pub id: String,
    pub user_id: String,
    pub task_id: Option<String>,
    pub item_type: String,
    pub priority: String,
    pub title: String,
    pub content: String,
    pub context: Value,
    pub options: Option<Vec<String>>,
    pub status: String,
    pub responded_at: Option<DateTime<Utc>>,
    pub read_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// When it last became unread (born, or a reminder): a read the person made before does not
    /// count. Only for items born in this batch.
    #[sqlx(skip)]
    pub unread_since: DateTime<Utc>,
    /// Born in this batch: inserted, not updated.
    #[sqlx(skip)]
    pub new: bool,
    #[sqlx(skip)]
    pub changed: bool,
}

/// The pending items of a batch's tasks, folded in memory and written back once.
#[derive(Debug, Default)]
pub(crate) struct Queue {
    by_task: HashMap<String, Vec<Item>>,
}

impl Queue {
    /// The pending items of `task_ids`, locked until the transaction ends: a person's action on
    /// one of them waits for the batch, and the batch for it (unless `wait`: then an item locked
    /// elsewhere fails the batch at once, as its checkpoint would).
    pub(crate) async fn load(
        tx: &mut PgConnection,
        task_ids: &[String],
        wait: bool,
    ) -> Result<Self, sqlx::Error> {
        if task_ids.is_empty() {
            return Ok(Queue::default());
        }
        let items: Vec<Item> = sqlx::query_as(if wait {
            "SELECT id, user_id, task_id, item_type, priority, title, content, context, options, status, \
                responded_at, read_at, created_at FROM queue_items \
             WHERE task_id = ANY($1) AND status = 'pending' ORDER BY created_at, id FOR UPDATE"
        } else {
            "SELECT id, user_id, task_id, item_type, priority, title, content, context, options, status, \
                responded_at, read_at, created_at FROM queue_items \
             WHERE task_id = ANY($1) AND status = 'pending' ORDER BY created_at, id FOR UPDATE NOWAIT"
        })
        .bind(task_ids)
        .fetch_all(&mut *tx)
        .await?;
        let mut queue = Queue::default();
        for item in items {
            let task = item.task_id.clone().unwrap_or_default();
            queue.by_task.entry(task).or_default().push(item);
        }
        Ok(queue)
    }

    /// Folds one event in; `task` is the task's row with the event folded in. What goes out on
    /// the feed, in order.
    pub(crate) fn apply(&mut self, event: &Envelope, payload: &Payload, task: Option<&Task>) -> Vec<Payload> {
        let at = occurred_at(event);
        let items = self.by_task.entry(event.correlation_id.clone()).or_default();
        // First what the event makes moot, then what it asks.
        let mut feed = resolve(items, payload, at);
        if let Payload::ApprovalReminded(reminded) = payload {
            feed.extend(resurface(items, reminded, at));
            return feed;
        }
        let Some(new) = task.and_then(|task| new_item(task, payload)) else {
            return feed;
        };
        feed.push(added(&event.id, &event.correlation_id, &new));
        items.push(Item {
            id: event.id.clone(),
            user_id: event.user_id.clone(),
            task_id: Some(event.correlation_id.clone()),
            item_type: new.api_type.to_string(),
            priority: new.api_priority.to_string(),
            title: new.title,
            content: new.content,
            context: new.context,
            options: Some(new.options),
            status: "pending".into(),
            responded_at: None,
            read_at: None,
            created_at: at,
            unread_since: at,
            new: true,
            changed: true,
        });
        feed
    }

    /// Whether nothing is to be written: no item new or changed.
    pub(crate) fn unchanged(&self) -> bool {
        self.by_task.values().flatten().all(|item| !item.changed)
    }

    /// Writes the new items and the changed ones, a statement each.
    pub(crate) async fn save(self, tx: &mut PgConnection) -> Result<(), sqlx::Error> {
        let (new, changed): (Vec<Item>, Vec<Item>) = self
            .by_task
            .into_values()
            .flatten()
            .filter(|i| i.changed)
            .partition(|i| i.new);
        insert(tx, &new).await?;
        update(tx, &changed).await
    }
}

/// Whether `payload` changes items its task already has (resolves or resurfaces them): only
/// then must a batch load them. An event that adds an item, or touches none, needs no load.
pub(crate) fn touches_pending(payload: &Payload) -> bool {
    !moot(payload).is_empty() || matches!(payload, Payload::ApprovalReminded(_))
}

/// The types of item `payload` makes moot.
fn moot(payload: &Payload) -> &'static [&'static str] {
    match payload {
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
    }
}

/// What `payload` makes moot: those of `items` still pending are resolved.
fn resolve(items: &mut [Item], payload: &Payload, at: DateTime<Utc>) -> Vec<Payload> {
    let moot = moot(payload);
    if moot.is_empty() {
        return vec![];
    }
    let resolution = match payload {
        Payload::TaskCancelled(_) | Payload::TaskFailed(_) => "cancelled",
        Payload::NeedsApproval(_) => "superseded",
        _ => "responded",
    };
    let status = if resolution == "cancelled" {
        "cancelled"
    } else {
        "responded"
    };
    let mut feed = Vec::new();
    for item in items
        .iter_mut()
        .filter(|i| i.status == "pending" && moot.contains(&i.item_type.as_str()))
    {
        item.status = status.to_string();
        item.responded_at.get_or_insert(at);
        item.changed = true;
        feed.push(Payload::InboxItemResolved(InboxItemResolved {
            item_id: item.id.clone(),
            resolution: resolution.to_string(),
        }));
    }
    feed
}

/// A question or plan review waited long: its pending item is unread again (and says how often
/// it was reminded), and goes out on the feed again.
fn resurface(items: &mut [Item], reminded: &ApprovalReminded, reminded_at: DateTime<Utc>) -> Vec<Payload> {
    let item_type = match reminded.kind() {
        ApprovalKind::AnswerQuestions => "question",
        ApprovalKind::PlanReview => "plan_review",
        _ => return vec![],
    };
    let mut feed = Vec::new();
    for item in items
        .iter_mut()
        .filter(|i| i.status == "pending" && i.item_type == item_type)
    {
        item.read_at = None;
        item.unread_since = reminded_at;
        if let Value::Object(context) = &mut item.context {
            context.insert("reminded".into(), json!(reminded.nth));
            context.insert("waited_secs".into(), json!(reminded.waited_secs));
        }
        item.changed = true;
        feed.push(Payload::InboxItemAdded(InboxItemAdded {
            item_id: item.id.clone(),
            task_id: item.task_id.clone().unwrap_or_default(),
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
            title: item.title.clone(),
            content: item.content.clone(),
            options: item.options.clone().unwrap_or_default(),
            context_json: item.context.to_string(),
        }));
    }
    feed
}

fn added(id: &str, task_id: &str, item: &NewItem) -> Payload {
    Payload::InboxItemAdded(InboxItemAdded {
        item_id: id.to_string(),
        task_id: task_id.to_string(),
        item_type: item.item_type as i32,
        priority: item.priority as i32,
        title: item.title.clone(),
        content: item.content.clone(),
        options: item.options.clone(),
        context_json: item.context.to_string(),
    })
}

/// Inserts the items born in this batch. What the person did to one before (a rebuild replays
/// it) is applied again: an answer makes it answered, a read after it last became unread makes
/// it read, as they were.
async fn insert(tx: &mut PgConnection, items: &[Item]) -> Result<(), sqlx::Error> {
    if items.is_empty() {
        return Ok(());
    }
    // Options go as one JSON array of arrays: Postgres has no arrays of arrays of varying length.
    let options: Vec<Value> = items.iter().map(|i| json!(i.options)).collect();
    sqlx::query(
        "INSERT INTO queue_items (id, user_id, task_id, item_type, priority, title, content, context, \
            options, status, response, responded_at, read_at, created_at) \
         SELECT i.id, i.user_id, i.task_id, i.item_type, i.priority, i.title, i.content, i.context, \
            CASE WHEN jsonb_typeof(i.options) = 'array' \
                 THEN ARRAY(SELECT jsonb_array_elements_text(i.options)) END, \
            CASE WHEN m.response IS NOT NULL THEN 'responded' ELSE i.status END, m.response, \
            COALESCE(m.responded_at, i.responded_at), \
            CASE WHEN m.read_at >= i.unread_since THEN m.read_at END, i.created_at \
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], \
            $8::jsonb[], $9::jsonb[], $10::text[], $11::timestamptz[], $12::timestamptz[], \
            $13::timestamptz[]) \
            AS i(id, user_id, task_id, item_type, priority, title, content, context, options, status, \
                 responded_at, created_at, unread_since) \
         LEFT JOIN queue_item_marks m ON m.item_id = i.id \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(items.iter().map(|i| i.id.as_str()).collect::<Vec<_>>())
    .bind(items.iter().map(|i| i.user_id.as_str()).collect::<Vec<_>>())
    .bind(items.iter().map(|i| i.task_id.as_deref()).collect::<Vec<_>>())
    .bind(items.iter().map(|i| i.item_type.as_str()).collect::<Vec<_>>())
    .bind(items.iter().map(|i| i.priority.as_str()).collect::<Vec<_>>())
    .bind(items.iter().map(|i| i.title.as_str()).collect::<Vec<_>>())
    .bind(items.iter().map(|i| i.content.as_str()).collect::<Vec<_>>())
    .bind(items.iter().map(|i| i.context.clone()).collect::<Vec<_>>())
    .bind(options)
    .bind(items.iter().map(|i| i.status.as_str()).collect::<Vec<_>>())
    .bind(items.iter().map(|i| i.responded_at).collect::<Vec<_>>())
    .bind(items.iter().map(|i| i.created_at).collect::<Vec<_>>())
    .bind(items.iter().map(|i| i.unread_since).collect::<Vec<_>>())
    .execute(&mut *tx)
    .await?;
    Ok(())
}

async fn update(tx: &mut PgConnection, items: &[Item]) -> Result<(), sqlx::Error> {
    if items.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE queue_items q SET status = i.status, responded_at = i.responded_at, read_at = i.read_at, \
            context = i.context \
         FROM UNNEST($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[], $5::jsonb[]) \
            AS i(id, status, responded_at, read_at, context) \
         WHERE q.id = i.id",
    )
    .bind(items.iter().map(|i| i.id.as_str()).collect::<Vec<_>>())
    .bind(items.iter().map(|i| i.status.as_str()).collect::<Vec<_>>())
    .bind(items.iter().map(|i| i.responded_at).collect::<Vec<_>>())
    .bind(items.iter().map(|i| i.read_at).collect::<Vec<_>>())
    .bind(items.iter().map(|i| i.context.clone()).collect::<Vec<_>>())
    .execute(&mut *tx)
    .await?;
    Ok(())
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

#[cfg(test)]
mod tests {
    use mainloop_events::v1::{ApprovalKind, ApprovalReminded, NeedsApproval, PlanApproved, TaskCompleted};

    use super::*;

    fn task() -> Task {
        Task {
            id: "t1".into(),
            user_id: "u1".into(),
            description: "add a quick start".into(),
            status: "waiting_plan_review".into(),
            ..Task::default()
        }
    }

    fn review() -> Payload {
        Payload::NeedsApproval(NeedsApproval {
            kind: ApprovalKind::PlanReview as i32,
            plan_revision: 1,
            title: "Review plan".into(),
            summary: "Add it.".into(),
            options: vec!["Approve".into()],
        })
    }

    /// Given the events of `history` folded into an empty queue, when `payload`, then the feed.
    fn when(queue: &mut Queue, payload: Payload) -> Vec<Payload> {
        let event = Envelope::new("u1", "t1", payload.clone());
        queue.apply(&event, &payload, Some(&task()))
    }

    fn kinds(feed: &[Payload]) -> Vec<&'static str> {
        feed.iter()
            .map(|p| match p {
                Payload::InboxItemAdded(_) => "added",
                Payload::InboxItemResolved(_) => "resolved",
                _ => "other",
            })
            .collect()
    }

    #[test]
    fn an_item_asked_and_answered_in_one_batch_is_written_once_resolved() {
        let mut queue = Queue::default();
        assert_eq!(kinds(&when(&mut queue, review())), ["added"]);
        let approved = Payload::PlanApproved(PlanApproved::default());
        assert_eq!(
            kinds(&when(&mut queue, approved)),
            ["resolved", "added"],
            "and a notification"
        );
        let items = &queue.by_task["t1"];
        let review: Vec<(&str, &str, bool)> = items
            .iter()
            .map(|i| (i.item_type.as_str(), i.status.as_str(), i.new))
            .collect();
        assert_eq!(
            review,
            [
                ("plan_review", "responded", true),
                ("notification", "pending", true)
            ]
        );
    }

    #[test]
    fn a_reminder_makes_the_waiting_review_unread_and_says_how_often() {
        let mut queue = Queue::default();
        when(&mut queue, review());
        if let Some(item) = queue.by_task.get_mut("t1").and_then(|i| i.first_mut()) {
            item.read_at = Some(Utc::now());
        }
        let reminded = Payload::ApprovalReminded(ApprovalReminded {
            kind: ApprovalKind::PlanReview as i32,
            nth: 2,
            waited_secs: 7200,
            ..Default::default()
        });
        assert_eq!(kinds(&when(&mut queue, reminded)), ["added"]);
        let item = &queue.by_task["t1"][0];
        assert_eq!(item.read_at, None);
        assert_eq!(
            (
                item.context["reminded"].as_u64(),
                item.context["waited_secs"].as_u64()
            ),
            (Some(2), Some(7200))
        );
    }

    #[test]
    fn a_completed_task_resolves_everything_it_asked() {
        let mut queue = Queue::default();
        when(&mut queue, review());
        let feed = when(&mut queue, Payload::TaskCompleted(TaskCompleted::default()));
        assert_eq!(kinds(&feed), ["resolved"]);
        let statuses: Vec<&str> = queue.by_task["t1"].iter().map(|i| i.status.as_str()).collect();
        assert_eq!(statuses, ["responded"]);
    }
}
