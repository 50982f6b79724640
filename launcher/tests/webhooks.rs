//! Webhooks first, polling as the fallback, through `mainloop up`: GitHub's polling interval is
//! ten minutes here, so everything after the first look at a pull request reaches the task only
//! through the fake GitHub's signed webhook deliveries (and the watcher's own pushes): the task
//! still goes from spawn to merged; a delivery with a bad signature is refused.

mod common;

use common::{FULL_HISTORY, Mainloop, Outside, status_history, until};
use serde_json::json;

const SECRET: &str = "hook-secret-0123456789";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_reaches_merged_through_webhooks_with_polling_ten_minutes_apart() -> anyhow::Result<()> {
    let Outside {
        dir,
        github,
        github_url,
        llm_url,
        http,
    } = Outside::start("mainloop-webhooks-", Some("fail_then_pass")).await?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let base = format!("http://127.0.0.1:{port}");
    http.post(format!("{github_url}/_control/webhooks"))
        .json(&json!({"url": format!("{base}/webhooks/github"), "secret": SECRET}))
        .send()
        .await?
        .error_for_status()?;
    let up = Mainloop::start_with(
        &dir.path().join(".mainloop"),
        port,
        &github_url,
        "gh",
        &llm_url,
        "sk",
        &[
            ("GITHUB_WEBHOOK_SECRET", SECRET),
            ("GITHUB_POLL_INTERVAL_MS", "600000"),
            ("GITHUB_POLL_MAX_INTERVAL_MS", "600000"),
        ],
    )?;
    assert!(
        up.printed.iter().any(|l| l.contains("Webhooks:  on")),
        "up says how to point webhooks here: {:?}",
        up.printed
    );

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
    let item = queue[0]["id"].as_str().unwrap_or_default();
    http.post(format!("{base}/queue/{item}/respond"))
        .header("x-user-id", "alice")
        .json(&json!({"response": "Approve"}))
        .send()
        .await?
        .error_for_status()?;
    // Red CI on the first head, a fix pushed, green on the second: seen without timed polls.
    until(&http, &format!("{base}/queue"), "code ready", |q| {
        q[0]["item_type"] == "code_ready"
    })
    .await?;
    let tasks = until(&http, &format!("{base}/tasks"), "the task", |t| {
        t[0]["id"].is_string()
    })
    .await?;
    let task_id = tasks[0]["id"].as_str().unwrap_or_default().to_string();

    // Merged on GitHub: only the webhook can tell mainloop within the test's wait.
    http.post(format!("{github_url}/_control/repos/acme/widgets/pulls/2/merge"))
        .send()
        .await?
        .error_for_status()?;
    until(&http, &format!("{base}/tasks/{task_id}"), "DONE", |t| {
        t["status"] == "completed"
    })
    .await?;
    assert_eq!(status_history(&http, &base, &task_id).await?, FULL_HISTORY);

    let state = github.snapshot();
    let merged = state
        .deliveries
        .iter()
        .find(|d| d.event == "pull_request")
        .ok_or_else(|| anyhow::anyhow!("no pull_request delivery: {:?}", state.deliveries))?;
    assert_eq!(merged.status, Some(202), "the gateway accepted it");
    // The same delivery with a forged signature is refused.
    http.post(format!("{github_url}/_control/webhooks/redeliver"))
        .json(&json!({"id": merged.id, "signature": format!("sha256={}", "0".repeat(64))}))
        .send()
        .await?
        .error_for_status()?;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let refused = github
            .snapshot()
            .deliveries
            .iter()
            .filter(|d| d.id == merged.id)
            .any(|d| d.status == Some(401));
        if refused {
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the forged delivery was not refused"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    drop(up);
    Ok(())
}
