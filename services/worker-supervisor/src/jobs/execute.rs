//! One job from request to result: where the repository is, the task's workspace, the agent run
//! (continuing the task's agent session), and what the run leaves: a plan, or commits pushed to
//! the task's branch. Edits the agent left uncommitted are committed by the supervisor, never
//! lost. Errors say whether another attempt can help: a repository that is gone or refuses our
//! token cannot.

use std::time::Duration;

use mainloop_bus::request::{self, RequestError};
use mainloop_events::Payload;
use mainloop_events::v1::{
    CodeOutcome, ErrorCode, JobCancelled, JobFailed, JobMode, JobRequested, JobSucceeded, LogSource,
    PlanOutcome, RepoRef, job_succeeded,
};
use serde_json::{Value, json};
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use super::Jobs;
use super::report::Reporter;
use crate::agent::{AgentConfig, AgentOutcome, AgentRun, run_agent};
use crate::workspace::Workspace;

type Lines = UnboundedSender<(LogSource, String)>;

/// How long a job waits out GitHub being unreachable (an outage, a rate limit on the lookup)
/// before the failure counts as an attempt; the scheduler's backoff takes over after that.
const GITHUB_PATIENCE: Duration = Duration::from_secs(300);

/// The wait a `retry after N s` in the github-watcher's answer asks for (its rate limits).
fn retry_after(message: &str) -> Option<Duration> {
    let rest = &message[message.find("retry after ")? + "retry after ".len()..];
    let seconds: u64 = rest.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_secs(seconds))
}

/// Runs `attempt` until it succeeds, fails for good, or GitHub stayed unreachable for
/// [`GITHUB_PATIENCE`]; each wait is said in the job's log.
async fn patiently<T, F, Fut>(
    cancel: &CancellationToken,
    lines: &Lines,
    mut attempt: F,
) -> Result<T, (String, bool)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, (String, bool)>>,
{
    let mut deadline = tokio::time::Instant::now() + GITHUB_PATIENCE;
    let mut delay = Duration::from_secs(1);
    loop {
        match attempt().await {
            // A rate limit says how long; that wait does not use up the patience (up to an hour).
            Err((error, true)) if retry_after(&error).is_some() => {
                let wait = retry_after(&error)
                    .unwrap_or_default()
                    .min(Duration::from_secs(3600));
                let _ = lines.send((LogSource::System, format!("{error}; waiting {}s", wait.as_secs())));
                tokio::select! {
                    () = cancel.cancelled() => return Err((error, true)),
                    () = tokio::time::sleep(wait) => {}
                }
                deadline += wait;
            }
            Err((error, true)) if tokio::time::Instant::now() + delay < deadline => {
                let _ = lines.send((
                    LogSource::System,
                    format!(
                        "GitHub unavailable ({error}); trying again in {}s",
                        delay.as_secs()
                    ),
                ));
                tokio::select! {
                    () = cancel.cancelled() => return Err((error, true)),
                    () = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(30));
            }
            other => return other,
        }
    }
}

/// Where the repository lives, as GitHub says.
struct Remote {
    clone_url: String,
    default_branch: String,
}

fn failed(job: &JobRequested, error: String, retryable: bool) -> Payload {
    Payload::JobFailed(JobFailed {
        job_id: job.job_id.clone(),
        attempt: job.attempt,
        mode: job.mode,
        error,
        retryable,
    })
}

impl Jobs {
    pub(super) async fn execute(
        &self,
        reporter: &Reporter,
        job: &JobRequested,
        cancel: &CancellationToken,
    ) -> Payload {
        let (lines, publisher) = reporter.log_lines(&job.job_id, job.attempt, self.redactor.clone());
        let mut result = self.execute_with_logs(reporter, job, cancel, &lines).await;
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
        drop(lines);
        let _ = publisher.await;
        result
    }

    async fn execute_with_logs(
        &self,
        reporter: &Reporter,
        job: &JobRequested,
        cancel: &CancellationToken,
        lines: &Lines,
    ) -> Payload {
        let repo = job.repo.clone().unwrap_or_default();
        let remote = match patiently(cancel, lines, || self.remote(reporter, &repo)).await {
            Ok(remote) => remote,
            Err((error, retryable)) => return failed(job, error, retryable),
        };
        let branch = (job.mode() != JobMode::Plan)
            .then_some(job.branch_name.as_str())
            .filter(|b| !b.is_empty());
        let prepared = patiently(cancel, lines, || async {
            self.workspaces
                .prepare(
                    &reporter.task_id,
                    &repo.owner,
                    &repo.name,
                    &remote.clone_url,
                    &remote.default_branch,
                    branch,
                )
                .await
                .map_err(|err| {
                    let permanent = err.is_permanent();
                    (
                        format!("preparing the workspace failed: {}", err.explained()),
                        !permanent,
                    )
                })
        })
        .await;
        let workspace = match prepared {
            Ok(workspace) => workspace,
            Err((error, retryable)) => return failed(job, error, retryable),
        };
        let outcome = self.run_the_agent(reporter, job, &workspace, lines, cancel).await;
        match outcome {
            AgentOutcome::Done { summary, session_id } => {
                self.deliver(job, &workspace, branch, summary, session_id, lines)
                    .await
            }
            other => self.report(job, other),
        }
    }

    /// The clone URL and default branch, from the github-watcher (GitHub's own answer).
    async fn remote(&self, reporter: &Reporter, repo: &RepoRef) -> Result<Remote, (String, bool)> {
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

    async fn run_the_agent(
        &self,
        reporter: &Reporter,
        job: &JobRequested,
        workspace: &Workspace,
        lines: &Lines,
        cancel: &CancellationToken,
    ) -> AgentOutcome {
        let resume = self.sessions.get(&reporter.task_id).await;
        let mode_name = format!("{:?}", job.mode()).to_lowercase();
        let _ = lines.send((
            LogSource::System,
            format!(
                "{mode_name} job {} attempt {} in {}{}",
                job.job_id,
                job.attempt,
                workspace.dir.display(),
                resume
                    .as_ref()
                    .map(|s| format!(", resuming agent session {s}"))
                    .unwrap_or_default()
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
            resume,
            run_id: format!("{}:{}", job.job_id, job.attempt),
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
        if let AgentOutcome::Plan { session_id, .. } | AgentOutcome::Done { session_id, .. } = &outcome {
            self.sessions.set(&reporter.task_id, session_id).await;
        }
        self.cleaned(outcome)
    }

    /// The run's words with secrets removed and NUL made visible, before anything stores them
    /// (the plan goes to the issue, the summary into our commit message and the PR).
    fn cleaned(&self, outcome: AgentOutcome) -> AgentOutcome {
        let clean = |text: String| self.redactor.clean(&text);
        match outcome {
            AgentOutcome::Plan {
                plan_text,
                questions,
                session_id,
            } => AgentOutcome::Plan {
                plan_text: clean(plan_text),
                questions: questions
                    .into_iter()
                    .map(|mut q| {
                        q.question = clean(q.question);
                        q.header = clean(q.header);
                        for option in &mut q.options {
                            option.label = clean(std::mem::take(&mut option.label));
                            option.description = clean(std::mem::take(&mut option.description));
                        }
                        q
                    })
                    .collect(),
                session_id,
            },
            AgentOutcome::Done { summary, session_id } => AgentOutcome::Done {
                summary: clean(summary),
                session_id,
            },
            AgentOutcome::Failed { error, retryable } => AgentOutcome::Failed {
                error: clean(error),
                retryable,
            },
            AgentOutcome::Cancelled => AgentOutcome::Cancelled,
        }
    }

    /// A code job's work reaches the repository: leftovers committed, the branch pushed.
    async fn deliver(
        &self,
        job: &JobRequested,
        workspace: &Workspace,
        branch: Option<&str>,
        summary: String,
        session_id: String,
        lines: &Lines,
    ) -> Payload {
        match self.workspaces.commit_leftovers(workspace, &summary).await {
            Ok(0) => {}
            Ok(files) => {
                let _ = lines.send((
                    LogSource::System,
                    format!("the agent left {files} changed file(s) uncommitted; mainloop committed them"),
                ));
            }
            Err(err) => return failed(job, format!("committing the agent's edits failed: {err}"), true),
        }
        let (commits, head) = match self.workspaces.commits_since(workspace).await {
            Ok(done) => done,
            Err(err) => return failed(job, format!("reading the job's commits failed: {err}"), true),
        };
        if commits > 0
            && let Err((refusal, retryable)) = self.free_of_secrets(workspace).await
        {
            let _ = lines.send((LogSource::System, refusal.clone()));
            return failed(job, refusal, retryable);
        }
        if let (Some(branch), true) = (branch, commits > 0)
            && let Err(err) = self.workspaces.push(workspace, branch).await
        {
            let permanent = err.is_permanent();
            return failed(
                job,
                format!("pushing {branch} failed: {}", err.explained()),
                !permanent,
            );
        }
        let _ = lines.send((LogSource::System, format!("{commits} commit(s), head {head}")));
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

    /// The job's commits may be pushed only if none holds a configured secret (in a message or a
    /// patch). They cannot be cleaned without rewriting the agent's work, so nothing is pushed
    /// and the person is told (a final failure); a check that could not run is retried.
    async fn free_of_secrets(&self, workspace: &Workspace) -> Result<(), (String, bool)> {
        let text = self.workspaces.commits_text(workspace).await.map_err(|err| {
            (
                format!("reading the job's commits for secrets failed: {err}"),
                true,
            )
        })?;
        if self.redactor.finds_secret(&text) {
            return Err((
                "the agent's commits contain a configured secret (an API key or token); nothing was \
                 pushed. Retry the task, or tell the agent not to write credentials."
                    .into(),
                false,
            ));
        }
        Ok(())
    }

    fn report(&self, job: &JobRequested, outcome: AgentOutcome) -> Payload {
        match outcome {
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
            AgentOutcome::Failed { error, retryable } => failed(job, error, retryable),
            AgentOutcome::Cancelled | AgentOutcome::Done { .. } => Payload::JobCancelled(JobCancelled {
                job_id: job.job_id.clone(),
                attempt: job.attempt,
            }),
        }
    }
}
