//! The REST surface, in GitHub's shapes.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::FakeGitHub;
use super::model::{Comment, Issue, Pull, Repo};

pub(crate) type Reply = Result<Response, Response>;

pub fn router() -> Router<FakeGitHub> {
    Router::new()
        .route("/user", get(signed_in_user))
        .route("/repos/{owner}/{repo}", get(repo))
        .route(
            "/repos/{owner}/{repo}/issues",
            get(list_issues).post(create_issue),
        )
        .route(
            "/repos/{owner}/{repo}/issues/{number}",
            get(get_issue).patch(update_issue),
        )
        .route(
            "/repos/{owner}/{repo}/issues/{number}/comments",
            get(list_comments).post(create_comment),
        )
        .route("/repos/{owner}/{repo}/pulls", get(list_pulls).post(create_pull))
        .route(
            "/repos/{owner}/{repo}/collaborators/{login}/permission",
            get(collaborator_permission),
        )
        .route(
            "/repos/{owner}/{repo}/issues/comments/{id}/reactions",
            get(list_reactions).post(create_reaction),
        )
        .merge(super::reviews::router())
        .route(
            "/repos/{owner}/{repo}/pulls/{number}",
            get(get_pull).patch(update_pull),
        )
        .route("/repos/{owner}/{repo}/pulls/{number}/files", get(pull_files))
        .route("/repos/{owner}/{repo}/commits", get(list_commits))
        .route(
            "/repos/{owner}/{repo}/commits/{sha}/check-runs",
            get(super::ci::check_runs),
        )
        .route(
            "/repos/{owner}/{repo}/commits/{sha}/check-suites",
            get(super::ci::check_suites),
        )
        .route(
            "/repos/{owner}/{repo}/commits/{sha}/status",
            get(super::ci::combined_status),
        )
        .route(
            "/repos/{owner}/{repo}/statuses/{sha}",
            post(super::ci::create_status),
        )
        .route("/graphql", post(graphql))
}

pub fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({"message": message, "documentation_url": "https://docs.github.com/rest"})),
    )
        .into_response()
}

/// Checks the bearer token and records the call.
pub(crate) fn authorize(gh: &FakeGitHub, headers: &HeaderMap, call: String) -> Result<(), Response> {
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let token = given
        .strip_prefix("Bearer ")
        .or_else(|| given.strip_prefix("token "))
        .unwrap_or_default();
    if token.is_empty() || token != gh.token {
        return Err(error(StatusCode::UNAUTHORIZED, "Bad credentials"));
    }
    if let Ok(mut state) = gh.state.lock() {
        state.calls.push(call);
    }
    Ok(())
}

pub(crate) fn user(login: &str) -> Value {
    json!({"login": login, "id": 1, "node_id": "U_1", "avatar_url": "", "gravatar_id": "", "url": "", "html_url": format!("https://github.com/{login}"),
        "type": "User", "site_admin": false})
}

pub(crate) fn with_repo<T>(
    gh: &FakeGitHub,
    owner: &str,
    name: &str,
    f: impl FnOnce(&mut Repo, u64) -> T,
) -> Result<T, Response> {
    let mut state = gh
        .state
        .lock()
        .map_err(|_| error(StatusCode::INTERNAL_SERVER_ERROR, "state poisoned"))?;
    let id = state.id();
    let repo = state
        .repos
        .get_mut(&format!("{owner}/{name}"))
        .ok_or_else(|| error(StatusCode::NOT_FOUND, "Not Found"))?;
    Ok(f(repo, id))
}

fn html(gh: &FakeGitHub, repo: &Repo, kind: &str, number: u64) -> String {
    format!("{}/{}/{}/{kind}/{number}", gh.base(), repo.owner, repo.name)
}

fn issue_json(gh: &FakeGitHub, repo: &Repo, issue: &Issue) -> Value {
    json!({"id": issue.number, "node_id": format!("I_{}", issue.number), "number": issue.number, "title": issue.title, "body": issue.body,
        "state": issue.state, "labels": issue.labels.iter().map(|l| json!({"name": l})).collect::<Vec<_>>(), "user": user("mainloop-bot"),
        "html_url": html(gh, repo, "issues", issue.number), "comments": issue.comments.len(), "locked": false,
        "created_at": "2026-11-25T00:00:00Z", "updated_at": "2026-11-25T00:00:00Z"})
}

fn comment_json(gh: &FakeGitHub, repo: &Repo, number: u64, comment: &Comment) -> Value {
    json!({"id": comment.id, "node_id": format!("IC_{}", comment.id), "body": comment.body, "user": user(&comment.author),
        "html_url": format!("{}#issuecomment-{}", html(gh, repo, "issues", number), comment.id),
        "created_at": comment.updated_at, "updated_at": comment.updated_at})
}

/// The commit `branch` points at in the repository's bare clone, read from its ref files as
/// git writes them (a loose `refs/heads/<branch>`, else `packed-refs`): no process, so no
/// handler blocks on one, and callers may ask while holding the state lock.
pub(crate) fn head_sha(gh: &FakeGitHub, repo: &Repo, branch: &str) -> Option<String> {
    let bare = gh.root.join(&repo.owner).join(format!("{}.git", repo.name));
    ref_in(&bare, &format!("refs/heads/{branch}"))
}

/// What git prints for `args` in the bare repository, run without holding up the server's
/// threads; None when git failed (an unknown branch, say).
async fn git_in(bare: &std::path::Path, args: &[&str]) -> Option<String> {
    let out = tokio::process::Command::new("git")
        .args(args)
        .current_dir(bare)
        .output()
        .await
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ref_in(bare: &std::path::Path, name: &str) -> Option<String> {
    if let Ok(loose) = std::fs::read_to_string(bare.join(name)) {
        return Some(loose.trim().to_string());
    }
    let packed = std::fs::read_to_string(bare.join("packed-refs")).ok()?;
    packed
        .lines()
        .filter(|line| !line.starts_with('#') && !line.starts_with('^'))
        .find_map(|line| match line.split_once(' ') {
            Some((sha, packed_name)) if packed_name == name => Some(sha.to_string()),
            _ => None,
        })
}

fn pull_json(gh: &FakeGitHub, repo: &Repo, pull: &Pull) -> Value {
    let sha = head_sha(gh, repo, &pull.head).unwrap_or_default();
    json!({"id": pull.number, "node_id": format!("PR_{}_{}_{}", repo.owner, repo.name, pull.number), "number": pull.number,
        "title": pull.title, "body": pull.body, "state": pull.state, "draft": pull.draft, "merged": pull.merged,
        "html_url": html(gh, repo, "pull", pull.number), "user": user("mainloop-bot"),
        "head": {"ref": pull.head, "sha": sha, "label": format!("{}:{}", repo.owner, pull.head)},
        "base": {"ref": pull.base, "label": format!("{}:{}", repo.owner, pull.base)},
        "comments": pull.comments.len(), "review_comments": pull.review_comments.len(),
        "created_at": "2026-11-25T00:00:00Z", "updated_at": pull_updated_at(pull)})
}

/// A pull request's `updated_at` moves with every comment and review, as on GitHub.
fn pull_updated_at(pull: &Pull) -> String {
    let latest = pull
        .comments
        .iter()
        .map(|c| c.id)
        .chain(pull.reviews.iter().map(|r| r.id))
        .chain(pull.review_comments.iter().map(|c| c.id))
        .max()
        .unwrap_or(0);
    super::model::timestamp(latest)
}

/// A pull request seen through the issues API, as GitHub shows it (with `pull_request`).
fn pull_as_issue(gh: &FakeGitHub, repo: &Repo, pull: &Pull) -> Value {
    json!({"id": pull.number, "node_id": format!("I_{}", pull.number), "number": pull.number, "title": pull.title,
        "body": pull.body, "state": pull.state, "labels": [], "user": user("mainloop-bot"),
        "html_url": html(gh, repo, "pull", pull.number), "comments": pull.comments.len(), "locked": false,
        "pull_request": {"url": format!("{}/repos/{}/{}/pulls/{}", gh.base(), repo.owner, repo.name, pull.number)},
        "created_at": "2026-11-25T00:00:00Z", "updated_at": "2026-11-25T00:00:00Z"})
}

/// The token's user, with the classic scopes header GitHub sends for classic tokens.
async fn signed_in_user(State(gh): State<FakeGitHub>, headers: HeaderMap) -> Reply {
    authorize(&gh, &headers, "GET /user".into())?;
    let mut response = Json(user("mainloop-bot")).into_response();
    response.headers_mut().insert(
        "x-oauth-scopes",
        axum::http::HeaderValue::from_static("repo, workflow"),
    );
    Ok(response)
}

async fn repo(
    State(gh): State<FakeGitHub>,
    headers: HeaderMap,
    Path((owner, name)): Path<(String, String)>,
) -> Reply {
    authorize(&gh, &headers, format!("GET /repos/{owner}/{name}"))?;
    let body = with_repo(&gh, &owner, &name, |repo, _| {
        json!({"id": 1, "node_id": "R_1", "name": repo.name, "full_name": format!("{}/{}", repo.owner, repo.name), "owner": user(&repo.owner),
            "private": repo.private, "html_url": format!("{}/{}/{}", gh.base(), repo.owner, repo.name), "clone_url": format!("{}/{}/{}.git", gh.base(), repo.owner, repo.name),
            "permissions": {"admin": true, "maintain": true, "push": true, "triage": true, "pull": true},
            "default_branch": repo.default_branch, "open_issues_count": repo.issues.values().filter(|i| i.state == "open").count()})
    })?;
    Ok(Json(body).into_response())
}

#[derive(Debug, Deserialize)]
struct NewIssue {
    title: String,
    #[serde(default)]
    body: String,
    #[serde(default)]
    labels: Vec<String>,
}

async fn create_issue(
    State(gh): State<FakeGitHub>,
    headers: HeaderMap,
    Path((owner, name)): Path<(String, String)>,
    Json(new): Json<NewIssue>,
) -> Reply {
    authorize(&gh, &headers, format!("POST /repos/{owner}/{name}/issues"))?;
    if new.title.trim().is_empty() {
        return Err(error(StatusCode::UNPROCESSABLE_ENTITY, "Validation Failed"));
    }
    let body = with_repo(&gh, &owner, &name, |repo, _| {
        repo.next_number += 1;
        let issue = Issue {
            number: repo.next_number,
            title: new.title,
            body: new.body,
            state: "open".into(),
            labels: new.labels,
            comments: vec![],
        };
        let body = issue_json(&gh, repo, &issue);
        repo.issues.insert(issue.number, issue);
        body
    })?;
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

#[derive(Debug, Deserialize)]
pub(crate) struct Page {
    #[serde(default = "per_page")]
    per_page: usize,
    #[serde(default = "first")]
    page: usize,
    head: Option<String>,
    /// Pull requests: `open` (GitHub's default), `closed` or `all`.
    state: Option<String>,
    /// Commits: the branch or sha to list from (the default branch when not given).
    sha: Option<String>,
    /// Only what was updated at or after this (RFC 3339), where the list supports it.
    pub(crate) since: Option<String>,
}

fn per_page() -> usize {
    30
}

fn first() -> usize {
    1
}

/// One page of `items`, with GitHub's absolute `Link` header when there are more.
pub(crate) fn paged(gh: &FakeGitHub, path: &str, items: Vec<Value>, page: &Page) -> Response {
    let size = page.per_page.clamp(1, 100);
    let start = (page.page.max(1) - 1) * size;
    let chunk: Vec<Value> = items.iter().skip(start).take(size).cloned().collect();
    let mut response = Json(chunk).into_response();
    if start + size < items.len() {
        let since = page
            .since
            .as_ref()
            .map_or_else(String::new, |s| format!("&since={s}"));
        let next = format!(
            "<{}{path}?per_page={size}&page={}{since}>; rel=\"next\"",
            gh.base(),
            page.page.max(1) + 1
        );
        if let Ok(value) = next.parse() {
            response.headers_mut().insert("link", value);
        }
    }
    response
}

async fn list_issues(
    State(gh): State<FakeGitHub>,
    headers: HeaderMap,
    Path((owner, name)): Path<(String, String)>,
    Query(page): Query<Page>,
) -> Reply {
    let path = format!("/repos/{owner}/{name}/issues");
    authorize(&gh, &headers, format!("GET {path}"))?;
    let items = with_repo(&gh, &owner, &name, |repo, _| {
        repo.issues.values().map(|i| issue_json(&gh, repo, i)).collect()
    })?;
    Ok(paged(&gh, &path, items, &page))
}

async fn get_issue(
    State(gh): State<FakeGitHub>,
    headers: HeaderMap,
    Path((owner, name, number)): Path<(String, String, u64)>,
) -> Reply {
    authorize(
        &gh,
        &headers,
        format!("GET /repos/{owner}/{name}/issues/{number}"),
    )?;
    let body = with_repo(&gh, &owner, &name, |repo, _| {
        repo.issues
            .get(&number)
            .map(|i| issue_json(&gh, repo, i))
            .or_else(|| repo.pulls.get(&number).map(|p| pull_as_issue(&gh, repo, p)))
    })?;
    body.map(|b| Json(b).into_response())
        .ok_or_else(|| error(StatusCode::NOT_FOUND, "Not Found"))
}

#[derive(Debug, Deserialize)]
struct IssueUpdate {
    title: Option<String>,
    body: Option<String>,
    state: Option<String>,
    labels: Option<Vec<String>>,
}

async fn update_issue(
    State(gh): State<FakeGitHub>,
    headers: HeaderMap,
    Path((owner, name, number)): Path<(String, String, u64)>,
    Json(update): Json<IssueUpdate>,
) -> Reply {
    authorize(
        &gh,
        &headers,
        format!("PATCH /repos/{owner}/{name}/issues/{number}"),
    )?;
    let body = with_repo(&gh, &owner, &name, |repo, _| {
        let issue = repo.issues.get_mut(&number)?;
        if let Some(title) = update.title {
            issue.title = title
        }
        if let Some(body) = update.body {
            issue.body = body
        }
        if let Some(state) = update.state {
            issue.state = state
        }
        if let Some(labels) = update.labels {
            issue.labels = labels
        }
        let issue = issue.clone();
        Some(issue_json(&gh, repo, &issue))
    })?;
    body.map(|b| Json(b).into_response())
        .ok_or_else(|| error(StatusCode::NOT_FOUND, "Not Found"))
}

#[derive(Debug, Deserialize)]
struct NewComment {
    body: String,
}

async fn create_comment(
    State(gh): State<FakeGitHub>,
    headers: HeaderMap,
    Path((owner, name, number)): Path<(String, String, u64)>,
    Json(new): Json<NewComment>,
) -> Reply {
    authorize(
        &gh,
        &headers,
        format!("POST /repos/{owner}/{name}/issues/{number}/comments"),
    )?;
    let body = with_repo(&gh, &owner, &name, |repo, id| {
        let comment = Comment {
            id,
            body: new.body,
            author: "mainloop-bot".into(),
            updated_at: super::model::timestamp(id),
            reactions: vec![],
        };
        repo.comments_mut(number)?.push(comment.clone());
        let json = comment_json(&gh, repo, number, &comment);
        let hook = json!({"action": "created", "repository": super::webhooks::repository(repo),
            "issue": {"number": number}, "comment": json});
        Some((json, hook))
    })?;
    let (body, hook) = body.ok_or_else(|| error(StatusCode::NOT_FOUND, "Not Found"))?;
    super::webhooks::deliver(&gh, "issue_comment", hook, "mainloop-bot");
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// A person's permission on the repository; `none` for anyone who is not a collaborator.
async fn collaborator_permission(
    State(gh): State<FakeGitHub>,
    headers: HeaderMap,
    Path((owner, name, login)): Path<(String, String, String)>,
) -> Reply {
    authorize(
        &gh,
        &headers,
        format!("GET /repos/{owner}/{name}/collaborators/{login}/permission"),
    )?;
    let permission = with_repo(&gh, &owner, &name, |repo, _| {
        repo.collaborators
            .get(&login)
            .cloned()
            .unwrap_or_else(|| "none".into())
    })?;
    Ok(
        Json(json!({"permission": permission, "role_name": permission, "user": user(&login)}))
            .into_response(),
    )
}

#[derive(Debug, Deserialize)]
pub(crate) struct NewReaction {
    pub(crate) content: String,
}

pub(crate) const REACTIONS: &[&str] = &[
    "+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes",
];

pub(crate) fn reaction_json(reaction: &super::model::Reaction) -> Value {
    json!({"id": reaction.id, "node_id": format!("REA_{}", reaction.id), "content": reaction.content,
        "user": user(&reaction.user), "created_at": super::model::timestamp(reaction.id)})
}

/// Adds `content` by `author` to comment `id`; GitHub answers 200 with the existing reaction
/// when that person already reacted so, 201 when new.
pub(crate) fn add_reaction(
    gh: &FakeGitHub,
    owner: &str,
    name: &str,
    id: u64,
    author: &str,
    content: &str,
) -> Reply {
    if !REACTIONS.contains(&content) {
        return Err(error(StatusCode::UNPROCESSABLE_ENTITY, "Validation Failed"));
    }
    let made = with_repo(gh, owner, name, |repo, next| {
        Some(react(&mut repo.comment_mut(id)?.reactions, next, author, content))
    })?;
    made.map(|(status, body)| (status, Json(body)).into_response())
        .ok_or_else(|| error(StatusCode::NOT_FOUND, "Not Found"))
}

/// Adds `content` by `author` to `reactions` (with id `next` when new): 200 with the existing
/// reaction when that person already reacted so, 201 when new.
pub(crate) fn react(
    reactions: &mut Vec<super::model::Reaction>,
    next: u64,
    author: &str,
    content: &str,
) -> (StatusCode, Value) {
    if let Some(existing) = reactions
        .iter()
        .find(|r| r.user == author && r.content == content)
    {
        return (StatusCode::OK, reaction_json(existing));
    }
    let reaction = super::model::Reaction {
        id: next,
        content: content.to_string(),
        user: author.to_string(),
    };
    reactions.push(reaction.clone());
    (StatusCode::CREATED, reaction_json(&reaction))
}

async fn create_reaction(
    State(gh): State<FakeGitHub>,
    headers: HeaderMap,
    Path((owner, name, id)): Path<(String, String, u64)>,
    Json(new): Json<NewReaction>,
) -> Reply {
    authorize(
        &gh,
        &headers,
        format!("POST /repos/{owner}/{name}/issues/comments/{id}/reactions"),
    )?;
    add_reaction(&gh, &owner, &name, id, "mainloop-bot", &new.content)
}

async fn list_reactions(
    State(gh): State<FakeGitHub>,
    headers: HeaderMap,
    Path((owner, name, id)): Path<(String, String, u64)>,
    Query(page): Query<Page>,
) -> Reply {
    let path = format!("/repos/{owner}/{name}/issues/comments/{id}/reactions");
    authorize(&gh, &headers, format!("GET {path}"))?;
    let items = with_repo(&gh, &owner, &name, |repo, _| {
        repo.comment_mut(id)
            .map(|c| c.reactions.iter().map(reaction_json).collect::<Vec<_>>())
    })?;
    items
        .map(|items| paged(&gh, &path, items, &page))
        .ok_or_else(|| error(StatusCode::NOT_FOUND, "Not Found"))
}

/// A comment by `author` (a person, not the token's user), as a test makes one.
pub(crate) fn add_comment(
    gh: &FakeGitHub,
    owner: &str,
    name: &str,
    number: u64,
    author: &str,
    body: &str,
) -> Result<Value, Response> {
    let made = with_repo(gh, owner, name, |repo, id| {
        let comment = Comment {
            id,
            body: body.to_string(),
            author: author.to_string(),
            updated_at: super::model::timestamp(id),
            reactions: vec![],
        };
        repo.comments_mut(number)?.push(comment.clone());
        let json = comment_json(gh, repo, number, &comment);
        let hook = json!({"action": "created", "repository": super::webhooks::repository(repo),
            "issue": {"number": number}, "comment": json});
        Some((json, hook))
    })?;
    let (json, hook) = made.ok_or_else(|| error(StatusCode::NOT_FOUND, "Not Found"))?;
    super::webhooks::deliver(gh, "issue_comment", hook, author);
    Ok(json)
}

async fn list_comments(
    State(gh): State<FakeGitHub>,
    headers: HeaderMap,
    Path((owner, name, number)): Path<(String, String, u64)>,
    Query(page): Query<Page>,
) -> Reply {
    let path = format!("/repos/{owner}/{name}/issues/{number}/comments");
    authorize(&gh, &headers, format!("GET {path}"))?;
    let items = with_repo(&gh, &owner, &name, |repo, _| {
        repo.comments(number).map(|comments| {
            comments
                .iter()
                .filter(|c| page.since.as_ref().is_none_or(|since| &c.updated_at >= since))
                .map(|c| comment_json(&gh, repo, number, c))
                .collect()
        })
    })?;
    items
        .map(|items| paged(&gh, &path, items, &page))
        .ok_or_else(|| error(StatusCode::NOT_FOUND, "Not Found"))
}

#[derive(Debug, Deserialize)]
struct NewPull {
    title: String,
    #[serde(default)]
    body: String,
    head: String,
    base: String,
    #[serde(default)]
    draft: bool,
}

async fn create_pull(
    State(gh): State<FakeGitHub>,
    headers: HeaderMap,
    Path((owner, name)): Path<(String, String)>,
    Json(new): Json<NewPull>,
) -> Reply {
    authorize(&gh, &headers, format!("POST /repos/{owner}/{name}/pulls"))?;
    let body = with_repo(&gh, &owner, &name, |repo, _| {
        let head = new.head.rsplit(':').next().unwrap_or_default().to_string();
        if head_sha(&gh, repo, &head).is_none() {
            return Err(error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Validation Failed: head does not exist",
            ));
        }
        if repo.pulls.values().any(|p| p.head == head && p.state == "open") {
            return Err(error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Validation Failed: A pull request already exists",
            ));
        }
        repo.next_number += 1;
        let base = if new.base.is_empty() {
            repo.default_branch.clone()
        } else {
            new.base
        };
        let pull = Pull {
            number: repo.next_number,
            title: new.title,
            body: new.body,
            head,
            base,
            draft: new.draft,
            state: "open".into(),
            merged: false,
            ci_heads: vec![],
            comments: vec![],
            reviews: vec![],
            review_comments: vec![],
        };
        let body = pull_json(&gh, repo, &pull);
        repo.pulls.insert(pull.number, pull);
        Ok(body)
    })?;
    body.map(|b| (StatusCode::CREATED, Json(b)).into_response())
}

async fn list_pulls(
    State(gh): State<FakeGitHub>,
    headers: HeaderMap,
    Path((owner, name)): Path<(String, String)>,
    Query(page): Query<Page>,
) -> Reply {
    let path = format!("/repos/{owner}/{name}/pulls");
    authorize(&gh, &headers, format!("GET {path}"))?;
    let head = page
        .head
        .clone()
        .map(|h| h.rsplit(':').next().unwrap_or_default().to_string());
    let items = with_repo(&gh, &owner, &name, |repo, _| {
        let wanted = page.state.as_deref().unwrap_or("open");
        repo.pulls
            .values()
            .rev()
            .filter(|p| head.as_ref().is_none_or(|h| *h == p.head))
            .filter(|p| wanted == "all" || p.state == wanted)
            .map(|p| pull_json(&gh, repo, p))
            .collect()
    })?;
    Ok(paged(&gh, &path, items, &page))
}

async fn get_pull(
    State(gh): State<FakeGitHub>,
    headers: HeaderMap,
    Path((owner, name, number)): Path<(String, String, u64)>,
) -> Reply {
    authorize(&gh, &headers, format!("GET /repos/{owner}/{name}/pulls/{number}"))?;
    let body = with_repo(&gh, &owner, &name, |repo, _| {
        repo.pulls.get(&number).map(|p| pull_json(&gh, repo, p))
    })?;
    body.map(|b| Json(b).into_response())
        .ok_or_else(|| error(StatusCode::NOT_FOUND, "Not Found"))
}

/// `GET /commits?sha=`: the newest commits on a branch, from the real git history.
async fn list_commits(
    State(gh): State<FakeGitHub>,
    headers: HeaderMap,
    Path((owner, name)): Path<(String, String)>,
    Query(page): Query<Page>,
) -> Reply {
    let path = format!("/repos/{owner}/{name}/commits");
    authorize(&gh, &headers, format!("GET {path}"))?;
    let (bare, branch, web) = with_repo(&gh, &owner, &name, |repo, _| {
        let bare = gh.root.join(&repo.owner).join(format!("{}.git", repo.name));
        let web = format!("{}/{}/{}", gh.base(), repo.owner, repo.name);
        (
            bare,
            page.sha.clone().unwrap_or_else(|| repo.default_branch.clone()),
            web,
        )
    })?;
    let format = "--format=%H%x00%an%x00%ae%x00%aI%x00%B%x1e";
    let log = git_in(
        &bare,
        &["log", "-n", "100", format, "--end-of-options", &branch, "--"],
    )
    .await
    .ok_or_else(|| {
        error(
            StatusCode::NOT_FOUND,
            &format!("No commit found for SHA: {branch}"),
        )
    })?;
    let items = log
        .split('\x1e')
        .filter_map(|entry| {
            let mut parts = entry.trim_start_matches('\n').splitn(5, '\0');
            let (sha, author, email, date, message) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?, parts.next()?);
            Some(json!({"sha": sha, "html_url": format!("{web}/commit/{sha}"),
                "commit": {"message": message.trim_end(), "author": {"name": author, "email": email, "date": date}}}))
        })
        .collect();
    Ok(paged(&gh, &path, items, &page))
}

/// `GET /pulls/{n}/files`: what the head branch changes since it left the base, counted by git
/// as GitHub counts it (lines added and removed per file; `added`, `modified`, `removed`).
async fn pull_files(
    State(gh): State<FakeGitHub>,
    headers: HeaderMap,
    Path((owner, name, number)): Path<(String, String, u64)>,
    Query(page): Query<Page>,
) -> Reply {
    let path = format!("/repos/{owner}/{name}/pulls/{number}/files");
    authorize(&gh, &headers, format!("GET {path}"))?;
    let found = with_repo(&gh, &owner, &name, |repo, _| {
        repo.pulls.get(&number).map(|p| {
            let bare = gh.root.join(&repo.owner).join(format!("{}.git", repo.name));
            (bare, format!("{}...{}", p.base, p.head))
        })
    })?;
    let (bare, range) = found.ok_or_else(|| error(StatusCode::NOT_FOUND, "Not Found"))?;
    let (name_status, numstat) = (
        [
            "diff",
            "--no-renames",
            "--name-status",
            "--end-of-options",
            &range,
        ],
        ["diff", "--no-renames", "--numstat", "--end-of-options", &range],
    );
    let (statuses, counts) = tokio::join!(git_in(&bare, &name_status), git_in(&bare, &numstat));
    let (statuses, counts) = (statuses.unwrap_or_default(), counts.unwrap_or_default());
    let items = counts
        .lines()
        .zip(statuses.lines())
        .filter_map(|(count, status)| {
            let mut parts = count.splitn(3, '\t');
            let (additions, deletions, filename) = (parts.next()?, parts.next()?, parts.next()?);
            let (additions, deletions) = (
                additions.parse::<u64>().unwrap_or(0),
                deletions.parse::<u64>().unwrap_or(0),
            );
            let status = match status.split('\t').next() {
                Some("A") => "added",
                Some("D") => "removed",
                _ => "modified",
            };
            Some(
                json!({"sha": "", "filename": filename, "status": status, "additions": additions,
                "deletions": deletions, "changes": additions + deletions}),
            )
        })
        .collect();
    Ok(paged(&gh, &path, items, &page))
}

#[derive(Debug, Deserialize)]
struct PullUpdate {
    state: Option<String>,
    title: Option<String>,
    body: Option<String>,
}

async fn update_pull(
    State(gh): State<FakeGitHub>,
    headers: HeaderMap,
    Path((owner, name, number)): Path<(String, String, u64)>,
    Json(update): Json<PullUpdate>,
) -> Reply {
    authorize(
        &gh,
        &headers,
        format!("PATCH /repos/{owner}/{name}/pulls/{number}"),
    )?;
    let body = with_repo(&gh, &owner, &name, |repo, _| {
        let pull = repo.pulls.get_mut(&number)?;
        if pull.merged && update.state.as_deref() == Some("open") {
            // As GitHub: a merged pull request stays merged.
            return Some(Err(error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Validation Failed: state cannot be changed. The pull request cannot be reopened.",
            )));
        }
        if let Some(state) = update.state {
            pull.state = state
        }
        if let Some(title) = update.title {
            pull.title = title
        }
        if let Some(body) = update.body {
            pull.body = body
        }
        let pull = pull.clone();
        Some(Ok(pull_json(&gh, repo, &pull)))
    })?;
    body.ok_or_else(|| error(StatusCode::NOT_FOUND, "Not Found"))?
        .map(|b| Json(b).into_response())
}

/// Only `markPullRequestReadyForReview`, the one mutation GitHub offers no REST route for.
async fn graphql(State(gh): State<FakeGitHub>, headers: HeaderMap, Json(request): Json<Value>) -> Reply {
    authorize(&gh, &headers, "POST /graphql".into())?;
    let query = request["query"].as_str().unwrap_or_default();
    let id = request["variables"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if !query.contains("markPullRequestReadyForReview") {
        return Ok(Json(
            json!({"errors": [{"message": "this fake only knows markPullRequestReadyForReview"}]}),
        )
        .into_response());
    }
    let mut state = gh
        .state
        .lock()
        .map_err(|_| error(StatusCode::INTERNAL_SERVER_ERROR, "state poisoned"))?;
    for repo in state.repos.values_mut() {
        for pull in repo.pulls.values_mut() {
            if format!("PR_{}_{}_{}", repo.owner, repo.name, pull.number) == id {
                pull.draft = false;
                return Ok(Json(json!({"data": {"markPullRequestReadyForReview": {"pullRequest": {"isDraft": false, "number": pull.number}}}})).into_response());
            }
        }
    }
    Ok(Json(json!({"errors": [{"type": "NOT_FOUND", "message": format!("Could not resolve to a node with the global id of '{id}'")}]})).into_response())
}

#[cfg(test)]
mod tests {
    use mainloop_testkit::git;

    use super::ref_in;

    #[test]
    fn a_branch_head_is_read_as_git_reads_it_packed_or_loose() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let (work, bare) = (dir.path().join("work"), dir.path().join("repo.git"));
        std::fs::create_dir(&work)?;
        git(&work, &["init", "-q", "-b", "main"])?;
        git(&work, &["commit", "-q", "--allow-empty", "-m", "one"])?;
        git(dir.path(), &["clone", "-q", "--bare", "work", "repo.git"])?;
        // A bare clone packs its refs.
        assert!(!bare.join("refs/heads/main").exists());
        assert_eq!(
            ref_in(&bare, "refs/heads/main"),
            Some(git(&bare, &["rev-parse", "main"])?)
        );
        // A push writes a loose ref beside the packed ones.
        git(&work, &["checkout", "-q", "-b", "feature"])?;
        git(&work, &["commit", "-q", "--allow-empty", "-m", "two"])?;
        git(&work, &["push", "-q", &bare.display().to_string(), "feature"])?;
        assert_eq!(
            ref_in(&bare, "refs/heads/feature"),
            Some(git(&bare, &["rev-parse", "feature"])?)
        );
        assert_ne!(
            ref_in(&bare, "refs/heads/feature"),
            ref_in(&bare, "refs/heads/main")
        );
        // A deleted branch, and one never made, have no head.
        git(
            &work,
            &["push", "-q", &bare.display().to_string(), "--delete", "feature"],
        )?;
        assert_eq!(ref_in(&bare, "refs/heads/feature"), None);
        assert_eq!(ref_in(&bare, "refs/heads/nothing"), None);
        Ok(())
    }
}
