//! The review loop through `mainloop up` against the fake GitHub: a collaborator's review with
//! two inline comments becomes one feedback job that receives both; each comment gets 👀 and a
//! reply on its thread naming the commit; the push is checked by CI before the task is back in
//! review; the inbox says the feedback was addressed; a merge then completes the task.

mod common;

use std::time::Duration;

use common::{Mainloop, Outside, until};
use mainloop_bus::Bus;
use mainloop_events::v1::JobMode;
use mainloop_events::{Payload, subjects};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_review_with_two_inline_comments_is_addressed_in_one_round() -> anyhow::Result<()> {
    let Outside {
        dir,
        github,
        github_url,
        llm_url,
        http,
    } = Outside::start("mainloop-review-", Some("fail_then_pass")).await?;
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
        "review-loop",
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
    let tasks = until(&http, &format!("{base}/tasks"), "in review", |t| {
        t[0]["status"] == "under_review"
    })
    .await?;
    let task_id = tasks[0]["id"].as_str().unwrap_or_default().to_string();

    let review: Value = http
        .post(format!(
            "{github_url}/_control/repos/acme/widgets/pulls/2/reviews"
        ))
        .json(
            &json!({"author": "maria", "state": "CHANGES_REQUESTED", "comments": [
            {"path": "README.md", "line": 1, "body": "Say why the quick start matters."},
            {"path": "README.md", "line": 3, "body": "Link the docs here."}]}),
        )
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let review_id = review["id"].as_u64().unwrap_or_default();
    let inline: Vec<u64> = github.snapshot().repos["acme/widgets"].pulls[&2]
        .review_comments
        .iter()
        .filter(|c| c.review_id == review_id)
        .map(|c| c.id)
        .collect();
    assert_eq!(inline.len(), 2);

    // Each comment gets a reply on its own thread once the round is done.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let replies = loop {
        let pull = github.snapshot().repos["acme/widgets"].pulls[&2].clone();
        let replies: Vec<_> = inline
            .iter()
            .filter_map(|id| {
                pull.review_comments
                    .iter()
                    .find(|c| c.in_reply_to == Some(*id))
                    .cloned()
            })
            .collect();
        if replies.len() == inline.len() {
            break replies;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "replies on {} of {} threads",
            replies.len(),
            inline.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for reply in &replies {
        assert_eq!(reply.user, "mainloop-bot");
        assert!(
            reply.body.starts_with("Addressed in ")
                && reply.body.contains("(feedback round 1)")
                && reply.body.contains(
                    "Addressed 2 comments: @maria on README.md line 1; @maria on README.md line 3."
                ),
            "the reply names the commit and what the agent did with both comments: {}",
            reply.body
        );
    }
    let state = github.snapshot();
    let pull = &state.repos["acme/widgets"].pulls[&2];
    for id in &inline {
        let comment = pull.review_comments.iter().find(|c| c.id == *id);
        assert!(
            comment.is_some_and(|c| c
                .reactions
                .iter()
                .any(|r| r.content == "eyes" && r.user == "mainloop-bot")),
            "👀 on comment {id}: {comment:?}"
        );
    }

    // One feedback job, and it received both comments with their context.
    let events = bus
        .read_subject(subjects::TASKS, &subjects::task("alice", &task_id)?, 0)
        .await?;
    let feedback_jobs: Vec<_> = events
        .iter()
        .filter_map(|s| match &s.event.payload {
            Some(Payload::JobRequested(job)) if job.mode() == JobMode::Feedback => Some(job.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(feedback_jobs.len(), 1, "one round, one job");
    let context = &feedback_jobs[0].context;
    assert!(
        context.contains("Say why the quick start matters.")
            && context.contains("Link the docs here.")
            && context.contains("```diff"),
        "{context}"
    );

    // CI checks the push (the third head), then the task is back in review and the inbox says
    // what was done.
    until(&http, &format!("{base}/tasks/{task_id}"), "back in review", |t| {
        t["status"] == "under_review"
    })
    .await?;
    let history: Vec<String> = common::status_history(&http, &base, &task_id).await?;
    // In review; the feedback job; its push waiting for CI; in review again.
    assert_eq!(
        history[history.len() - 4..],
        ["under_review", "implementing", "implementing", "under_review"],
        "{history:?}"
    );
    let heads = github.snapshot().repos["acme/widgets"].pulls[&2].ci_heads.clone();
    assert_eq!(heads.len(), 3, "red, fixed, then the feedback push: {heads:?}");
    let queue = until(&http, &format!("{base}/queue"), "feedback addressed", |q| {
        q.as_array()
            .is_some_and(|items| items.iter().any(|i| i["item_type"] == "feedback_addressed"))
    })
    .await?;
    let addressed = queue
        .as_array()
        .into_iter()
        .flatten()
        .find(|i| i["item_type"] == "feedback_addressed")
        .cloned()
        .unwrap_or_default();
    assert!(
        addressed["content"]
            .as_str()
            .is_some_and(|c| c.starts_with("Round 1: Addressed 2 comments")),
        "{addressed}"
    );
    assert!(
        queue
            .as_array()
            .is_some_and(|items| items.iter().any(|i| i["item_type"] == "code_ready")),
        "the new head is ready for review again: {queue}"
    );

    http.post(format!("{github_url}/_control/repos/acme/widgets/pulls/2/merge"))
        .send()
        .await?
        .error_for_status()?;
    until(&http, &format!("{base}/tasks/{task_id}"), "DONE", |t| {
        t["status"] == "completed"
    })
    .await?;
    Ok(())
}
