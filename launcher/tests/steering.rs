//! Steering from GitHub, through `mainloop up` against the fake GitHub: comments on the plan's
//! issue are read with their authors' permissions; a stranger's "lgtm" changes nothing; "approve?
//! no" from a collaborator asks for a revision; a collaborator's "lgtm" approves, and the task
//! goes on to merged with the inbox item resolved.

mod common;

use std::time::Duration;

use common::{Mainloop, Outside, until};
use mainloop_bus::Bus;
use mainloop_events::{Payload, subjects};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// Waits until the task's GITHUB events include `count` comments read.
async fn comments_read(bus: &Bus, task: &str, count: usize) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let read = bus
            .read_subject(subjects::GITHUB, &subjects::github("alice", task)?, 0)
            .await?
            .iter()
            .filter(|s| matches!(s.event.payload, Some(Payload::IssueCommentReceived(_))))
            .count();
        if read >= count {
            return Ok(());
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "{read} of {count} comments read"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_is_revised_and_approved_by_comments_on_its_issue() -> anyhow::Result<()> {
    let Outside {
        dir,
        github,
        github_url,
        llm_url,
        http,
    } = Outside::start("mainloop-steering-", Some("fail_then_pass")).await?;
    let control = |path: &str, body: Value| {
        http.post(format!("{github_url}/_control/repos/acme/widgets{path}"))
            .json(&body)
            .send()
    };
    control("/collaborators", json!({"login": "maria", "permission": "write"}))
        .await?
        .error_for_status()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let base = format!("http://127.0.0.1:{port}");
    let up = Mainloop::start(
        &dir.path().join(".mainloop"),
        port,
        &github_url,
        "gh",
        &llm_url,
        "sk",
    )?;
    let nats_url = up
        .nats_url()
        .ok_or_else(|| anyhow::anyhow!("no NATS URL printed"))?;
    let bus = Bus::connect(
        &nats_url,
        "steering",
        Duration::from_secs(10),
        &CancellationToken::new(),
    )
    .await?;

    common::ask_and_confirm(
        &http,
        &base,
        "add a quick start section to the README of https://github.com/acme/widgets",
    )
    .await?;
    let tasks = until(&http, &format!("{base}/tasks"), "the plan on its issue", |t| {
        t[0]["status"] == "waiting_plan_review" && !t[0]["issue_url"].is_null()
    })
    .await?;
    let task_id = tasks[0]["id"].as_str().unwrap_or_default().to_string();
    let issue = tasks[0]["issue_number"].as_u64().unwrap_or(1);
    let comment = |author: &str, body: &str| {
        control(
            &format!("/issues/{issue}/comments"),
            json!({"author": author, "body": body}),
        )
    };

    // A stranger cannot approve: the comment is read, and nothing changes.
    comment("stranger", "lgtm").await?.error_for_status()?;
    comments_read(&bus, &task_id, 1).await?;
    let task: Value = http
        .get(format!("{base}/tasks/{task_id}"))
        .header("x-user-id", "alice")
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(task["status"], "waiting_plan_review", "{task}");

    // "approve? no" from a collaborator is a revision: a new plan comes for review.
    comment("maria", "approve? no").await?.error_for_status()?;
    until(
        &http,
        &format!("{base}/tasks/{task_id}"),
        "the revised plan",
        |t| t["status"] == "waiting_plan_review" && t["plan_revision"] == 2,
    )
    .await?;

    // Her "lgtm" approves: the inbox item goes away and the work goes on to merged.
    comment("maria", "lgtm").await?.error_for_status()?;
    let ready = until(&http, &format!("{base}/queue"), "code ready", |q| {
        q[0]["item_type"] == "code_ready"
    })
    .await?;
    let pull = ready[0]["context"]["pr_url"]
        .as_str()
        .and_then(|u| u.rsplit('/').next())
        .unwrap_or_default()
        .to_string();
    let history = bus
        .read_subject(subjects::TASKS, &subjects::task("alice", &task_id)?, 0)
        .await?;
    let approvals: Vec<(String, u64)> = history
        .iter()
        .filter_map(|s| match &s.event.payload {
            Some(Payload::PlanApproved(a)) => Some((a.approved_by.clone(), a.github_comment_id)),
            _ => None,
        })
        .collect();
    assert_eq!(approvals.len(), 1, "{approvals:?}");
    let state = github.snapshot();
    let widgets = &state.repos["acme/widgets"];
    let said: Vec<&str> = widgets.issues[&issue]
        .comments
        .iter()
        .filter(|c| c.author == "mainloop-bot")
        .map(|c| c.body.as_str())
        .collect();
    assert!(
        said.iter()
            .any(|c| c.contains("To approve, react to this comment"))
            && said.iter().any(|c| c.contains("approved by @maria")),
        "how to steer, and who approved, on the issue: {said:?}"
    );
    assert_eq!(approvals[0].0, "github:maria");
    assert!(approvals[0].1 > 0);
    http.post(format!(
        "{github_url}/_control/repos/acme/widgets/pulls/{pull}/merge"
    ))
    .send()
    .await?
    .error_for_status()?;
    until(&http, &format!("{base}/tasks/{task_id}"), "DONE", |t| {
        t["status"] == "completed"
    })
    .await?;
    let number: u64 = pull.parse()?;
    assert!(
        github.snapshot().repos["acme/widgets"].pulls[&number]
            .comments
            .iter()
            .any(|c| c.body.contains("ready for review")),
        "the pull request says it is ready and why"
    );
    drop(up);
    Ok(())
}

/// Questions go to the issue as one comment (numbered, options lettered); a collaborator answers
/// there ("1. A"); the answers are acknowledged on the issue, the inbox item goes away, and the
/// plan that follows uses them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn questions_are_asked_and_answered_on_the_issue() -> anyhow::Result<()> {
    let Outside {
        dir,
        github,
        github_url,
        llm_url,
        http,
    } = Outside::start("mainloop-questions-", None).await?;
    http.post(format!("{github_url}/_control/repos/acme/widgets/collaborators"))
        .json(&json!({"login": "maria", "permission": "admin"}))
        .send()
        .await?
        .error_for_status()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let base = format!("http://127.0.0.1:{port}");
    let _up = Mainloop::start(
        &dir.path().join(".mainloop"),
        port,
        &github_url,
        "gh",
        &llm_url,
        "sk",
    )?;
    let chat = |body: Value| {
        http.post(format!("{base}/chat"))
            .header("x-user-id", "alice")
            .json(&body)
            .send()
    };
    let asked: Value = chat(json!({"message":
        "add a quick start section to the README of https://github.com/acme/widgets, ask me where"}))
    .await?
    .json()
    .await?;
    chat(json!({"message": "yes", "conversation_id": asked["conversation_id"]}))
        .await?
        .error_for_status()?;
    until(&http, &format!("{base}/queue"), "the questions", |q| {
        q[0]["item_type"] == "question"
    })
    .await?;
    // The questions comment, on the issue made when planning began.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let questions = loop {
        let state = github.snapshot();
        let found = state.repos["acme/widgets"].issues.get(&1).and_then(|i| {
            i.comments
                .iter()
                .find(|c| c.body.starts_with("## Questions"))
                .cloned()
        });
        if let Some(found) = found {
            break found;
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "no questions comment");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        questions.body.contains("**1. Where should the new section go?**")
            && questions.body.contains("A. Top")
            && questions.body.contains("B. Bottom"),
        "{}",
        questions.body
    );
    http.post(format!(
        "{github_url}/_control/repos/acme/widgets/issues/1/comments"
    ))
    .json(&json!({"author": "maria", "body": "1. B"}))
    .send()
    .await?
    .error_for_status()?;
    until(
        &http,
        &format!("{base}/tasks"),
        "the plan after the answers",
        |t| t[0]["status"] == "waiting_plan_review",
    )
    .await?;
    // The issue's body says what the answers settled once the plan is in it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !github.snapshot().repos["acme/widgets"].issues[&1]
        .body
        .contains("## Requirements\n\n- Where should the new section go?: Bottom")
    {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "no requirements in the issue: {}",
            github.snapshot().repos["acme/widgets"].issues[&1].body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        github.snapshot().repos["acme/widgets"].issues[&1]
            .body
            .contains("Bottom")
    );
    let state = github.snapshot();
    let comments = &state.repos["acme/widgets"].issues[&1].comments;
    assert!(
        comments
            .iter()
            .any(|c| c.body.starts_with("Thanks, got the answers") && c.body.contains("Bottom")),
        "acknowledged on the issue: {comments:?}"
    );
    let queue = until(&http, &format!("{base}/queue"), "the plan review", |q| {
        q[0]["item_type"] == "plan_review"
    })
    .await?;
    assert_eq!(
        queue.as_array().map(Vec::len),
        Some(1),
        "the question item went away: {queue}"
    );
    Ok(())
}

/// A 👍 on the comment that says how to steer approves the plan when a collaborator gives it; a
/// stranger's does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collaborators_thumbs_up_on_the_plan_comment_approves() -> anyhow::Result<()> {
    let Outside {
        dir,
        github,
        github_url,
        llm_url,
        http,
    } = Outside::start("mainloop-reactions-", None).await?;
    http.post(format!("{github_url}/_control/repos/acme/widgets/collaborators"))
        .json(&json!({"login": "maria", "permission": "write"}))
        .send()
        .await?
        .error_for_status()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let base = format!("http://127.0.0.1:{port}");
    let up = Mainloop::start(
        &dir.path().join(".mainloop"),
        port,
        &github_url,
        "gh",
        &llm_url,
        "sk",
    )?;
    let nats_url = up
        .nats_url()
        .ok_or_else(|| anyhow::anyhow!("no NATS URL printed"))?;
    let bus = Bus::connect(
        &nats_url,
        "reactions",
        Duration::from_secs(10),
        &CancellationToken::new(),
    )
    .await?;
    common::ask_and_confirm(
        &http,
        &base,
        "add a quick start section to the README of https://github.com/acme/widgets",
    )
    .await?;
    let tasks = until(&http, &format!("{base}/tasks"), "the plan in review", |t| {
        t[0]["status"] == "waiting_plan_review"
    })
    .await?;
    let task_id = tasks[0]["id"].as_str().unwrap_or_default().to_string();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let help = loop {
        let found = github.snapshot().repos["acme/widgets"].issues[&1]
            .comments
            .iter()
            .find(|c| c.body.contains("To approve, react to this comment"))
            .map(|c| c.id);
        if let Some(found) = found {
            break found;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "no comment on how to steer"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let react = |author: &str| {
        http.post(format!(
            "{github_url}/_control/repos/acme/widgets/comments/{help}/reactions"
        ))
        .json(&json!({"author": author, "content": "+1"}))
        .send()
    };
    react("stranger").await?.error_for_status()?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let read = bus
            .read_subject(subjects::GITHUB, &subjects::github("alice", &task_id)?, 0)
            .await?
            .iter()
            .any(|s| matches!(s.event.payload, Some(Payload::PlanReactionReceived(_))));
        if read {
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the reaction was not read"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let task: Value = http
        .get(format!("{base}/tasks/{task_id}"))
        .header("x-user-id", "alice")
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(
        task["status"], "waiting_plan_review",
        "a stranger's 👍 approves nothing"
    );
    react("maria").await?.error_for_status()?;
    until(&http, &format!("{base}/tasks/{task_id}"), "approved", |t| {
        t["status"] == "implementing" || t["status"] == "under_review"
    })
    .await?;
    let approved = bus
        .read_subject(subjects::TASKS, &subjects::task("alice", &task_id)?, 0)
        .await?
        .into_iter()
        .find_map(|s| match s.event.payload {
            Some(Payload::PlanApproved(a)) => Some(a.approved_by),
            _ => None,
        });
    assert_eq!(approved.as_deref(), Some("github:maria"));
    Ok(())
}
