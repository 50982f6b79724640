//! What an end-to-end suite of a client needs to set up states (the original's test contract,
//! ../shared/reference/seed-api.md §3.1), in test mode only — 403 otherwise, as the original
//! answered without `IS_TEST_ENV`. `POST /internal/test/seed-task` puts a task of the person
//! (`X-User-ID`) straight into a waiting state through the scheduler's `seed-task` (see its
//! `task::seed`): its rows in `/tasks` and `/queue` are made by the same projections as a real
//! task's, and it starts no job and touches nothing on GitHub. `POST /internal/test/reset` wipes
//! everything, as the original's TRUNCATE did: every stream purged, then every service asked to
//! empty its tables and forget its caches (`mainloop_runtime::test_reset`); a service that is
//! not running has nothing to forget. It expects a quiet system, as a suite's set-up is.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use mainloop_bus::request;
use mainloop_events::v1::{Question, QuestionOption, RepoRef, Seed, SeedTask};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api_error::ApiError;
use crate::auth::{AuthMode, User};
use crate::extract::Body;
use crate::services::scheduler;
use crate::state::{AppState, SERVICE_TIMEOUT};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/internal/test/seed-task", post(seed_task))
        .route("/internal/test/reset", post(reset))
}

/// Every service that keeps tables or caches.
const SERVICES: &[&str] = &[
    "scheduler",
    "inbox",
    "conversation",
    "github-watcher",
    "worker-supervisor",
    "gateway",
];

fn test_mode_only(state: &AppState) -> Result<(), ApiError> {
    if state.auth.mode == AuthMode::Test {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "test endpoints are off: they answer only in test mode",
        ))
    }
}

async fn reset(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    test_mode_only(&state)?;
    let failed = |what: String| {
        tracing::error!(%what, "test reset failed");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the reset failed: {what}"),
        )
    };
    // Every stream the bus declares, so a new one is never left out.
    for name in mainloop_bus::streams::STREAMS.iter().map(|spec| spec.name) {
        let stream = state.bus.jetstream().get_stream(name).await;
        stream
            .map_err(|e| failed(format!("{name}: {e}")))?
            .purge()
            .await
            .map_err(|e| failed(format!("{name}: {e}")))?;
    }
    for service in SERVICES {
        let subject = mainloop_runtime::test_reset::subject(service);
        match request::send_json::<_, Value>(&state.bus, &subject, &json!({}), SERVICE_TIMEOUT).await {
            Ok(_) | Err(request::RequestError::NoResponders(_)) => {}
            Err(err) => return Err(failed(format!("{service}: {err}"))),
        }
    }
    tracing::warn!("TEST MODE: every stream and table emptied, as a test suite asked");
    Ok(Json(json!({"status": "ok"})))
}

#[derive(Debug, Deserialize)]
struct SeedBody {
    status: String,
    description: String,
    repo_url: String,
    #[serde(default)]
    plan: Option<String>,
    #[serde(default)]
    questions: Vec<SeedQuestion>,
}

#[derive(Debug, Deserialize)]
struct SeedQuestion {
    id: Option<String>,
    header: Option<String>,
    question: String,
    #[serde(default)]
    options: Vec<SeedOption>,
    #[serde(default)]
    multi_select: bool,
}

#[derive(Debug, Deserialize)]
struct SeedOption {
    label: String,
    description: Option<String>,
}

/// `https://<host>/<owner>/<name>` as the seed names its repository.
fn repo(url: &str) -> Result<RepoRef, ApiError> {
    let path = url
        .split_once("://")
        .map_or(url, |(_, rest)| rest.split_once('/').map_or("", |(_, path)| path));
    let mut parts = path.trim_end_matches('/').trim_end_matches(".git").split('/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(owner), Some(name), None) if !owner.is_empty() && !name.is_empty() => Ok(RepoRef {
            owner: owner.into(),
            name: name.into(),
            html_url: url.trim_end_matches('/').into(),
        }),
        _ => Err(ApiError::bad_request(
            "repo_url must be https://<host>/<owner>/<name>",
        )),
    }
}

/// The original's questions as the scheduler keeps them: a header of the question's first 30
/// characters when none is given, each option's own id dropped.
fn questions(given: Vec<SeedQuestion>) -> Vec<Question> {
    given
        .into_iter()
        .enumerate()
        .map(|(n, q)| Question {
            id: q.id.unwrap_or_else(|| format!("q{}", n + 1)),
            header: q.header.unwrap_or_else(|| q.question.chars().take(30).collect()),
            question: q.question,
            options: q
                .options
                .into_iter()
                .map(|o| QuestionOption {
                    label: o.label,
                    description: o.description.unwrap_or_default(),
                })
                .collect(),
            multi_select: q.multi_select,
        })
        .collect()
}

async fn seed_task(
    State(state): State<AppState>,
    User(user): User,
    Body(body): Body<SeedBody>,
) -> Result<Json<Value>, ApiError> {
    test_mode_only(&state)?;
    let task_id = uuid::Uuid::now_v7().to_string();
    let command = SeedTask {
        user_id: user,
        task_id: task_id.clone(),
        repo: Some(repo(&body.repo_url)?),
        description: body.description,
        seed: Some(Seed {
            status: body.status,
            plan: body.plan.unwrap_or_default(),
            questions: questions(body.questions),
        }),
    };
    let accepted = scheduler(&state, "seed-task", &command).await?;
    Ok(Json(
        json!({"task_id": task_id, "status": accepted.status().api_name()}),
    ))
}

#[cfg(test)]
mod tests {
    use super::repo;

    #[test]
    fn the_seed_names_its_repository_by_url() {
        let named = repo("https://github.com/test/repo")
            .map(|r| (r.owner, r.name))
            .ok();
        assert_eq!(named, Some(("test".into(), "repo".into())));
        for bad in [
            "https://github.com/test",
            "test/repo/more",
            "",
            "https://github.com/a/b/c",
        ] {
            assert!(repo(bad).is_err(), "{bad}");
        }
    }
}
