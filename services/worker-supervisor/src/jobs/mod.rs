//! Jobs: take a request from the WORK queue, record it, ack it, and run it when a slot is free;
//! report JobStarted, WorkerLog lines, and JobSucceeded / JobFailed / JobCancelled on JOBS and
//! LOGS. A cancellation request stops the run and every process it started.

mod execute;
mod report;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use mainloop_bus::{Bus, Delivery, Handler, HandlerError};
use mainloop_events::v1::{JobFailed, JobRequested, JobStarted};
use mainloop_events::{Envelope, Payload};
use sqlx::PgPool;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::agent::AgentConfig;
use crate::sessions::Sessions;
use crate::workspace::Workspaces;
use report::Reporter;

pub struct Jobs {
    pub bus: Bus,
    pub db: PgPool,
    pub workspaces: Workspaces,
    pub sessions: Sessions,
    pub agent: AgentConfig,
    pub slots: Arc<Semaphore>,
    /// Runs in progress: job id → (attempt, its cancellation).
    pub running: Mutex<HashMap<String, (u32, CancellationToken)>>,
    /// Removes secrets (and bytes Postgres refuses) from everything the agent produces.
    pub redactor: crate::redact::Redactor,
    pub shutdown: CancellationToken,
}

/// The WORK consumer's handler.
pub struct JobQueue(pub Arc<Jobs>);

impl Handler for JobQueue {
    async fn handle(&self, delivery: Delivery) -> Result<(), HandlerError> {
        let jobs = &self.0;
        let event = delivery.event;
        match &event.payload {
            Some(Payload::JobRequested(job)) => {
                let inserted = sqlx::query(
                    "INSERT INTO jobs (job_id, attempt, user_id, task_id, state, request) VALUES ($1, $2, $3, $4, 'accepted', $5) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(&job.job_id)
                .bind(i32::try_from(job.attempt).unwrap_or(i32::MAX))
                .bind(&event.user_id)
                .bind(&event.correlation_id)
                .bind(event.to_bytes())
                .execute(&jobs.db)
                .await
                .map_err(|e| HandlerError::Transient(e.to_string()))?
                .rows_affected();
                if inserted == 1 {
                    let (jobs, job) = (jobs.clone(), job.clone());
                    tokio::spawn(async move { jobs.run(event, job).await });
                }
                Ok(())
            }
            Some(Payload::JobCancellationRequested(cancel)) => {
                // Recorded first: the request may arrive before the job it cancels.
                sqlx::query("INSERT INTO cancelled_jobs (job_id) VALUES ($1) ON CONFLICT DO NOTHING")
                    .bind(&cancel.job_id)
                    .execute(&jobs.db)
                    .await
                    .map_err(|e| HandlerError::Transient(e.to_string()))?;
                if let Some((_, token)) = jobs
                    .running
                    .lock()
                    .ok()
                    .and_then(|r| r.get(&cancel.job_id).cloned())
                {
                    token.cancel();
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

impl Jobs {
    async fn run(self: Arc<Self>, request: Envelope, job: JobRequested) {
        let reporter = Reporter::for_request(&self.bus, &request);
        let cancel = self.shutdown.child_token();
        if let Ok(mut running) = self.running.lock() {
            running.insert(job.job_id.clone(), (job.attempt, cancel.clone()));
        }
        let Ok(_slot) = self.slots.clone().acquire_owned().await else {
            return;
        };
        if self.cancel_requested(&job.job_id).await {
            cancel.cancel();
        }
        self.set_state(&job, "running").await;
        reporter
            .job(Payload::JobStarted(JobStarted {
                job_id: job.job_id.clone(),
                attempt: job.attempt,
                mode: job.mode,
                runner: "local".into(),
            }))
            .await;
        let result = self.execute(&reporter, &job, &cancel).await;
        let state = match &result {
            Payload::JobSucceeded(_) => "succeeded",
            Payload::JobCancelled(_) => "cancelled",
            _ => "failed",
        };
        if state == "cancelled" && self.shutdown.is_cancelled() {
            // Stopped by our own shutdown: leave it "running" so the restart reports it as lost.
            return;
        }
        // Left "running" if the report could not go out: the next start reports it lost.
        if reporter.job(result).await {
            self.set_state(&job, state).await;
        }
        if let Ok(mut running) = self.running.lock()
            && running
                .get(&job.job_id)
                .is_some_and(|(attempt, _)| *attempt == job.attempt)
        {
            running.remove(&job.job_id);
        }
    }

    async fn cancel_requested(&self, job_id: &str) -> bool {
        sqlx::query_scalar::<_, bool>("SELECT EXISTS (SELECT 1 FROM cancelled_jobs WHERE job_id = $1)")
            .bind(job_id)
            .fetch_one(&self.db)
            .await
            .unwrap_or(false)
    }

    async fn set_state(&self, job: &JobRequested, state: &str) {
        let done = state != "running";
        let updated = sqlx::query(
            "UPDATE jobs SET state = $3, finished_at = CASE WHEN $4 THEN now() END WHERE job_id = $1 AND attempt = $2",
        )
        .bind(&job.job_id)
        .bind(i32::try_from(job.attempt).unwrap_or(i32::MAX))
        .bind(state)
        .bind(done)
        .execute(&self.db)
        .await;
        if let Err(err) = updated {
            tracing::error!(error = %err, job = %job.job_id, "job state not recorded");
        }
    }

    /// After a restart: jobs that were accepted or running died with the old process. Report
    /// them as failed (retryable) so the scheduler asks again with a new attempt.
    pub async fn recover(&self) -> Result<usize, sqlx::Error> {
        let lost: Vec<(Vec<u8>,)> =
            sqlx::query_as("SELECT request FROM jobs WHERE state IN ('accepted', 'running')")
                .fetch_all(&self.db)
                .await?;
        for (bytes,) in &lost {
            let Ok(request) = Envelope::from_bytes(bytes) else {
                continue;
            };
            let Some(Payload::JobRequested(job)) = &request.payload else {
                continue;
            };
            // Whatever the lost run left behind (a dev server its Bash tool started in its own
            // session) must not keep working in the task's clone under the next attempt.
            let run_id = format!("{}:{}", job.job_id, job.attempt);
            crate::agent::process_tree::kill(&crate::agent::process_tree::find(&run_id, 0));
            let reporter = Reporter::for_request(&self.bus, &request);
            reporter
                .job(Payload::JobFailed(JobFailed {
                    job_id: job.job_id.clone(),
                    attempt: job.attempt,
                    mode: job.mode,
                    error: "the worker stopped during the job".into(),
                    retryable: true,
                }))
                .await;
            // Marked only once reported, so a failed report is tried again at the next start.
            sqlx::query(
                "UPDATE jobs SET state = 'lost', finished_at = now() WHERE job_id = $1 AND attempt = $2",
            )
            .bind(&job.job_id)
            .bind(i32::try_from(job.attempt).unwrap_or(i32::MAX))
            .execute(&self.db)
            .await?;
        }
        Ok(lost.len())
    }
}
