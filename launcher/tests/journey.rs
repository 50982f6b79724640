//! The whole journey through all six services, as `mainloop up` runs them, with the outside
//! world faked at its real protocols: the fake GitHub (REST + git over authenticated smart HTTP
//! on a private repository), the fake Claude
//! Code CLI (`mainloop fake-claude`), the fake Anthropic API. Chat → confirm → spawn → plan → issue → approval in the inbox → implement →
//! draft PR → red CI → fix → green CI → ready → merge → done, watched over HTTP and SSE.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::{ArgvWatch, FULL_HISTORY, Mainloop, sample, status_history, until};
use futures_util::StreamExt;
use mainloop_bus::Bus;
use mainloop_events::{Payload, subjects};
use mainloop_fakes::github::FakeGitHub;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_goes_from_spawn_to_merged_through_every_service() -> anyhow::Result<()> {
    mainloop_runtime::tls::install();
    let dir = tempfile::Builder::new().prefix("mainloop-journey-").tempdir()?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
    let token = "ghp_journey_token_0123456789abcdef";
    let argv = ArgvWatch::start(token);
    let github = FakeGitHub::new(dir.path().join("github"), token);
    let github_url = github
        .clone()
        .serve(tokio::net::TcpListener::bind("127.0.0.1:0").await?)
        .await?;
    let http = reqwest::Client::new();
    http.post(format!("{github_url}/_control/repos"))
        .json(&json!({"owner": "acme", "name": "widgets", "ci": "fail_then_pass"}))
        .send()
        .await?
        .error_for_status()?;

    let llm = mainloop_fakes::anthropic::FakeAnthropic::new("sk-ant-journey");
    let llm_url = llm
        .clone()
        .serve(tokio::net::TcpListener::bind("127.0.0.1:0").await?)
        .await?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let up = Mainloop::start(
        &dir.path().join(".mainloop"),
        port,
        &github_url,
        token,
        &llm_url,
        "sk-ant-journey",
    )?;
    let nats_url = up
        .nats_url()
        .ok_or_else(|| anyhow::anyhow!("no NATS URL printed"))?;
    let base = format!("http://127.0.0.1:{port}");

    // Every status change must reach the browser over SSE.
    let events = http
        .get(format!("{base}/events?user_id_query=alice"))
        .send()
        .await?;
    let sse = tokio::spawn(async move {
        let mut frames = events.bytes_stream();
        let mut buffer = String::new();
        let mut statuses: Vec<String> = Vec::new();
        while let Ok(Some(Ok(chunk))) = tokio::time::timeout(Duration::from_secs(90), frames.next()).await {
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buffer.find("\n\n") {
                let frame: String = buffer.drain(..end + 2).collect();
                if frame.contains("event: task:updated") || frame.contains("event:task:updated") {
                    let data = frame
                        .lines()
                        .find_map(|l| l.strip_prefix("data:"))
                        .unwrap_or("{}");
                    let value: Value = serde_json::from_str(data.trim()).unwrap_or_default();
                    let status = value["status"].as_str().unwrap_or_default().to_string();
                    if statuses.last() != Some(&status) {
                        statuses.push(status.clone());
                    }
                    if status == "completed" {
                        return statuses;
                    }
                }
            }
        }
        statuses
    });

    // The person asks in chat; the main thread proposes and waits for a confirmation.
    let chat = |body: Value| {
        http.post(format!("{base}/chat"))
            .header("x-user-id", "alice")
            .json(&body)
            .send()
    };
    let asked: Value = chat(
        json!({"message": "add a quick start section to the README of https://github.com/acme/widgets"}),
    )
    .await?
    .json()
    .await?;
    assert!(
        asked["message"]["content"]
            .as_str()
            .is_some_and(|c| c.contains("Shall I go ahead?")),
        "{asked}"
    );
    assert_eq!(
        http.get(format!("{base}/tasks"))
            .header("x-user-id", "alice")
            .send()
            .await?
            .json::<Value>()
            .await?,
        json!([])
    );
    let conversation = asked["conversation_id"].clone();
    let confirmed: Value = chat(json!({"message": "yes", "conversation_id": conversation}))
        .await?
        .json()
        .await?;
    assert!(
        confirmed["message"]["content"]
            .as_str()
            .is_some_and(|c| c.contains("spawned on acme/widgets")),
        "{confirmed}"
    );
    let tasks = until(&http, &format!("{base}/tasks"), "the task card", |t| {
        t.as_array().is_some_and(|a| a.len() == 1)
    })
    .await?;
    let task_id = tasks[0]["id"].as_str().unwrap_or_default().to_string();
    let bus = Bus::connect(
        &nats_url,
        "journey",
        Duration::from_secs(10),
        &CancellationToken::new(),
    )
    .await?;

    // The plan arrives for review, on a GitHub issue.
    let queue = until(&http, &format!("{base}/queue"), "a plan review", |q| {
        q[0]["item_type"] == "plan_review"
    })
    .await?;
    let task = until(&http, &format!("{base}/tasks/{task_id}"), "REVIEW PLAN", |t| {
        t["status"] == "waiting_plan_review" && !t["issue_url"].is_null()
    })
    .await?;
    assert!(
        task["plan_text"].as_str().is_some_and(|p| p.contains("# Plan:")),
        "{task}"
    );
    let projects = until(&http, &format!("{base}/projects"), "the project", |p| {
        p[0]["full_name"] == "acme/widgets"
    })
    .await?;
    assert_eq!(projects.as_array().map(Vec::len), Some(1));

    // Approve in the inbox.
    let item = queue[0]["id"].as_str().unwrap_or_default();
    let approved = http
        .post(format!("{base}/queue/{item}/respond"))
        .header("x-user-id", "alice")
        .json(&json!({"response": "Approve"}))
        .send()
        .await?;
    assert_eq!(
        approved.status(),
        reqwest::StatusCode::OK,
        "{:?}",
        approved.text().await
    );

    // Implement, red CI, fix, green CI: code ready with the PR link.
    let ready = until(&http, &format!("{base}/queue"), "code ready", |q| {
        q[0]["item_type"] == "code_ready"
    })
    .await?;
    let pr_url = ready[0]["context"]["pr_url"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(pr_url.ends_with("/acme/widgets/pull/2"), "{pr_url}");
    let context = &ready[0]["context"];
    assert_eq!(
        (
            &context["ci"],
            &context["files"][0]["filename"],
            &context["files"][0]["status"]
        ),
        (&json!("passed"), &json!("README.md"), &json!("modified")),
        "{context}"
    );
    assert!(context["files"][0]["additions"].as_u64() > Some(0), "{context}");
    // The inbox says "ready" when CI passed; marking the PR ready on GitHub follows.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while github.snapshot().repos["acme/widgets"].pulls[&2].draft {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the PR was never marked ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let state = github.snapshot();
    let widgets = &state.repos["acme/widgets"];
    assert_eq!(
        widgets.pulls[&2].ci_heads.len(),
        2,
        "CI ran on the first head (red) and on the fix (green)"
    );

    // Merged on GitHub: the task is done and nothing needs the person any more.
    http.post(format!("{github_url}/_control/repos/acme/widgets/pulls/2/merge"))
        .send()
        .await?
        .error_for_status()?;
    until(&http, &format!("{base}/tasks/{task_id}"), "DONE", |t| {
        t["status"] == "completed"
    })
    .await?;
    // Nothing needs the person; what happened is told in notifications, newest first.
    let queue = until(&http, &format!("{base}/queue"), "only notifications", |q| {
        q.as_array().is_some_and(|items| {
            items.iter().all(|i| i["item_type"] == "notification")
                && items
                    .first()
                    .is_some_and(|i| i["title"].as_str().is_some_and(|t| t.starts_with("Merged:")))
        })
    })
    .await?;
    let told: Vec<&str> = queue
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["content"].as_str())
        .collect();
    assert_eq!(told.len(), 3, "{told:?}");
    assert_eq!(told[0], "The pull request was merged. The task is done.");
    assert!(
        told[1].starts_with("CI failed on ") && told[1].ends_with(". Fixing it: round 1 of 5."),
        "{told:?}"
    );
    assert_eq!(
        told[2],
        "Revision 1 of the plan was approved by you. Implementing it now."
    );
    let unread: Value = http
        .get(format!("{base}/queue/unread/count"))
        .header("x-user-id", "alice")
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(
        unread["count"], 0,
        "notifications need nothing, so they are not counted"
    );

    assert_eq!(status_history(&http, &base, &task_id).await?, FULL_HISTORY);
    let seen = tokio::time::timeout(Duration::from_secs(30), sse).await??;
    assert_eq!(seen, FULL_HISTORY, "SSE delivered every change");

    // GitHub holds exactly one issue with the plan, one merged PR that closed it, no duplicates.
    let state = github.snapshot();
    let widgets = &state.repos["acme/widgets"];
    assert_eq!(widgets.issues.len(), 1);
    assert!(widgets.issues[&1].body.contains("# Plan:"));
    assert_eq!(widgets.issues[&1].state, "closed");
    assert_eq!(widgets.pulls.len(), 1);
    assert!(widgets.pulls[&2].merged && widgets.pulls[&2].body.starts_with("Closes #1"));
    let fixes = bus
        .read_subject(subjects::TASKS, &subjects::task("alice", &task_id)?, 0)
        .await?;
    let fix_jobs = fixes
        .iter()
        .filter(|s| matches!(&s.event.payload, Some(Payload::CiFixStarted(_))))
        .count();
    assert_eq!(fix_jobs, 1, "one fix for one red CI");
    assert!(
        state
            .calls
            .iter()
            .any(|c| c.starts_with("GIT POST /acme/widgets.git/git-receive-pack")),
        "pushed over smart HTTP: {:?}",
        state.calls
    );

    // The finished task's worktree and agent home are gone; the cache clone stays.
    let work = dir.path().join(".mainloop/work");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while work.join("tasks").join(&task_id).exists() {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the task's workspace was not removed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        work.join("repos/acme/widgets.git/HEAD").is_file(),
        "the cache clone stays"
    );

    // The token went to GitHub and nowhere else: no command line, log line, event or file.
    let (samples, argv_hits) = argv.finish();
    assert!(samples > 10, "the command lines were sampled ({samples} times)");
    assert!(
        argv_hits.is_empty(),
        "the token was in a command line: {argv_hits:?}"
    );
    metrics_moved(&http, &base).await?;
    let log = std::fs::read_to_string(Mainloop::log_path(&dir.path().join(".mainloop")))?;
    assert!(log.contains("INFO"), "the log was captured");
    assert!(!log.contains(token), "the token is in a log line");
    let tail = std::process::Command::new(env!("CARGO_BIN_EXE_mainloop"))
        .args(["events", "tail", "--once", "--nats-url", &nats_url])
        .output()?;
    let events = String::from_utf8_lossy(&tail.stdout);
    assert!(events.lines().count() > 20, "the events were read: {events}");
    assert!(!events.contains(token), "the token is in an event");
    let mut stack = vec![work.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() && !path.is_symlink() {
                stack.push(path);
            } else if std::fs::read(&path)
                .is_ok_and(|b| b.windows(token.len()).any(|w| w == token.as_bytes()))
            {
                anyhow::bail!("the token is in {}", path.display());
            }
        }
    }
    Ok(())
}

/// `/metrics` after the journey: each service's work counted.
async fn metrics_moved(http: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    let page = http
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    let moved = |name: &str, labels: &[&str]| sample(&page, name, labels).is_some_and(|v| v > 0.0);
    for consumer in [
        "scheduler-tasks",
        "scheduler-jobs",
        "scheduler-github",
        "worker-supervisor-jobs",
        "github-effects",
        "inbox-tasks",
    ] {
        let label = format!("consumer=\"{consumer}\"");
        assert!(
            moved("mainloop_events_handled_total", &[&label, "outcome=\"done\""]),
            "{consumer} handled nothing:\n{page}"
        );
        assert!(
            moved("mainloop_handler_duration_seconds_count", &[&label]),
            "{consumer} was not timed"
        );
        assert!(
            sample(&page, "mainloop_consumer_lag", &[&label]).is_some(),
            "{consumer} has no lag"
        );
    }
    assert!(
        moved("mainloop_jobs_finished_total", &["state=\"succeeded\""]),
        "no job counted:\n{page}"
    );
    assert_eq!(
        sample(&page, "mainloop_jobs_running", &[]),
        Some(0.0),
        "jobs still counted as running"
    );
    assert!(
        moved("mainloop_agent_tokens_total", &["kind=\"input\""]),
        "no agent tokens counted"
    );
    assert!(
        moved(
            "mainloop_github_requests_total",
            &["method=\"POST\"", "status=\"201\""]
        ),
        "no GitHub call counted"
    );
    let left = sample(&page, "mainloop_github_rate_limit_remaining", &[]).unwrap_or_default();
    assert!(left > 0.0 && left < 5000.0, "rate limit left: {left}");
    assert!(
        moved(
            "mainloop_http_requests_total",
            &["route=\"/chat\"", "status=\"200\""]
        ),
        "no chat counted"
    );
    assert!(
        moved(
            "mainloop_http_request_duration_seconds_count",
            &["route=\"/chat\""]
        ),
        "no chat timed"
    );
    assert!(
        sample(&page, "mainloop_sse_clients", &["feed=\"events\""]).is_some(),
        "no SSE feed counted"
    );
    Ok(())
}
