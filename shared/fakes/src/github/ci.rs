//! CI as GitHub reports it on a commit: check runs (GitHub Actions and apps), check suites (one
//! per app that was asked to check the commit) and commit statuses (the older Status API, which
//! some CI systems still use; GitHub combines them into one state per commit). A repository's
//! `CiPolicy` decides what appears when a pull request's head is first looked at.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::{Value, json};

use super::FakeGitHub;
use super::api::{Reply, authorize, head_sha, with_repo};
use super::model::{CheckRun, CiPolicy, CommitStatus, Repo};

/// What the repository's CI makes of `sha` the first time anyone looks, for the policies that
/// report on their own: fail the first head of a pull request, pass the later ones; or start a
/// check that never ends.
fn run_ci(gh: &FakeGitHub, repo: &mut Repo, sha: &str, id: u64) {
    let seen = repo.checks.iter().any(|c| c.head_sha == sha) || repo.statuses.iter().any(|s| s.sha == sha);
    if seen || matches!(repo.ci, CiPolicy::Manual) {
        return;
    }
    let numbers: Vec<u64> = repo
        .pulls
        .values()
        .filter(|p| head_sha(gh, repo, &p.head).as_deref() == Some(sha))
        .map(|p| p.number)
        .collect();
    for number in numbers {
        let Some(pull) = repo.pulls.get_mut(&number) else {
            continue;
        };
        pull.ci_heads.push(sha.to_string());
        let first = pull.ci_heads.len() == 1;
        match repo.ci {
            CiPolicy::FailThenPass => repo.checks.push(CheckRun {
                id,
                name: "test".into(),
                head_sha: sha.to_string(),
                status: "completed".into(),
                conclusion: Some(if first { "failure" } else { "success" }.into()),
                title: if first {
                    "1 test failed"
                } else {
                    "All tests passed"
                }
                .into(),
                summary: if first {
                    "test readme_mentions_make_test ... FAILED: README must say how to run the tests".into()
                } else {
                    String::new()
                },
            }),
            CiPolicy::StatusesFailThenPass => repo.statuses.push(CommitStatus {
                id,
                sha: sha.to_string(),
                context: "ci/jenkins".into(),
                state: if first { "failure" } else { "success" }.into(),
                description: if first {
                    "README must say how to run the tests"
                } else {
                    "All tests passed"
                }
                .into(),
            }),
            CiPolicy::Stuck => repo.checks.push(CheckRun {
                id,
                name: "test".into(),
                head_sha: sha.to_string(),
                status: "in_progress".into(),
                conclusion: None,
                title: "Running".into(),
                summary: String::new(),
            }),
            CiPolicy::Manual => {}
        }
    }
}

/// The check runs on `sha`, after the repository's CI had its look at it.
fn runs_for(
    gh: &FakeGitHub,
    owner: &str,
    name: &str,
    sha: &str,
) -> Result<Vec<CheckRun>, axum::response::Response> {
    with_repo(gh, owner, name, |repo, id| {
        run_ci(gh, repo, sha, id);
        repo.checks
            .iter()
            .filter(|c| c.head_sha == sha)
            .cloned()
            .collect()
    })
}

pub async fn check_runs(
    State(gh): State<FakeGitHub>,
    headers: HeaderMap,
    Path((owner, name, sha)): Path<(String, String, String)>,
) -> Reply {
    authorize(
        &gh,
        &headers,
        format!("GET /repos/{owner}/{name}/commits/{sha}/check-runs"),
    )?;
    let runs = runs_for(&gh, &owner, &name, &sha)?;
    let base = gh.base();
    let items: Vec<Value> = runs
        .iter()
        .map(|c| json!({"id": c.id, "name": c.name, "head_sha": c.head_sha, "status": c.status, "conclusion": c.conclusion,
            "output": {"title": c.title, "summary": c.summary}, "details_url": format!("{base}/runs/{}", c.id)}))
        .collect();
    Ok(Json(json!({"total_count": items.len(), "check_runs": items})).into_response())
}

/// One suite for the checks app when it made runs for the commit; none otherwise.
pub async fn check_suites(
    State(gh): State<FakeGitHub>,
    headers: HeaderMap,
    Path((owner, name, sha)): Path<(String, String, String)>,
) -> Reply {
    authorize(
        &gh,
        &headers,
        format!("GET /repos/{owner}/{name}/commits/{sha}/check-suites"),
    )?;
    let runs = runs_for(&gh, &owner, &name, &sha)?;
    let suites: Vec<Value> = if runs.is_empty() {
        vec![]
    } else {
        let done = runs.iter().all(|r| r.status == "completed");
        let failed = runs
            .iter()
            .any(|r| r.conclusion.as_deref().is_some_and(|c| c != "success"));
        vec![
            json!({"id": 1, "head_sha": sha, "app": {"slug": "github-actions"},
            "status": if done { "completed" } else { "in_progress" },
            "conclusion": if !done { Value::Null } else if failed { json!("failure") } else { json!("success") }}),
        ]
    };
    Ok(Json(json!({"total_count": suites.len(), "check_suites": suites})).into_response())
}

/// The combined status: failure if any is failure or error, pending if any is pending (or none
/// exists), success otherwise; the latest status per context counts.
pub async fn combined_status(
    State(gh): State<FakeGitHub>,
    headers: HeaderMap,
    Path((owner, name, sha)): Path<(String, String, String)>,
) -> Reply {
    authorize(
        &gh,
        &headers,
        format!("GET /repos/{owner}/{name}/commits/{sha}/status"),
    )?;
    let statuses = with_repo(&gh, &owner, &name, |repo, id| {
        run_ci(&gh, repo, &sha, id);
        let mut latest: Vec<CommitStatus> = Vec::new();
        for status in repo.statuses.iter().rev().filter(|s| s.sha == sha) {
            if !latest.iter().any(|l| l.context == status.context) {
                latest.push(status.clone());
            }
        }
        latest
    })?;
    let state = if statuses
        .iter()
        .any(|s| matches!(s.state.as_str(), "failure" | "error"))
    {
        "failure"
    } else if statuses.is_empty() || statuses.iter().any(|s| s.state == "pending") {
        "pending"
    } else {
        "success"
    };
    let items: Vec<Value> = statuses
        .iter()
        .map(|s| json!({"id": s.id, "context": s.context, "state": s.state, "description": s.description, "target_url": Value::Null}))
        .collect();
    Ok(
        Json(json!({"state": state, "sha": sha, "total_count": items.len(), "statuses": items}))
            .into_response(),
    )
}

#[derive(Debug, Deserialize)]
pub struct NewStatus {
    state: String,
    #[serde(default)]
    context: Option<String>,
    #[serde(default)]
    description: Option<String>,
}

/// `POST /repos/{o}/{r}/statuses/{sha}`, as a CI system reports.
pub async fn create_status(
    State(gh): State<FakeGitHub>,
    headers: HeaderMap,
    Path((owner, name, sha)): Path<(String, String, String)>,
    Json(new): Json<NewStatus>,
) -> Reply {
    authorize(
        &gh,
        &headers,
        format!("POST /repos/{owner}/{name}/statuses/{sha}"),
    )?;
    if !matches!(new.state.as_str(), "pending" | "success" | "failure" | "error") {
        return Err(super::api::error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Validation Failed",
        ));
    }
    let status = with_repo(&gh, &owner, &name, |repo, id| {
        let status = CommitStatus {
            id,
            sha: sha.clone(),
            context: new.context.unwrap_or_else(|| "default".into()),
            state: new.state,
            description: new.description.unwrap_or_default(),
        };
        repo.statuses.push(status.clone());
        (status, super::webhooks::repository(repo))
    })?;
    let (status, repository) = status;
    super::webhooks::deliver(
        &gh,
        "status",
        json!({"sha": sha, "state": status.state, "context": status.context,
            "description": status.description, "repository": repository}),
        "ci-bot",
    );
    Ok((
        StatusCode::CREATED,
        Json(json!({"id": status.id, "state": status.state, "context": status.context, "description": status.description})),
    )
        .into_response())
}
