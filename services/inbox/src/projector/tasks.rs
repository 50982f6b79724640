//! Tasks and their status history. A batch loads its tasks' rows once, folds each event into
//! them in memory ([`evolve`], pure) and writes the changed rows back, and the status changes,
//! with one statement.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use mainloop_events::v1::{RepoRef, TaskCardUpdated, TaskStatus};
use mainloop_events::{Envelope, Payload};
use serde_json::{Value, json};
use sqlx::PgConnection;

use crate::outbox::{FeedRows, ReadBack, Staged, feed_read_back, feed_rows};

/// A task's row as the projection owns it, and its project's name for the card.
#[derive(Debug, Clone, Default, PartialEq, sqlx::FromRow)]
pub(crate) struct Task {
    pub id: String,
    pub user_id: String,
    pub description: String,
    pub repo_url: Option<String>,
    pub project_id: Option<String>,
    pub conversation_id: Option<String>,
    pub skip_plan: bool,
    pub branch_name: Option<String>,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
    pub error: Option<String>,
    pub issue_url: Option<String>,
    pub issue_number: Option<i64>,
    pub pr_url: Option<String>,
    pub pr_number: Option<i64>,
    pub commit_sha: Option<String>,
    pub plan_text: Option<String>,
    pub plan_revision: i32,
    pub pending_questions: Option<Value>,
    pub waiting_for: Option<String>,
    /// Not stored with the task: its project's `owner/name`.
    pub full_name: Option<String>,
}

/// A status the task passed through.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StatusChange {
    pub task_id: String,
    pub stream_sequence: i64,
    pub event_type: String,
    pub status: &'static str,
    pub occurred_at: DateTime<Utc>,
}

/// What one event did to its task.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Evolved {
    /// The task's row changed: its card goes out on the feed and the row is written.
    pub changed: bool,
    pub status: Option<StatusChange>,
}

/// Where a newly spawned task's project is.
#[derive(Debug, Clone)]
pub(crate) struct Project {
    pub id: String,
    pub full_name: String,
}

/// Folds one event into `task` (`None`: not spawned yet, or not known to this projection).
/// `project` is given for a `TaskSpawned`.
pub(crate) fn evolve(
    task: &mut Option<Task>,
    event: &Envelope,
    payload: &Payload,
    sequence: i64,
    at: DateTime<Utc>,
    project: Option<Project>,
) -> Evolved {
    if let (Payload::TaskSpawned(spawned), None) = (payload, &task) {
        *task = Some(spawn(event, spawned, at, project));
    }
    let mut evolved = Evolved::default();
    if let Some(status) = payload.task_status_after() {
        let name = status.api_name();
        evolved.status = Some(StatusChange {
            task_id: event.correlation_id.clone(),
            stream_sequence: sequence,
            event_type: event.r#type.clone(),
            status: name,
            occurred_at: at,
        });
        if let Some(task) = task.as_mut() {
            task.status = name.to_string();
            task.updated_at = at;
            if matches!(name, "planning" | "implementing") {
                task.started_at.get_or_insert(at);
            }
            task.completed_at = status.is_terminal().then_some(at);
            task.waiting_for = None;
        }
        evolved.changed = true;
    }
    if let Some(task) = task.as_mut() {
        evolved.changed |= set_fields(task, payload, at);
    }
    evolved
}

fn spawn(
    event: &Envelope,
    spawned: &mainloop_events::v1::TaskSpawned,
    at: DateTime<Utc>,
    project: Option<Project>,
) -> Task {
    let repo = spawned.repo.clone().unwrap_or_default();
    Task {
        id: event.correlation_id.clone(),
        user_id: event.user_id.clone(),
        description: spawned.description.clone(),
        repo_url: Some(repo.html_url),
        project_id: project.as_ref().map(|p| p.id.clone()),
        conversation_id: non_empty(&spawned.conversation_id),
        skip_plan: spawned.skip_plan,
        status: "pending".into(),
        created_at: at,
        updated_at: at,
        full_name: project.map(|p| p.full_name),
        ..Task::default()
    }
}

/// The fields an event sets besides the status; `true` when it set any.
fn set_fields(task: &mut Task, payload: &Payload, at: DateTime<Utc>) -> bool {
    match payload {
        Payload::QuestionsAsked(asked) => {
            let questions: Vec<_> = asked
                .questions
                .iter()
                .map(|q| {
                    json!({
                        "id": q.id,
                        "header": q.header,
                        "question": q.question,
                        "options": q.options.iter().map(|o| json!({"label": o.label, "description": non_empty(&o.description)})).collect::<Vec<_>>(),
                        "multi_select": q.multi_select,
                        "response": null,
                    })
                })
                .collect();
            task.pending_questions = Some(json!(questions));
        }
        Payload::QuestionsAnswered(_) | Payload::TaskCancelled(_) => task.pending_questions = None,
        Payload::PlanProposed(plan) => {
            task.plan_text = Some(plan.plan_text.clone());
            task.plan_revision = i32::try_from(plan.revision).unwrap_or(i32::MAX);
        }
        Payload::PlanApproved(e) => task.branch_name = Some(e.branch_name.clone()),
        Payload::ImplementationStarted(e) => task.branch_name = Some(e.branch_name.clone()),
        Payload::IssueLinked(e) => {
            task.issue_url = Some(e.issue_url.clone());
            task.issue_number = Some(i64::try_from(e.issue_number).unwrap_or(i64::MAX));
            task.waiting_for = None;
        }
        Payload::PullRequestLinked(e) => {
            task.pr_url = Some(e.pr_url.clone());
            task.pr_number = Some(i64::try_from(e.pr_number).unwrap_or(i64::MAX));
            task.waiting_for = None;
        }
        Payload::CodePushed(e) => {
            task.commit_sha = Some(e.head_sha.clone());
            task.waiting_for = None;
        }
        Payload::TaskFailed(e) => task.error = Some(e.error.clone()),
        Payload::TaskRetried(_) => task.error = None,
        Payload::JobRetryScheduled(retry) => {
            let at =
                at + chrono::Duration::milliseconds(i64::try_from(retry.delay_ms).unwrap_or(i64::MAX / 2));
            let reason: String = retry.reason.chars().take(200).collect();
            task.waiting_for = Some(format!(
                "The agent failed ({reason}); attempt {} at {} UTC",
                retry.attempt,
                at.format("%H:%M:%S")
            ));
        }
        Payload::TaskWaiting(waiting) => {
            let until = i64::try_from(waiting.until_ms)
                .ok()
                .and_then(DateTime::from_timestamp_millis)
                .unwrap_or(at);
            task.waiting_for = Some(format!(
                "{}, retrying at {} UTC",
                waiting.reason,
                until.format("%H:%M:%S")
            ));
        }
        // Only a card that said it was waiting changes.
        Payload::JobRequested(_) => return task.waiting_for.take().is_some(),
        _ => return false,
    }
    true
}

/// The task card as browsers show it.
pub(crate) fn card(task: &Task) -> TaskCardUpdated {
    TaskCardUpdated {
        task_id: task.id.clone(),
        status: TaskStatus::from_api_name(&task.status).unwrap_or_default() as i32,
        description: task.description.clone(),
        repo_full_name: task.full_name.clone().unwrap_or_default(),
        issue_url: task.issue_url.clone().unwrap_or_default(),
        pr_url: task.pr_url.clone().unwrap_or_default(),
        error: task.error.clone().unwrap_or_default(),
        waiting_for: task.waiting_for.clone().unwrap_or_default(),
    }
}

/// The stored rows of `ids`, by id.
pub(crate) async fn load(
    tx: &mut PgConnection,
    ids: &[String],
) -> Result<HashMap<String, Task>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<Task> = sqlx::query_as(
        "SELECT t.id, t.user_id, t.description, t.repo_url, t.project_id, t.conversation_id, t.skip_plan, \
                t.branch_name, t.status, t.created_at, t.started_at, t.completed_at, t.updated_at, t.error, \
                t.issue_url, t.issue_number, t.pr_url, t.pr_number, t.commit_sha, t.plan_text, \
                t.plan_revision, t.pending_questions, t.waiting_for, p.full_name \
         FROM tasks t LEFT JOIN projects p ON p.id = t.project_id WHERE t.id = ANY($1)",
    )
    .bind(ids)
    .fetch_all(&mut *tx)
    .await?;
    Ok(rows.into_iter().map(|t| (t.id.clone(), t)).collect())
}

/// A project as the tasks spawned in one batch name it: its person and `owner/name`.
pub(crate) type ProjectKey = (String, String);

/// The projects of the tasks spawned in a batch, and the last use of those already known.
#[derive(Default)]
pub(crate) struct Named {
    pub projects: HashMap<ProjectKey, Project>,
    /// Projects known already: their ids and last use, moved by [`save`].
    pub used: Vec<(String, DateTime<Utc>)>,
}

/// The projects of the tasks spawned in a batch (`spawns`, in stream order), in one statement:
/// each created on first use, its last use moved on to the last spawn that named it.
pub(crate) async fn projects(
    tx: &mut PgConnection,
    spawns: &[(&Envelope, &mainloop_events::v1::TaskSpawned)],
) -> Result<Named, sqlx::Error> {
    /// One project's row: the first spawn's id, the repository, the first and last use.
    type Unknown = (String, RepoRef, DateTime<Utc>, DateTime<Utc>);
    let mut named: Vec<(ProjectKey, Unknown)> = Vec::new();
    let mut index: HashMap<ProjectKey, usize> = HashMap::new();
    for (event, spawned) in spawns {
        let key = project_key(event, spawned);
        let at = super::occurred_at(event);
        if let Some((_, (_, _, _, last))) = index.get(&key).and_then(|&i| named.get_mut(i)) {
            *last = at;
            continue;
        }
        index.insert(key.clone(), named.len());
        // The id of the event that first named the project: the same when a rebuild applies it
        // again.
        let repo = spawned.repo.clone().unwrap_or_default();
        named.push((key, (event.id.clone(), repo, at, at)));
    }
    if named.is_empty() {
        return Ok(Named::default());
    }
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "INSERT INTO projects (id, user_id, owner, name, full_name, html_url, created_at, last_used_at) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
            $7::timestamptz[], $8::timestamptz[]) \
         ON CONFLICT (user_id, full_name) DO UPDATE SET last_used_at = excluded.last_used_at \
         RETURNING id, user_id, full_name",
    )
    .bind(named.iter().map(|(_, n)| n.0.as_str()).collect::<Vec<_>>())
    .bind(named.iter().map(|(k, _)| k.0.as_str()).collect::<Vec<_>>())
    .bind(named.iter().map(|(_, n)| n.1.owner.as_str()).collect::<Vec<_>>())
    .bind(named.iter().map(|(_, n)| n.1.name.as_str()).collect::<Vec<_>>())
    .bind(named.iter().map(|(k, _)| k.1.as_str()).collect::<Vec<_>>())
    .bind(
        named
            .iter()
            .map(|(_, n)| n.1.html_url.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(named.iter().map(|(_, n)| n.2).collect::<Vec<_>>())
    .bind(named.iter().map(|(_, n)| n.3).collect::<Vec<_>>())
    .fetch_all(&mut *tx)
    .await?;
    let projects = rows
        .into_iter()
        .map(|(id, user, full_name)| ((user, full_name.clone()), Project { id, full_name }))
        .collect();
    Ok(Named {
        projects,
        used: Vec::new(),
    })
}

/// The key of the project `spawned` names.
pub(crate) fn project_key(event: &Envelope, spawned: &mainloop_events::v1::TaskSpawned) -> ProjectKey {
    let repo = spawned.repo.clone().unwrap_or_default();
    (event.user_id.clone(), format!("{}/{}", repo.owner, repo.name))
}

/// The common table expressions that write a batch's rows, given the placeholders `$1` to
/// `$34` that [`Save::bind`] binds: the tasks, new and changed alike (`saved`), their status
/// changes, each once (`history`), the last use of known projects (`used`) and the feed events
/// for the outbox (`new`, with the same people's `older` rows; see `outbox`). A statement that
/// carries them ends with `feed_read_back!()`.
macro_rules! save_rows {
    () => {
        concat!(
            "history AS ( \
                INSERT INTO task_history (task_id, stream_sequence, event_type, status, occurred_at) \
                SELECT * FROM UNNEST($24::text[], $25::bigint[], $26::text[], $27::text[], $28::timestamptz[]) \
                ON CONFLICT DO NOTHING), \
             used AS ( \
                UPDATE projects p SET last_used_at = u.at \
                FROM UNNEST($33::text[], $34::timestamptz[]) AS u(id, at) WHERE p.id = u.id), \
             saved AS ( \
             INSERT INTO tasks (id, user_id, description, repo_url, project_id, conversation_id, skip_plan, \
                branch_name, status, created_at, started_at, completed_at, updated_at, error, issue_url, \
                issue_number, pr_url, pr_number, commit_sha, plan_text, plan_revision, pending_questions, waiting_for) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
                $7::bool[], $8::text[], $9::text[], $10::timestamptz[], $11::timestamptz[], $12::timestamptz[], \
                $13::timestamptz[], $14::text[], $15::text[], $16::bigint[], $17::text[], $18::bigint[], \
                $19::text[], $20::text[], $21::int[], $22::jsonb[], $23::text[]) \
             ON CONFLICT (id) DO UPDATE SET branch_name = excluded.branch_name, status = excluded.status, \
                started_at = excluded.started_at, completed_at = excluded.completed_at, \
                updated_at = excluded.updated_at, error = excluded.error, issue_url = excluded.issue_url, \
                issue_number = excluded.issue_number, pr_url = excluded.pr_url, pr_number = excluded.pr_number, \
                commit_sha = excluded.commit_sha, plan_text = excluded.plan_text, \
                plan_revision = excluded.plan_revision, pending_questions = excluded.pending_questions, \
                waiting_for = excluded.waiting_for), ",
            feed_rows!("$29", "$30", "$31", "$32")
        )
    };
}
pub(crate) use save_rows;

/// What a batch writes besides the queue: its tasks' rows, their status changes, the last use
/// of the known projects its spawns named, and its feed events.
pub(crate) struct Save<'a> {
    columns: Columns,
    history: &'a [StatusChange],
    used: &'a [(String, DateTime<Utc>)],
    feed: &'a [super::FeedEvent],
}

impl<'a> Save<'a> {
    pub(crate) fn new(
        tasks: impl Iterator<Item = &'a Task>,
        history: &'a [StatusChange],
        used: &'a [(String, DateTime<Utc>)],
        feed: &'a [super::FeedEvent],
    ) -> Self {
        let mut columns = Columns::default();
        for task in tasks {
            columns.push(task);
        }
        Save {
            columns,
            history,
            used,
            feed,
        }
    }

    fn is_empty(&self) -> bool {
        self.columns.id.is_empty() && self.history.is_empty() && self.used.is_empty() && self.feed.is_empty()
    }

    /// Binds `$1` to `$34` of [`save_rows`], after those `query` has (none).
    pub(crate) fn bind<'q>(
        self,
        query: sqlx::query::QueryAs<'q, sqlx::Postgres, ReadBack, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::QueryAs<'q, sqlx::Postgres, ReadBack, sqlx::postgres::PgArguments>
    where
        'a: 'q,
    {
        let (c, history, used) = (self.columns, self.history, self.used);
        let query = query
            .bind(c.id)
            .bind(c.user_id)
            .bind(c.description)
            .bind(c.repo_url)
            .bind(c.project_id)
            .bind(c.conversation_id)
            .bind(c.skip_plan)
            .bind(c.branch_name)
            .bind(c.status)
            .bind(c.created_at)
            .bind(c.started_at)
            .bind(c.completed_at)
            .bind(c.updated_at)
            .bind(c.error)
            .bind(c.issue_url)
            .bind(c.issue_number)
            .bind(c.pr_url)
            .bind(c.pr_number)
            .bind(c.commit_sha)
            .bind(c.plan_text)
            .bind(c.plan_revision)
            .bind(c.pending_questions)
            .bind(c.waiting_for)
            .bind(history.iter().map(|h| h.task_id.as_str()).collect::<Vec<_>>())
            .bind(history.iter().map(|h| h.stream_sequence).collect::<Vec<_>>())
            .bind(history.iter().map(|h| h.event_type.as_str()).collect::<Vec<_>>())
            .bind(history.iter().map(|h| h.status).collect::<Vec<_>>())
            .bind(history.iter().map(|h| h.occurred_at).collect::<Vec<_>>());
        FeedRows::of(self.feed)
            .bind(query)
            .bind(used.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>())
            .bind(used.iter().map(|(_, at)| *at).collect::<Vec<_>>())
    }
}

/// Writes what a batch saves (see [`Save`]) in `tx`, in one statement; the outbox rows staged.
pub(crate) async fn save(tx: &mut PgConnection, save: Save<'_>) -> Result<Staged, sqlx::Error> {
    if save.is_empty() {
        return Ok(Staged::default());
    }
    let query = sqlx::query_as(concat!("WITH ", save_rows!(), " ", feed_read_back!()));
    let rows: Vec<ReadBack> = save.bind(query).fetch_all(&mut *tx).await?;
    Ok(Staged::from(rows))
}

/// The rows of [`Save`], column by column.
#[derive(Default)]
struct Columns {
    id: Vec<String>,
    user_id: Vec<String>,
    description: Vec<String>,
    repo_url: Vec<Option<String>>,
    project_id: Vec<Option<String>>,
    conversation_id: Vec<Option<String>>,
    skip_plan: Vec<bool>,
    branch_name: Vec<Option<String>>,
    status: Vec<String>,
    created_at: Vec<DateTime<Utc>>,
    started_at: Vec<Option<DateTime<Utc>>>,
    completed_at: Vec<Option<DateTime<Utc>>>,
    updated_at: Vec<DateTime<Utc>>,
    error: Vec<Option<String>>,
    issue_url: Vec<Option<String>>,
    issue_number: Vec<Option<i64>>,
    pr_url: Vec<Option<String>>,
    pr_number: Vec<Option<i64>>,
    commit_sha: Vec<Option<String>>,
    plan_text: Vec<Option<String>>,
    plan_revision: Vec<i32>,
    pending_questions: Vec<Option<Value>>,
    waiting_for: Vec<Option<String>>,
}

impl Columns {
    fn push(&mut self, t: &Task) {
        self.id.push(t.id.clone());
        self.user_id.push(t.user_id.clone());
        self.description.push(t.description.clone());
        self.repo_url.push(t.repo_url.clone());
        self.project_id.push(t.project_id.clone());
        self.conversation_id.push(t.conversation_id.clone());
        self.skip_plan.push(t.skip_plan);
        self.branch_name.push(t.branch_name.clone());
        self.status.push(t.status.clone());
        self.created_at.push(t.created_at);
        self.started_at.push(t.started_at);
        self.completed_at.push(t.completed_at);
        self.updated_at.push(t.updated_at);
        self.error.push(t.error.clone());
        self.issue_url.push(t.issue_url.clone());
        self.issue_number.push(t.issue_number);
        self.pr_url.push(t.pr_url.clone());
        self.pr_number.push(t.pr_number);
        self.commit_sha.push(t.commit_sha.clone());
        self.plan_text.push(t.plan_text.clone());
        self.plan_revision.push(t.plan_revision);
        self.pending_questions.push(t.pending_questions.clone());
        self.waiting_for.push(t.waiting_for.clone());
    }
}

fn non_empty(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_string())
}

#[cfg(test)]
mod tests {
    use mainloop_events::v1::{
        IssueLinked, JobRequested, PlanningStarted, RepoRef, TaskCompleted, TaskSpawned, TaskWaiting,
    };

    use super::*;

    fn at(second: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + second, 0).unwrap_or_default()
    }

    fn event(payload: Payload) -> (Envelope, Payload) {
        (Envelope::new("u1", "t1", payload.clone()), payload)
    }

    fn spawned() -> Payload {
        Payload::TaskSpawned(TaskSpawned {
            repo: Some(RepoRef {
                owner: "acme".into(),
                name: "widgets".into(),
                html_url: "https://github.com/acme/widgets".into(),
            }),
            description: "add a quick start".into(),
            ..Default::default()
        })
    }

    /// Given `history` folded from nothing, the task and what the last event did.
    fn given(history: Vec<Payload>) -> (Option<Task>, Evolved) {
        let mut task = None;
        let mut last = Evolved::default();
        for (n, payload) in history.into_iter().enumerate() {
            let (event, payload) = event(payload);
            let project = matches!(payload, Payload::TaskSpawned(_)).then(|| Project {
                id: "p1".into(),
                full_name: "acme/widgets".into(),
            });
            let n = i64::try_from(n).unwrap_or_default();
            last = evolve(&mut task, &event, &payload, n + 1, at(n), project);
        }
        (task, last)
    }

    #[test]
    fn a_spawned_task_is_pending_in_its_project_and_its_card_names_the_repository() {
        let (task, evolved) = given(vec![spawned()]);
        let task = task.unwrap_or_default();
        assert_eq!(task.status, "pending");
        assert_eq!(task.project_id.as_deref(), Some("p1"));
        assert!(evolved.changed);
        assert_eq!(evolved.status.map(|s| s.status), Some("pending"));
        let card = card(&task);
        assert_eq!(card.repo_full_name, "acme/widgets");
        assert_eq!(card.description, "add a quick start");
    }

    #[test]
    fn work_starts_once_and_a_terminal_status_completes_the_task() {
        let planning = Payload::PlanningStarted(PlanningStarted::default());
        let (task, _) = given(vec![spawned(), planning.clone(), planning]);
        assert_eq!(
            task.as_ref().and_then(|t| t.started_at),
            Some(at(1)),
            "the first start is kept"
        );
        assert_eq!(task.and_then(|t| t.completed_at), None);
        let (task, _) = given(vec![spawned(), Payload::TaskCompleted(TaskCompleted::default())]);
        assert_eq!(
            task.map(|t| (t.status, t.completed_at)),
            Some(("completed".into(), Some(at(1))))
        );
    }

    #[test]
    fn a_job_requested_changes_the_card_only_when_it_said_it_was_waiting() {
        let job = Payload::JobRequested(JobRequested::default());
        let (_, evolved) = given(vec![spawned(), job.clone()]);
        assert_eq!(evolved, Evolved::default(), "nothing to clear");
        let waiting = Payload::TaskWaiting(TaskWaiting {
            reason: "GitHub rate limit".into(),
            ..Default::default()
        });
        let (task, evolved) = given(vec![spawned(), waiting, job]);
        assert!(evolved.changed);
        assert_eq!(task.and_then(|t| t.waiting_for), None);
    }

    #[test]
    fn events_of_a_task_never_spawned_record_the_status_and_change_no_row() {
        let linked = Payload::IssueLinked(IssueLinked {
            issue_url: "https://github.com/acme/widgets/issues/1".into(),
            issue_number: 1,
        });
        let (task, evolved) = given(vec![linked]);
        assert_eq!(task, None);
        assert!(!evolved.changed);
        let (task, evolved) = given(vec![Payload::PlanningStarted(PlanningStarted::default())]);
        assert_eq!(task, None);
        assert_eq!(evolved.status.map(|s| s.status), Some("planning"));
    }
}
