//! Nothing lost: `mainloop up` is killed with SIGKILL twice in the middle of a task (while the
//! plan waits for review, and right after approval while the agent works), restarted on the same
//! data, and the task still ends merged, with one issue and one pull request on GitHub. And under
//! a running `up`, its nats-server and then its Postgres are killed mid-task: `up` starts them
//! again, the services reconnect, and the task still ends merged, nothing done twice. And a
//! steering comment on GitHub is acted on once across a crash.

mod common;

use common::{FULL_HISTORY, Mainloop, Outside, status_history, until};

use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_survives_two_crashes_and_nothing_happens_twice() -> anyhow::Result<()> {
    let Outside {
        dir,
        github,
        github_url,
        llm_url,
        http,
    } = Outside::start("mainloop-restart-", Some("fail_then_pass")).await?;
    let data = dir.path().join(".mainloop");
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let base = format!("http://127.0.0.1:{port}");

    let up = Mainloop::start(&data, port, &github_url, "gh", &llm_url, "sk")?;
    common::ask_and_confirm(
        &http,
        &base,
        "add a quick start section to the README of https://github.com/acme/widgets",
    )
    .await?;
    let queue = until(&http, &format!("{base}/queue"), "the plan review", |q| {
        q[0]["item_type"] == "plan_review"
    })
    .await?;
    until(&http, &format!("{base}/tasks"), "the issue", |t| {
        !t[0]["issue_url"].is_null()
    })
    .await?;
    up.crash()?;

    // Back up: the task, its plan and the inbox item are still there.
    let up = Mainloop::start(&data, port, &github_url, "gh", &llm_url, "sk")?;
    let tasks = until(&http, &format!("{base}/tasks"), "the task after a crash", |t| {
        t[0]["status"] == "waiting_plan_review"
    })
    .await?;
    let task_id = tasks[0]["id"].as_str().unwrap_or_default().to_string();
    let item = queue[0]["id"].as_str().unwrap_or_default();
    let approved = http
        .post(format!("{base}/queue/{item}/respond"))
        .header("x-user-id", "alice")
        .json(&json!({"response": "Approve"}))
        .send()
        .await?;
    assert_eq!(approved.status(), reqwest::StatusCode::OK);
    until(&http, &format!("{base}/tasks/{task_id}"), "implementing", |t| {
        t["status"] == "implementing"
    })
    .await?;
    up.crash()?;

    // Back up again: the interrupted job is retried, CI goes red then green, the PR is merged.
    let _up = Mainloop::start(&data, port, &github_url, "gh", &llm_url, "sk")?;
    let ready = until(&http, &format!("{base}/queue"), "code ready", |q| {
        q[0]["item_type"] == "code_ready"
    })
    .await?;
    assert!(
        ready[0]["context"]["pr_url"]
            .as_str()
            .is_some_and(|u| u.ends_with("/pull/2"))
    );
    http.post(format!("{github_url}/_control/repos/acme/widgets/pulls/2/merge"))
        .send()
        .await?
        .error_for_status()?;
    until(&http, &format!("{base}/tasks/{task_id}"), "DONE", |t| {
        t["status"] == "completed"
    })
    .await?;

    let state = github.snapshot();
    let widgets = &state.repos["acme/widgets"];
    assert_eq!(widgets.issues.len(), 1, "one issue, whatever crashed");
    assert_eq!(widgets.pulls.len(), 1, "one pull request, whatever crashed");
    assert!(widgets.pulls[&2].merged);
    assert_eq!(status_history(&http, &base, &task_id).await?, FULL_HISTORY);
    Ok(())
}

/// nats-server dies right after the spawn (the plan job is queued or running), Postgres dies
/// while the implementation job runs; `up` restarts each and the task finishes exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_in_flight_finishes_across_server_restarts() -> anyhow::Result<()> {
    let Outside {
        dir,
        github,
        github_url,
        llm_url,
        http,
    } = Outside::start("mainloop-servers-", Some("fail_then_pass")).await?;
    let data = dir.path().join(".mainloop");
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let base = format!("http://127.0.0.1:{port}");
    let up = Mainloop::start(&data, port, &github_url, "gh", &llm_url, "sk")?;
    common::ask_and_confirm(
        &http,
        &base,
        "add a quick start section to the README of https://github.com/acme/widgets",
    )
    .await?;
    up.kill_server("nats-server").await?;

    let queue = until(&http, &format!("{base}/queue"), "the plan review", |q| {
        q[0]["item_type"] == "plan_review"
    })
    .await?;
    let tasks = until(&http, &format!("{base}/tasks"), "the issue", |t| {
        !t[0]["issue_url"].is_null()
    })
    .await?;
    let task_id = tasks[0]["id"].as_str().unwrap_or_default().to_string();
    let item = queue[0]["id"].as_str().unwrap_or_default();
    let approved = http
        .post(format!("{base}/queue/{item}/respond"))
        .header("x-user-id", "alice")
        .json(&json!({"response": "Approve"}))
        .send()
        .await?;
    assert_eq!(approved.status(), reqwest::StatusCode::OK);
    until(&http, &format!("{base}/tasks/{task_id}"), "implementing", |t| {
        t["status"] == "implementing"
    })
    .await?;
    up.kill_server("postgres").await?;

    let ready = until(&http, &format!("{base}/queue"), "code ready", |q| {
        q[0]["item_type"] == "code_ready"
    })
    .await?;
    assert!(
        ready[0]["context"]["pr_url"]
            .as_str()
            .is_some_and(|u| u.ends_with("/pull/2"))
    );
    http.post(format!("{github_url}/_control/repos/acme/widgets/pulls/2/merge"))
        .send()
        .await?
        .error_for_status()?;
    until(&http, &format!("{base}/tasks/{task_id}"), "DONE", |t| {
        t["status"] == "completed"
    })
    .await?;
    let state = github.snapshot();
    let widgets = &state.repos["acme/widgets"];
    assert_eq!(widgets.issues.len(), 1, "one issue, whatever restarted");
    assert_eq!(widgets.pulls.len(), 1, "one pull request, whatever restarted");
    assert!(widgets.pulls[&2].merged);
    assert_eq!(status_history(&http, &base, &task_id).await?, FULL_HISTORY);
    Ok(())
}

/// A comment that steers is acted on once, whenever mainloop dies: `up` is killed with SIGKILL
/// right after a collaborator asks for a revision on the issue (the comment may be unread, read
/// and not yet acted on, or acted on), started again, and exactly one revision follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_steering_comment_is_acted_on_once_across_a_crash() -> anyhow::Result<()> {
    let Outside {
        dir,
        github: _,
        github_url,
        llm_url,
        http,
    } = Outside::start("mainloop-comment-crash-", None).await?;
    http.post(format!("{github_url}/_control/repos/acme/widgets/collaborators"))
        .json(&json!({"login": "maria", "permission": "write"}))
        .send()
        .await?
        .error_for_status()?;
    let data = dir.path().join(".mainloop");
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let base = format!("http://127.0.0.1:{port}");
    let up = Mainloop::start(&data, port, &github_url, "gh", &llm_url, "sk")?;
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
    http.post(format!(
        "{github_url}/_control/repos/acme/widgets/issues/1/comments"
    ))
    .json(&json!({"author": "maria", "body": "/revise add a table of commands"}))
    .send()
    .await?
    .error_for_status()?;
    up.crash()?;

    let up = Mainloop::start(&data, port, &github_url, "gh", &llm_url, "sk")?;
    until(
        &http,
        &format!("{base}/tasks/{task_id}"),
        "revision 2 in review",
        |t| t["status"] == "waiting_plan_review" && t["plan_revision"] == 2,
    )
    .await?;
    let history = status_history(&http, &base, &task_id).await?;
    assert_eq!(
        history,
        [
            "pending",
            "planning",
            "waiting_plan_review",
            "planning",
            "waiting_plan_review"
        ],
        "one revision, whatever the crash interrupted"
    );
    let nats_url = up
        .nats_url()
        .ok_or_else(|| anyhow::anyhow!("no NATS URL printed"))?;
    let bus = mainloop_bus::Bus::connect(
        &nats_url,
        "restart",
        std::time::Duration::from_secs(10),
        &tokio_util::sync::CancellationToken::new(),
    )
    .await?;
    let revisions: Vec<u64> = bus
        .read_subject(
            mainloop_events::subjects::TASKS,
            &mainloop_events::subjects::task("alice", &task_id)?,
            0,
        )
        .await?
        .into_iter()
        .filter_map(|s| match s.event.payload {
            Some(mainloop_events::Payload::PlanRevisionRequested(r)) => Some(r.github_comment_id),
            _ => None,
        })
        .collect();
    assert!(
        revisions.len() == 1 && revisions[0] > 0,
        "the comment asked for one revision: {revisions:?}"
    );
    Ok(())
}
