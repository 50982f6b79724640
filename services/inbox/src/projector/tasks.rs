//! Tasks, their projects and their status history.

use mainloop_events::v1::{TaskCardUpdated, TaskStatus};
use mainloop_events::{Envelope, Payload};
use serde_json::json;
use sqlx::PgConnection;

use super::occurred_at;

/// Applies one TASKS event to the task rows. `true` when the task card changed.
pub(super) async fn apply(
    tx: &mut PgConnection,
    event: &Envelope,
    payload: &Payload,
    sequence: i64,
) -> Result<bool, sqlx::Error> {
    let at = occurred_at(event);
    let task_id = &event.correlation_id;
    if let Payload::TaskSpawned(spawned) = payload {
        let repo = spawned.repo.clone().unwrap_or_default();
        let full_name = format!("{}/{}", repo.owner, repo.name);
        let project_id: String = sqlx::query_scalar(
            "INSERT INTO projects (id, user_id, owner, name, full_name, html_url, created_at, last_used_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7) \
             ON CONFLICT (user_id, full_name) DO UPDATE SET last_used_at = excluded.last_used_at \
             RETURNING id",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(&event.user_id)
        .bind(&repo.owner)
        .bind(&repo.name)
        .bind(&full_name)
        .bind(&repo.html_url)
        .bind(at)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO tasks (id, user_id, description, repo_url, project_id, conversation_id, skip_plan, status, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, $8) ON CONFLICT (id) DO NOTHING",
        )
        .bind(task_id)
        .bind(&event.user_id)
        .bind(&spawned.description)
        .bind(&repo.html_url)
        .bind(&project_id)
        .bind(non_empty(&spawned.conversation_id))
        .bind(spawned.skip_plan)
        .bind(at)
        .execute(&mut *tx)
        .await?;
    }

    let mut changed = false;
    if let Some(status) = payload.task_status_after() {
        let name = status.api_name();
        sqlx::query(
            "UPDATE tasks SET status = $2, updated_at = $3, \
             started_at = CASE WHEN $2 IN ('planning', 'implementing') THEN COALESCE(started_at, $3) ELSE started_at END, \
             completed_at = CASE WHEN $4 THEN $3 ELSE NULL END, waiting_for = NULL \
             WHERE id = $1",
        )
        .bind(task_id)
        .bind(name)
        .bind(at)
        .bind(status.is_terminal())
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO task_history (task_id, stream_sequence, event_type, status, occurred_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT DO NOTHING",
        )
        .bind(task_id)
        .bind(sequence)
        .bind(&event.r#type)
        .bind(name)
        .bind(at)
        .execute(&mut *tx)
        .await?;
        changed = true;
    }

    let update = match payload {
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
            Some(
                sqlx::query("UPDATE tasks SET pending_questions = $2 WHERE id = $1")
                    .bind(task_id)
                    .bind(json!(questions)),
            )
        }
        Payload::QuestionsAnswered(_) | Payload::TaskCancelled(_) => {
            Some(sqlx::query("UPDATE tasks SET pending_questions = NULL WHERE id = $1").bind(task_id))
        }
        Payload::PlanProposed(plan) => Some(
            sqlx::query("UPDATE tasks SET plan_text = $2, plan_revision = $3 WHERE id = $1")
                .bind(task_id)
                .bind(&plan.plan_text)
                .bind(i32::try_from(plan.revision).unwrap_or(i32::MAX)),
        ),
        Payload::PlanApproved(e) => Some(
            sqlx::query("UPDATE tasks SET branch_name = $2 WHERE id = $1")
                .bind(task_id)
                .bind(&e.branch_name),
        ),
        Payload::ImplementationStarted(e) => Some(
            sqlx::query("UPDATE tasks SET branch_name = $2 WHERE id = $1")
                .bind(task_id)
                .bind(&e.branch_name),
        ),
        Payload::IssueLinked(e) => Some(
            sqlx::query(
                "UPDATE tasks SET issue_url = $2, issue_number = $3, waiting_for = NULL WHERE id = $1",
            )
            .bind(task_id)
            .bind(&e.issue_url)
            .bind(i64::try_from(e.issue_number).unwrap_or(i64::MAX)),
        ),
        Payload::PullRequestLinked(e) => Some(
            sqlx::query("UPDATE tasks SET pr_url = $2, pr_number = $3, waiting_for = NULL WHERE id = $1")
                .bind(task_id)
                .bind(&e.pr_url)
                .bind(i64::try_from(e.pr_number).unwrap_or(i64::MAX)),
        ),
        Payload::CodePushed(e) => Some(
            sqlx::query("UPDATE tasks SET commit_sha = $2, waiting_for = NULL WHERE id = $1")
                .bind(task_id)
                .bind(&e.head_sha),
        ),
        Payload::TaskFailed(e) => Some(
            sqlx::query("UPDATE tasks SET error = $2 WHERE id = $1")
                .bind(task_id)
                .bind(&e.error),
        ),
        Payload::TaskRetried(_) => {
            Some(sqlx::query("UPDATE tasks SET error = NULL WHERE id = $1").bind(task_id))
        }
        Payload::JobRetryScheduled(retry) => {
            let at =
                at + chrono::Duration::milliseconds(i64::try_from(retry.delay_ms).unwrap_or(i64::MAX / 2));
            let reason: String = retry.reason.chars().take(200).collect();
            Some(
                sqlx::query("UPDATE tasks SET waiting_for = $2 WHERE id = $1")
                    .bind(task_id)
                    .bind(format!(
                        "The agent failed ({reason}); attempt {} at {} UTC",
                        retry.attempt,
                        at.format("%H:%M:%S")
                    )),
            )
        }
        Payload::TaskWaiting(waiting) => {
            let until = i64::try_from(waiting.until_ms)
                .ok()
                .and_then(chrono::DateTime::from_timestamp_millis)
                .unwrap_or(at);
            Some(
                sqlx::query("UPDATE tasks SET waiting_for = $2 WHERE id = $1")
                    .bind(task_id)
                    .bind(format!(
                        "{}, retrying at {} UTC",
                        waiting.reason,
                        until.format("%H:%M:%S")
                    )),
            )
        }
        // Only a card that said it was waiting changes.
        Payload::JobRequested(_) => Some(
            sqlx::query("UPDATE tasks SET waiting_for = NULL WHERE id = $1 AND waiting_for IS NOT NULL")
                .bind(task_id),
        ),
        _ => None,
    };
    if let Some(query) = update {
        changed |= query.execute(&mut *tx).await?.rows_affected() > 0;
    }
    Ok(changed)
}

#[derive(sqlx::FromRow)]
struct CardRow {
    status: String,
    description: String,
    full_name: Option<String>,
    issue_url: Option<String>,
    pr_url: Option<String>,
    error: Option<String>,
    waiting_for: Option<String>,
}

/// The task card as browsers show it.
pub(super) async fn card(
    tx: &mut PgConnection,
    task_id: &str,
) -> Result<Option<TaskCardUpdated>, sqlx::Error> {
    let row: Option<CardRow> = sqlx::query_as(
        "SELECT t.status, t.description, p.full_name, t.issue_url, t.pr_url, t.error, t.waiting_for \
         FROM tasks t LEFT JOIN projects p ON p.id = t.project_id WHERE t.id = $1",
    )
    .bind(task_id)
    .fetch_optional(&mut *tx)
    .await?;
    Ok(row.map(|row| TaskCardUpdated {
        task_id: task_id.to_string(),
        status: TaskStatus::from_api_name(&row.status).unwrap_or_default() as i32,
        description: row.description,
        repo_full_name: row.full_name.unwrap_or_default(),
        issue_url: row.issue_url.unwrap_or_default(),
        pr_url: row.pr_url.unwrap_or_default(),
        error: row.error.unwrap_or_default(),
        waiting_for: row.waiting_for.unwrap_or_default(),
    }))
}

fn non_empty(value: &str) -> Option<&str> {
    (!value.is_empty()).then_some(value)
}
