//! Reviews and inline review comments, in GitHub's shapes: listing a pull request's reviews and
//! review comments, replying on a comment's thread (which, as on GitHub, submits a one-comment
//! `COMMENTED` review by the token's user and sends `pull_request_review_comment`), and
//! reactions on review comments (their own API, apart from issue comments').

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::FakeGitHub;
use super::api::{NewReaction, Page, REACTIONS, Reply, authorize, error, paged, reaction_json, user};
use super::model::{Review, ReviewComment, timestamp};

/// The token's user: who writes what mainloop writes.
const BOT: &str = "mainloop-bot";

pub fn router() -> Router<FakeGitHub> {
    Router::new()
        .route("/repos/{owner}/{repo}/pulls/{number}/reviews", get(list_reviews))
        .route(
            "/repos/{owner}/{repo}/pulls/{number}/comments",
            get(list_review_comments),
        )
        .route(
            "/repos/{owner}/{repo}/pulls/{number}/comments/{id}/replies",
            post(reply),
        )
        .route(
            "/repos/{owner}/{repo}/pulls/comments/{id}/reactions",
            get(list_reactions).post(create_reaction),
        )
}

fn review_comment_json(gh: &FakeGitHub, owner: &str, name: &str, number: u64, c: &ReviewComment) -> Value {
    let mut json = json!({"id": c.id, "node_id": format!("PRRC_{}", c.id), "pull_request_review_id": c.review_id,
        "user": user(&c.user), "body": c.body, "path": c.path, "line": c.line, "diff_hunk": c.diff_hunk,
        "created_at": c.updated_at, "updated_at": c.updated_at,
        "html_url": format!("{}/{owner}/{name}/pull/{number}#discussion_r{}", gh.base(), c.id)});
    if let Some(to) = c.in_reply_to {
        json["in_reply_to_id"] = json!(to);
    }
    json
}

/// Runs `f` on pull request `number` of `owner/name` with a fresh id; `None` when there is no
/// such repository or pull request.
fn with_pull<T>(
    gh: &FakeGitHub,
    owner: &str,
    name: &str,
    number: u64,
    f: impl FnOnce(&mut super::model::Pull, &mut dyn FnMut() -> u64) -> T,
) -> Result<Option<T>, Response> {
    let mut state = gh
        .state
        .lock()
        .map_err(|_| error(StatusCode::INTERNAL_SERVER_ERROR, "state poisoned"))?;
    let mut next = state.next_id;
    let made = state
        .repos
        .get_mut(&format!("{owner}/{name}"))
        .and_then(|repo| repo.pulls.get_mut(&number))
        .map(|pull| {
            f(pull, &mut || {
                next += 1;
                next
            })
        });
    state.next_id = next;
    Ok(made)
}

async fn list_reviews(
    State(gh): State<FakeGitHub>,
    headers: HeaderMap,
    Path((owner, name, number)): Path<(String, String, u64)>,
    Query(page): Query<Page>,
) -> Reply {
    let path = format!("/repos/{owner}/{name}/pulls/{number}/reviews");
    authorize(&gh, &headers, format!("GET {path}"))?;
    let items = with_pull(&gh, &owner, &name, number, |pull, _| {
        pull.reviews
            .iter()
            .map(|r| {
                json!({"id": r.id, "node_id": format!("PRR_{}", r.id), "user": user(&r.user), "state": r.state,
                    "body": r.body, "submitted_at": timestamp(r.id)})
            })
            .collect::<Vec<_>>()
    })?;
    items
        .map(|items| paged(&gh, &path, items, &page))
        .ok_or_else(|| error(StatusCode::NOT_FOUND, "Not Found"))
}

async fn list_review_comments(
    State(gh): State<FakeGitHub>,
    headers: HeaderMap,
    Path((owner, name, number)): Path<(String, String, u64)>,
    Query(page): Query<Page>,
) -> Reply {
    let path = format!("/repos/{owner}/{name}/pulls/{number}/comments");
    authorize(&gh, &headers, format!("GET {path}"))?;
    let items = with_pull(&gh, &owner, &name, number, |pull, _| {
        pull.review_comments
            .iter()
            .filter(|c| page.since.as_ref().is_none_or(|since| &c.updated_at >= since))
            .map(|c| review_comment_json(&gh, &owner, &name, number, c))
            .collect::<Vec<_>>()
    })?;
    items
        .map(|items| paged(&gh, &path, items, &page))
        .ok_or_else(|| error(StatusCode::NOT_FOUND, "Not Found"))
}

#[derive(Debug, Deserialize)]
struct NewReply {
    body: String,
}

/// `POST /pulls/{n}/comments/{id}/replies`: 404 unless comment `id` is on pull request `n`; a
/// reply to a reply joins the thread's first comment, as on GitHub.
async fn reply(
    State(gh): State<FakeGitHub>,
    headers: HeaderMap,
    Path((owner, name, number, id)): Path<(String, String, u64, u64)>,
    Json(new): Json<NewReply>,
) -> Reply {
    authorize(
        &gh,
        &headers,
        format!("POST /repos/{owner}/{name}/pulls/{number}/comments/{id}/replies"),
    )?;
    if new.body.trim().is_empty() {
        return Err(error(StatusCode::UNPROCESSABLE_ENTITY, "Validation Failed"));
    }
    let made = with_pull(&gh, &owner, &name, number, |pull, next| {
        let to = pull.review_comments.iter().find(|c| c.id == id)?.clone();
        let review = Review {
            id: next(),
            user: BOT.into(),
            state: "COMMENTED".into(),
            body: String::new(),
        };
        let comment_id = next();
        let comment = ReviewComment {
            id: comment_id,
            review_id: review.id,
            user: BOT.into(),
            body: new.body,
            path: to.path,
            line: to.line,
            diff_hunk: to.diff_hunk,
            updated_at: timestamp(comment_id),
            in_reply_to: Some(to.in_reply_to.unwrap_or(to.id)),
            reactions: vec![],
        };
        pull.reviews.push(review);
        pull.review_comments.push(comment.clone());
        Some(comment)
    })?;
    let comment = made
        .flatten()
        .ok_or_else(|| error(StatusCode::NOT_FOUND, "Not Found"))?;
    let json = review_comment_json(&gh, &owner, &name, number, &comment);
    let repository = repository(&gh, &owner, &name)?;
    super::webhooks::deliver(
        &gh,
        "pull_request_review_comment",
        json!({"action": "created", "repository": repository, "comment": json,
            "pull_request": {"number": number}}),
        BOT,
    );
    Ok((StatusCode::CREATED, Json(json)).into_response())
}

fn repository(gh: &FakeGitHub, owner: &str, name: &str) -> Result<Value, Response> {
    super::api::with_repo(gh, owner, name, |repo, _| super::webhooks::repository(repo))
}

/// Review comment `id` on any pull request of the repository.
fn find_comment(repo: &mut super::model::Repo, id: u64) -> Option<&mut ReviewComment> {
    repo.pulls
        .values_mut()
        .flat_map(|p| p.review_comments.iter_mut())
        .find(|c| c.id == id)
}

/// Adds `content` by `author` to review comment `id`: 200 with the existing reaction when that
/// person already reacted so, 201 when new.
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
    let made = super::api::with_repo(gh, owner, name, |repo, next| {
        Some(super::api::react(
            &mut find_comment(repo, id)?.reactions,
            next,
            author,
            content,
        ))
    })?;
    made.map(|(status, body)| (status, Json(body)).into_response())
        .ok_or_else(|| error(StatusCode::NOT_FOUND, "Not Found"))
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
        format!("POST /repos/{owner}/{name}/pulls/comments/{id}/reactions"),
    )?;
    add_reaction(&gh, &owner, &name, id, BOT, &new.content)
}

async fn list_reactions(
    State(gh): State<FakeGitHub>,
    headers: HeaderMap,
    Path((owner, name, id)): Path<(String, String, u64)>,
    Query(page): Query<Page>,
) -> Reply {
    let path = format!("/repos/{owner}/{name}/pulls/comments/{id}/reactions");
    authorize(&gh, &headers, format!("GET {path}"))?;
    let items = super::api::with_repo(&gh, &owner, &name, |repo, _| {
        find_comment(repo, id).map(|c| c.reactions.iter().map(reaction_json).collect::<Vec<_>>())
    })?;
    items
        .map(|items| paged(&gh, &path, items, &page))
        .ok_or_else(|| error(StatusCode::NOT_FOUND, "Not Found"))
}
