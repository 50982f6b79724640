//! `query.github.project`: a repository as its project page shows it — description, default
//! branch, open issue count, its ten newest open pull requests and the ten newest commits on its
//! default branch — from GitHub, kept for five minutes so opening the page again costs nothing
//! (`refresh` asks GitHub again). Three calls per look; a failure is answered as the other
//! queries answer it (404, a rate limit's wait, or unavailable).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use mainloop_events::v1::{CommandError, ErrorCode};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::client::{GitHub, GitHubError};

const KEEP: Duration = Duration::from_secs(5 * 60);
const SHOWN: u8 = 10;

#[derive(Debug, Deserialize)]
pub struct ProjectQuery {
    pub owner: String,
    pub name: String,
    #[serde(default)]
    pub refresh: bool,
}

/// What was fetched, and when, per repository.
#[derive(Clone, Default)]
pub struct ProjectCache(Arc<Mutex<HashMap<String, (Instant, Value)>>>);

impl ProjectCache {
    fn get(&self, key: &str) -> Option<Value> {
        let kept = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        kept.get(key)
            .filter(|(at, _)| at.elapsed() < KEEP)
            .map(|(_, value)| value.clone())
    }

    fn put(&self, key: String, value: Value) {
        let mut kept = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        kept.retain(|_, (at, _)| at.elapsed() < KEEP);
        kept.insert(key, (Instant::now(), value));
    }
}

pub async fn answer(
    github: Option<GitHub>,
    cache: ProjectCache,
    query: ProjectQuery,
) -> Result<Value, CommandError> {
    let key = format!("{}/{}", query.owner, query.name).to_ascii_lowercase();
    if !query.refresh
        && let Some(kept) = cache.get(&key)
    {
        return Ok(kept);
    }
    let Some(github) = github else {
        return Err(CommandError::new(
            ErrorCode::Unavailable,
            "GITHUB_TOKEN is not set",
        ));
    };
    let looked = look(&github, &query).await.map_err(|err| refusal(&query, err))?;
    cache.put(key, looked.clone());
    Ok(looked)
}

async fn look(github: &GitHub, query: &ProjectQuery) -> Result<Value, GitHubError> {
    let (owner, name) = (query.owner.as_str(), query.name.as_str());
    let repo = github.repo(owner, name).await?;
    let branch = repo["default_branch"].as_str().unwrap_or("main").to_string();
    let pulls = github.open_pulls(owner, name, SHOWN).await?;
    let commits = github.commits(owner, name, &branch, SHOWN).await?;
    Ok(json!({
        "description": repo["description"],
        "default_branch": branch,
        "avatar_url": repo["owner"]["avatar_url"],
        "open_issue_count": repo["open_issues_count"],
        "open_prs": each(&pulls).map(|p| json!({
            "number": p["number"], "title": p["title"], "state": p["state"],
            "author": p["user"]["login"], "created_at": p["created_at"], "updated_at": p["updated_at"],
            "url": p["html_url"], "head_ref": p["head"]["ref"],
        })).collect::<Vec<_>>(),
        "recent_commits": each(&commits).map(|c| json!({
            "sha": c["sha"], "message": c["commit"]["message"], "author": c["commit"]["author"]["name"],
            "date": c["commit"]["author"]["date"], "url": c["html_url"],
        })).collect::<Vec<_>>(),
    }))
}

fn each(list: &Value) -> impl Iterator<Item = &Value> {
    list.as_array().map_or(&[][..], Vec::as_slice).iter()
}

fn refusal(query: &ProjectQuery, err: GitHubError) -> CommandError {
    match err {
        GitHubError::Api { status: 404, .. } => CommandError::not_found(format!(
            "{}/{} is not on GitHub (or not visible)",
            query.owner, query.name
        )),
        GitHubError::RateLimited { wait, message, .. } => CommandError::new(
            ErrorCode::Unavailable,
            format!("GitHub rate limit ({message}); retry after {} s", wait.as_secs()),
        ),
        err => CommandError::new(ErrorCode::Unavailable, err.to_string()),
    }
}
