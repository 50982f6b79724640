//! Waits that remind, not fail, through `mainloop up` with its durable timers: a plan nobody
//! reviews is surfaced again (unread, saying how often it was reminded), then, with an expiry
//! set, the task is cancelled with a note on its issue, which is closed.

mod common;

use std::time::Duration;

use common::{Mainloop, Outside, until, until_within};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_nobody_reviews_is_reminded_then_expires() -> anyhow::Result<()> {
    let Outside {
        dir,
        github,
        github_url,
        llm_url,
        http,
    } = Outside::start("mainloop-waits-", None).await?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let base = format!("http://127.0.0.1:{port}");
    let _up = Mainloop::start_with(
        &dir.path().join(".mainloop"),
        port,
        &github_url,
        "gh",
        &llm_url,
        "sk",
        &[("REMIND_AFTER_SECS", "2"), ("EXPIRE_AFTER_SECS", "7")],
    )?;
    let asked: Value = http
        .post(format!("{base}/chat"))
        .header("x-user-id", "alice")
        .json(
            &json!({"message": "add a quick start section to the README of https://github.com/acme/widgets"}),
        )
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
    let queue = until(&http, &format!("{base}/queue"), "the plan review", |q| {
        q[0]["item_type"] == "plan_review"
    })
    .await?;
    let item = queue[0]["id"].as_str().unwrap_or_default().to_string();
    http.post(format!("{base}/queue/{item}/read"))
        .header("x-user-id", "alice")
        .send()
        .await?
        .error_for_status()?;

    // Surfaced again: unread, with how often it was reminded.
    let reminded = until(&http, &format!("{base}/queue/{item}"), "the reminder", |i| {
        i["read_at"].is_null() && i["context"]["reminded"].as_u64() >= Some(1)
    })
    .await?;
    assert_eq!(reminded["status"], "pending");
    let unread: Value = http
        .get(format!("{base}/queue/unread/count"))
        .header("x-user-id", "alice")
        .send()
        .await?
        .json()
        .await?;
    assert!(unread["count"].as_i64() >= Some(1), "{unread}");

    // Expired: cancelled, told on the issue, which is closed.
    let tasks = until(&http, &format!("{base}/tasks"), "the task", |t| {
        t[0]["id"].is_string()
    })
    .await?;
    let task_id = tasks[0]["id"].as_str().unwrap_or_default().to_string();
    until_within(
        &http,
        &format!("{base}/tasks/{task_id}"),
        "expired",
        Duration::from_secs(60),
        |t| t["status"] == "cancelled",
    )
    .await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let state = github.snapshot();
        let issue = &state.repos["acme/widgets"].issues[&1];
        let noted = issue.comments.iter().any(|c| {
            c.body.starts_with(
                "This task was cancelled because nobody answered in time (nobody answered within 7 s)",
            )
        });
        if noted && issue.state == "closed" {
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "issue not closed with a note: {issue:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let item: Value = http
        .get(format!("{base}/queue/{item}"))
        .header("x-user-id", "alice")
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(item["status"], "cancelled", "the plan review went with the task");
    Ok(())
}
