use std::collections::BTreeMap;

use serde::Serialize;

/// How the fake's CI reports on a pull request's head commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CiPolicy {
    /// No checks until a test sets them.
    #[default]
    Manual,
    /// The first head of each PR fails its "test" check run; later heads pass (the demo).
    FailThenPass,
    /// The same through commit statuses (the legacy Status API, as some CI systems still use).
    StatusesFailThenPass,
    /// A "test" check run that starts on each head and never finishes.
    Stuck,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct Issue {
    pub number: u64,
    pub title: String,
    pub body: String,
    pub state: String,
    pub labels: Vec<String>,
    pub comments: Vec<Comment>,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct Comment {
    pub id: u64,
    pub body: String,
    pub author: String,
    /// RFC 3339, from the fake's clock (one second per id), so `since` works as on GitHub.
    pub updated_at: String,
    pub reactions: Vec<Reaction>,
}

/// A reaction on a comment: `+1`, `-1`, `laugh`, `confused`, `heart`, `hooray`, `rocket`, `eyes`.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Reaction {
    pub id: u64,
    pub content: String,
    pub user: String,
}

/// The fake's timestamp for object `id`: ids grow, so do times; the same format as GitHub's.
pub fn timestamp(id: u64) -> String {
    let seconds = id % 86_400;
    format!(
        "2026-11-25T{:02}:{:02}:{:02}Z",
        seconds / 3600,
        seconds % 3600 / 60,
        seconds % 60
    )
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct Pull {
    pub number: u64,
    pub title: String,
    pub body: String,
    pub head: String,
    pub base: String,
    pub draft: bool,
    pub state: String,
    pub merged: bool,
    /// Heads CI has seen, in order (for the fail-then-pass policy).
    pub ci_heads: Vec<String>,
    /// Conversation comments (a pull request is an issue: `/issues/{n}/comments`).
    pub comments: Vec<Comment>,
    /// Submitted reviews and their inline comments (`/pulls/{n}/reviews`, `/pulls/{n}/comments`).
    pub reviews: Vec<Review>,
    pub review_comments: Vec<ReviewComment>,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct Review {
    pub id: u64,
    pub user: String,
    /// APPROVED, CHANGES_REQUESTED or COMMENTED.
    pub state: String,
    pub body: String,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct ReviewComment {
    pub id: u64,
    pub review_id: u64,
    pub user: String,
    pub body: String,
    pub path: String,
    pub line: u32,
    pub diff_hunk: String,
    pub updated_at: String,
    /// The comment this one replies to, on the same thread.
    pub in_reply_to: Option<u64>,
    pub reactions: Vec<Reaction>,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct CheckRun {
    pub id: u64,
    pub name: String,
    pub head_sha: String,
    pub status: String,
    pub conclusion: Option<String>,
    pub title: String,
    pub summary: String,
}

/// A commit status (`POST /repos/{o}/{r}/statuses/{sha}`).
#[derive(Debug, Clone, Serialize, Default)]
pub struct CommitStatus {
    pub id: u64,
    pub sha: String,
    pub context: String,
    /// pending, success, failure or error.
    pub state: String,
    pub description: String,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct Repo {
    pub owner: String,
    pub name: String,
    pub default_branch: String,
    /// Private repositories need credentials to clone, as on GitHub; pushing always does.
    pub private: bool,
    pub ci: CiPolicy,
    pub issues: BTreeMap<u64, Issue>,
    pub pulls: BTreeMap<u64, Pull>,
    pub checks: Vec<CheckRun>,
    pub statuses: Vec<CommitStatus>,
    /// Collaborators' permissions (`admin`, `write`, `read`); anyone else has `none`.
    pub collaborators: BTreeMap<String, String>,
    /// Issues and pull requests share one sequence, as on GitHub.
    pub next_number: u64,
}

#[derive(Debug, Default)]
pub struct State {
    pub repos: BTreeMap<String, Repo>,
    pub next_id: u64,
    /// Every request that reached the REST API, as "METHOD path", for call counting.
    pub calls: Vec<String>,
    /// The calls among them answered `304 Not Modified` (free of the rate limit on GitHub).
    pub not_modified: Vec<String>,
    /// Failures to answer instead of the real thing (see `faults`).
    pub faults: Vec<super::faults::Fault>,
    /// Registered webhooks and every delivery sent (see `webhooks`).
    pub hooks: Vec<super::webhooks::Hook>,
    pub deliveries: Vec<super::webhooks::Sent>,
}

/// A copy of the fake's state.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Snapshot {
    pub repos: BTreeMap<String, Repo>,
    pub calls: Vec<String>,
    pub not_modified: Vec<String>,
    pub deliveries: Vec<super::webhooks::Sent>,
}

impl Repo {
    /// The comments of issue or pull request `number` (they share numbers and the comments API).
    pub fn comments_mut(&mut self, number: u64) -> Option<&mut Vec<Comment>> {
        if let Some(issue) = self.issues.get_mut(&number) {
            return Some(&mut issue.comments);
        }
        self.pulls.get_mut(&number).map(|p| &mut p.comments)
    }

    /// The comment with `id`, on any issue or pull request.
    pub fn comment_mut(&mut self, id: u64) -> Option<&mut Comment> {
        self.issues
            .values_mut()
            .flat_map(|i| i.comments.iter_mut())
            .chain(self.pulls.values_mut().flat_map(|p| p.comments.iter_mut()))
            .find(|c| c.id == id)
    }

    pub fn comments(&self, number: u64) -> Option<&Vec<Comment>> {
        self.issues
            .get(&number)
            .map(|i| &i.comments)
            .or_else(|| self.pulls.get(&number).map(|p| &p.comments))
    }
}

impl State {
    pub fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            repos: self.repos.clone(),
            calls: self.calls.clone(),
            not_modified: self.not_modified.clone(),
            deliveries: self.deliveries.clone(),
        }
    }
}
