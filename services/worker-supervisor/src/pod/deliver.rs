//! The deliver step (the pod's last container, with the GitHub token): when the agent finished
//! its work, the job's commits are checked for the agent's credentials and the token (any found:
//! nothing is pushed, for good), then taken from the task's clone into the cache and pushed to
//! GitHub's clone URL, never to a remote the agent could have changed. Git runs with hooks off
//! and every repository-level helper ignored, as in a local run.

use std::path::Path;

use mainloop_events::v1::LogSource;

use super::{PodJob, PodLine, agent_secrets, outcome_file, start_file, token, workspaces};
use crate::agent::AgentOutcome;
use crate::redact::Redactor;

pub async fn run(job: &PodJob, root: &Path) -> Result<(), (String, bool)> {
    let outcome = tokio::fs::read(outcome_file(root, job))
        .await
        .ok()
        .and_then(|bytes| serde_json::from_slice::<AgentOutcome>(&bytes).ok());
    let Some(AgentOutcome::Done { .. }) = outcome else {
        PodLine::log(LogSource::System, "nothing to deliver");
        return Ok(());
    };
    let token = token();
    let mut secrets: Vec<String> = agent_secrets().into_iter().map(|(_, v)| v).collect();
    secrets.extend(token.iter().map(|t| t.expose().to_string()));
    let workspaces = workspaces(root, token).map_err(|e| (e, true))?;
    let start = tokio::fs::read_to_string(start_file(root, job))
        .await
        .map_err(|e| (format!("where the job started is unknown: {e}"), true))?;
    let workspace = workspaces.reopen(&job.task_id, &job.owner, &job.name, &job.clone_url, start.trim());
    let (commits, head) = workspaces
        .commits_since(&workspace)
        .await
        .map_err(|e| (format!("reading the job's commits failed: {e}"), true))?;
    if commits > 0 {
        let text = workspaces
            .commits_text(&workspace)
            .await
            .map_err(|e| (format!("reading the job's commits for secrets failed: {e}"), true))?;
        Redactor::new(&secrets)
            .refuse_secrets(&text)
            .map_err(|refusal| (refusal, false))?;
    }
    if let (Some(branch), true) = (job.branch.as_deref(), commits > 0) {
        workspaces.push(&workspace, branch).await.map_err(|err| {
            (
                format!("pushing {branch} failed: {}", err.explained()),
                !err.is_permanent(),
            )
        })?;
    }
    PodLine::log(LogSource::System, format!("{commits} commit(s), head {head}"));
    PodLine::Delivered { commits, head }.print();
    Ok(())
}
