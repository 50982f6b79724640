//! Following a Job's pod: each step's log as it runs, in order (checkout, agent, deliver), its
//! lines into the job's log (skipping those published before a restart), what the steps said
//! of the outcome kept, and the result made of it when the pod is done. A container that has
//! not started yet is waited for (the API answers 400 until it runs); a log stream cut before
//! its container ended is opened again past the lines already read.

use std::time::Duration;

use futures_util::{AsyncBufReadExt, StreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use kube::api::{Api, ListParams, LogParams};
use mainloop_events::Payload;
use mainloop_events::v1::LogSource;

use super::job_spec::STEPS;
use crate::agent::AgentOutcome;
use crate::pod::PodLine;
use crate::runner::JobRun;
use crate::runner::local::{code_done, outcome_payload};

/// The label Kubernetes puts on a Job's pods.
pub const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";
const POLL: Duration = Duration::from_millis(500);

/// What the steps said.
#[derive(Default)]
struct Said {
    /// Lines still to skip (published before a restart).
    skip: u64,
    outcome: Option<AgentOutcome>,
    delivered: Option<(u32, String)>,
    failed: Option<(String, bool)>,
}

impl Said {
    fn line(&mut self, run: &JobRun, step: &str, text: &str) {
        let (source, line) = match serde_json::from_str::<PodLine>(text) {
            Ok(PodLine::Log { source, line }) => (LogSource::from(source), line),
            Ok(PodLine::Outcome { outcome }) if step == "agent" => {
                self.outcome = Some(outcome);
                return;
            }
            Ok(PodLine::Usage { usage }) if step == "agent" => {
                crate::metrics::agent_used(usage);
                return;
            }
            Ok(PodLine::Delivered { commits, head }) if step == "deliver" => {
                self.delivered = Some((commits, head));
                return;
            }
            Ok(PodLine::Failed { error, retryable }) => {
                self.failed = Some((error, retryable));
                return;
            }
            // Not a line of ours (or one from the wrong step): shown, never believed.
            _ => (LogSource::Stderr, text.to_string()),
        };
        if self.skip > 0 {
            self.skip -= 1;
        } else {
            run.lines.send(source, line);
        }
    }
}

/// How a step's container stands.
enum Step {
    Waiting,
    Running,
    Ended(i32),
    /// The pod ended (or went) without running it.
    Never,
}

fn status_of(pod: &Pod, step: &str) -> Step {
    let status = pod.status.clone().unwrap_or_default();
    let container: Option<ContainerStatus> = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten())
        .find(|c| c.name == step)
        .cloned();
    let state = container.and_then(|c| c.state);
    let phase = status.phase.unwrap_or_default();
    match state {
        Some(state) if state.terminated.is_some() => {
            Step::Ended(state.terminated.map(|t| t.exit_code).unwrap_or(-1))
        }
        Some(state) if state.running.is_some() => Step::Running,
        _ if phase == "Failed" || phase == "Succeeded" => Step::Never,
        _ => Step::Waiting,
    }
}

pub async fn follow(pods: &Api<Pod>, jobs: &Api<Job>, run: &JobRun, name: &str, skip: u64) -> Payload {
    let mut said = Said {
        skip,
        ..Said::default()
    };
    let pod = match wait_for_pod(pods, jobs, name).await {
        Ok(pod) => pod,
        Err(why) => return run.failed(why, true),
    };
    for step in STEPS {
        match follow_step(pods, run, &pod, step, &mut said).await {
            Step::Ended(0) => {}
            _ => break,
        }
    }
    result(pods, jobs, run, name, &pod, said).await
}

/// The Job's pod, once it exists; an error if the Job failed without one.
async fn wait_for_pod(pods: &Api<Pod>, jobs: &Api<Job>, name: &str) -> Result<String, String> {
    let selector = ListParams::default().labels(&format!("{JOB_NAME_LABEL}={name}"));
    loop {
        match pods.list(&selector).await {
            Ok(list) => {
                let newest = list
                    .items
                    .into_iter()
                    .max_by_key(|p| p.metadata.creation_timestamp.clone().map(|t| t.0));
                if let Some(name) = newest.and_then(|p| p.metadata.name) {
                    return Ok(name);
                }
                if let Some(why) = job_failure(jobs, name).await {
                    return Err(why);
                }
            }
            Err(err) => tracing::warn!(error = %err, job = name, "the Job's pod not found yet"),
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Follows one step's log to its end; returns how the step ended. A step that ended before
/// its log was opened (a quick one, or while the supervisor was away) is still read whole.
async fn follow_step(pods: &Api<Pod>, run: &JobRun, pod: &str, step: &str, said: &mut Said) -> Step {
    let mut read = 0usize;
    let mut unreadable = 0;
    loop {
        let params = LogParams {
            container: Some(step.to_string()),
            follow: true,
            ..LogParams::default()
        };
        let opened = match pods.log_stream(pod, &params).await {
            Ok(stream) => {
                let mut lines = stream.lines().skip(read);
                while let Some(Ok(line)) = lines.next().await {
                    read += 1;
                    said.line(run, step, &line);
                }
                true
            }
            Err(kube::Error::Api(status)) if status.code == 404 => return Step::Never,
            // 400: the container is not running yet (PodInitializing, ContainerCreating).
            Err(_) => false,
        };
        match pods.get_opt(pod).await {
            Ok(Some(current)) => match status_of(&current, step) {
                Step::Ended(code) if opened || unreadable >= 3 => return Step::Ended(code),
                // Ended before its log could be opened: open it now.
                Step::Ended(_) => unreadable += 1,
                Step::Never => return Step::Never,
                Step::Waiting | Step::Running => tokio::time::sleep(POLL).await,
            },
            Ok(None) => return Step::Never,
            Err(err) => {
                tracing::warn!(error = %err, pod, "the Job's pod could not be read");
                tokio::time::sleep(POLL).await;
            }
        }
    }
}

/// Why the Job failed, if it did (its deadline, say).
async fn job_failure(jobs: &Api<Job>, name: &str) -> Option<String> {
    let job = jobs.get_opt(name).await.ok().flatten()?;
    let failed = job
        .status?
        .conditions?
        .into_iter()
        .find(|c| c.type_ == "Failed" && c.status == "True")?;
    Some(match failed.reason.as_deref() {
        Some("DeadlineExceeded") => "the job ran longer than its deadline".to_string(),
        reason => format!(
            "the Kubernetes Job failed: {} {}",
            reason.unwrap_or_default(),
            failed.message.unwrap_or_default()
        )
        .trim()
        .to_string(),
    })
}

/// Why a step ended without saying how: the Job's failure, or the container's own end.
async fn why(pods: &Api<Pod>, jobs: &Api<Job>, name: &str, pod: &str) -> String {
    if let Some(why) = job_failure(jobs, name).await {
        return why;
    }
    let status = pods.get_opt(pod).await.ok().flatten().and_then(|p| p.status);
    let ended = status
        .iter()
        .flat_map(|s| {
            s.init_container_statuses
                .iter()
                .flatten()
                .chain(s.container_statuses.iter().flatten())
        })
        .filter_map(|c| Some((c.name.clone(), c.state.clone()?.terminated?)))
        .find(|(_, t)| t.exit_code != 0);
    match ended {
        Some((step, terminated)) => format!(
            "its {step} step ended with {}{}",
            terminated.exit_code,
            terminated.reason.map(|r| format!(" ({r})")).unwrap_or_default()
        ),
        None => "the pod went away".into(),
    }
}

async fn result(
    pods: &Api<Pod>,
    jobs: &Api<Job>,
    run: &JobRun,
    name: &str,
    pod: &str,
    said: Said,
) -> Payload {
    if let Some((error, retryable)) = said.failed {
        return run.failed(error, retryable);
    }
    match said.outcome {
        Some(AgentOutcome::Done { summary, session_id }) => match said.delivered {
            Some((commits, head)) => code_done(
                run,
                run.branch().unwrap_or_default(),
                head,
                commits,
                summary,
                session_id,
            ),
            None => run.failed(
                format!(
                    "the job's work was not delivered: {}",
                    why(pods, jobs, name, pod).await
                ),
                true,
            ),
        },
        Some(outcome) => outcome_payload(run, outcome),
        None => run.failed(
            format!(
                "the agent ended without an outcome: {}",
                why(pods, jobs, name, pod).await
            ),
            true,
        ),
    }
}
