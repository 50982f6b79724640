//! `query.github.repo`: what the worker-supervisor needs to clone a repository, from GitHub's
//! own answer (its `clone_url`, never a URL built from a host name), and whether our token may
//! push to it (the conversation checks that before it spawns a task).

use mainloop_events::v1::{CommandError, ErrorCode};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::client::{GitHub, GitHubError};

#[derive(Debug, Deserialize)]
pub struct RepoQuery {
    pub owner: String,
    pub name: String,
}

pub async fn answer(github: Option<GitHub>, query: RepoQuery) -> Result<Value, CommandError> {
    let Some(github) = github else {
        return Err(CommandError::new(
            ErrorCode::Unavailable,
            "GITHUB_TOKEN is not set",
        ));
    };
    match github.repo(&query.owner, &query.name).await {
        // `permissions` is there for an authenticated caller; without it, assume nothing.
        Ok(repo) => Ok(
            json!({"clone_url": repo["clone_url"], "default_branch": repo["default_branch"],
            "html_url": repo["html_url"], "private": repo["private"],
            "can_push": repo["permissions"]["push"].as_bool().unwrap_or(false)}),
        ),
        Err(GitHubError::Api { status: 404, .. }) => Err(CommandError::not_found(format!(
            "{}/{} is not on GitHub (or not visible)",
            query.owner, query.name
        ))),
        // A rate limit says how long to wait, in words the supervisor reads (`retry after N s`).
        Err(GitHubError::RateLimited { wait, message, .. }) => Err(CommandError::new(
            ErrorCode::Unavailable,
            format!("GitHub rate limit ({message}); retry after {} s", wait.as_secs()),
        )),
        Err(err) if !err.retryable() => Err(CommandError::new(
            ErrorCode::Invalid,
            match err.fix() {
                Some(fix) => format!("{err} ({fix})"),
                None => err.to_string(),
            },
        )),
        Err(err) => Err(CommandError::new(ErrorCode::Unavailable, err.to_string())),
    }
}
