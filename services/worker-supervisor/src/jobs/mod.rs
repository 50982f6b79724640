//! Jobs: take a request from the WORK queue, record it under this replica's lease, ack it, and
//! run it when a slot is free; report JobStarted, WorkerLog lines, and JobSucceeded / JobFailed /
//! JobCancelled on JOBS and LOGS. A cancellation request stops the run, on whichever replica
//! holds it, and every process or Kubernetes object it started.

mod execute;
pub mod lease;
mod report;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use mainloop_bus::{Bus, Delivery, Handler, HandlerError};
use mainloop_events::v1::{JobRequested, JobStarted};
use mainloop_events::{Envelope, Payload};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::runner::Runner;
use execute::Start;
use lease::Leases;
use report::Reporter;

pub struct Jobs {
    pub bus: Bus,
    pub runner: Arc<dyn Runner>,
    pub leases: Leases,
    pub slots: Arc<Semaphore>,
    /// Runs in progress here: job id → (attempt, its cancellation).
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
                let inserted = jobs
                    .leases
                    .accept(job, &event)
                    .await
                    .map_err(|e| HandlerError::Transient(e.to_string()))?;
                if inserted {
                    let (jobs, job) = (jobs.clone(), job.clone());
                    let span = job_span(&job);
                    tokio::spawn(async move { jobs.run(event, job, Start::Fresh).await }.instrument(span));
                }
                Ok(())
            }
            Some(Payload::JobCancellationRequested(cancel)) => {
                // Recorded first: the request may arrive before the job it cancels, or reach
                // a replica other than the one running it (which hears it from the lease loop
                // and the broadcast).
                jobs.leases
                    .record_cancellation(&cancel.job_id)
                    .await
                    .map_err(|e| HandlerError::Transient(e.to_string()))?;
                jobs.cancel_if_running(&cancel.job_id);
                lease::broadcast_cancellation(jobs, &cancel.job_id).await;
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

impl Jobs {
    /// Stops the job if it runs here.
    pub fn cancel_if_running(&self, job_id: &str) {
        if let Some((_, token)) = self.running.lock().ok().and_then(|r| r.get(job_id).cloned()) {
            token.cancel();
        }
    }

    /// The jobs running here, for the lease renewal.
    pub fn running_ids(&self) -> Vec<String> {
        self.running
            .lock()
            .map(|r| r.keys().cloned().collect())
            .unwrap_or_default()
    }

    async fn run(self: Arc<Self>, request: Envelope, job: JobRequested, start: Start) {
        let reporter = Reporter::for_request(&self.bus, &request);
        let cancel = self.shutdown.child_token();
        if let Ok(mut running) = self.running.lock() {
            running.insert(job.job_id.clone(), (job.attempt, cancel.clone()));
        }
        let queued = crate::metrics::InState::queued();
        let _slot = match start {
            // A recovered job already holds its place in the world (a Job in the cluster).
            Start::Recovered => None,
            Start::Fresh => match self.slots.clone().acquire_owned().await {
                Ok(slot) => Some(slot),
                Err(_) => return,
            },
        };
        drop(queued);
        let _running = crate::metrics::InState::running();
        if self.leases.cancel_requested(&job.job_id).await {
            cancel.cancel();
        }
        if start == Start::Fresh {
            self.leases.set_state(&job, "running").await;
            reporter
                .job(Payload::JobStarted(JobStarted {
                    job_id: job.job_id.clone(),
                    attempt: job.attempt,
                    mode: job.mode,
                    runner: self.runner.name().into(),
                }))
                .await;
        }
        let result = self.execute(&reporter, &job, &cancel, start).await;
        if self.finish(&reporter, &job, start, result).await == Finished::LeftForRecovery {
            return;
        }
        if let Ok(mut running) = self.running.lock()
            && running
                .get(&job.job_id)
                .is_some_and(|(attempt, _)| *attempt == job.attempt)
        {
            running.remove(&job.job_id);
        }
    }

    /// Reports the job's result once and records how it ended, unless our own shutdown stopped
    /// it: then nothing is reported and it is left for the recovery after the restart.
    async fn finish(
        &self,
        reporter: &Reporter,
        job: &JobRequested,
        start: Start,
        result: Payload,
    ) -> Finished {
        let state = match &result {
            Payload::JobSucceeded(_) => "succeeded",
            Payload::JobCancelled(_) => "cancelled",
            _ => "failed",
        };
        if state == "cancelled" && self.shutdown.is_cancelled() {
            return Finished::LeftForRecovery;
        }
        if start == Start::Recovered
            && let Some(reported) = reporter.outcome_reported(&job.job_id, job.attempt).await
        {
            // Reported before its supervisor stopped, not recorded: recorded now, not reported
            // twice (what the recovery found is dropped; it cleaned up what was left).
            tracing::info!(job = %job.job_id, state = reported, "the recovered job was reported before the stop");
            self.leases.set_state(job, reported).await;
            crate::metrics::finished(reported);
        } else if reporter.job(result).await {
            // Left unfinished if the report could not go out: it is recovered and reported again.
            self.leases.set_state(job, state).await;
            crate::metrics::finished(state);
        }
        Finished::Done
    }

    /// Takes over the unfinished jobs no live replica holds (this one's own from before a
    /// restart at once, others' when their lease has run out) and runs each to its report:
    /// a local run died with its supervisor and is reported for retry; a Kubernetes Job is
    /// followed again. Returns how many were taken.
    pub async fn recover(self: &Arc<Self>, at_start: bool) -> Result<usize, sqlx::Error> {
        let running = self.running_ids();
        let claimed = self.leases.claim_unheld(at_start, &running).await?;
        for bytes in &claimed {
            let Ok(request) = Envelope::from_bytes(bytes) else {
                continue;
            };
            let Some(Payload::JobRequested(job)) = request.payload.clone() else {
                continue;
            };
            tracing::warn!(job = %job.job_id, attempt = job.attempt, "taking over a job whose supervisor stopped");
            let jobs = self.clone();
            let span = job_span(&job);
            tokio::spawn(async move { jobs.run(request, job, Start::Recovered).await }.instrument(span));
        }
        Ok(claimed.len())
    }
}

/// What became of a job's run once it ended here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Finished {
    /// Reported (or found reported) and recorded.
    Done,
    /// Stopped by our own shutdown: left unfinished, recovered after the restart.
    LeftForRecovery,
}

/// A job's span: a child of the delivery that asked for it, so the job, its agent
/// (`TRACEPARENT`) and what it reports stay in the task's trace.
fn job_span(job: &JobRequested) -> tracing::Span {
    tracing::info_span!("job.run", job_id = %job.job_id, attempt = job.attempt, mode = ?job.mode())
}
