//! Which replica holds which job. Each job row names its owner (the replica's `WORKER_ID`) and a
//! lease the owner renews while the job runs. A replica that stops stops renewing; once the
//! lease has run out one other replica takes the job over, by an atomic claim on the row, so two
//! replicas never run or recover the same job. A replica's own jobs from before its restart are
//! taken back at once. Cancellations are recorded here too: the replica that hears one from the
//! queue may not be the one running the job, which learns of it from the broadcast at once, or
//! from the renewal a few seconds later if the broadcast was missed.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use mainloop_events::Envelope;
use mainloop_events::v1::JobRequested;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::Jobs;

/// The core NATS subject every replica hears cancellations on.
const CANCEL_SUBJECT: &str = "worker-supervisor.cancel";

#[derive(Clone)]
pub struct Leases {
    pub db: PgPool,
    pub worker_id: String,
    pub lease: Duration,
}

fn attempt_of(job: &JobRequested) -> i32 {
    i32::try_from(job.attempt).unwrap_or(i32::MAX)
}

impl Leases {
    fn lease_secs(&self) -> f64 {
        self.lease.as_secs_f64()
    }

    /// Records the job as ours; false if it was already known (a redelivered request).
    pub async fn accept(&self, job: &JobRequested, event: &Envelope) -> Result<bool, sqlx::Error> {
        let inserted = sqlx::query(
            "INSERT INTO jobs (job_id, attempt, user_id, task_id, state, request, owner, lease_until) \
             VALUES ($1, $2, $3, $4, 'accepted', $5, $6, now() + make_interval(secs => $7)) ON CONFLICT DO NOTHING",
        )
        .bind(&job.job_id)
        .bind(attempt_of(job))
        .bind(&event.user_id)
        .bind(&event.correlation_id)
        .bind(event.to_bytes())
        .bind(&self.worker_id)
        .bind(self.lease_secs())
        .execute(&self.db)
        .await?
        .rows_affected();
        Ok(inserted == 1)
    }

    pub async fn record_cancellation(&self, job_id: &str) -> Result<(), sqlx::Error> {
        sqlx::query("INSERT INTO cancelled_jobs (job_id) VALUES ($1) ON CONFLICT DO NOTHING")
            .bind(job_id)
            .execute(&self.db)
            .await?;
        Ok(())
    }

    pub async fn cancel_requested(&self, job_id: &str) -> bool {
        sqlx::query_scalar::<_, bool>("SELECT EXISTS (SELECT 1 FROM cancelled_jobs WHERE job_id = $1)")
            .bind(job_id)
            .fetch_one(&self.db)
            .await
            .unwrap_or(false)
    }

    pub async fn set_state(&self, job: &JobRequested, state: &str) {
        let done = state != "running";
        let updated = sqlx::query(
            "UPDATE jobs SET state = $3, finished_at = CASE WHEN $4 THEN now() END WHERE job_id = $1 AND attempt = $2",
        )
        .bind(&job.job_id)
        .bind(attempt_of(job))
        .bind(state)
        .bind(done)
        .execute(&self.db)
        .await;
        if let Err(err) = updated {
            tracing::error!(error = %err, job = %job.job_id, "job state not recorded");
        }
    }

    /// Claims the unfinished jobs nobody holds: leases run out, and (at start) our own from
    /// before a restart, except those in `running` here. Returns their requests.
    pub async fn claim_unheld(
        &self,
        at_start: bool,
        running: &[String],
    ) -> Result<Vec<Vec<u8>>, sqlx::Error> {
        sqlx::query_scalar(
            "UPDATE jobs SET owner = $1, lease_until = now() + make_interval(secs => $2) \
             WHERE (job_id, attempt) IN ( \
                 SELECT job_id, attempt FROM jobs \
                 WHERE state IN ('accepted', 'running') \
                   AND (lease_until < now() OR owner IS NULL OR ($3 AND owner = $1)) \
                   AND NOT (job_id = ANY($4)) \
                 FOR UPDATE SKIP LOCKED) \
             RETURNING request",
        )
        .bind(&self.worker_id)
        .bind(self.lease_secs())
        .bind(at_start)
        .bind(running)
        .fetch_all(&self.db)
        .await
    }

    /// Renews the leases of the jobs running here; returns those meanwhile cancelled.
    pub async fn renew(&self, running: &[String]) -> Result<Vec<String>, sqlx::Error> {
        sqlx::query(
            "UPDATE jobs SET lease_until = now() + make_interval(secs => $2) \
             WHERE owner = $1 AND state IN ('accepted', 'running') AND job_id = ANY($3)",
        )
        .bind(&self.worker_id)
        .bind(self.lease_secs())
        .bind(running)
        .execute(&self.db)
        .await?;
        sqlx::query_scalar("SELECT job_id FROM cancelled_jobs WHERE job_id = ANY($1)")
            .bind(running)
            .fetch_all(&self.db)
            .await
    }
}

/// Renews this replica's leases (a third of the lease apart), stops what was cancelled
/// elsewhere, and takes over jobs whose replica stopped (half a lease apart).
pub async fn maintain(jobs: Arc<Jobs>, shutdown: CancellationToken) {
    let lease = jobs.leases.lease;
    let mut renewal = tokio::time::interval(lease / 3);
    let mut takeover = tokio::time::interval(lease / 2);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = renewal.tick() => {
                match jobs.leases.renew(&jobs.running_ids()).await {
                    Ok(cancelled) => cancelled.iter().for_each(|id| jobs.cancel_if_running(id)),
                    Err(err) => tracing::warn!(error = %err, "job leases not renewed"),
                }
            }
            _ = takeover.tick() => {
                if let Err(err) = jobs.recover(false).await {
                    tracing::warn!(error = %err, "jobs of stopped replicas not looked for");
                }
            }
        }
    }
}

/// Tells every replica that a job was cancelled (the one running it stops it).
pub async fn broadcast_cancellation(jobs: &Jobs, job_id: &str) {
    let sent = jobs
        .bus
        .client()
        .publish(CANCEL_SUBJECT, job_id.to_string().into())
        .await;
    if let Err(err) = sent {
        tracing::warn!(error = %err, job = job_id, "cancellation not broadcast; the lease renewal will carry it");
    }
}

/// Hears the cancellations other replicas took from the queue.
pub async fn hear_cancellations(jobs: Arc<Jobs>, shutdown: CancellationToken) {
    let mut subscription = match jobs.bus.client().subscribe(CANCEL_SUBJECT).await {
        Ok(subscription) => subscription,
        Err(err) => {
            tracing::warn!(error = %err, "cancellations from other replicas arrive only with the lease renewal");
            return;
        }
    };
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            message = subscription.next() => match message {
                Some(message) => jobs.cancel_if_running(&String::from_utf8_lossy(&message.payload)),
                None => return,
            },
        }
    }
}
