//! The real-world edges of the journey, through `mainloop up` with the fake GitHub: CI through
//! commit statuses only, no CI at all, CI that never finishes; and GitHub in trouble (down for
//! two minutes, a rate limit with its reset a minute away, a refused token): waited out without a
//! failed attempt or a dead letter, or failed at once with what to fix.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::{Mainloop, until, until_within};
use mainloop_bus::Bus;
use mainloop_events::{Payload, subjects};
use mainloop_fakes::github::FakeGitHub;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "ghp_trouble_token_0123456789";

struct World {
    _dir: tempfile::TempDir,
    github: FakeGitHub,
    github_url: String,
    up: Mainloop,
    base: String,
    http: reqwest::Client,
}

async fn start(repos: &[(&str, &str)], env: &[(&str, &str)]) -> anyhow::Result<World> {
    mainloop_runtime::tls::install();
    let dir = tempfile::Builder::new().prefix("mainloop-trouble-").tempdir()?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
    let github = FakeGitHub::new(dir.path().join("github"), TOKEN);
    let github_url = github
        .clone()
        .serve(tokio::net::TcpListener::bind("127.0.0.1:0").await?)
        .await?;
    let http = reqwest::Client::new();
    for (name, ci) in repos {
        http.post(format!("{github_url}/_control/repos"))
            .json(&json!({"owner": "acme", "name": name, "ci": ci}))
            .send()
            .await?
            .error_for_status()?;
    }
    let llm_url = mainloop_fakes::anthropic::FakeAnthropic::new("sk-ant-trouble")
        .serve(tokio::net::TcpListener::bind("127.0.0.1:0").await?)
        .await?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let up = Mainloop::start_with(
        &dir.path().join(".mainloop"),
        port,
        &github_url,
        TOKEN,
        &llm_url,
        "sk-ant-trouble",
        env,
    )?;
    Ok(World {
        _dir: dir,
        github,
        github_url,
        up,
        base: format!("http://127.0.0.1:{port}"),
        http,
    })
}

impl World {
    /// Asks for a change on `acme/<repo>` in a new conversation, confirms, and returns the task id.
    async fn spawn(&self, repo: &str) -> anyhow::Result<String> {
        let chat = |body: Value| {
            self.http
                .post(format!("{}/chat", self.base))
                .header("x-user-id", "alice")
                .json(&body)
                .send()
        };
        let asked: Value = chat(json!({"message": format!("add a quick start section to the README of https://github.com/acme/{repo}")}))
            .await?
            .json()
            .await?;
        let confirmed: Value = chat(json!({"message": "yes", "conversation_id": asked["conversation_id"]}))
            .await?
            .json()
            .await?;
        let said = confirmed["message"]["content"].as_str().unwrap_or_default();
        if !said.contains(&format!("spawned on acme/{repo}")) {
            let log = std::fs::read_to_string(Mainloop::log_path(&self._dir.path().join(".mainloop")))
                .unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            anyhow::bail!("{confirmed}\nlast log lines (newest first):\n{}", tail.join("\n"));
        }
        // "… Task <id> spawned on acme/<repo>. …"
        let task_id = said
            .split_whitespace()
            .skip_while(|w| *w != "Task")
            .nth(1)
            .ok_or_else(|| anyhow::anyhow!("no task id in {said}"))?
            .to_string();
        Ok(task_id)
    }

    async fn approve(&self, task_id: &str) -> anyhow::Result<()> {
        until(
            &self.http,
            &format!("{}/tasks/{task_id}", self.base),
            "a plan to review",
            |t| t["status"] == "waiting_plan_review",
        )
        .await?;
        let answer = self
            .http
            .post(format!(
                "{}/tasks/{task_id}/approve-plan?action=approve&plan_revision=1",
                self.base
            ))
            .header("x-user-id", "alice")
            .send()
            .await?;
        anyhow::ensure!(answer.status().is_success(), "{:?}", answer.text().await);
        Ok(())
    }

    async fn inject(&self, fault: Value) -> anyhow::Result<()> {
        self.http
            .post(format!("{}/_control/faults", self.github_url))
            .json(&fault)
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }

    async fn queue_item(&self, task_id: &str, item_type: &str) -> anyhow::Result<Value> {
        let queue = until(&self.http, &format!("{}/queue", self.base), item_type, |q| {
            q.as_array().is_some_and(|a| {
                a.iter()
                    .any(|i| i["task_id"] == task_id && i["item_type"] == item_type)
            })
        })
        .await?;
        queue
            .as_array()
            .into_iter()
            .flatten()
            .find(|i| i["task_id"] == task_id && i["item_type"] == item_type)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("no {item_type} item"))
    }

    async fn bus(&self) -> anyhow::Result<Bus> {
        let nats = self
            .up
            .nats_url()
            .ok_or_else(|| anyhow::anyhow!("no NATS URL printed"))?;
        Ok(Bus::connect(
            &nats,
            "trouble",
            Duration::from_secs(10),
            &CancellationToken::new(),
        )
        .await?)
    }
}

/// CI through commit statuses only reaches review (after fixing the red status); a repository
/// with no CI reaches review after the grace with a note; CI that never finishes ends in a
/// CI-timeout item with Retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_only_no_ci_and_stuck_ci_each_end_clearly() -> anyhow::Result<()> {
    let world = start(
        &[
            ("jenkins", "statuses_fail_then_pass"),
            ("bare", "manual"),
            ("stuck", "stuck"),
        ],
        &[("CI_GRACE_SECS", "2"), ("CI_TIMEOUT_SECS", "6")],
    )
    .await?;
    let jenkins = world.spawn("jenkins").await?;
    let bare = world.spawn("bare").await?;
    let stuck = world.spawn("stuck").await?;
    for task in [&jenkins, &bare, &stuck] {
        world.approve(task).await?;
    }

    let ready = world.queue_item(&jenkins, "code_ready").await?;
    assert!(
        ready["content"]
            .as_str()
            .is_some_and(|c| c.starts_with("CI is green")),
        "{ready}"
    );
    let fixes = world.github.snapshot().repos["acme/jenkins"].statuses.len();
    assert_eq!(fixes, 2, "a red status on the first head, green on the fix");

    let no_ci = world.queue_item(&bare, "code_ready").await?;
    assert!(
        no_ci["content"]
            .as_str()
            .is_some_and(|c| c.contains("No CI ran on this repository")),
        "{no_ci}"
    );

    let timed_out = world.queue_item(&stuck, "error").await?;
    assert!(
        timed_out["content"]
            .as_str()
            .is_some_and(|c| c.starts_with("CI did not finish within") && c.contains("test")),
        "{timed_out}"
    );
    assert_eq!(
        timed_out["options"],
        json!(["Retry", "Dismiss"]),
        "a failed task offers only what works on it"
    );
    // Dismissed: the item is resolved, the task stays failed (and can still be retried).
    let dismissed = world
        .http
        .post(format!(
            "{}/queue/{}/respond",
            world.base,
            timed_out["id"].as_str().unwrap_or_default()
        ))
        .header("x-user-id", "alice")
        .json(&json!({"response": "Dismiss"}))
        .send()
        .await?;
    assert_eq!(dismissed.status(), reqwest::StatusCode::OK);
    let task: Value = world
        .http
        .get(format!("{}/tasks/{stuck}", world.base))
        .header("x-user-id", "alice")
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(task["status"], "failed");
    until(
        &world.http,
        &format!("{}/queue", world.base),
        "the item resolved",
        |q| {
            q.as_array()
                .is_some_and(|items| items.iter().all(|i| i["id"] != timed_out["id"]))
        },
    )
    .await?;
    Ok(())
}

/// GitHub is down entirely for two minutes as the task starts, and opening the pull request then
/// hits a rate limit whose reset is a minute away: the task waits both out (its card says so) and
/// finishes, with one issue, one PR, no failed attempt and nothing dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_and_a_rate_limit_are_waited_out() -> anyhow::Result<()> {
    let world = start(&[("widgets", "manual")], &[("CI_GRACE_SECS", "2")]).await?;
    world
        .inject(json!({"route": "POST /repos/acme/widgets/pulls", "status": 403, "reset_in_secs": 60, "times": 1}))
        .await?;
    let task = world.spawn("widgets").await?;
    // GitHub goes down entirely (REST and git) for two minutes, as the task starts.
    world
        .inject(json!({"route": "", "status": 503, "for_ms": 120_000}))
        .await?;
    let url = format!("{}/tasks/{task}", world.base);
    until_within(
        &world.http,
        &url,
        "a plan to review",
        Duration::from_secs(240),
        |t| t["status"] == "waiting_plan_review",
    )
    .await?;
    world.approve(&task).await?;
    until_within(
        &world.http,
        &url,
        "the rate-limit wait on the card",
        Duration::from_secs(120),
        |t| {
            t["waiting_for"]
                .as_str()
                .is_some_and(|w| w.starts_with("GitHub rate limit, retrying at"))
        },
    )
    .await?;
    until_within(
        &world.http,
        &url,
        "review after the outage and the rate limit",
        Duration::from_secs(240),
        |t| t["status"] == "under_review" && !t["issue_url"].is_null(),
    )
    .await?;

    let state = world.github.snapshot();
    let widgets = &state.repos["acme/widgets"];
    assert_eq!(
        (widgets.issues.len(), widgets.pulls.len()),
        (1, 1),
        "one issue, one PR"
    );
    let number = widgets.pulls.keys().next().copied().unwrap_or_default();
    world
        .http
        .post(format!(
            "{}/_control/repos/acme/widgets/pulls/{number}/merge",
            world.github_url
        ))
        .send()
        .await?
        .error_for_status()?;
    until(&world.http, &url, "the task done after the merge", |t| {
        t["status"] == "completed"
    })
    .await?;
    let bus = world.bus().await?;
    let events = bus
        .read_subject(subjects::TASKS, &subjects::task("alice", &task)?, 0)
        .await?;
    assert!(
        !events.iter().any(|e| matches!(
            e.event.payload,
            Some(Payload::TaskFailed(_) | Payload::JobRetryScheduled(_))
        )),
        "no failed attempt: {:?}",
        events.iter().map(|e| &e.event.r#type).collect::<Vec<_>>()
    );
    let dead = mainloop_bus::dead_letter::list(&bus, "dead.>").await?;
    assert!(dead.is_empty(), "nothing dead-lettered: {dead:?}");
    Ok(())
}

/// GitHub refusing our token (401) while the plan's issue is due fails the task at once, with
/// what to fix; a retry after the fix goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_fails_the_task_at_once_naming_the_fix() -> anyhow::Result<()> {
    let world = start(&[("widgets", "manual")], &[]).await?;
    world
        .inject(json!({"route": "GET /repos/acme/widgets/issues", "status": 401, "times": 1}))
        .await?;
    let task = world.spawn("widgets").await?;
    let failed = world.queue_item(&task, "error").await?;
    let said = failed["content"].as_str().unwrap_or_default();
    assert!(
        said.starts_with("could not create the issue: GitHub answered 401")
            && said.contains("set a valid GITHUB_TOKEN"),
        "{said}"
    );
    let bus = world.bus().await?;
    let events = bus
        .read_subject(subjects::TASKS, &subjects::task("alice", &task)?, 0)
        .await?;
    assert!(
        !events
            .iter()
            .any(|e| matches!(e.event.payload, Some(Payload::JobRetryScheduled(_)))),
        "nothing retried"
    );
    let retried = world
        .http
        .post(format!("{}/tasks/{task}/retry", world.base))
        .header("x-user-id", "alice")
        .send()
        .await?;
    assert!(retried.status().is_success(), "{:?}", retried.text().await);
    until(
        &world.http,
        &format!("{}/tasks/{task}", world.base),
        "the plan again, with its issue",
        |t| t["status"] == "waiting_plan_review" && !t["issue_url"].is_null(),
    )
    .await?;
    Ok(())
}
