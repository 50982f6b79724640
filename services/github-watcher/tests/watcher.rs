//! The github-watcher with octocrab against the fake GitHub (real HTTP, real git): effects done
//! once even when requested twice, CI followed for the current head, the merge reported.

use std::time::Duration;

use mainloop_bus::{Bus, Expect, request};
use mainloop_events::v1::{
    CreateIssue, GitHubEffectRequested, MarkPullRequestReady, OpenPullRequest, PullRequestLinked, RepoRef,
    TaskSpawned, git_hub_effect_requested::Effect,
};
use mainloop_events::{Envelope, Payload, subjects};
use mainloop_fakes::github::FakeGitHub;
use mainloop_runtime::Secret;
use mainloop_testkit::{Infra, git};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

struct World {
    _infra: Infra,
    _dir: tempfile::TempDir,
    bus: Bus,
    fake: FakeGitHub,
    base: String,
    http: reqwest::Client,
    shutdown: CancellationToken,
}

async fn start() -> anyhow::Result<World> {
    start_polling_every(100, 400).await
}

async fn start_polling_every(base_ms: u64, max_ms: u64) -> anyhow::Result<World> {
    start_with(base_ms, max_ms, "").await
}

/// The watcher polling at `base_ms`, doubling up to `max_ms` while quiet; `steerers`: the
/// allow-list of who steers (empty: the repository's writers).
async fn start_with(base_ms: u64, max_ms: u64, steerers: &str) -> anyhow::Result<World> {
    mainloop_runtime::tls::install();
    let config = mainloop_runtime::TelemetryConfig {
        log_format: mainloop_runtime::config::LogFormat::Human,
        otlp_endpoint: None,
    };
    std::mem::forget(mainloop_runtime::telemetry::init("test", &config));
    let dir = tempfile::tempdir()?;
    let fake = FakeGitHub::new(dir.path().join("github"), "gh-token");
    let base = fake
        .clone()
        .serve(tokio::net::TcpListener::bind("127.0.0.1:0").await?)
        .await?;
    let http = reqwest::Client::new();
    http.post(format!("{base}/_control/repos"))
        .json(&json!({"owner": "acme", "name": "widgets"}))
        .send()
        .await?
        .error_for_status()?;

    let infra = Infra::start()?;
    let github = mainloop_github_watcher::GitHubSettings {
        github_api_url: base.clone(),
        github_token: Some(Secret::new("gh-token")),
        github_poll_interval_ms: base_ms,
        github_poll_max_interval_ms: max_ms,
        github_poll_with_webhooks_ms: max_ms,
        ci_grace_secs: 2,
        ci_timeout_secs: 4,
        github_steerers: steerers.to_string(),
    };
    let shutdown = CancellationToken::new();
    let config = mainloop_github_watcher::Config {
        common: infra.common(),
        github,
    };
    tokio::spawn(mainloop_github_watcher::run(config, shutdown.clone()));
    infra.ready(1).await?;
    let bus = infra.bus().await?;
    Ok(World {
        _infra: infra,
        _dir: dir,
        bus,
        fake,
        base,
        http,
        shutdown,
    })
}

fn repo() -> RepoRef {
    RepoRef {
        owner: "acme".into(),
        name: "widgets".into(),
        html_url: String::new(),
    }
}

fn effect(id: &str, effect: Effect) -> Envelope {
    Envelope::new(
        "u1",
        "t1",
        Payload::GithubEffectRequested(GitHubEffectRequested {
            effect_id: id.into(),
            repo: Some(repo()),
            effect: Some(effect),
        }),
    )
}

async fn github_events(bus: &Bus, count: usize) -> anyhow::Result<Vec<Envelope>> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let events: Vec<Envelope> = bus
            .read_subject(subjects::GITHUB, &subjects::github("u1", "t1")?, 0)
            .await?
            .into_iter()
            .map(|s| s.event)
            .collect();
        if events.len() >= count {
            return Ok(events);
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "only {:?}",
            events.iter().map(|e| &e.r#type).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn push_branch(world: &World, branch: &str, line: &str) -> anyhow::Result<()> {
    let bare = world._dir.path().join("github/acme/widgets.git");
    let work = world._dir.path().join(format!("work-{}", line.len()));
    if !work.exists() {
        git(
            world._dir.path(),
            &[
                "clone",
                "-q",
                &bare.display().to_string(),
                &work.display().to_string(),
            ],
        )?;
    }
    git(&work, &["checkout", "-q", "-B", branch])?;
    std::fs::write(work.join("README.md"), format!("# widgets\n{line}\n"))?;
    git(&work, &["commit", "-qam", line])?;
    git(&work, &["push", "-q", "-f", "origin", branch])?;
    Ok(())
}

#[tokio::test]
async fn effects_happen_once_and_ci_and_merge_are_reported() -> anyhow::Result<()> {
    let world = start().await?;
    let bus = &world.bus;
    let info: Value = request::send_json(
        bus,
        "query.github.repo",
        &json!({"owner": "acme", "name": "widgets"}),
        Duration::from_secs(5),
    )
    .await?;
    assert!(
        info["clone_url"]
            .as_str()
            .is_some_and(|u| u.starts_with("http://") && u.ends_with("/acme/widgets.git")),
        "{info}"
    );
    assert_eq!(info["default_branch"], "main");
    let missing: Result<Value, _> = request::send_json(
        bus,
        "query.github.repo",
        &json!({"owner": "acme", "name": "nope"}),
        Duration::from_secs(5),
    )
    .await;
    assert!(
        matches!(
            missing,
            Err(request::RequestError::Rejected {
                code: mainloop_events::v1::ErrorCode::NotFound,
                ..
            })
        ),
        "{missing:?}"
    );

    // The same effect requested twice (a redelivery after a lost ack) creates one issue.
    let create = effect(
        "t1:create-issue",
        Effect::CreateIssue(CreateIssue {
            title: "Add a quick start".into(),
            body: "## Plan\n1. Write it".into(),
            labels: vec!["mainloop-plan".into()],
        }),
    );
    let work = subjects::github_work("u1", "t1")?;
    bus.publish(&work, &create, Expect::Any).await?;
    bus.publish(
        &work,
        &Envelope {
            id: mainloop_events::new_event_id(),
            ..create.clone()
        },
        Expect::Any,
    )
    .await?;
    github_events(bus, 1).await?;
    // Let the second delivery finish too before counting.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let events = github_events(bus, 1).await?;
    let created: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.payload {
            Some(Payload::IssueCreated(c)) => Some(c.issue_number),
            _ => None,
        })
        .collect();
    assert_eq!(
        created,
        [1],
        "created once; the repeated report is the same event, stored once"
    );
    let state = world.fake.snapshot();
    let widgets = &state.repos["acme/widgets"];
    assert_eq!(widgets.issues.len(), 1);
    assert!(
        widgets.issues[&1]
            .body
            .contains("<!-- mainloop:effect=t1:create-issue -->")
    );

    // A draft PR for a pushed branch, then watched.
    push_branch(&world, "docs/quick-start", "first")?;
    let open = effect(
        "t1:open-pull-request",
        Effect::OpenPullRequest(OpenPullRequest {
            head: "docs/quick-start".into(),
            base: String::new(),
            title: "Add a quick start".into(),
            body: "Closes #1".into(),
            draft: true,
        }),
    );
    bus.publish(&work, &open, Expect::Any).await?;
    let events = github_events(bus, 2).await?;
    let Some(Payload::PullRequestOpened(opened)) = &events[1].payload else {
        anyhow::bail!("{:?}", events[1])
    };
    assert_eq!(opened.pr_number, 2, "issues and pull requests share numbers");
    let spawned = Envelope::new(
        "u1",
        "t1",
        Payload::TaskSpawned(TaskSpawned {
            task_id: "t1".into(),
            repo: Some(repo()),
            description: "d".into(),
            ..Default::default()
        }),
    );
    bus.publish(&subjects::task("u1", "t1")?, &spawned, Expect::Any)
        .await?;
    let linked = Envelope::new(
        "u1",
        "t1",
        Payload::PullRequestLinked(PullRequestLinked {
            pr_number: 2,
            pr_url: opened.pr_url.clone(),
            head_branch: "docs/quick-start".into(),
        }),
    );
    bus.publish(&subjects::task("u1", "t1")?, &linked, Expect::Any)
        .await?;

    let events = github_events(bus, 3).await?;
    assert_eq!(
        events[2].r#type, "CIPending",
        "no checks yet is pending, never green"
    );
    world
        .http
        .post(format!(
            "{}/_control/repos/acme/widgets/pulls/2/checks",
            world.base
        ))
        // CI systems write what they like; a NUL in a summary must not poison anything.
        .json(&json!({"conclusion": "failure", "title": "1 failed", "summary": "test_readme FAILED\u{0} at line 3"}))
        .send()
        .await?
        .error_for_status()?;
    let events = github_events(bus, 4).await?;
    let Some(Payload::CiFailed(failed)) = &events[3].payload else {
        anyhow::bail!("{:?}", events[3])
    };
    assert_eq!(
        (
            failed.failures[0].name.as_str(),
            failed.failures[0].summary.as_str()
        ),
        ("test", "test_readme FAILED␀ at line 3")
    );

    // A new head: pending again, then green.
    push_branch(&world, "docs/quick-start", "second")?;
    world
        .http
        .post(format!(
            "{}/_control/repos/acme/widgets/pulls/2/checks",
            world.base
        ))
        .json(&json!({"conclusion": "success"}))
        .send()
        .await?
        .error_for_status()?;
    let events = github_events(bus, 5).await?;
    let last = events.last().map(|e| e.r#type.clone()).unwrap_or_default();
    let events = if last == "CIPending" {
        github_events(bus, 6).await?
    } else {
        events
    };
    let Some(Payload::CiPassed(passed)) = &events.last().and_then(|e| e.payload.clone()) else {
        anyhow::bail!("{:?}", events.last())
    };
    assert_ne!(passed.head_sha, failed.head_sha);
    // What the pull request changes comes with the green, for the person's review.
    let files: Vec<(&str, &str, bool)> = passed
        .files
        .iter()
        .map(|f| (f.filename.as_str(), f.status.as_str(), f.additions > 0))
        .collect();
    assert_eq!(files, [("README.md", "modified", true)]);

    let ready = effect(
        "t1:mark-ready",
        Effect::MarkPullRequestReady(MarkPullRequestReady { pr_number: 2 }),
    );
    bus.publish(&work, &ready, Expect::Any).await?;
    let count = events.len() + 1;
    github_events(bus, count).await?;
    assert!(
        !world.fake.snapshot().repos["acme/widgets"].pulls[&2].draft,
        "marked ready through GraphQL"
    );

    world
        .http
        .post(format!(
            "{}/_control/repos/acme/widgets/pulls/2/merge",
            world.base
        ))
        .send()
        .await?
        .error_for_status()?;
    let events = github_events(bus, count + 1).await?;
    assert_eq!(
        events.last().map(|e| e.r#type.as_str()),
        Some("PullRequestMerged")
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    let after = bus
        .read_subject(subjects::GITHUB, &subjects::github("u1", "t1")?, 0)
        .await?;
    assert_eq!(
        after.len(),
        count + 1,
        "nothing is reported twice while nothing changes"
    );
    let state = world.fake.snapshot();
    assert_eq!(
        state.repos["acme/widgets"].issues[&1].state, "closed",
        "the merge closed the issue"
    );
    world.shutdown.cancel();
    Ok(())
}

fn create_issue(id: &str) -> Envelope {
    effect(
        id,
        Effect::CreateIssue(CreateIssue {
            title: "Add a quick start".into(),
            body: "The plan".into(),
            labels: vec![],
        }),
    )
}

async fn inject(world: &World, fault: Value) -> anyhow::Result<()> {
    world
        .http
        .post(format!("{}/_control/faults", world.base))
        .json(&fault)
        .send()
        .await?
        .error_for_status()?;
    Ok(())
}

/// GitHub created the issue but the answer was a 502: the client must not re-send the POST on
/// its own, and the retried effect adopts the issue it finds by its marker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_error_after_github_acted_makes_no_duplicate() -> anyhow::Result<()> {
    let world = start().await?;
    inject(
        &world,
        json!({"route": "POST /repos/acme/widgets/issues", "status": 502, "applied": true}),
    )
    .await?;
    world
        .bus
        .publish(
            &subjects::github_work("u1", "t1")?,
            &create_issue("t1:create-issue"),
            Expect::Any,
        )
        .await?;
    let events = github_events(&world.bus, 1).await?;
    assert!(
        matches!(events[0].payload, Some(Payload::IssueCreated(_))),
        "{events:?}"
    );
    let state = world.fake.snapshot();
    assert_eq!(state.repos["acme/widgets"].issues.len(), 1, "exactly one issue");
    let posts = state
        .calls
        .iter()
        .filter(|c| *c == "POST /repos/acme/widgets/issues")
        .count();
    assert_eq!(posts, 1, "the POST was sent once: {:?}", state.calls);
    world.shutdown.cancel();
    Ok(())
}

/// A rate limit is waited out until its reset, then the effect is done; nothing fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_is_waited_out_and_never_fails_the_effect() -> anyhow::Result<()> {
    let world = start().await?;
    inject(
        &world,
        json!({"route": "GET /repos/acme/widgets/issues", "status": 403, "reset_in_secs": 2, "times": 1}),
    )
    .await?;
    let started = tokio::time::Instant::now();
    world
        .bus
        .publish(
            &subjects::github_work("u1", "t1")?,
            &create_issue("t1:create-issue"),
            Expect::Any,
        )
        .await?;
    let events = github_events(&world.bus, 2).await?;
    let Some(Payload::GithubRateLimited(limited)) = &events[0].payload else {
        anyhow::bail!("{events:?}")
    };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis();
    let until = u128::from(limited.retry_at_ms);
    assert!(
        until > now_ms.saturating_sub(5000) && until < now_ms + 5000,
        "told when: {limited:?}"
    );
    assert!(
        matches!(events[1].payload, Some(Payload::IssueCreated(_))),
        "{events:?}"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "it waited for the reset"
    );
    let dead = mainloop_bus::dead_letter::list(&world.bus, "dead.>").await?;
    assert!(dead.is_empty(), "nothing dead-lettered: {dead:?}");
    world.shutdown.cancel();
    Ok(())
}

/// Bad credentials and a missing repository are final: reported at once with what to fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_and_missing_repositories_fail_at_once_with_the_fix() -> anyhow::Result<()> {
    let world = start().await?;
    inject(
        &world,
        json!({"route": "GET /repos/acme/widgets/issues", "status": 401}),
    )
    .await?;
    world
        .bus
        .publish(
            &subjects::github_work("u1", "t1")?,
            &create_issue("t1:create-issue"),
            Expect::Any,
        )
        .await?;
    let events = github_events(&world.bus, 1).await?;
    let Some(Payload::GithubEffectFailed(failed)) = &events[0].payload else {
        anyhow::bail!("{events:?}")
    };
    assert_eq!(failed.http_status, 401);
    assert!(failed.error.contains("GITHUB_TOKEN"), "{}", failed.error);
    assert!(!failed.retryable);

    let mut missing = create_issue("t1:create-issue-2");
    if let Some(Payload::GithubEffectRequested(request)) = &mut missing.payload {
        request.repo = Some(RepoRef {
            owner: "acme".into(),
            name: "nope".into(),
            html_url: String::new(),
        });
    }
    world
        .bus
        .publish(&subjects::github_work("u1", "t1")?, &missing, Expect::Any)
        .await?;
    let events = github_events(&world.bus, 2).await?;
    let Some(Payload::GithubEffectFailed(failed)) = &events[1].payload else {
        anyhow::bail!("{events:?}")
    };
    assert_eq!(failed.http_status, 404);
    assert!(failed.error.contains("does not exist"), "{}", failed.error);
    world.shutdown.cancel();
    Ok(())
}

/// A repository `acme/<name>` with CI `policy`, a pull request from a pushed branch, and a
/// task `task` watching it.
async fn watched_pull(world: &World, task: &str, name: &str, policy: &str) -> anyhow::Result<()> {
    world
        .http
        .post(format!("{}/_control/repos", world.base))
        .json(&json!({"owner": "acme", "name": name, "ci": policy}))
        .send()
        .await?
        .error_for_status()?;
    let bare = world._dir.path().join("github/acme").join(format!("{name}.git"));
    let work = world._dir.path().join(format!("{name}-work"));
    git(
        world._dir.path(),
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
    let pull: Value = world
        .http
        .post(format!("{}/repos/acme/{name}/pulls", world.base))
        .bearer_auth("gh-token")
        .json(&json!({"title": "Change", "head": "change", "base": "main", "draft": true}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let repo = RepoRef {
        owner: "acme".into(),
        name: name.into(),
        html_url: String::new(),
    };
    let subject = subjects::task("u1", task)?;
    let spawned = Payload::TaskSpawned(TaskSpawned {
        task_id: task.into(),
        repo: Some(repo),
        description: "d".into(),
        ..Default::default()
    });
    world
        .bus
        .publish(&subject, &Envelope::new("u1", task, spawned), Expect::Any)
        .await?;
    let linked = Payload::PullRequestLinked(PullRequestLinked {
        pr_number: pull["number"].as_u64().unwrap_or_default(),
        pr_url: String::new(),
        head_branch: "change".into(),
    });
    world
        .bus
        .publish(&subject, &Envelope::new("u1", task, linked), Expect::Any)
        .await?;
    Ok(())
}

/// Waits for the first GITHUB event of `task` that is not CIPending.
async fn ci_outcome(bus: &Bus, task: &str) -> anyhow::Result<Envelope> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let events = bus
            .read_subject(subjects::GITHUB, &subjects::github("u1", task)?, 0)
            .await?;
        if let Some(found) = events
            .into_iter()
            .map(|s| s.event)
            .find(|e| e.r#type != "CIPending")
        {
            return Ok(found);
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "no CI outcome for {task}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// CI through commit statuses only counts; a repository without CI reaches review after the
/// grace (2 s here); CI that stays pending times out (4 s here), naming what was pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_count_no_ci_is_recognised_and_stuck_ci_times_out() -> anyhow::Result<()> {
    let world = start().await?;
    watched_pull(&world, "t2", "jenkins", "statuses_fail_then_pass").await?;
    watched_pull(&world, "t3", "bare", "manual").await?;
    watched_pull(&world, "t4", "stuck", "stuck").await?;

    let statuses = ci_outcome(&world.bus, "t2").await?;
    let Some(Payload::CiFailed(failed)) = &statuses.payload else {
        anyhow::bail!("{statuses:?}")
    };
    assert_eq!(
        failed.failures[0].name, "ci/jenkins",
        "a red commit status is a CI failure"
    );

    let none = ci_outcome(&world.bus, "t3").await?;
    assert!(
        matches!(&none.payload, Some(Payload::CiPassed(passed)) if passed.no_ci),
        "{none:?}"
    );

    let stuck = ci_outcome(&world.bus, "t4").await?;
    let Some(Payload::CiTimedOut(timed_out)) = &stuck.payload else {
        anyhow::bail!("{stuck:?}")
    };
    assert_eq!(timed_out.pending, ["test"]);
    assert!(timed_out.waited_seconds >= 4);
    world.shutdown.cancel();
    Ok(())
}

/// What people write on GitHub may hold a NUL (a comment, a title): whatever the watcher reads
/// through its client comes out with `␀` instead, so no row or event downstream can refuse it.
#[tokio::test]
async fn a_nul_in_a_github_comment_is_shown_not_passed_on() -> anyhow::Result<()> {
    let world = start().await?;
    let github = mainloop_github_watcher::client::GitHub::new(&world.base, "gh-token")
        .map_err(|e| anyhow::anyhow!(e))?;
    let issue = github
        .create_issue("acme", "widgets", "Plan\u{0}", "body", &[])
        .await?;
    let number = issue["number"].as_u64().unwrap_or_default();
    // A person comments through GitHub's REST API with a NUL in the text.
    world
        .http
        .post(format!(
            "{}/repos/acme/widgets/issues/{number}/comments",
            world.base
        ))
        .bearer_auth("gh-token")
        .json(&json!({"body": "looks good\u{0} ship it"}))
        .send()
        .await?
        .error_for_status()?;
    let comments = github.comments("acme", "widgets", number).await?;
    assert_eq!(comments.len(), 1);
    assert_eq!(comments[0]["body"], "looks good␀ ship it");
    assert_eq!(
        github.issues("acme", "widgets").await?[0]["title"],
        "Plan␀",
        "titles too"
    );
    world.shutdown.cancel();
    Ok(())
}

/// A pull request waiting quietly for its reviewers costs conditional calls only: after its CI
/// passed, each poll is one `GET` of the pull request answered 304 (no CI calls for a head
/// whose result is final), and the polls thin out (the base interval here is 100 ms).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_pull_request_is_polled_with_304s_and_ever_more_rarely() -> anyhow::Result<()> {
    let world = start().await?;
    watched_pull(&world, "t5", "quiet", "manual").await?;
    world
        .http
        .post(format!("{}/_control/repos/acme/quiet/pulls/1/checks", world.base))
        .json(&json!({"conclusion": "success"}))
        .send()
        .await?
        .error_for_status()?;
    let passed = ci_outcome(&world.bus, "t5").await?;
    assert_eq!(passed.r#type, "CIPassed");
    let before = world.fake.snapshot();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while world.fake.snapshot().not_modified.len() < before.not_modified.len() + 3 {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "no 304s: {:?}",
            world.fake.snapshot().calls
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let started = tokio::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = world.fake.snapshot();
    let calls = &after.calls[before.calls.len()..];
    assert!(
        calls
            .iter()
            .all(|c| c.starts_with("GET /repos/acme/quiet/pulls/1")),
        "only the pull request is asked for: {calls:?}"
    );
    let quiet_polls = calls.len();
    assert!(
        quiet_polls <= 12,
        "the pace slowed: {quiet_polls} polls in {:?} (a fixed 100 ms would be 20 or more)",
        started.elapsed()
    );
    let answered_304 = after.not_modified.len() - before.not_modified.len();
    assert!(
        answered_304 + 1 >= quiet_polls,
        "unchanged answers are 304s: {answered_304} of {quiet_polls}"
    );
    let events = world
        .bus
        .read_subject(subjects::GITHUB, &subjects::github("u1", "t5")?, 0)
        .await?;
    assert_eq!(
        events.last().map(|e| e.event.r#type.as_str()),
        Some("CIPassed"),
        "nothing new was reported"
    );
    world.shutdown.cancel();
    Ok(())
}

/// A webhook delivery about a watched pull request makes the watcher look at once (here polling
/// alone would take ten minutes): the merge is reported. The same delivery again (a redelivery
/// with the same id, past JetStream's duplicate window) is acted on once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_delivery_is_acted_on_at_once_and_only_once() -> anyhow::Result<()> {
    let world = start_polling_every(600_000, 600_000).await?;
    watched_pull(&world, "t6", "hooked", "manual").await?;
    // The first look at a new watch happens at once; after it, ten minutes of quiet.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !world
        .fake
        .snapshot()
        .calls
        .iter()
        .any(|c| c.starts_with("GET /repos/acme/hooked/pulls/1"))
    {
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "never polled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    world
        .http
        .post(format!("{}/_control/repos/acme/hooked/pulls/1/merge", world.base))
        .send()
        .await?
        .error_for_status()?;
    let payload = json!({"action": "closed", "number": 1, "repository": {"full_name": "acme/hooked"},
        "pull_request": {"number": 1, "merged": true}});
    let delivery = |envelope_id: &str| {
        let mut envelope = Envelope::new(
            "github",
            "d-1",
            Payload::GithubWebhookReceived(mainloop_events::v1::GitHubWebhookReceived {
                delivery_id: "d-1".into(),
                event: "pull_request".into(),
                payload_json: payload.to_string(),
            }),
        );
        envelope.id = envelope_id.to_string();
        envelope
    };
    world
        .bus
        .publish(subjects::GITHUB_WEBHOOKS, &delivery("first"), Expect::Any)
        .await?;
    let merged = ci_outcome(&world.bus, "t6").await?;
    assert_eq!(merged.r#type, "PullRequestMerged", "{merged:?}");
    let polls = |state: &mainloop_fakes::github::Snapshot| {
        state
            .calls
            .iter()
            .filter(|c| c.starts_with("GET /repos/acme/hooked/pulls/1"))
            .count()
    };
    let before = polls(&world.fake.snapshot());
    // The same delivery id under another message id: JetStream stores it, the watcher skips it.
    world
        .bus
        .publish(subjects::GITHUB_WEBHOOKS, &delivery("second"), Expect::Any)
        .await?;
    let mut stream = world.bus.jetstream().get_stream(subjects::WORK).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while stream.info().await?.state.messages > 0 {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the repeat was never taken"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        polls(&world.fake.snapshot()),
        before,
        "a repeated delivery makes no second look"
    );
    world.shutdown.cancel();
    Ok(())
}

/// Every comment on a task's issue is read once, with its author's permission; the comments
/// mainloop wrote itself (its hidden marker) are never read as input; 150 comments (two pages)
/// are all seen; once nothing changes, the issue is asked for with a 304 and the comments not
/// at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn comments_are_read_once_with_their_authors_permission() -> anyhow::Result<()> {
    let world = start().await?;
    let github = mainloop_github_watcher::client::GitHub::new(&world.base, "gh-token")
        .map_err(|e| anyhow::anyhow!(e))?;
    let number = world.watched_issue(("maria", "write")).await?;
    let comment = |author: &str, body: &str| world.comment_as(number, author, body);
    comment("maria", "approve").await?.error_for_status()?;
    comment("stranger", "lgtm").await?.error_for_status()?;
    github
        .comment(
            "acme",
            "widgets",
            number,
            "How to approve\n\n<!-- mainloop:effect=t7:howto -->",
        )
        .await?;

    let first = comments_received(&world, 2).await?;
    let seen: Vec<(&str, i32, &str)> = first
        .iter()
        .map(|c| (c.author.as_str(), c.permission, c.body.as_str()))
        .collect();
    use mainloop_events::v1::AuthorPermission;
    assert_eq!(
        seen,
        [
            ("maria", AuthorPermission::Write as i32, "approve"),
            ("stranger", AuthorPermission::None as i32, "lgtm"),
        ],
        "ours is never read"
    );

    for i in 0..150 {
        comment("maria", &format!("note {i}")).await?.error_for_status()?;
    }
    let all = comments_received(&world, 152).await?;
    let mut ids: Vec<u64> = all.iter().map(|c| c.comment_id).collect();
    ids.dedup();
    assert_eq!(ids.len(), 152, "each comment once, none missed");
    assert_eq!(all.last().map(|c| c.body.as_str()), Some("note 149"));

    // Quiet: the issue answers 304, the comments are not asked for.
    let before = world.fake.snapshot();
    let issue_route = format!("GET /repos/acme/widgets/issues/{number}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while world
        .fake
        .snapshot()
        .not_modified
        .iter()
        .filter(|c| c.starts_with(&issue_route) && !c.contains("/comments"))
        .count()
        < before
            .not_modified
            .iter()
            .filter(|c| c.starts_with(&issue_route) && !c.contains("/comments"))
            .count()
            + 2
    {
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "no 304 for the issue");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = world.fake.snapshot();
    assert!(
        !after.calls[before.calls.len()..]
            .iter()
            .any(|c| c.contains("/comments")),
        "comments are not asked for while the issue is unchanged"
    );
    world.shutdown.cancel();
    Ok(())
}

/// With an allow-list, exactly the people on it steer, whatever their role on the repository,
/// and nobody's permission is looked up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allow_list_decides_who_steers_without_asking_github() -> anyhow::Result<()> {
    let world = start_with(100, 400, "Bob, @carol").await?;
    let number = world.watched_issue(("maria", "admin")).await?;
    for author in ["maria", "bob", "carol"] {
        world
            .comment_as(number, author, "lgtm")
            .await?
            .error_for_status()?;
    }
    let read = comments_received(&world, 3).await?;
    use mainloop_events::v1::AuthorPermission;
    let who: Vec<(&str, i32)> = read.iter().map(|c| (c.author.as_str(), c.permission)).collect();
    assert_eq!(
        who,
        [
            ("maria", AuthorPermission::None as i32),
            ("bob", AuthorPermission::Write as i32),
            ("carol", AuthorPermission::Write as i32),
        ],
        "an admin not on the list does not steer"
    );
    assert!(
        !world
            .fake
            .snapshot()
            .calls
            .iter()
            .any(|c| c.contains("/collaborators/")),
        "nobody was looked up"
    );
    world.shutdown.cancel();
    Ok(())
}

impl World {
    /// An issue for task t7 of u1 on acme/widgets, linked so its comments are read, with one
    /// collaborator (login, permission); returns its number.
    async fn watched_issue(&self, collaborator: (&str, &str)) -> anyhow::Result<u64> {
        let github = mainloop_github_watcher::client::GitHub::new(&self.base, "gh-token")
            .map_err(|e| anyhow::anyhow!(e))?;
        let issue = github
            .create_issue("acme", "widgets", "Plan: a quick start", "the plan", &[])
            .await?;
        let number = issue["number"].as_u64().unwrap_or_default();
        self.http
            .post(format!("{}/_control/repos/acme/widgets/collaborators", self.base))
            .json(&json!({"login": collaborator.0, "permission": collaborator.1}))
            .send()
            .await?
            .error_for_status()?;
        let subject = subjects::task("u1", "t7")?;
        for payload in [
            Payload::TaskSpawned(TaskSpawned {
                task_id: "t7".into(),
                repo: Some(repo()),
                description: "d".into(),
                ..Default::default()
            }),
            Payload::IssueLinked(mainloop_events::v1::IssueLinked {
                issue_number: number,
                issue_url: String::new(),
            }),
        ] {
            self.bus
                .publish(&subject, &Envelope::new("u1", "t7", payload), Expect::Any)
                .await?;
        }
        Ok(number)
    }

    /// A comment by `author` (a person, through the fake's control API) on issue `number`.
    fn comment_as(
        &self,
        number: u64,
        author: &str,
        body: &str,
    ) -> impl Future<Output = reqwest::Result<reqwest::Response>> + use<> {
        self.http
            .post(format!(
                "{}/_control/repos/acme/widgets/issues/{number}/comments",
                self.base
            ))
            .json(&json!({"author": author, "body": body}))
            .send()
    }
}

/// Waits until task t7 has at least `count` comments reported; returns them in order.
async fn comments_received(
    world: &World,
    count: usize,
) -> anyhow::Result<Vec<mainloop_events::v1::IssueCommentReceived>> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let comments: Vec<mainloop_events::v1::IssueCommentReceived> = world
            .bus
            .read_subject(subjects::GITHUB, &subjects::github("u1", "t7")?, 0)
            .await?
            .into_iter()
            .filter_map(|s| match s.event.payload {
                Some(Payload::IssueCommentReceived(c)) => Some(c),
                _ => None,
            })
            .collect();
        if comments.len() >= count {
            return Ok(comments);
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "{} of {count} comments read",
            comments.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A review with two inline comments is read as one `ReviewFeedbackReceived`: its state, the
/// reviewer and every commenter with their permission, each comment with path, line and diff
/// hunk; read once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_review_with_inline_comments_is_read_once_whole() -> anyhow::Result<()> {
    let world = start().await?;
    watched_pull(&world, "t8", "reviewed", "manual").await?;
    world
        .http
        .post(format!(
            "{}/_control/repos/acme/reviewed/collaborators",
            world.base
        ))
        .json(&json!({"login": "maria", "permission": "write"}))
        .send()
        .await?
        .error_for_status()?;
    // The watch is looked at first, then the review comes.
    ci_outcome_or_pending(&world.bus, "t8").await?;
    world
        .http
        .post(format!(
            "{}/_control/repos/acme/reviewed/pulls/1/reviews",
            world.base
        ))
        .json(
            &json!({"author": "maria", "state": "CHANGES_REQUESTED", "body": "Two things.",
            "comments": [{"path": "CHANGE.md", "line": 1, "body": "Say why."},
                         {"path": "README.md", "line": 3, "body": "Link it here."}]}),
        )
        .send()
        .await?
        .error_for_status()?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let feedback = loop {
        let found: Vec<mainloop_events::v1::ReviewFeedbackReceived> = world
            .bus
            .read_subject(subjects::GITHUB, &subjects::github("u1", "t8")?, 0)
            .await?
            .into_iter()
            .filter_map(|s| match s.event.payload {
                Some(Payload::ReviewFeedbackReceived(f)) => Some(f),
                _ => None,
            })
            .collect();
        if !found.is_empty() {
            break found;
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "the review was not read");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    use mainloop_events::v1::AuthorPermission;
    assert_eq!(feedback.len(), 1, "{feedback:?}");
    let review = &feedback[0];
    assert_eq!(
        (
            review.review_state.as_str(),
            review.reviewer.as_str(),
            review.reviewer_permission,
            review.review_body.as_str()
        ),
        (
            "CHANGES_REQUESTED",
            "maria",
            AuthorPermission::Write as i32,
            "Two things."
        )
    );
    let comments: Vec<(&str, u32, &str, bool, i32)> = review
        .comments
        .iter()
        .map(|c| {
            (
                c.path.as_str(),
                c.line,
                c.body.as_str(),
                c.diff_hunk.starts_with("@@"),
                c.permission,
            )
        })
        .collect();
    assert_eq!(
        comments,
        [
            ("CHANGE.md", 1, "Say why.", true, AuthorPermission::Write as i32),
            (
                "README.md",
                3,
                "Link it here.",
                true,
                AuthorPermission::Write as i32
            ),
        ]
    );
    world.shutdown.cancel();
    Ok(())
}

/// Waits for the first GITHUB event of `task` (the watch was looked at).
async fn ci_outcome_or_pending(bus: &Bus, task: &str) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while bus
        .read_subject(subjects::GITHUB, &subjects::github("u1", task)?, 0)
        .await?
        .is_empty()
    {
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "{task} never looked at");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// The watches were once applied by a stream-wide durable consumer (`github-watch`); the
/// projection in order per task starts where that consumer's acknowledged floor is, applies
/// what came after once, never what came before, and removes the consumer.
#[tokio::test]
async fn the_watches_take_over_where_the_stream_wide_consumer_stopped() -> anyhow::Result<()> {
    use async_nats::jetstream::consumer::{AckPolicy, pull};
    use futures_util::StreamExt;
    use sqlx::Connection;
    let infra = Infra::start()?;
    let bus = infra.bus().await?;
    let spawned = |task: &str| {
        Envelope::new(
            "u1",
            task,
            Payload::TaskSpawned(TaskSpawned {
                task_id: task.into(),
                repo: Some(repo()),
                ..Default::default()
            }),
        )
    };
    for task in ["t0", "t1"] {
        bus.publish(&subjects::task("u1", task)?, &spawned(task), Expect::Any)
            .await?;
    }
    // The old consumer applied t0's spawn (sequence 1) and acknowledged it; t1's came after.
    let stream = bus.jetstream().get_stream(subjects::TASKS).await?;
    let old = stream
        .create_consumer(pull::Config {
            durable_name: Some("github-watch".into()),
            filter_subject: "task.>".into(),
            ack_policy: AckPolicy::Explicit,
            ..Default::default()
        })
        .await?;
    let mut first = old.fetch().max_messages(1).messages().await?;
    if let Some(message) = first.next().await {
        message
            .map_err(|e| anyhow::anyhow!(e))?
            .double_ack()
            .await
            .map_err(|e| anyhow::anyhow!(e))?;
    }

    let shutdown = CancellationToken::new();
    let github = mainloop_github_watcher::GitHubSettings {
        github_api_url: "http://127.0.0.1:9".into(),
        github_token: None,
        github_poll_interval_ms: 100,
        github_poll_max_interval_ms: 400,
        github_poll_with_webhooks_ms: 400,
        ci_grace_secs: 2,
        ci_timeout_secs: 4,
        github_steerers: String::new(),
    };
    let config = mainloop_github_watcher::Config {
        common: infra.common(),
        github,
    };
    tokio::spawn(mainloop_github_watcher::run(config, shutdown.clone()));
    infra.ready(1).await?;
    let mut db = sqlx::PgConnection::connect(&infra.pg.url()).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let repos = loop {
        let repos: Vec<String> =
            sqlx::query_scalar("SELECT task_id FROM github_watcher.task_repos ORDER BY task_id")
                .fetch_all(&mut db)
                .await?;
        if !repos.is_empty() {
            break repos;
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "t1 was never applied");
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_eq!(
        repos,
        ["t1"],
        "what the old consumer had acknowledged is not applied again"
    );
    let names: Vec<String> = stream
        .consumer_names()
        .filter_map(|n| async { n.ok() })
        .collect()
        .await;
    assert!(!names.contains(&"github-watch".to_string()), "{names:?}");
    shutdown.cancel();
    Ok(())
}
