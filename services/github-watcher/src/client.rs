//! GitHub through octocrab, reading answers as JSON (octocrab's typed models reject some of what
//! GitHub sends, such as `write` permissions). Lists follow every `Link: rel="next"` page.

use octocrab::Octocrab;
use serde_json::{Value, json};

#[derive(Debug, thiserror::Error)]
pub enum GitHubError {
    #[error("GitHub answered {status}: {message}")]
    Api { status: u16, message: String },
    #[error("GitHub request failed: {0}")]
    Transport(String),
    #[error("GitHub GraphQL: {0}")]
    Graphql(String),
}

impl GitHubError {
    /// Worth retrying: rate limits, server errors, the network.
    pub fn retryable(&self) -> bool {
        match self {
            GitHubError::Api { status: 403, message } => message.to_lowercase().contains("rate limit"),
            GitHubError::Api { status, .. } => matches!(status, 429 | 500..=599),
            GitHubError::Transport(_) => true,
            GitHubError::Graphql(_) => false,
        }
    }

    pub fn status(&self) -> u32 {
        match self {
            GitHubError::Api { status, .. } => u32::from(*status),
            _ => 0,
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

pub type Result<T, E = GitHubError> = std::result::Result<T, E>;

#[derive(Clone)]
pub struct GitHub {
    client: Octocrab,
}

impl GitHub {
    pub fn new(api_url: &str, token: &str) -> Result<Self, String> {
        let client = Octocrab::builder()
            .personal_token(token.to_string())
            .base_uri(api_url)
            .map_err(|e| e.to_string())?
            .build()
            .map_err(|e| e.to_string())?;
        Ok(GitHub { client })
    }

    fn repo_path(owner: &str, name: &str) -> String {
        format!("/repos/{owner}/{name}")
    }

    pub async fn repo(&self, owner: &str, name: &str) -> Result<Value> {
        Ok(self.client.get(Self::repo_path(owner, name), None::<&()>).await?)
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
        Ok(self
            .client
            .post(
                route,
                Some(&json!({"title": title, "body": body, "labels": labels})),
            )
            .await?)
    }

    pub async fn update_issue(&self, owner: &str, name: &str, number: u64, changes: &Value) -> Result<Value> {
        let route = format!("{}/issues/{number}", Self::repo_path(owner, name));
        Ok(self.client.patch(route, Some(changes)).await?)
    }

    pub async fn comment(&self, owner: &str, name: &str, number: u64, body: &str) -> Result<Value> {
        let route = format!("{}/issues/{number}/comments", Self::repo_path(owner, name));
        Ok(self.client.post(route, Some(&json!({"body": body}))).await?)
    }

    pub async fn react(&self, owner: &str, name: &str, comment_id: u64, content: &str) -> Result<Value> {
        let route = format!(
            "{}/issues/comments/{comment_id}/reactions",
            Self::repo_path(owner, name)
        );
        Ok(self
            .client
            .post(route, Some(&json!({"content": content})))
            .await?)
    }

    pub async fn open_pull(&self, owner: &str, name: &str, pull: &Value) -> Result<Value> {
        Ok(self
            .client
            .post(format!("{}/pulls", Self::repo_path(owner, name)), Some(pull))
            .await?)
    }

    pub async fn pull(&self, owner: &str, name: &str, number: u64) -> Result<Value> {
        Ok(self
            .client
            .get(
                format!("{}/pulls/{number}", Self::repo_path(owner, name)),
                None::<&()>,
            )
            .await?)
    }

    pub async fn update_pull(&self, owner: &str, name: &str, number: u64, changes: &Value) -> Result<Value> {
        Ok(self
            .client
            .patch(
                format!("{}/pulls/{number}", Self::repo_path(owner, name)),
                Some(changes),
            )
            .await?)
    }

    pub async fn check_runs(&self, owner: &str, name: &str, sha: &str) -> Result<Value> {
        let route = format!("{}/commits/{sha}/check-runs", Self::repo_path(owner, name));
        Ok(self
            .client
            .get(route, Some(&json!({"per_page": 100, "filter": "latest"})))
            .await?)
    }

    /// GitHub marks a draft ready only through GraphQL.
    pub async fn mark_ready(&self, node_id: &str) -> Result<()> {
        let mutation = json!({
            "query": "mutation($id: ID!) { markPullRequestReadyForReview(input: {pullRequestId: $id}) { pullRequest { isDraft } } }",
            "variables": {"id": node_id},
        });
        let _: Value = self.client.graphql(&mutation).await?;
        Ok(())
    }

    /// Every item of a list route, page by page (100 a page).
    pub async fn list_all(&self, route: &str, query: &str) -> Result<Vec<Value>> {
        let mut next = Some(format!("{route}?per_page=100{query}"));
        let mut items = Vec::new();
        while let Some(uri) = next.take() {
            let response = self.client._get(uri.as_str()).await.map_err(GitHubError::from)?;
            let response = octocrab::map_github_error(response)
                .await
                .map_err(GitHubError::from)?;
            next = response
                .headers()
                .get("link")
                .and_then(|v| v.to_str().ok())
                .and_then(next_link);
            let body = self
                .client
                .body_to_string(response)
                .await
                .map_err(GitHubError::from)?;
            let page: Vec<Value> =
                serde_json::from_str(&body).map_err(|e| GitHubError::Transport(e.to_string()))?;
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
