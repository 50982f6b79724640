//! Which pull requests to watch and which comment threads to read, learned from TASKS: a task's
//! repository when it is spawned, its issue and pull request when they are linked, and the end of
//! watching when the task ends. A new watch, and
//! a push of ours (`CodePushed`, `FeedbackAddressed`), make the poller look at the pull request at
//! once: a quiet pull request may otherwise be polled only every few minutes.

use mainloop_bus::{Delivery, Handler, HandlerError};
use mainloop_events::Payload;
use sqlx::PgPool;

/// Starts reading the comments of issue or pull request `$2` of task `$1`.
const THREAD: &str = "INSERT INTO threads (task_id, user_id, owner, name, number) \
     SELECT task_id, user_id, owner, name, $2 FROM task_repos WHERE task_id = $1 \
     ON CONFLICT (task_id, number) DO UPDATE SET active = true";

pub struct Watches {
    pub db: PgPool,
    /// Task ids whose pull request the poller should look at now.
    pub nudge: Option<tokio::sync::mpsc::UnboundedSender<String>>,
}

impl Handler for Watches {
    async fn handle(&self, delivery: Delivery) -> Result<(), HandlerError> {
        let event = &delivery.event;
        let transient = |e: sqlx::Error| HandlerError::Transient(e.to_string());
        let query = match &event.payload {
            Some(Payload::TaskSpawned(spawned)) => {
                let repo = spawned.repo.clone().unwrap_or_default();
                sqlx::query("INSERT INTO task_repos (task_id, user_id, owner, name) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING")
                    .bind(&event.correlation_id)
                    .bind(&event.user_id)
                    .bind(repo.owner)
                    .bind(repo.name)
            }
            Some(Payload::IssueLinked(linked)) => sqlx::query(THREAD)
                .bind(&event.correlation_id)
                .bind(i64::try_from(linked.issue_number).unwrap_or(i64::MAX)),
            Some(Payload::PullRequestLinked(linked)) => sqlx::query(
                "INSERT INTO watches (task_id, user_id, owner, name, pr_number) \
                 SELECT task_id, user_id, owner, name, $2 FROM task_repos WHERE task_id = $1 \
                 ON CONFLICT (task_id) DO UPDATE SET pr_number = excluded.pr_number, active = true, \
                 reported = NULL, head_sha = NULL, head_seen_at = NULL",
            )
            .bind(&event.correlation_id)
            .bind(i64::try_from(linked.pr_number).unwrap_or(i64::MAX)),
            // A task that ended is not watched; a cancelled or failed one's comments are still
            // read for a week (`/retry`), more slowly as nothing happens.
            Some(Payload::TaskCompleted(_) | Payload::TaskCancelled(_) | Payload::TaskFailed(_)) => {
                sqlx::query(
                    "WITH threads AS (UPDATE threads SET active = NOT $2, ended_at = now() WHERE task_id = $1), \
                     reactions AS (UPDATE reaction_watches SET active = false WHERE task_id = $1) \
                     UPDATE watches SET active = false WHERE task_id = $1",
                )
                .bind(&event.correlation_id)
                .bind(matches!(event.payload, Some(Payload::TaskCompleted(_))))
            }
            // Approved: reactions on the plan comment no longer steer.
            Some(Payload::PlanApproved(_)) => {
                sqlx::query("UPDATE reaction_watches SET active = false WHERE task_id = $1")
                    .bind(&event.correlation_id)
            }
            // A pull request the cancellation closed is watched again once it is reopened, never
            // before: it would be seen closed and cancel the task again.
            Some(Payload::TaskRetried(retried)) => sqlx::query(
                "WITH threads AS (UPDATE threads SET active = true, ended_at = NULL WHERE task_id = $1) \
                 UPDATE watches SET active = true, reported = NULL, head_sha = NULL, head_seen_at = NULL \
                 WHERE task_id = $1 AND NOT $2",
            )
            .bind(&event.correlation_id)
            .bind(retried.reopens_on_github),
            Some(Payload::ReopenedOnGithub(reopened)) => sqlx::query(
                "UPDATE watches SET active = true, reported = NULL, head_sha = NULL, head_seen_at = NULL \
                 WHERE task_id = $1 AND pr_number = $2",
            )
            .bind(&event.correlation_id)
            .bind(i64::try_from(reopened.pr_number).unwrap_or(i64::MAX)),
            Some(Payload::CodePushed(_) | Payload::FeedbackAddressed(_)) => {
                if let Some(nudge) = &self.nudge {
                    let _ = nudge.send(event.correlation_id.clone());
                }
                return Ok(());
            }
            _ => return Ok(()),
        };
        query.execute(&self.db).await.map_err(transient)?;
        // A pull request is a thread of comments too.
        if let Some(Payload::PullRequestLinked(linked)) = &event.payload {
            sqlx::query(THREAD)
                .bind(&event.correlation_id)
                .bind(i64::try_from(linked.pr_number).unwrap_or(i64::MAX))
                .execute(&self.db)
                .await
                .map_err(transient)?;
        }
        // A new (or renewed) watch is looked at now, not at the next round.
        if matches!(
            &event.payload,
            Some(
                Payload::IssueLinked(_)
                    | Payload::PullRequestLinked(_)
                    | Payload::TaskRetried(_)
                    | Payload::ReopenedOnGithub(_)
            )
        ) && let Some(nudge) = &self.nudge
        {
            let _ = nudge.send(event.correlation_id.clone());
        }
        Ok(())
    }
}
