//! The checkout step (an init container with the GitHub token): the repository fetched into the
//! cache volume, the task's clone made from it on the job's branch in the volume the agent
//! shares, and the commit the job starts from recorded where the agent cannot change it.

use std::path::Path;

use mainloop_events::v1::LogSource;

use super::{PodJob, PodLine, start_file, token, workspaces};

pub async fn run(job: &PodJob, root: &Path) -> Result<(), (String, bool)> {
    let workspaces = workspaces(root, token()).map_err(|e| (e, true))?;
    PodLine::log(
        LogSource::System,
        format!(
            "{} job {} attempt {}: checking out {}/{}{}",
            job.mode,
            job.job_id,
            job.attempt,
            job.owner,
            job.name,
            job.branch
                .as_deref()
                .map(|b| format!(" on {b}"))
                .unwrap_or_default()
        ),
    );
    let workspace = workspaces
        .prepare(
            &job.task_id,
            &job.owner,
            &job.name,
            &job.clone_url,
            &job.default_branch,
            job.branch.as_deref(),
        )
        .await
        .map_err(|err| {
            (
                format!("preparing the workspace failed: {}", err.explained()),
                !err.is_permanent(),
            )
        })?;
    tokio::fs::write(start_file(root, job), &workspace.start)
        .await
        .map_err(|e| (format!("cannot record where the job starts: {e}"), true))?;
    PodLine::log(LogSource::System, format!("checked out at {}", workspace.start));
    Ok(())
}
