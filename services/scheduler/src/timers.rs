//! Durable timers in the scheduler's own tables. A TASKS event that asks for something later
//! (`JobRetryScheduled`; `NeedsApproval` and `ApprovalReminded`, whose waits are reminded and may
//! expire) becomes a row with a due time, written idempotently by the TASKS
//! consumer; a loop fires due rows (`FOR UPDATE SKIP LOCKED`, so replicas share the work and
//! none fires a timer another holds) by executing the command on the task, and deletes a row
//! once the task has been told. A crash before the delete fires it again; the task ignores a
//! timer it no longer waits for, so each fires once in effect. Restarts lose nothing: the rows
//! are the timers.

use std::time::Duration;

use mainloop_events::v1::{ApprovalKind, JobRetryScheduled};
use mainloop_events::{Envelope, Payload};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::store::{ExecuteError, TaskStore};
use crate::task::Command;

pub const JOB_RETRY: &str = "job-retry";
pub const REMIND: &str = "remind";
pub const EXPIRE: &str = "expire";
/// How often due timers are looked for; the delays they keep are seconds to minutes.
const TICK: Duration = Duration::from_millis(200);

/// How long the person may keep a question or plan review waiting: reminded after `remind_after`
/// (and again each time as long), cancelled after `expire_after`; `None`: never.
#[derive(Debug, Clone, Copy, Default)]
pub struct Waits {
    pub remind_after: Option<Duration>,
    pub expire_after: Option<Duration>,
}

/// Stores the timer a `JobRetryScheduled` asks for: due `delay_ms` after the event.
pub async fn schedule_retry(
    db: &PgPool,
    event: &Envelope,
    retry: &JobRetryScheduled,
) -> Result<(), sqlx::Error> {
    let key = format!("{}:{}", retry.job_id, retry.attempt);
    schedule(db, event, JOB_RETRY, &key, Duration::from_millis(retry.delay_ms)).await
}

/// Stores the reminder and the expiry a wait on the person asks for: when a question or plan
/// review is asked (`NeedsApproval`), and the next reminder after each one (`ApprovalReminded`).
pub async fn schedule_waits(db: &PgPool, event: &Envelope, waits: Waits) -> Result<(), sqlx::Error> {
    let (kind, revision, nth) = match &event.payload {
        Some(Payload::NeedsApproval(asked)) => (asked.kind(), asked.plan_revision, 0),
        Some(Payload::ApprovalReminded(reminded)) => (reminded.kind(), reminded.plan_revision, reminded.nth),
        _ => return Ok(()),
    };
    if !matches!(kind, ApprovalKind::AnswerQuestions | ApprovalKind::PlanReview) {
        return Ok(());
    }
    let kind = kind as i32;
    if let Some(after) = waits.remind_after.filter(|d| !d.is_zero()) {
        let waited = after.as_secs() * u64::from(nth + 1);
        let key = format!("{kind}:{revision}:{}:{waited}", nth + 1);
        schedule(db, event, REMIND, &key, after).await?;
    }
    if nth == 0
        && let Some(after) = waits.expire_after.filter(|d| !d.is_zero())
    {
        let key = format!("{kind}:{revision}:{}", after.as_secs());
        schedule(db, event, EXPIRE, &key, after).await?;
    }
    Ok(())
}

/// Stores a timer of `kind` due `delay` after `event` happened (idempotent on its key).
async fn schedule(
    db: &PgPool,
    event: &Envelope,
    kind: &str,
    key: &str,
    delay: Duration,
) -> Result<(), sqlx::Error> {
    let delay_ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
    let occurred = event
        .occurred_at
        .as_ref()
        .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0)))
        .unwrap_or_else(chrono::Utc::now);
    sqlx::query(
        "INSERT INTO timers (task_id, user_id, kind, key, due_at) \
         VALUES ($1, $2, $3, $4, $5 + make_interval(secs => $6::float8 / 1000)) ON CONFLICT DO NOTHING",
    )
    .bind(&event.correlation_id)
    .bind(&event.user_id)
    .bind(kind)
    .bind(key)
    .bind(occurred)
    .bind(delay_ms as f64)
    .execute(db)
    .await?;
    Ok(())
}

#[derive(sqlx::FromRow)]
struct Due {
    task_id: String,
    user_id: String,
    kind: String,
    key: String,
}

/// Fires due timers until `shutdown`.
pub async fn run(db: PgPool, store: TaskStore, shutdown: CancellationToken) {
    loop {
        if let Err(err) = fire_due(&db, &store).await {
            tracing::warn!(error = %err, "firing timers failed; will try again");
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(TICK) => {}
        }
    }
}

async fn fire_due(db: &PgPool, store: &TaskStore) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    let due: Vec<Due> = sqlx::query_as(
        "SELECT task_id, user_id, kind, key FROM timers WHERE due_at <= now() \
         ORDER BY due_at LIMIT 100 FOR UPDATE SKIP LOCKED",
    )
    .fetch_all(&mut *tx)
    .await?;
    for timer in due {
        let Some(command) = command_for(&timer) else {
            tracing::error!(kind = %timer.kind, key = %timer.key, "unknown timer; dropped");
            delete(&mut tx, &timer).await?;
            continue;
        };
        let causation = format!("timer:{}:{}", timer.kind, timer.key);
        match store
            .execute(&timer.user_id, &timer.task_id, command, &causation)
            .await
        {
            Ok(_) | Err(ExecuteError::Rejected(_)) => {
                delete(&mut tx, &timer).await?;
            }
            Err(err) => {
                tracing::warn!(error = %err, task = %timer.task_id, "timer not fired yet; will try again")
            }
        }
    }
    tx.commit().await
}

fn command_for(timer: &Due) -> Option<Command> {
    match timer.kind.as_str() {
        JOB_RETRY => {
            let (job_id, attempt) = timer.key.rsplit_once(':')?;
            Some(Command::RetryDue {
                job_id: job_id.to_string(),
                attempt: attempt.parse().ok()?,
            })
        }
        REMIND => {
            let mut parts = timer.key.split(':');
            let kind = approval_kind(parts.next()?)?;
            Some(Command::Remind {
                kind,
                revision: parts.next()?.parse().ok()?,
                nth: parts.next()?.parse().ok()?,
                waited_secs: parts.next()?.parse().ok()?,
            })
        }
        EXPIRE => {
            let mut parts = timer.key.split(':');
            let kind = approval_kind(parts.next()?)?;
            Some(Command::Expire {
                kind,
                revision: parts.next()?.parse().ok()?,
                waited_secs: parts.next()?.parse().ok()?,
            })
        }
        _ => None,
    }
}

fn approval_kind(number: &str) -> Option<ApprovalKind> {
    ApprovalKind::try_from(number.parse::<i32>().ok()?).ok()
}

async fn delete(tx: &mut sqlx::PgConnection, timer: &Due) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM timers WHERE task_id = $1 AND kind = $2 AND key = $3")
        .bind(&timer.task_id)
        .bind(&timer.kind)
        .bind(&timer.key)
        .execute(tx)
        .await?;
    Ok(())
}
