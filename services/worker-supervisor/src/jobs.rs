//! Jobs: take a request from the WORK queue, record it, ack it, and run it when a slot is free;
//! report JobStarted, WorkerLog lines, and JobSucceeded / JobFailed / JobCancelled on JOBS and
//! LOGS. A cancellation request stops the run's whole process group.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mainloop_bus::{Bus, Delivery, Expect, Handler, HandlerError, request};
use mainloop_events::v1::{
    CodeOutcome, JobCancelled, JobFailed, JobMode, JobRequested, JobStarted, JobSucceeded, LogSource,
    PlanOutcome, WorkerLog, job_succeeded,
};
use mainloop_events::{Envelope, Payload, subjects};
use serde_json::json;
use sqlx::PgPool;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::agent::{AgentConfig, AgentOutcome, AgentRun, run_agent};
use crate::workspace::Workspaces;

pub struct Jobs {
    pub bus: Bus,
    pub db: PgPool,
    pub workspaces: Workspaces,
    pub agent: AgentConfig,
    pub slots: Arc<Semaphore>,
    /// Runs in progress: job id → (attempt, its cancellation).
    pub running: Mutex<HashMap<String, (u32, CancellationToken)>>,
    /// Values that must never appear in a published log line.
    pub secrets: Vec<String>,
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

struct Reporter {
    bus: Bus,
    user_id: String,
    task_id: String,
    causation: String,
}

impl Reporter {
    /// Publishes once, however often it has to try: a lost report would strand the task (the
    /// work item was acked when the job was accepted). The event id stays the same across tries.
    async fn publish(&self, subject: Result<String, mainloop_events::EventError>, payload: Payload) -> bool {
        let event = Envelope::new(&self.user_id, &self.task_id, payload).caused_by(&self.causation);
        let subject = match subject {
            Ok(subject) => subject,
            Err(err) => {
                tracing::error!(error = %err, "job report has no valid subject");
                return false;
            }
        };
        let mut delay = std::time::Duration::from_millis(200);
        for attempt in 1..=50 {
            match self.bus.publish(&subject, &event, Expect::Any).await {
                Ok(_) => return true,
                Err(err) => {
                    tracing::warn!(error = %err, attempt, kind = %event.r#type, "job report not published yet");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(std::time::Duration::from_secs(10));
                }
            }
        }
        tracing::error!(kind = %event.r#type, "job report given up after 50 attempts");
        false
    }

    async fn job(&self, payload: Payload) -> bool {
        self.publish(subjects::job(&self.user_id, &self.task_id), payload)
            .await
    }
}

impl Jobs {
    async fn run(self: Arc<Self>, request: Envelope, job: JobRequested) {
        let reporter = Reporter {
            bus: self.bus.clone(),
            user_id: request.user_id.clone(),
            task_id: request.correlation_id.clone(),
            causation: request.id.clone(),
        };
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

    async fn execute(&self, reporter: &Reporter, job: &JobRequested, cancel: &CancellationToken) -> Payload {
        let failed = |error: String, retryable: bool| {
            Payload::JobFailed(JobFailed {
                job_id: job.job_id.clone(),
                attempt: job.attempt,
                mode: job.mode,
                error,
                retryable,
            })
        };
        let repo = job.repo.clone().unwrap_or_default();
        let info: serde_json::Value = match request::send_json(
            &self.bus,
            "query.github.repo",
            &json!({"user_id": reporter.user_id, "owner": repo.owner, "name": repo.name}),
            Duration::from_secs(30),
        )
        .await
        {
            Ok(info) => info,
            Err(err) => {
                return failed(
                    format!("cannot look up {}/{}: {err}", repo.owner, repo.name),
                    true,
                );
            }
        };
        let clone_url = info["clone_url"].as_str().unwrap_or_default();
        let default_branch = info["default_branch"].as_str().unwrap_or("main");
        let branch = (job.mode() != JobMode::Plan)
            .then_some(job.branch_name.as_str())
            .filter(|b| !b.is_empty());
        let workspace = match self
            .workspaces
            .prepare(
                &reporter.task_id,
                &repo.owner,
                &repo.name,
                clone_url,
                default_branch,
                branch,
            )
            .await
        {
            Ok(workspace) => workspace,
            Err(err) => return failed(format!("preparing the workspace failed: {err}"), true),
        };

        let (lines, mut to_publish) = mpsc::unbounded_channel::<(LogSource, String)>();
        let log_reporter = Reporter {
            bus: reporter.bus.clone(),
            user_id: reporter.user_id.clone(),
            task_id: reporter.task_id.clone(),
            causation: reporter.causation.clone(),
        };
        let (job_id, attempt, secrets) = (job.job_id.clone(), job.attempt, self.secrets.clone());
        let publisher = tokio::spawn(async move {
            let mut line_no = 0;
            while let Some((source, line)) = to_publish.recv().await {
                line_no += 1;
                let line = redact(&line, &secrets);
                let log = WorkerLog {
                    job_id: job_id.clone(),
                    attempt,
                    source: source as i32,
                    line,
                    line_no,
                };
                log_reporter
                    .publish(
                        subjects::log(&log_reporter.user_id, &log_reporter.task_id),
                        Payload::WorkerLog(log),
                    )
                    .await;
            }
        });
        let mode_name = format!("{:?}", job.mode()).to_lowercase();
        let _ = lines.send((
            LogSource::System,
            format!(
                "{mode_name} job {} attempt {} in {}",
                job.job_id,
                job.attempt,
                workspace.dir.display()
            ),
        ));
        let prompt = if job.context.is_empty() {
            job.prompt.clone()
        } else {
            format!("{}\n\n{}", job.prompt, job.context)
        };
        let run = AgentRun {
            mode: job.mode(),
            prompt,
            cwd: workspace.dir.clone(),
            home: workspace.home.clone(),
        };
        let agent = AgentConfig {
            model: if job.model.is_empty() {
                self.agent.model.clone()
            } else {
                job.model.clone()
            },
            ..self.agent.clone()
        };
        let log_lines = lines.clone();
        let outcome = run_agent(&agent, &run, cancel, move |source, line| {
            let _ = log_lines.send((source, line));
        })
        .await;

        let result = match outcome {
            AgentOutcome::Plan {
                plan_text,
                questions,
                session_id,
            } => Payload::JobSucceeded(JobSucceeded {
                job_id: job.job_id.clone(),
                attempt: job.attempt,
                mode: job.mode,
                outcome: Some(job_succeeded::Outcome::Plan(PlanOutcome {
                    plan_text,
                    questions,
                    suggested_options: vec![],
                })),
                agent_session_id: session_id,
            }),
            AgentOutcome::Done { summary, session_id } => {
                match self.workspaces.commits_since(&workspace).await {
                    Err(err) => failed(format!("reading the job's commits failed: {err}"), true),
                    Ok((commits, head)) => {
                        let pushed = match branch {
                            Some(branch) if commits > 0 => {
                                self.workspaces
                                    .push(&workspace, &repo.owner, &repo.name, branch)
                                    .await
                            }
                            _ => Ok(()),
                        };
                        match pushed {
                            Err(err) => failed(format!("pushing failed: {err}"), true),
                            Ok(()) => {
                                let _ = lines
                                    .send((LogSource::System, format!("{commits} commit(s), head {head}")));
                                Payload::JobSucceeded(JobSucceeded {
                                    job_id: job.job_id.clone(),
                                    attempt: job.attempt,
                                    mode: job.mode,
                                    outcome: Some(job_succeeded::Outcome::Code(CodeOutcome {
                                        branch_name: branch.unwrap_or_default().to_string(),
                                        head_sha: head,
                                        commits,
                                        summary,
                                    })),
                                    agent_session_id: session_id,
                                })
                            }
                        }
                    }
                }
            }
            AgentOutcome::Failed { error, retryable } => failed(error, retryable),
            AgentOutcome::Cancelled => Payload::JobCancelled(JobCancelled {
                job_id: job.job_id.clone(),
                attempt: job.attempt,
            }),
        };
        drop(lines);
        let _ = publisher.await;
        result
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
            let reporter = Reporter {
                bus: self.bus.clone(),
                user_id: request.user_id.clone(),
                task_id: request.correlation_id.clone(),
                causation: request.id.clone(),
            };
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

/// Replaces every secret value in a log line.
pub fn redact(line: &str, secrets: &[String]) -> String {
    secrets
        .iter()
        .filter(|s| s.len() >= 6)
        .fold(line.to_string(), |line, secret| {
            line.replace(secret.as_str(), "[redacted]")
        })
}

#[cfg(test)]
mod tests {
    #[test]
    fn secrets_never_reach_a_log_line() {
        let line = "cloning https://x-access-token:ghp_abcdef123@github.com/acme/widgets";
        assert_eq!(
            super::redact(line, &["ghp_abcdef123".into(), "".into()]),
            "cloning https://x-access-token:[redacted]@github.com/acme/widgets"
        );
    }
}
