//! GitHub through octocrab, reading answers as JSON (octocrab's typed models reject some of what
//! GitHub sends, such as `write` permissions). Lists follow every `Link: rel="next"` page. Errors
//! keep what GitHub said and when to come back: rate limits (`retry-after`, `x-ratelimit-reset`)
//! are told apart from final refusals (bad credentials, no permission, not found). Every `GET`
//! is conditional (`etags`): an unchanged answer is a 304, served from memory, free of the rate
//! limit, and told apart as unchanged so polling can slow down.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use octocrab::Octocrab;
use octocrab::service::middleware::retry::RetryConfig;
use serde_json::{Value, json};

#[derive(Debug, thiserror::Error)]
pub enum GitHubError {
    #[error("GitHub answered {status}: {message}")]
    Api { status: u16, message: String },
    /// A primary or secondary rate limit: come back after `wait`.
    #[error("GitHub rate limit ({status}): {message}; retrying in {}s", wait.as_secs())]
    RateLimited {
        status: u16,
        message: String,
        wait: Duration,
    },
    #[error("GitHub request failed: {0}")]
    Transport(String),
    #[error("GitHub GraphQL: {0}")]
    Graphql(String),
}

impl GitHubError {
    /// Worth retrying: rate limits, server errors, the network. Bad credentials, missing
    /// permission, not found and validation errors are final.
    pub fn retryable(&self) -> bool {
        match self {
            GitHubError::Api { status, .. } => matches!(status, 408 | 500..=599),
            GitHubError::RateLimited { .. } | GitHubError::Transport(_) => true,
            GitHubError::Graphql(_) => false,
        }
    }

    pub fn status(&self) -> u32 {
        match self {
            GitHubError::Api { status, .. } | GitHubError::RateLimited { status, .. } => u32::from(*status),
            _ => 0,
        }
    }

    /// What a person must do about a final error, when we know.
    pub fn fix(&self) -> Option<&'static str> {
        match self.status() {
            401 => Some("GitHub does not accept the token: set a valid GITHUB_TOKEN"),
            403 => {
                Some("the token may not do this: it needs write access to contents, issues and pull requests")
            }
            404 => Some("the repository does not exist, or the token cannot see it"),
            _ => None,
        }
    }
}

impl From<octocrab::Error> for GitHubError {
    fn from(err: octocrab::Error) -> Self {
        match err {
            octocrab::Error::GitHub { source, .. } => GitHubError::Api {
                status: source.status_code.as_u16(),
                message: source.message,
            },
            octocrab::Error::Graphql { source, .. } => GitHubError::Graphql(format!("{source:?}")),
            other => GitHubError::Transport(other.to_string()),
        }
    }
}

/// Reads a non-2xx answer: GitHub's `{"message"}` and, for 403/429, its rate-limit headers
/// (`retry-after`; `x-ratelimit-remaining: 0` with `x-ratelimit-reset`), as GitHub documents.
pub fn classify(status: u16, headers: &http::HeaderMap, body: &str) -> GitHubError {
    let message = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| body.chars().take(200).collect());
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    if matches!(status, 403 | 429) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let wait = if let Some(seconds) = header("retry-after") {
            Some(seconds)
        } else if header("x-ratelimit-remaining") == Some(0) {
            Some(header("x-ratelimit-reset").map_or(60, |reset| reset.saturating_sub(now) + 1))
        } else if message.to_lowercase().contains("rate limit") || status == 429 {
            Some(60)
        } else {
            None
        };
        if let Some(seconds) = wait {
            return GitHubError::RateLimited {
                status,
                message,
                // A reset already past (clocks differ) still waits a little, never a busy loop.
                wait: Duration::from_secs(seconds.max(5)),
            };
        }
    }
    GitHubError::Api { status, message }
}

pub type Result<T, E = GitHubError> = std::result::Result<T, E>;

#[derive(Clone)]
pub struct GitHub {
    client: Octocrab,
    etags: crate::etags::Etags,
}

/// A `GET` answer and whether it changed since the last time it was asked for.
pub struct Fetched {
    pub value: Value,
    pub changed: bool,
}

impl GitHub {
    /// No retries inside the client: a POST that GitHub applied before its answer was lost must
    /// not be sent again blindly. Effects retry themselves, after looking for what they made.
    pub fn new(api_url: &str, token: &str) -> Result<Self, String> {
        let client = Octocrab::builder()
            .personal_token(token.to_string())
            .base_uri(api_url)
            .map_err(|e| e.to_string())?
            .add_retry_config(RetryConfig::None)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(GitHub {
            client,
            etags: crate::etags::Etags::default(),
        })
    }

    /// Sends one request and reads the JSON answer, or the error GitHub gave. A `GET` is
    /// conditional; the third value says whether its answer changed (always, for the others).
    async fn send(
        &self,
        method: http::Method,
        route: &str,
        body: Option<&Value>,
    ) -> Result<(Value, http::HeaderMap, bool)> {
        let conditional = method == http::Method::GET;
        let response = match method {
            http::Method::POST => self.client._post(route, body).await,
            http::Method::PATCH => self.client._patch(route, body).await,
            _ => self.client._get_with_headers(route, self.etags.ask(route)).await,
        }
        .map_err(|err| {
            crate::metrics::called(&method, None, None);
            GitHubError::from(err)
        })?;
        let (status, headers) = (response.status(), response.headers().clone());
        crate::metrics::called(&method, Some(status.as_u16()), Some(&headers));
        if conditional
            && status == http::StatusCode::NOT_MODIFIED
            && let Some((value, headers)) = self.etags.unchanged(route)
        {
            return Ok((value, headers, false));
        }
        let text = self
            .client
            .body_to_string(response)
            .await
            .map_err(GitHubError::from)?;
        if !status.is_success() {
            return Err(classify(status.as_u16(), &headers, &text));
        }
        let mut value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).map_err(|e| GitHubError::Transport(format!("{route}: {e}")))?
        };
        // Anything people or CI systems wrote (titles, check summaries, comments) may hold a
        // NUL; it is made storable here, where it enters, so it cannot poison a projection.
        let cleaned = mainloop_events::text::make_storable(&mut value);
        if cleaned > 0 {
            tracing::warn!(%route, cleaned, "GitHub's answer held NUL characters; shown as ␀");
        }
        if conditional {
            self.etags.keep(route, &value, &headers);
        }
        Ok((value, headers, true))
    }

    /// A `GET`, saying whether the answer changed since it was last asked for.
    pub async fn fetch(&self, route: &str) -> Result<Fetched> {
        let (value, _, changed) = self.send(http::Method::GET, route, None).await?;
        Ok(Fetched { value, changed })
    }

    async fn get(&self, route: &str) -> Result<Value> {
        Ok(self.send(http::Method::GET, route, None).await?.0)
    }

    async fn post(&self, route: &str, body: &Value) -> Result<Value> {
        Ok(self.send(http::Method::POST, route, Some(body)).await?.0)
    }

    async fn patch(&self, route: &str, body: &Value) -> Result<Value> {
        Ok(self.send(http::Method::PATCH, route, Some(body)).await?.0)
    }

    /// The signed-in user and the token's classic scopes (`x-oauth-scopes`; empty for
    /// fine-grained tokens), for checking the token at start.
    pub async fn user(&self) -> Result<(Value, String)> {
        let (user, headers, _) = self.send(http::Method::GET, "/user", None).await?;
        let scopes = headers
            .get("x-oauth-scopes")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        Ok((user, scopes))
    }

    fn repo_path(owner: &str, name: &str) -> String {
        format!("/repos/{owner}/{name}")
    }

    pub async fn repo(&self, owner: &str, name: &str) -> Result<Value> {
        self.get(&Self::repo_path(owner, name)).await
    }

    pub async fn create_issue(
        &self,
        owner: &str,
        name: &str,
        title: &str,
        body: &str,
        labels: &[String],
    ) -> Result<Value> {
        let route = format!("{}/issues", Self::repo_path(owner, name));
        self.post(&route, &json!({"title": title, "body": body, "labels": labels}))
            .await
    }

    pub async fn update_issue(&self, owner: &str, name: &str, number: u64, changes: &Value) -> Result<Value> {
        let route = format!("{}/issues/{number}", Self::repo_path(owner, name));
        self.patch(&route, changes).await
    }

    pub async fn comment(&self, owner: &str, name: &str, number: u64, body: &str) -> Result<Value> {
        let route = format!("{}/issues/{number}/comments", Self::repo_path(owner, name));
        self.post(&route, &json!({"body": body})).await
    }

    /// Reacts on a comment: a conversation comment (`issues/comments`) or an inline review
    /// comment (`pulls/comments`). GitHub answers 200 with the existing reaction when there is
    /// one, so reacting twice is harmless.
    pub async fn react(
        &self,
        owner: &str,
        name: &str,
        comment_id: u64,
        content: &str,
        on_review_comment: bool,
    ) -> Result<Value> {
        let kind = if on_review_comment { "pulls" } else { "issues" };
        let route = format!(
            "{}/{kind}/comments/{comment_id}/reactions",
            Self::repo_path(owner, name)
        );
        self.post(&route, &json!({"content": content})).await
    }

    /// Replies on the thread of inline review comment `comment_id` of pull request `number`.
    pub async fn reply_to_review_comment(
        &self,
        owner: &str,
        name: &str,
        number: u64,
        comment_id: u64,
        body: &str,
    ) -> Result<Value> {
        let route = format!(
            "{}/pulls/{number}/comments/{comment_id}/replies",
            Self::repo_path(owner, name)
        );
        self.post(&route, &json!({"body": body})).await
    }

    pub async fn open_pull(&self, owner: &str, name: &str, pull: &Value) -> Result<Value> {
        self.post(&format!("{}/pulls", Self::repo_path(owner, name)), pull)
            .await
    }

    pub async fn pull(&self, owner: &str, name: &str, number: u64) -> Result<Value> {
        self.get(&format!("{}/pulls/{number}", Self::repo_path(owner, name)))
            .await
    }

    /// The issue (or a pull request as an issue), and whether it changed since it was last
    /// asked for: a new comment changes it.
    pub async fn issue_fetched(&self, owner: &str, name: &str, number: u64) -> Result<Fetched> {
        self.fetch(&format!("{}/issues/{number}", Self::repo_path(owner, name)))
            .await
    }

    /// The reactions on comment `id`, and whether they changed since last asked for.
    pub async fn reactions_fetched(&self, owner: &str, name: &str, id: u64) -> Result<Fetched> {
        self.fetch(&format!(
            "{}/issues/comments/{id}/reactions?per_page=100",
            Self::repo_path(owner, name)
        ))
        .await
    }

    /// A collaborator's permission name (`admin`, `write`, `read`, …); 404 for strangers.
    pub async fn collaborator_permission(&self, owner: &str, name: &str, login: &str) -> Result<String> {
        let answer = self
            .get(&format!(
                "{}/collaborators/{login}/permission",
                Self::repo_path(owner, name)
            ))
            .await?;
        Ok(answer["permission"].as_str().unwrap_or("none").to_string())
    }

    /// The pull request, and whether it changed since it was last asked for (a new head, a
    /// merge, a review or a comment all change it).
    pub async fn pull_fetched(&self, owner: &str, name: &str, number: u64) -> Result<Fetched> {
        self.fetch(&format!("{}/pulls/{number}", Self::repo_path(owner, name)))
            .await
    }

    /// The repository's open pull requests, newest first (the first `count`).
    pub async fn open_pulls(&self, owner: &str, name: &str, count: u8) -> Result<Value> {
        self.get(&format!(
            "{}/pulls?state=open&sort=created&direction=desc&per_page={count}",
            Self::repo_path(owner, name)
        ))
        .await
    }

    /// The newest commits on `branch` (the first `count`).
    pub async fn commits(&self, owner: &str, name: &str, branch: &str, count: u8) -> Result<Value> {
        self.get(&format!(
            "{}/commits?sha={branch}&per_page={count}",
            Self::repo_path(owner, name)
        ))
        .await
    }

    /// The files a pull request changes (the first 100), with their added and removed lines.
    pub async fn pull_files(&self, owner: &str, name: &str, number: u64) -> Result<Value> {
        self.get(&format!(
            "{}/pulls/{number}/files?per_page=100",
            Self::repo_path(owner, name)
        ))
        .await
    }

    pub async fn update_pull(&self, owner: &str, name: &str, number: u64, changes: &Value) -> Result<Value> {
        self.patch(
            &format!("{}/pulls/{number}", Self::repo_path(owner, name)),
            changes,
        )
        .await
    }

    pub async fn check_runs(&self, owner: &str, name: &str, sha: &str) -> Result<Value> {
        let route = format!(
            "{}/commits/{sha}/check-runs?per_page=100&filter=latest",
            Self::repo_path(owner, name)
        );
        self.get(&route).await
    }

    pub async fn check_suites(&self, owner: &str, name: &str, sha: &str) -> Result<Value> {
        let route = format!(
            "{}/commits/{sha}/check-suites?per_page=100",
            Self::repo_path(owner, name)
        );
        self.get(&route).await
    }

    /// The combined commit status (the legacy Status API that some CI systems use).
    pub async fn combined_status(&self, owner: &str, name: &str, sha: &str) -> Result<Value> {
        let route = format!(
            "{}/commits/{sha}/status?per_page=100",
            Self::repo_path(owner, name)
        );
        self.get(&route).await
    }

    /// GitHub marks a draft ready only through GraphQL. GraphQL answers errors with 200 and an
    /// `errors` list; a `RATE_LIMITED` one is a rate limit like any other.
    pub async fn mark_ready(&self, node_id: &str) -> Result<()> {
        let mutation = json!({
            "query": "mutation($id: ID!) { markPullRequestReadyForReview(input: {pullRequestId: $id}) { pullRequest { isDraft } } }",
            "variables": {"id": node_id},
        });
        let (answer, _, _) = self.send(http::Method::POST, "/graphql", Some(&mutation)).await?;
        let Some(errors) = answer["errors"].as_array().filter(|e| !e.is_empty()) else {
            return Ok(());
        };
        let message = errors
            .iter()
            .filter_map(|e| e["message"].as_str())
            .collect::<Vec<_>>()
            .join("; ");
        if errors.iter().any(|e| e["type"] == "RATE_LIMITED") {
            return Err(GitHubError::RateLimited {
                status: 200,
                message,
                wait: Duration::from_secs(60),
            });
        }
        Err(GitHubError::Graphql(message))
    }

    /// Every item of a list route, page by page (100 a page).
    pub async fn list_all(&self, route: &str, query: &str) -> Result<Vec<Value>> {
        let mut next = Some(format!("{route}?per_page=100{query}"));
        let mut items = Vec::new();
        while let Some(uri) = next.take() {
            let (page, headers, _) = self.send(http::Method::GET, &uri, None).await?;
            next = headers
                .get("link")
                .and_then(|v| v.to_str().ok())
                .and_then(next_link);
            let Value::Array(page) = page else {
                return Err(GitHubError::Transport(format!("{uri}: not a list")));
            };
            items.extend(page);
        }
        Ok(items)
    }

    pub async fn issues(&self, owner: &str, name: &str) -> Result<Vec<Value>> {
        self.list_all(&format!("{}/issues", Self::repo_path(owner, name)), "&state=all")
            .await
    }

    pub async fn comments(&self, owner: &str, name: &str, number: u64) -> Result<Vec<Value>> {
        self.list_all(
            &format!("{}/issues/{number}/comments", Self::repo_path(owner, name)),
            "",
        )
        .await
    }

    /// The comments on issue (or pull request) `number` updated at or after `since`, all pages.
    pub async fn comments_since(
        &self,
        owner: &str,
        name: &str,
        number: u64,
        since: Option<&str>,
    ) -> Result<Vec<Value>> {
        let since = since.map_or_else(String::new, |s| format!("&since={s}"));
        self.list_all(
            &format!("{}/issues/{number}/comments", Self::repo_path(owner, name)),
            &since,
        )
        .await
    }

    /// A pull request's reviews, all pages.
    pub async fn reviews(&self, owner: &str, name: &str, number: u64) -> Result<Vec<Value>> {
        self.list_all(
            &format!("{}/pulls/{number}/reviews", Self::repo_path(owner, name)),
            "",
        )
        .await
    }

    /// A pull request's inline review comments, all pages.
    pub async fn review_comments(&self, owner: &str, name: &str, number: u64) -> Result<Vec<Value>> {
        self.list_all(
            &format!("{}/pulls/{number}/comments", Self::repo_path(owner, name)),
            "",
        )
        .await
    }

    pub async fn pulls_for_head(&self, owner: &str, name: &str, branch: &str) -> Result<Vec<Value>> {
        self.list_all(
            &format!("{}/pulls", Self::repo_path(owner, name)),
            &format!("&state=all&head={owner}:{branch}"),
        )
        .await
    }
}

/// The `rel="next"` URL of a `Link` header.
fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (url, rel) = part.split_once(';')?;
        rel.contains("rel=\"next\"").then(|| {
            url.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
    })
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use super::{GitHubError, classify};

    fn headers(pairs: &[(&'static str, String)]) -> http::HeaderMap {
        pairs
            .iter()
            .filter_map(|(k, v)| Some((http::HeaderName::from_static(k), v.parse().ok()?)))
            .collect()
    }

    #[test]
    fn rate_limits_say_when_to_come_back_and_refusals_are_final() {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let primary = headers(&[
            ("x-ratelimit-remaining", "0".into()),
            ("x-ratelimit-reset", (now + 60).to_string()),
        ]);
        let err = classify(
            403,
            &primary,
            r#"{"message":"API rate limit exceeded for user ID 1."}"#,
        );
        assert!(
            matches!(err, GitHubError::RateLimited { wait, .. } if (59..=62).contains(&wait.as_secs())),
            "{err:?}"
        );
        let secondary = headers(&[("retry-after", "30".into())]);
        let err = classify(
            429,
            &secondary,
            r#"{"message":"You have exceeded a secondary rate limit."}"#,
        );
        assert!(matches!(err, GitHubError::RateLimited { wait, .. } if wait == Duration::from_secs(30)));
        for status in [401, 403, 404, 422] {
            let err = classify(status, &headers(&[]), r#"{"message":"no"}"#);
            assert!(!err.retryable(), "{status} is final: {err:?}");
        }
        assert!(classify(502, &headers(&[]), "<html>").retryable());
    }

    #[test]
    fn the_next_page_is_read_from_the_link_header() {
        let header = "<https://api.github.com/repos/a/b/issues?page=2>; rel=\"next\", <https://api.github.com/repos/a/b/issues?page=5>; rel=\"last\"";
        assert_eq!(
            super::next_link(header).as_deref(),
            Some("https://api.github.com/repos/a/b/issues?page=2")
        );
        assert_eq!(super::next_link("<x>; rel=\"prev\""), None);
    }
}
