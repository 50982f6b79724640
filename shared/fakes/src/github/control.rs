//! `/_control/…`: what tests (and the demo) do to the fake that a person would do on GitHub.

use std::collections::BTreeMap;
use std::path::Path as FsPath;
use tokio::process::Command;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::FakeGitHub;
use super::api::{error, head_sha, with_repo};
use super::model::{CheckRun, CiPolicy, Pull, Repo};

pub fn router() -> Router<FakeGitHub> {
    Router::new()
        .route("/_control/state", get(state))
        .route("/_control/repos", post(create_repo))
        .route("/_control/faults", post(add_fault))
        .route("/_control/webhooks", post(add_hook))
        .route(
            "/_control/repos/{owner}/{repo}/issues/{number}/comments",
            post(comment_as),
        )
        .route(
            "/_control/repos/{owner}/{repo}/collaborators",
            post(add_collaborator),
        )
        .route(
            "/_control/repos/{owner}/{repo}/comments/{id}/reactions",
            post(react_as),
        )
        .route(
            "/_control/repos/{owner}/{repo}/pulls/{number}/reviews",
            post(review_as),
        )
        .route("/_control/webhooks/redeliver", post(redeliver))
        .route(
            "/_control/repos/{owner}/{repo}/pulls/{number}/checks",
            post(set_check),
        )
        .route("/_control/repos/{owner}/{repo}/pulls/{number}/merge", post(merge))
        .route("/_control/repos/{owner}/{repo}/pulls/{number}/close", post(close))
        .route("/{owner}/{repo}/pull/{number}", get(pull_page))
        .route("/{owner}/{repo}/issues/{number}", get(issue_page))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn page(title: &str, body: &str) -> Response {
    axum::response::Html(format!(
        "<!doctype html><meta charset=utf-8><title>{t} · fake GitHub</title>\
         <body style=\"font:15px/1.5 system-ui;max-width:760px;margin:2rem auto\">\
         <p style=\"color:#a40\">Fake GitHub (mainloop demo): nothing here is on github.com.</p><h1>{t}</h1>{body}</body>",
        t = escape(title)
    ))
    .into_response()
}

/// A pull request as a person sees it, with the Merge button they would press.
async fn pull_page(
    State(gh): State<FakeGitHub>,
    Path((owner, name, number)): Path<(String, String, u64)>,
) -> Response {
    let pull = gh.state.lock().ok().and_then(|s| {
        s.repos
            .get(&format!("{owner}/{name}"))
            .and_then(|r| r.pulls.get(&number).cloned())
    });
    let Some(pull) = pull else {
        return page("Not found", "");
    };
    let status = if pull.merged {
        "merged"
    } else if pull.draft {
        "draft"
    } else {
        pull.state.as_str()
    };
    let merge = if pull.state == "open" {
        format!(
            "<form method=post action=\"/_control/repos/{owner}/{name}/pulls/{number}/merge\"><button id=merge>Merge pull request</button></form>"
        )
    } else {
        String::new()
    };
    page(
        &format!("{} #{number}", pull.title),
        &format!(
            "<p>Status: <b id=status>{status}</b> · {} → {}</p><pre>{}</pre>{merge}",
            escape(&pull.head),
            escape(&pull.base),
            escape(&pull.body)
        ),
    )
}

async fn issue_page(
    State(gh): State<FakeGitHub>,
    Path((owner, name, number)): Path<(String, String, u64)>,
) -> Response {
    let issue = gh.state.lock().ok().and_then(|s| {
        s.repos
            .get(&format!("{owner}/{name}"))
            .and_then(|r| r.issues.get(&number).cloned())
    });
    let Some(issue) = issue else {
        return page("Not found", "");
    };
    page(
        &format!("{} #{number}", issue.title),
        &format!(
            "<p>Status: <b>{}</b></p><pre>{}</pre>",
            issue.state,
            escape(&issue.body)
        ),
    )
}

async fn state(State(gh): State<FakeGitHub>) -> Response {
    Json(gh.snapshot()).into_response()
}

#[derive(Debug, Deserialize)]
struct NewRepo {
    owner: String,
    name: String,
    #[serde(default)]
    files: BTreeMap<String, String>,
    #[serde(default)]
    ci: CiPolicy,
    /// Private unless said otherwise: the fake is never friendlier than GitHub.
    #[serde(default = "private_by_default")]
    private: bool,
}

fn private_by_default() -> bool {
    true
}

async fn add_fault(State(gh): State<FakeGitHub>, Json(spec): Json<super::FaultSpec>) -> Response {
    gh.inject(spec);
    StatusCode::CREATED.into_response()
}

/// Runs git in `dir` as octocat, without holding up the server's threads.
async fn git(dir: &FsPath, args: &[&str]) -> Result<(), Response> {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=octocat",
            "-c",
            "user.email=octocat@github.invalid",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .await
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &String::from_utf8_lossy(&out.stderr),
        ))
    }
}

/// A repository with one commit on `main` holding `files` (a README by default).
async fn create_repo(State(gh): State<FakeGitHub>, Json(new): Json<NewRepo>) -> Result<Response, Response> {
    let _one_at_a_time = gh.changing.lock().await;
    let key = format!("{}/{}", new.owner, new.name);
    if gh
        .state
        .lock()
        .map(|s| s.repos.contains_key(&key))
        .unwrap_or(true)
    {
        return Ok((StatusCode::OK, Json(json!({"full_name": key, "created": false}))).into_response());
    }
    let io = |e: std::io::Error| error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string());
    let owner_dir = gh.root.join(&new.owner);
    let seed = gh.root.join(".seed").join(&key);
    std::fs::create_dir_all(&seed).map_err(io)?;
    std::fs::create_dir_all(&owner_dir).map_err(io)?;
    let files = if new.files.is_empty() {
        BTreeMap::from([(
            "README.md".to_string(),
            format!("# {}\n\nA repository on the fake GitHub.\n", new.name),
        )])
    } else {
        new.files
    };
    for (path, content) in &files {
        let file = seed.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        std::fs::write(file, content).map_err(io)?;
    }
    git(&seed, &["init", "-q", "-b", "main"]).await?;
    git(&seed, &["add", "-A"]).await?;
    git(&seed, &["commit", "-qm", "Initial commit"]).await?;
    let bare = owner_dir.join(format!("{}.git", new.name));
    git(
        &owner_dir,
        &[
            "clone",
            "-q",
            "--bare",
            &seed.display().to_string(),
            &bare.display().to_string(),
        ],
    )
    .await?;
    let _ = std::fs::remove_dir_all(&seed);
    let repo = Repo {
        owner: new.owner,
        name: new.name,
        default_branch: "main".into(),
        private: new.private,
        ci: new.ci,
        ..Default::default()
    };
    if let Ok(mut state) = gh.state.lock() {
        state.repos.insert(key.clone(), repo);
    }
    Ok((
        StatusCode::CREATED,
        Json(json!({"full_name": key, "created": true})),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
struct SetCheck {
    #[serde(default = "test_name")]
    name: String,
    /// "success", "failure", …; absent means still running.
    conclusion: Option<String>,
    #[serde(default)]
    title: String,
    #[serde(default)]
    summary: String,
}

fn test_name() -> String {
    "test".into()
}

/// Sets a check on the pull request's current head commit.
async fn set_check(
    State(gh): State<FakeGitHub>,
    Path((owner, name, number)): Path<(String, String, u64)>,
    Json(check): Json<SetCheck>,
) -> Result<Response, Response> {
    let mut state = gh
        .state
        .lock()
        .map_err(|_| error(StatusCode::INTERNAL_SERVER_ERROR, "state poisoned"))?;
    let id = state.id();
    let repo = state
        .repos
        .get_mut(&format!("{owner}/{name}"))
        .ok_or_else(|| error(StatusCode::NOT_FOUND, "no such repository"))?;
    let head = repo
        .pulls
        .get(&number)
        .map(|p| p.head.clone())
        .ok_or_else(|| error(StatusCode::NOT_FOUND, "no such pull request"))?;
    let sha =
        head_sha(&gh, repo, &head).ok_or_else(|| error(StatusCode::CONFLICT, "the head branch is gone"))?;
    repo.checks
        .retain(|c| !(c.head_sha == sha && c.name == check.name));
    repo.checks.push(CheckRun {
        id,
        name: check.name.clone(),
        head_sha: sha.clone(),
        status: if check.conclusion.is_some() {
            "completed"
        } else {
            "in_progress"
        }
        .into(),
        conclusion: check.conclusion.clone(),
        title: check.title.clone(),
        summary: check.summary,
    });
    let repository = super::webhooks::repository(repo);
    drop(state);
    let status = if check.conclusion.is_some() {
        "completed"
    } else {
        "in_progress"
    };
    let action = if check.conclusion.is_some() {
        "completed"
    } else {
        "created"
    };
    super::webhooks::deliver(
        &gh,
        "check_run",
        json!({"action": action, "repository": repository, "check_run": {"id": id, "name": check.name,
            "head_sha": sha, "status": status, "conclusion": check.conclusion,
            "pull_requests": [{"number": number}]}}),
        "github-actions[bot]",
    );
    Ok(Json(json!({"head_sha": sha})).into_response())
}

fn not_mergeable() -> Response {
    error(StatusCode::METHOD_NOT_ALLOWED, "Pull Request is not mergeable")
}

/// An open pull request and its head commit, or why it cannot be merged.
fn mergeable(gh: &FakeGitHub, owner: &str, name: &str, number: u64) -> Result<(Pull, String), Response> {
    with_repo(gh, owner, name, |repo, _| {
        let pull = repo
            .pulls
            .get(&number)
            .cloned()
            .ok_or_else(|| error(StatusCode::NOT_FOUND, "no such pull request"))?;
        if pull.state != "open" {
            return Err(not_mergeable());
        }
        let sha = head_sha(gh, repo, &pull.head)
            .ok_or_else(|| error(StatusCode::CONFLICT, "the head branch is gone"))?;
        Ok((pull, sha))
    })?
}

/// Merges the pull request: the base branch moves to its head, it closes as merged. One change
/// at a time (`changing`), so what was checked still holds when the branch moves.
async fn merge(
    State(gh): State<FakeGitHub>,
    Path((owner, name, number)): Path<(String, String, u64)>,
    headers: axum::http::HeaderMap,
) -> Result<Response, Response> {
    let _one_at_a_time = gh.changing.lock().await;
    let (pull, sha) = mergeable(&gh, &owner, &name, number)?;
    let bare = gh.root.join(&owner).join(format!("{name}.git"));
    git(&bare, &["update-ref", &format!("refs/heads/{}", pull.base), &sha]).await?;
    let repository = with_repo(&gh, &owner, &name, |repo, _| {
        match repo.pulls.get_mut(&number) {
            Some(open) if open.state == "open" => {
                open.state = "closed".into();
                open.merged = true;
            }
            _ => return Err(not_mergeable()),
        }
        // "Closes #N" in the body closes the issue, as on GitHub.
        for word in pull.body.split_whitespace().collect::<Vec<_>>().windows(2) {
            if word[0].eq_ignore_ascii_case("closes")
                && let Some(issue) = word[1].strip_prefix('#').and_then(|n| n.parse::<u64>().ok())
                && let Some(issue) = repo.issues.get_mut(&issue)
            {
                issue.state = "closed".into();
            }
        }
        Ok(super::webhooks::repository(repo))
    })??;
    super::webhooks::deliver(
        &gh,
        "pull_request",
        json!({"action": "closed", "number": number, "repository": repository,
            "pull_request": {"number": number, "state": "closed", "merged": true, "head": {"ref": pull.head, "sha": sha}}}),
        "octocat",
    );
    let from_browser = headers
        .get("accept")
        .and_then(|a| a.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    if from_browser {
        return Ok(axum::response::Redirect::to(&format!("/{owner}/{name}/pull/{number}")).into_response());
    }
    Ok(Json(json!({"merged": true, "sha": sha})).into_response())
}

async fn close(
    State(gh): State<FakeGitHub>,
    Path((owner, name, number)): Path<(String, String, u64)>,
) -> Result<Response, Response> {
    let _one_at_a_time = gh.changing.lock().await;
    let (head, repository) = with_repo(&gh, &owner, &name, |repo, _| {
        let pull = repo
            .pulls
            .get_mut(&number)
            .ok_or_else(|| error(StatusCode::NOT_FOUND, "no such pull request"))?;
        pull.state = "closed".into();
        Ok((pull.head.clone(), super::webhooks::repository(repo)))
    })??;
    super::webhooks::deliver(
        &gh,
        "pull_request",
        json!({"action": "closed", "number": number, "repository": repository,
            "pull_request": {"number": number, "state": "closed", "merged": false, "head": {"ref": head}}}),
        "octocat",
    );
    Ok(Json(json!({"closed": true})).into_response())
}

#[derive(Deserialize)]
struct CommentAs {
    author: String,
    body: String,
}

/// A comment by a person: `{author, body}`.
async fn comment_as(
    State(gh): State<FakeGitHub>,
    Path((owner, name, number)): Path<(String, String, u64)>,
    Json(comment): Json<CommentAs>,
) -> Result<Response, Response> {
    let made = super::api::add_comment(&gh, &owner, &name, number, &comment.author, &comment.body)?;
    Ok((StatusCode::CREATED, Json(made)).into_response())
}

#[derive(Deserialize)]
struct InlineComment {
    path: String,
    line: u32,
    body: String,
}

#[derive(Deserialize)]
struct ReviewAs {
    author: String,
    /// APPROVED, CHANGES_REQUESTED or COMMENTED.
    state: String,
    #[serde(default)]
    body: String,
    #[serde(default)]
    comments: Vec<InlineComment>,
}

/// A review by a person, with inline comments: `{author, state, body?, comments: [{path, line, body}]}`.
async fn review_as(
    State(gh): State<FakeGitHub>,
    Path((owner, name, number)): Path<(String, String, u64)>,
    Json(review): Json<ReviewAs>,
) -> Result<Response, Response> {
    let mut state = gh
        .state
        .lock()
        .map_err(|_| error(StatusCode::INTERNAL_SERVER_ERROR, "state poisoned"))?;
    let review_id = state.id();
    let ids: Vec<u64> = review.comments.iter().map(|_| state.id()).collect();
    let repo = state
        .repos
        .get_mut(&format!("{owner}/{name}"))
        .ok_or_else(|| error(StatusCode::NOT_FOUND, "no such repository"))?;
    let repository = super::webhooks::repository(repo);
    let pull = repo
        .pulls
        .get_mut(&number)
        .ok_or_else(|| error(StatusCode::NOT_FOUND, "no such pull request"))?;
    pull.reviews.push(super::model::Review {
        id: review_id,
        user: review.author.clone(),
        state: review.state.clone(),
        body: review.body.clone(),
    });
    for (id, comment) in ids.into_iter().zip(review.comments) {
        pull.review_comments.push(super::model::ReviewComment {
            id,
            review_id,
            user: review.author.clone(),
            body: comment.body,
            diff_hunk: format!("@@ -1,3 +{},3 @@\n context line", comment.line),
            path: comment.path,
            line: comment.line,
            updated_at: super::model::timestamp(id),
            ..Default::default()
        });
    }
    drop(state);
    super::webhooks::deliver(
        &gh,
        "pull_request_review",
        json!({"action": "submitted", "repository": repository,
            "review": {"id": review_id, "state": review.state.to_lowercase(), "body": review.body},
            "pull_request": {"number": number}}),
        &review.author,
    );
    Ok((StatusCode::CREATED, Json(json!({"id": review_id}))).into_response())
}

#[derive(Deserialize)]
struct ReactAs {
    author: String,
    content: String,
}

/// A reaction by a person on comment `id`: `{author, content}`.
async fn react_as(
    State(gh): State<FakeGitHub>,
    Path((owner, name, id)): Path<(String, String, u64)>,
    Json(reaction): Json<ReactAs>,
) -> Result<Response, Response> {
    super::api::add_reaction(&gh, &owner, &name, id, &reaction.author, &reaction.content)
}

#[derive(Deserialize)]
struct Collaborator {
    login: String,
    permission: String,
}

/// Makes `login` a collaborator with `permission` (`admin`, `write`, `read`).
async fn add_collaborator(
    State(gh): State<FakeGitHub>,
    Path((owner, name)): Path<(String, String)>,
    Json(who): Json<Collaborator>,
) -> Result<Response, Response> {
    super::api::with_repo(&gh, &owner, &name, |repo, _| {
        repo.collaborators.insert(who.login, who.permission);
    })?;
    Ok(StatusCode::CREATED.into_response())
}

/// Registers a webhook: `{url, secret, events?}`.
async fn add_hook(
    State(gh): State<FakeGitHub>,
    Json(hook): Json<super::webhooks::Hook>,
) -> Result<Response, Response> {
    let mut state = gh
        .state
        .lock()
        .map_err(|_| error(StatusCode::INTERNAL_SERVER_ERROR, "state poisoned"))?;
    state.hooks.push(hook);
    Ok(StatusCode::CREATED.into_response())
}

#[derive(Deserialize)]
struct Redeliver {
    id: String,
    /// Sent instead of the right signature.
    #[serde(default)]
    signature: Option<String>,
}

/// Sends a recorded delivery again, with the same GUID.
async fn redeliver(State(gh): State<FakeGitHub>, Json(again): Json<Redeliver>) -> Response {
    if super::webhooks::redeliver(&gh, &again.id, again.signature) {
        StatusCode::ACCEPTED.into_response()
    } else {
        error(StatusCode::NOT_FOUND, "no such delivery")
    }
}
