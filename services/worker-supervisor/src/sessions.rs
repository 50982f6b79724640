//! Each task's agent session, so its jobs continue one conversation with the agent (plan →
//! implement → fix keep what the agent learned) through `--resume`. Kept in Postgres: a
//! restarted supervisor resumes the same session.

use sqlx::PgPool;

#[derive(Clone)]
pub struct Sessions {
    pub db: PgPool,
}

impl Sessions {
    /// The session the task's last run ended in, if any.
    pub async fn get(&self, task_id: &str) -> Option<String> {
        sqlx::query_scalar("SELECT session_id FROM agent_sessions WHERE task_id = $1")
            .bind(task_id)
            .fetch_optional(&self.db)
            .await
            .unwrap_or_else(|err| {
                tracing::warn!(error = %err, task = task_id, "agent session unknown; starting a new one");
                None
            })
    }

    pub async fn set(&self, task_id: &str, session_id: &str) {
        if session_id.is_empty() {
            return;
        }
        let stored = sqlx::query(
            "INSERT INTO agent_sessions (task_id, session_id) VALUES ($1, $2) \
             ON CONFLICT (task_id) DO UPDATE SET session_id = EXCLUDED.session_id, updated_at = now()",
        )
        .bind(task_id)
        .bind(session_id)
        .execute(&self.db)
        .await;
        if let Err(err) = stored {
            tracing::warn!(error = %err, task = task_id, "agent session not kept; the next job starts a new one");
        }
    }
}
