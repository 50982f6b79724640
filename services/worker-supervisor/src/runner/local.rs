//! The local runner: the agent as a process on this machine. The task's workspace (a clone
//! sharing the cached repository's objects) is prepared here, the agent runs in it as its own
//! user, continuing the task's agent session, and what it leaves is delivered: a plan, or
//! commits pushed to the task's branch. Edits the agent left uncommitted are committed, never
//! lost; commits holding a configured secret are never pushed.

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use mainloop_events::Payload;
use mainloop_events::v1::{CodeOutcome, JobCancelled, JobSucceeded, PlanOutcome, job_succeeded};
use tokio_util::sync::CancellationToken;

use super::{JobRun, Runner};
use crate::agent::{AgentConfig, AgentOutcome, AgentRun, process_tree, run_agent};
use crate::patience::patiently;
use crate::redact::Redactor;
use crate::sessions::Sessions;
use crate::workspace::{Workspace, Workspaces};

pub struct LocalRunner {
    pub workspaces: Workspaces,
    pub sessions: Sessions,
    pub agent: AgentConfig,
    pub redactor: Redactor,
}

impl Runner for LocalRunner {
    fn name(&self) -> &'static str {
        "local"
    }

    fn run<'a>(&'a self, run: &'a JobRun, cancel: &'a CancellationToken) -> BoxFuture<'a, Payload> {
        self.run_job(run, cancel).boxed()
    }

    /// The run died with the supervisor; whatever it left running (a dev server its Bash tool
    /// started in its own session) must not keep working in the clone under the next attempt.
    fn recover<'a>(&'a self, run: &'a JobRun, _cancel: &'a CancellationToken) -> BoxFuture<'a, Payload> {
        async move {
            process_tree::kill(&process_tree::find(&run.run_id(), 0));
            run.failed("the worker stopped during the job", true)
        }
        .boxed()
    }
}

impl LocalRunner {
    async fn run_job(&self, run: &JobRun, cancel: &CancellationToken) -> Payload {
        let prepared = patiently(cancel, &run.lines, || async {
            self.workspaces
                .prepare(
                    &run.task_id,
                    &run.job.repo.clone().unwrap_or_default().owner,
                    &run.job.repo.clone().unwrap_or_default().name,
                    &run.remote.clone_url,
                    &run.remote.default_branch,
                    run.branch(),
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
            Err((error, retryable)) => return run.failed(error, retryable),
        };
        match self.run_the_agent(run, &workspace, cancel).await {
            AgentOutcome::Done { summary, session_id } => {
                self.deliver(run, &workspace, summary, session_id).await
            }
            other => outcome_payload(run, other),
        }
    }

    async fn run_the_agent(
        &self,
        run: &JobRun,
        workspace: &Workspace,
        cancel: &CancellationToken,
    ) -> AgentOutcome {
        let resume = self.sessions.get(&run.task_id).await;
        let mode_name = format!("{:?}", run.job.mode()).to_lowercase();
        run.log(format!(
            "{mode_name} job {} attempt {} in {}{}",
            run.job.job_id,
            run.job.attempt,
            workspace.dir.display(),
            resume
                .as_ref()
                .map(|s| format!(", resuming agent session {s}"))
                .unwrap_or_default()
        ));
        let agent_run = AgentRun {
            mode: run.job.mode(),
            prompt: run.prompt(),
            cwd: workspace.dir.clone(),
            home: workspace.home.clone(),
            resume,
            run_id: run.run_id(),
        };
        let agent = AgentConfig {
            model: if run.job.model.is_empty() {
                self.agent.model.clone()
            } else {
                run.job.model.clone()
            },
            ..self.agent.clone()
        };
        let log_lines = run.lines.clone();
        let outcome = run_agent(&agent, &agent_run, cancel, move |source, line| {
            log_lines.send(source, line);
        })
        .await;
        if let AgentOutcome::Plan { session_id, .. } | AgentOutcome::Done { session_id, .. } = &outcome {
            self.sessions.set(&run.task_id, session_id).await;
        }
        outcome.cleaned(&self.redactor)
    }

    /// A code job's work reaches the repository: leftovers committed, the branch pushed.
    async fn deliver(
        &self,
        run: &JobRun,
        workspace: &Workspace,
        summary: String,
        session_id: String,
    ) -> Payload {
        match self.workspaces.commit_leftovers(workspace, &summary).await {
            Ok(0) => {}
            Ok(files) => run.log(format!(
                "the agent left {files} changed file(s) uncommitted; mainloop committed them"
            )),
            Err(err) => return run.failed(format!("committing the agent's edits failed: {err}"), true),
        }
        let (commits, head) = match self.workspaces.commits_since(workspace).await {
            Ok(done) => done,
            Err(err) => return run.failed(format!("reading the job's commits failed: {err}"), true),
        };
        if commits > 0 {
            let text = match self.workspaces.commits_text(workspace).await {
                Ok(text) => text,
                Err(err) => {
                    return run.failed(
                        format!("reading the job's commits for secrets failed: {err}"),
                        true,
                    );
                }
            };
            if let Err(refusal) = self.redactor.refuse_secrets(&text) {
                run.log(refusal.clone());
                return run.failed(refusal, false);
            }
        }
        let branch = run.branch();
        if let (Some(branch), true) = (branch, commits > 0)
            && let Err(err) = self.workspaces.push(workspace, branch).await
        {
            let permanent = err.is_permanent();
            return run.failed(
                format!("pushing {branch} failed: {}", err.explained()),
                !permanent,
            );
        }
        run.log(format!("{commits} commit(s), head {head}"));
        code_done(
            run,
            branch.unwrap_or_default(),
            head,
            commits,
            summary,
            session_id,
        )
    }
}

/// A code job's success.
pub fn code_done(
    run: &JobRun,
    branch: &str,
    head: String,
    commits: u32,
    summary: String,
    session_id: String,
) -> Payload {
    Payload::JobSucceeded(JobSucceeded {
        job_id: run.job.job_id.clone(),
        attempt: run.job.attempt,
        mode: run.job.mode,
        outcome: Some(job_succeeded::Outcome::Code(CodeOutcome {
            branch_name: branch.to_string(),
            head_sha: head,
            commits,
            summary,
        })),
        agent_session_id: session_id,
    })
}

/// How an agent outcome that needs no delivery is reported (a plan, a failure, a stop).
pub fn outcome_payload(run: &JobRun, outcome: AgentOutcome) -> Payload {
    match outcome {
        AgentOutcome::Plan {
            plan_text,
            questions,
            session_id,
        } => Payload::JobSucceeded(JobSucceeded {
            job_id: run.job.job_id.clone(),
            attempt: run.job.attempt,
            mode: run.job.mode,
            outcome: Some(job_succeeded::Outcome::Plan(PlanOutcome {
                plan_text,
                questions,
                suggested_options: vec![],
            })),
            agent_session_id: session_id,
        }),
        AgentOutcome::Failed { error, retryable } => run.failed(error, retryable),
        AgentOutcome::Cancelled | AgentOutcome::Done { .. } => Payload::JobCancelled(JobCancelled {
            job_id: run.job.job_id.clone(),
            attempt: run.job.attempt,
        }),
    }
}
