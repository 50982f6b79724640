//! GitHub API calls for one task that sits one hour in review (CI green, waiting for people),
//! counted at the fake GitHub, with time scaled 1:`BENCH_SCALE` (default 100, so the hour takes
//! 36 s): the watcher's real polling (base 15 s, doubling to 4 min while quiet, conditional
//! requests) against the original's loop (the pull request and its check runs every 15 s,
//! unconditional), which is measured in the same run against the same fake. Prints calls per
//! task-hour, how many were 304s (free of GitHub's rate limit), and the ratio.

use std::path::Path;
use std::time::Duration;

use mainloop_bus::Expect;
use mainloop_events::v1::{PullRequestLinked, RepoRef, TaskSpawned};
use mainloop_events::{Envelope, Payload, subjects};
use mainloop_fakes::github::FakeGitHub;
use mainloop_runtime::Secret;
use mainloop_testkit::Infra;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const HOUR: Duration = Duration::from_secs(3600);

fn git(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let out = std::process::Command::new("git")
        .args(["-c", "user.name=b", "-c", "user.email=b@b"])
        .args(args)
        .current_dir(dir)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

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
        let original = green_pull(&http, &base, dir.path(), "original").await?;

        let infra = Infra::start()?;
        let shutdown = CancellationToken::new();
        let settings = mainloop_github_watcher::GitHubSettings {
            github_api_url: base.clone(),
            github_token: Some(Secret::new("gh-token")),
            github_poll_interval_ms: 15_000 / u64::from(scale),
            github_poll_max_interval_ms: 240_000 / u64::from(scale),
            ci_grace_secs: 180,
            ci_timeout_secs: 3 * 3600,
        };
        let config = mainloop_github_watcher::Config { common: infra.common(), github: settings };
        tokio::spawn(mainloop_github_watcher::run(config, shutdown.clone()));
        infra.ready(1).await?;
        let bus = infra.bus().await?;
        let subject = subjects::task("bench", "t1")?;
        let spawned = Payload::TaskSpawned(TaskSpawned {
            task_id: "t1".into(),
            repo: Some(RepoRef { owner: "acme".into(), name: "ours".into(), html_url: String::new() }),
            description: "d".into(),
            ..Default::default()
        });
        bus.publish(&subject, &Envelope::new("bench", "t1", spawned), Expect::Any).await?;
        let linked = Payload::PullRequestLinked(PullRequestLinked {
            pr_number: ours,
            pr_url: String::new(),
            head_branch: "change".into(),
        });
        // The hour starts when the watch does: its first polls (the answers it has not seen
        // yet, CI found green) are part of the hour, as they would be on GitHub.
        bus.publish(&subject, &Envelope::new("bench", "t1", linked), Expect::Any).await?;

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
        looping.await?;
        let (original_calls, _) = counted(&fake, "original");
        shutdown.cancel();
        println!("one task-hour in review (CI green, nobody acting), time scaled 1:{scale}, calls at the fake GitHub");
        println!("  original loop (PR + check runs every 15 s): {original_calls:>4} calls");
        println!(
            "  mainloop polling (conditional, paced):      {our_calls:>4} calls, {our_304s} of them 304 (free of the rate limit)"
        );
        println!(
            "  ratio {:.3} (goal: <= 60 calls per task-hour)",
            our_calls as f64 / original_calls.max(1) as f64
        );
        anyhow::Ok(())
    })
}
