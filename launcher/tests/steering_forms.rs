//! Every way of steering from GitHub, through `mainloop up` against the fake GitHub, on four
//! tasks at once: questions answered as "1) B", "1: A", "Placement: Bottom" and in free text;
//! plans approved by `/approve` and by "Looks good!", revised by `/revise`, cancelled by
//! `/cancel`. Then a task in review is cancelled by `/cancel` on its pull request (which is closed
//! with a note saying who), and `/retry` on its issue reopens the issue and the same pull request
//! and brings it back to review instead of being cancelled again by the PR it closed.

mod common;

use std::time::Duration;

use common::{Mainloop, Outside, until, until_within};
use mainloop_fakes::github::FakeGitHub;
use serde_json::{Value, json};

/// Four requests that each ask where the section goes before planning.
const REQUESTS: [&str; 4] = [
    "add a quick start section to the README of https://github.com/acme/widgets, ask me where",
    "add an install section to the README of https://github.com/acme/widgets, ask me where",
    "add a usage section to the README of https://github.com/acme/widgets, ask me where",
    "add a license section to the README of https://github.com/acme/widgets, ask me where",
];

struct World {
    http: reqwest::Client,
    base: String,
    github_url: String,
    github: FakeGitHub,
}

impl World {
    async fn comment(&self, number: u64, body: &str) -> anyhow::Result<()> {
        self.http
            .post(format!(
                "{}/_control/repos/acme/widgets/issues/{number}/comments",
                self.github_url
            ))
            .json(&json!({"author": "maria", "body": body}))
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }

    async fn task_until(
        &self,
        id: &str,
        what: &str,
        check: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        until_within(
            &self.http,
            &format!("{}/tasks/{id}", self.base),
            what,
            Duration::from_secs(120),
            check,
        )
        .await
    }

    /// Waits until issue `number`'s body contains `text`.
    async fn issue_says(&self, number: u64, text: &str) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let body = self.github.snapshot().repos["acme/widgets"]
                .issues
                .get(&number)
                .map(|i| i.body.clone())
                .unwrap_or_default();
            if body.contains(text) {
                return Ok(());
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "issue #{number} never said {text:?}: {body}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_form_of_steering_works_from_github() -> anyhow::Result<()> {
    let Outside {
        dir,
        github,
        github_url,
        llm_url,
        http,
    } = Outside::start("mainloop-forms-", None).await?;
    http.post(format!("{github_url}/_control/repos/acme/widgets/collaborators"))
        .json(&json!({"login": "maria", "permission": "write"}))
        .send()
        .await?
        .error_for_status()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let base = format!("http://127.0.0.1:{port}");
    // No CI on this repository: a pushed head goes to review after a second of nothing.
    let _up = Mainloop::start_with(
        &dir.path().join(".mainloop"),
        port,
        &github_url,
        "gh",
        &llm_url,
        "sk",
        &[("CI_GRACE_SECS", "1")],
    )?;
    let world = World {
        http: http.clone(),
        base: base.clone(),
        github_url,
        github,
    };
    for request in REQUESTS {
        let asked: Value = http
            .post(format!("{base}/chat"))
            .header("x-user-id", "alice")
            .json(&json!({"message": request}))
            .send()
            .await?
            .json()
            .await?;
        http.post(format!("{base}/chat"))
            .header("x-user-id", "alice")
            .json(&json!({"message": "yes", "conversation_id": asked["conversation_id"]}))
            .send()
            .await?
            .error_for_status()?;
    }
    let tasks = until_within(
        &http,
        &format!("{base}/tasks"),
        "four tasks with questions on their issues",
        Duration::from_secs(120),
        |t| {
            t.as_array().is_some_and(|all| {
                all.len() == 4
                    && all
                        .iter()
                        .all(|t| t["status"] == "waiting_questions" && t["issue_number"].as_u64().is_some())
            })
        },
    )
    .await?;
    let by_request = |words: &str| -> (String, u64) {
        let task = tasks
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["description"].as_str().is_some_and(|d| d.contains(words)))
            .cloned()
            .unwrap_or_default();
        (
            task["id"].as_str().unwrap_or_default().to_string(),
            task["issue_number"].as_u64().unwrap_or_default(),
        )
    };
    let (quick, quick_issue) = by_request("quick start");
    let (install, install_issue) = by_request("install");
    let (usage, usage_issue) = by_request("usage");
    let (license, license_issue) = by_request("license");

    // Answers in each form, each read with its question.
    for (issue, answer) in [
        (quick_issue, "1) B"),
        (install_issue, "1: A"),
        (usage_issue, "Placement: Bottom"),
        (license_issue, "right after the title, please"),
    ] {
        world.comment(issue, answer).await?;
    }
    for (id, issue, settled) in [
        (&quick, quick_issue, "Bottom"),
        (&install, install_issue, "Top"),
        (&usage, usage_issue, "Bottom"),
        (&license, license_issue, "right after the title, please"),
    ] {
        world
            .task_until(id, "the plan after the answer", |t| {
                t["status"] == "waiting_plan_review"
            })
            .await?;
        world
            .issue_says(
                issue,
                &format!("## Requirements\n\n- Where should the new section go?: {settled}"),
            )
            .await?;
    }

    // The plans: approved by a command and by words, revised, cancelled.
    world.comment(quick_issue, "/approve").await?;
    world.comment(usage_issue, "Looks good!").await?;
    world
        .comment(license_issue, "/revise mention the license file by name")
        .await?;
    world.comment(install_issue, "/cancel").await?;
    world
        .task_until(&install, "cancelled", |t| t["status"] == "cancelled")
        .await?;
    let cancelled = &world.github.snapshot().repos["acme/widgets"].issues[&install_issue];
    assert_eq!(cancelled.state, "closed");
    assert!(
        cancelled
            .comments
            .iter()
            .any(|c| c.body.starts_with("This task was cancelled by @maria on GitHub")),
        "{:?}",
        cancelled.comments
    );
    world
        .task_until(&license, "the revised plan", |t| {
            t["status"] == "waiting_plan_review" && t["plan_revision"] == 2
        })
        .await?;
    world
        .issue_says(license_issue, "mention the license file by name")
        .await?;
    let usage_task = world
        .task_until(&usage, "in review", |t| t["status"] == "under_review")
        .await?;
    assert!(usage_task["pr_number"].as_u64().is_some());
    let quick_task = world
        .task_until(&quick, "in review", |t| t["status"] == "under_review")
        .await?;
    let pr = quick_task["pr_number"].as_u64().unwrap_or_default();

    // Cancelled on its pull request: closed, with a note saying who.
    world.comment(pr, "/cancel").await?;
    world
        .task_until(&quick, "cancelled", |t| t["status"] == "cancelled")
        .await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let state = world.github.snapshot();
        let pull = &state.repos["acme/widgets"].pulls[&pr];
        let noted = pull
            .comments
            .iter()
            .any(|c| c.body.starts_with("This task was cancelled by @maria on GitHub"));
        if pull.state == "closed"
            && noted
            && state.repos["acme/widgets"].issues[&quick_issue].state == "closed"
        {
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "PR #{pr} not closed with a note: {pull:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // `/retry` on the issue: the same issue and pull request open again, back in review.
    world.comment(quick_issue, "/retry").await?;
    let retried = world
        .task_until(&quick, "back in review", |t| t["status"] == "under_review")
        .await?;
    assert_eq!(retried["pr_number"].as_u64(), Some(pr), "the same pull request");
    let state = world.github.snapshot();
    let widgets = &state.repos["acme/widgets"];
    assert_eq!(widgets.pulls[&pr].state, "open");
    assert_eq!(widgets.issues[&quick_issue].state, "open");
    assert_eq!(
        widgets.pulls.len(),
        2,
        "no new pull request: {:?}",
        widgets.pulls.keys()
    );
    let history = common::status_history(&http, &base, &quick).await?;
    assert_eq!(
        history[history.len() - 4..],
        ["cancelled", "pending", "implementing", "under_review"],
        "not cancelled again by the PR it had closed: {history:?}"
    );
    let queue = until(&http, &format!("{base}/queue"), "the cancellation told", |q| {
        q.as_array().is_some_and(|items| {
            items
                .iter()
                .any(|i| i["content"] == "Cancelled by @maria on GitHub: cancelled by the person.")
        })
    })
    .await?;
    assert!(queue.is_array());
    Ok(())
}
