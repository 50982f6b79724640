//! Finished tasks leave nothing behind: when a task completes, fails or is cancelled (TASKS),
//! its clone and agent home are removed and its agent session forgotten; the repository's
//! cache clone stays for the next task. A task whose job is still being stopped is cleaned once
//! the job is over (the event comes back later), so an agent never loses its directory under it.

use mainloop_bus::{Delivery, Handler, HandlerError};
use mainloop_events::Payload;
use sqlx::PgPool;

use crate::workspace::Workspaces;

pub struct Cleanup {
    pub db: PgPool,
    pub workspaces: Workspaces,
}

impl Handler for Cleanup {
    async fn handle(&self, delivery: Delivery) -> Result<(), HandlerError> {
        let event = &delivery.event;
        if !matches!(
            event.payload,
            Some(Payload::TaskCompleted(_) | Payload::TaskFailed(_) | Payload::TaskCancelled(_))
        ) {
            return Ok(());
        }
        let task_id = &event.correlation_id;
        let transient = |e: sqlx::Error| HandlerError::Transient(e.to_string());
        let busy: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM jobs WHERE task_id = $1 AND state IN ('accepted', 'running'))",
        )
        .bind(task_id)
        .fetch_one(&self.db)
        .await
        .map_err(transient)?;
        if busy {
            return Err(HandlerError::Transient(format!(
                "a job of task {task_id} is still stopping"
            )));
        }
        self.workspaces
            .remove(task_id)
            .await
            .map_err(|e| HandlerError::Transient(e.to_string()))?;
        sqlx::query("DELETE FROM agent_sessions WHERE task_id = $1")
            .bind(task_id)
            .execute(&self.db)
            .await
            .map_err(transient)?;
        tracing::info!(task = %task_id, "finished task's workspace removed");
        Ok(())
    }
}
