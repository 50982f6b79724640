//! One job from request to result: where the repository is (GitHub's own answer, through the
//! github-watcher), then the runner's run, with the job's log lines published as they come and
//! secrets removed from everything reported. Errors say whether another attempt can help: a
//! repository that is gone or refuses our token cannot.

use std::time::Duration;

use mainloop_bus::request::{self, RequestError};
use mainloop_events::Payload;
use mainloop_events::v1::{ErrorCode, JobCancelled, JobRequested, RepoRef};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::Jobs;
use super::report::Reporter;
use crate::patience::patiently;
use crate::runner::{JobRun, Remote, failed};

/// Whether the job starts afresh or is taken over after its supervisor stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    Fresh,
    Recovered,
}

impl Jobs {
    /// Runs (or recovers) the job and returns its result, its log published meanwhile.
    pub(super) async fn execute(
        &self,
        reporter: &Reporter,
        job: &JobRequested,
        cancel: &CancellationToken,
        start: Start,
    ) -> Payload {
        let first_line = match start {
            Start::Fresh => 0,
            Start::Recovered => reporter.last_log_line(&job.job_id, job.attempt).await,
        };
        let (lines, publisher) =
            reporter.log_lines(&job.job_id, job.attempt, first_line, self.redactor.clone());
        let remote = match start {
            Start::Fresh => patiently(cancel, &lines, || self.remote(reporter, job.repo.as_ref())).await,
            // Known when the job started; a lookup now would only delay the recovery.
            Start::Recovered => Ok(Remote {
                clone_url: String::new(),
                default_branch: String::new(),
            }),
        };
        let mut result = match remote {
            Ok(remote) => {
                let run = JobRun {
                    user_id: reporter.user_id.clone(),
                    task_id: reporter.task_id.clone(),
                    job: job.clone(),
                    remote,
                    lines,
                    stopping: self.shutdown.clone(),
                };
                let result = match start {
                    Start::Fresh => self.runner.run(&run, cancel).await,
                    Start::Recovered => self.runner.recover(&run, cancel).await,
                };
                drop(run);
                result
            }
            Err((error, retryable)) => {
                drop(lines);
                failed(job, error, retryable)
            }
        };
        if let Payload::JobFailed(failure) = &mut result {
            failure.error = self.redactor.clean(&failure.error);
        }
        if cancel.is_cancelled() && matches!(result, Payload::JobFailed(_)) {
            // Stopped while it waited for GitHub: a cancel, not a failed attempt.
            result = Payload::JobCancelled(JobCancelled {
                job_id: job.job_id.clone(),
                attempt: job.attempt,
            });
        }
        let _ = publisher.await;
        result
    }

    /// The clone URL and default branch, from the github-watcher (GitHub's own answer).
    async fn remote(&self, reporter: &Reporter, repo: Option<&RepoRef>) -> Result<Remote, (String, bool)> {
        let repo = repo.cloned().unwrap_or_default();
        let query = json!({"user_id": reporter.user_id, "owner": repo.owner, "name": repo.name});
        let answer: Result<Value, _> =
            request::send_json(&self.bus, "query.github.repo", &query, Duration::from_secs(30)).await;
        match answer {
            Ok(info) => Ok(Remote {
                clone_url: info["clone_url"].as_str().unwrap_or_default().to_string(),
                default_branch: info["default_branch"].as_str().unwrap_or("main").to_string(),
            }),
            Err(RequestError::Rejected {
                code: ErrorCode::NotFound | ErrorCode::Invalid,
                message,
            }) => Err((
                format!("cannot use {}/{}: {message}", repo.owner, repo.name),
                false,
            )),
            Err(err) => Err((
                format!("cannot look up {}/{}: {err}", repo.owner, repo.name),
                true,
            )),
        }
    }
}
