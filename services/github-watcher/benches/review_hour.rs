//! GitHub API calls for one task that sits one hour in review (CI green, waiting for people),
//! counted at the fake GitHub, with time scaled 1:`BENCH_SCALE` (default 100, so the hour takes
//! 36 s): the watcher's real polling (base 15 s, doubling to 4 min while quiet, conditional
//! requests) against the original's loop (the pull request and its check runs every 15 s,
//! unconditional), which is measured in the same run against the same fake; and a third pull
//! request in a repository whose webhooks reach the watcher (a `ping` delivery at the start, put
//! on `work.webhooks.github` as the gateway does), polled only as the fallback. Prints calls per
//! task-hour, how many were 304s (free of GitHub's rate limit), the ratios, and then how long a
//! merge takes to reach the task through a webhook delivery, and how long a comment takes
//! through its webhook and by polling alone (real time; the poll interval is scaled).

use std::path::Path;
use std::time::Duration;

use mainloop_bus::Expect;
use mainloop_events::v1::{GitHubWebhookReceived, PullRequestLinked, RepoRef, TaskSpawned};
use mainloop_events::{Envelope, Payload, subjects};
use mainloop_fakes::github::FakeGitHub;
use mainloop_runtime::Secret;
use mainloop_testkit::{Infra, git};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const HOUR: Duration = Duration::from_secs(3600);

/// `acme/<name>` with a pull request from a pushed branch whose CI passed; returns its number.
async fn green_pull(http: &reqwest::Client, base: &str, root: &Path, name: &str) -> anyhow::Result<u64> {
    http.post(format!("{base}/_control/repos"))
        .json(&json!({"owner": "acme", "name": name}))
        .send()
        .await?
        .error_for_status()?;
    let bare = root.join("github/acme").join(format!("{name}.git"));
    let work = root.join(format!("{name}-work"));
    git(
        root,
        &[
            "clone",
            "-q",
            &bare.display().to_string(),
            &work.display().to_string(),
        ],
    )?;
    git(&work, &["checkout", "-q", "-b", "change"])?;
    std::fs::write(work.join("CHANGE.md"), "a change\n")?;
    git(&work, &["add", "-A"])?;
    git(&work, &["commit", "-qm", "change"])?;
    git(&work, &["push", "-q", "origin", "change"])?;
    let pull: Value = http
        .post(format!("{base}/repos/acme/{name}/pulls"))
        .bearer_auth("gh-token")
        .json(&json!({"title": "Change", "head": "change", "base": "main"}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let number = pull["number"].as_u64().unwrap_or_default();
    http.post(format!("{base}/_control/repos/acme/{name}/pulls/{number}/checks"))
        .json(&json!({"conclusion": "success"}))
        .send()
        .await?
        .error_for_status()?;
    Ok(number)
}

/// (calls, 304s) the fake answered for `acme/<name>` so far.
fn counted(fake: &FakeGitHub, name: &str) -> (usize, usize) {
    let state = fake.snapshot();
    let prefix = format!("GET /repos/acme/{name}/");
    let of = |calls: &[String]| calls.iter().filter(|c| c.starts_with(&prefix)).count();
    (of(&state.calls), of(&state.not_modified))
}

/// A verified delivery, as the gateway queues it.
fn delivery(id: &str, event: &str, payload: Value) -> Envelope {
    let mut envelope = Envelope::new(
        "github",
        id,
        Payload::GithubWebhookReceived(GitHubWebhookReceived {
            delivery_id: id.into(),
            event: event.into(),
            payload_json: payload.to_string(),
        }),
    );
    envelope.id = format!("github-delivery-{id}");
    envelope
}

/// A task on `acme/<name>` watching pull request `number`.
async fn watch(bus: &mainloop_bus::Bus, task: &str, name: &str, number: u64) -> anyhow::Result<()> {
    let subject = subjects::task("bench", task)?;
    let spawned = Payload::TaskSpawned(TaskSpawned {
        task_id: task.into(),
        repo: Some(RepoRef {
            owner: "acme".into(),
            name: name.into(),
            html_url: String::new(),
        }),
        description: "d".into(),
        ..Default::default()
    });
    bus.publish(&subject, &Envelope::new("bench", task, spawned), Expect::Any)
        .await?;
    let linked = Payload::PullRequestLinked(PullRequestLinked {
        pr_number: number,
        pr_url: String::new(),
        head_branch: "change".into(),
    });
    bus.publish(&subject, &Envelope::new("bench", task, linked), Expect::Any)
        .await?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let scale: u32 = std::env::var("BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    mainloop_runtime::tls::install();
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let dir = tempfile::tempdir()?;
        let fake = FakeGitHub::new(dir.path().join("github"), "gh-token");
        let base = fake.clone().serve(tokio::net::TcpListener::bind("127.0.0.1:0").await?).await?;
        let http = reqwest::Client::new();
        let ours = green_pull(&http, &base, dir.path(), "ours").await?;
        let hooked = green_pull(&http, &base, dir.path(), "hooked").await?;
        let original = green_pull(&http, &base, dir.path(), "original").await?;

        let infra = Infra::start()?;
        let shutdown = CancellationToken::new();
        let settings = mainloop_github_watcher::GitHubSettings {
            github_api_url: base.clone(),
            github_token: Some(Secret::new("gh-token")),
            github_poll_interval_ms: 15_000 / u64::from(scale),
            github_poll_max_interval_ms: 240_000 / u64::from(scale),
            github_poll_with_webhooks_ms: 3_600_000 / u64::from(scale),
            ci_grace_secs: 180,
            ci_timeout_secs: 3 * 3600,
            github_steerers: String::new(),
        };
        let config = mainloop_github_watcher::Config { common: infra.common(), github: settings };
        tokio::spawn(mainloop_github_watcher::run(config, shutdown.clone()));
        infra.ready(1).await?;
        let bus = infra.bus().await?;
        // The hooked repository's webhook was just set up: GitHub pings it.
        bus.publish(subjects::GITHUB_WEBHOOKS, &delivery("ping-1", "ping", json!({"zen": "Keep it simple.",
            "repository": {"full_name": "acme/hooked"}})), Expect::Any).await?;
        // Webhooks are set up before any task starts: the ping is taken first.
        let mut work = bus.jetstream().get_stream(subjects::WORK).await?;
        while work.info().await?.state.messages > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // The hour starts when the watches do: their first polls (answers not seen yet, CI found
        // green) are part of the hour, as they would be on GitHub.
        watch(&bus, "t1", "ours", ours).await?;
        watch(&bus, "t2", "hooked", hooked).await?;

        // The original's loop, side by side: both calls every 15 s, nothing conditional.
        let interval = Duration::from_secs(15) / scale;
        let looping = tokio::spawn({
            let (http, base) = (http.clone(), base.clone());
            async move {
                let mut ticks = tokio::time::interval(interval);
                let started = tokio::time::Instant::now();
                while started.elapsed() < HOUR / scale {
                    ticks.tick().await;
                    for route in [format!("pulls/{original}"), "commits/change/check-runs".to_string()] {
                        let _ = http
                            .get(format!("{base}/repos/acme/original/{route}"))
                            .bearer_auth("gh-token")
                            .send()
                            .await;
                    }
                }
            }
        });
        tokio::time::sleep(HOUR / scale).await;
        let (our_calls, our_304s) = counted(&fake, "ours");
        let (hooked_calls, hooked_304s) = counted(&fake, "hooked");
        looping.await?;
        let (original_calls, _) = counted(&fake, "original");

        // A reviewer comments on both: through its webhook on one, found by polling on the other.
        for repo in ["ours", "hooked"] {
            let number = if repo == "ours" { ours } else { hooked };
            http.post(format!("{base}/_control/repos/acme/{repo}/issues/{number}/comments"))
                .json(&json!({"author": "maria", "body": "@mainloop please say why"}))
                .send()
                .await?
                .error_for_status()?;
        }
        let commented_at = std::time::Instant::now();
        bus.publish(subjects::GITHUB_WEBHOOKS, &delivery("comment-1", "issue_comment", json!({"action": "created",
            "repository": {"full_name": "acme/hooked"}, "issue": {"number": hooked, "pull_request": {}}})), Expect::Any).await?;
        let comment_latency = |task: &'static str| {
            let bus = bus.clone();
            async move {
                loop {
                    let events = bus.read_subject(subjects::GITHUB, &subjects::github("bench", task)?, 0).await?;
                    if events.iter().any(|e| e.event.r#type == "IssueCommentReceived") {
                        return anyhow::Ok(commented_at.elapsed());
                    }
                    anyhow::ensure!(commented_at.elapsed() < Duration::from_secs(120), "the comment never reached {task}");
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        };
        let (hooked_comment, polled_comment) = tokio::try_join!(comment_latency("t2"), comment_latency("t1"))?;

        // Then the reviewer merges: GitHub delivers `pull_request` closed; time to the task.
        http.post(format!("{base}/_control/repos/acme/hooked/pulls/{hooked}/merge"))
            .send()
            .await?
            .error_for_status()?;
        let merged_at = std::time::Instant::now();
        bus.publish(subjects::GITHUB_WEBHOOKS, &delivery("merge-1", "pull_request", json!({"action": "closed",
            "repository": {"full_name": "acme/hooked"}, "pull_request": {"number": hooked, "merged": true}})), Expect::Any).await?;
        loop {
            let events = bus.read_subject(subjects::GITHUB, &subjects::github("bench", "t2")?, 0).await?;
            if events.iter().any(|e| e.event.r#type == "PullRequestMerged") {
                break;
            }
            anyhow::ensure!(merged_at.elapsed() < Duration::from_secs(60), "the merge never reached the task");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let merge_latency = merged_at.elapsed();
        shutdown.cancel();
        let ratio = |calls: usize| calls as f64 / original_calls.max(1) as f64;
        println!("one task-hour in review (CI green, nobody acting), time scaled 1:{scale}, calls at the fake GitHub");
        println!("  original loop (PR + check runs every 15 s): {original_calls:>4} calls");
        println!(
            "  mainloop, polling only:                     {our_calls:>4} calls, {our_304s} of them 304, ratio {:.3} (goal <= 60)",
            ratio(our_calls)
        );
        println!(
            "  mainloop, webhooks reach it:                {hooked_calls:>4} calls, {hooked_304s} of them 304, ratio {:.3} (goal <= 5)",
            ratio(hooked_calls)
        );
        println!("  a merge reached the task {} ms after its webhook delivery was queued (goal < 2 s)", merge_latency.as_millis());
        println!(
            "  a comment reached the task {} ms after its webhook delivery (goal < 2 s); {} ms by polling alone (goal: within the poll interval, here at most {} ms)",
            hooked_comment.as_millis(),
            polled_comment.as_millis(),
            (Duration::from_millis(240_000) / scale).as_millis()
        );
        anyhow::Ok(())
    })
}
