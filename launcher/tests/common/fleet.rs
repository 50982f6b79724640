//! The production shape on one machine: every service as its own `mainloop run <service>`
//! process, any number of replicas of each, on one NATS and one Postgres, against the fakes; and
//! journeys through them, and the invariants a journey leaves behind.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context as _;

use mainloop_testkit::Infra;
use serde_json::{Value, json};

use super::{FULL_HISTORY, Outside, until_within};

pub const SERVICES: [&str; 6] = [
    "gateway",
    "conversation",
    "scheduler",
    "worker-supervisor",
    "github-watcher",
    "inbox",
];

/// One `mainloop run` process and how to start it again.
pub struct Instance {
    pub service: &'static str,
    pub replica: usize,
    env: Vec<(String, String)>,
    pub health: u16,
    /// The gateway's API port.
    pub http: Option<u16>,
    child: Option<Child>,
    log: PathBuf,
}

pub struct Fleet {
    pub instances: Vec<Instance>,
    exe: String,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Fleet {
    /// `replicas` of every service on `infra`, against `outside`'s fakes.
    pub fn start(outside: &Outside, infra: &Infra, replicas: usize) -> anyhow::Result<Self> {
        let common = infra.common();
        let exe = env!("CARGO_BIN_EXE_mainloop").to_string();
        let shared = vec![
            ("NATS_URL".to_string(), common.nats_url.clone()),
            ("DATABASE_URL".into(), common.database_url.expose().to_string()),
            ("RUST_LOG".into(), "info,async_nats=warn".into()),
            ("GITHUB_TOKEN".into(), "gh".into()),
            ("ANTHROPIC_BASE_URL".into(), outside.llm_url.clone()),
            ("ANTHROPIC_API_KEY".into(), "sk".into()),
            ("JOB_RETRY_BASE_MS".into(), "200".into()),
        ];
        let logs = outside.dir.path().join("logs");
        std::fs::create_dir_all(&logs)?;
        let mut instances = Vec::new();
        for replica in 0..replicas {
            for service in SERVICES {
                let http = (service == "gateway").then(free_port).transpose()?;
                let mut env = shared.clone();
                env.extend(own_settings(service, replica, outside, &exe, http));
                let health = free_port()?;
                env.push(("HEALTH_ADDR".into(), format!("127.0.0.1:{health}")));
                instances.push(Instance {
                    service,
                    replica,
                    env,
                    health,
                    http,
                    child: None,
                    log: logs.join(format!("{service}-{replica}.log")),
                });
            }
        }
        let mut fleet = Fleet { instances, exe };
        for at in 0..fleet.instances.len() {
            fleet.launch(at)?;
        }
        Ok(fleet)
    }

    /// Starts instance `at` (again), its log appended to.
    pub fn launch(&mut self, at: usize) -> anyhow::Result<()> {
        let instance = &mut self.instances[at];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&instance.log)?;
        let mut command = Command::new(&self.exe);
        command
            .args(["run", instance.service])
            .envs(instance.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env_remove("CLAUDE_CODE_OAUTH_TOKEN")
            .stdout(Stdio::null())
            .stderr(log);
        // Dies with the thread that starts it (the test's, or a runtime worker: both live as
        // long as the test), so a test killed outright leaves no service behind.
        mainloop_local_servers::set_parent_death_signal(&mut command, mainloop_local_servers::SIGKILL);
        let child = command.spawn()?;
        instance.child = Some(child);
        Ok(())
    }

    /// Starts again every instance that is not running, as Kubernetes would: those killed and
    /// those that exited by themselves. The names of the latter, with the end of their logs.
    pub fn revive(&mut self) -> anyhow::Result<Vec<String>> {
        let mut exited = Vec::new();
        for at in 0..self.instances.len() {
            let instance = &mut self.instances[at];
            let gone = match instance.child.as_mut() {
                None => true,
                Some(child) => match child.try_wait()? {
                    Some(status) => {
                        let log = std::fs::read_to_string(&instance.log).unwrap_or_default();
                        let tail: Vec<&str> = log.lines().rev().take(3).collect();
                        exited.push(format!(
                            "{}-{} ({status}): {tail:?}",
                            instance.service, instance.replica
                        ));
                        true
                    }
                    None => false,
                },
            };
            if gone {
                self.launch(at)?;
            }
        }
        Ok(exited)
    }

    /// SIGKILLs instance `at`: no draining, no clean shutdown.
    pub fn kill(&mut self, at: usize) -> anyhow::Result<()> {
        if let Some(mut child) = self.instances[at].child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Waits until every running instance says it is ready.
    pub async fn ready(&self, http: &reqwest::Client) -> anyhow::Result<()> {
        for instance in self.instances.iter().filter(|i| i.child.is_some()) {
            until_within(
                http,
                &format!("http://127.0.0.1:{}/readyz", instance.health),
                &format!("{} {} ready", instance.service, instance.replica),
                Duration::from_secs(120),
                |r| r["status"] == "healthy",
            )
            .await?;
        }
        Ok(())
    }

    /// The gateways' base URLs.
    pub fn gateways(&self) -> Vec<String> {
        self.instances
            .iter()
            .filter_map(|i| i.http.map(|port| format!("http://127.0.0.1:{port}")))
            .collect()
    }

    /// The last `lines` of every instance's log, for a failure's report.
    pub fn tails(&self, lines: usize) -> String {
        let mut report = String::new();
        for instance in &self.instances {
            let log = std::fs::read_to_string(&instance.log).unwrap_or_default();
            let all: Vec<&str> = log.lines().collect();
            let tail = all[all.len().saturating_sub(lines)..].join("\n");
            report.push_str(&format!(
                "--- {}-{}\n{tail}\n",
                instance.service, instance.replica
            ));
        }
        report
    }

    /// The log of every instance, for a failure's report.
    pub fn logs(&self) -> Vec<PathBuf> {
        self.instances.iter().map(|i| i.log.clone()).collect()
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for at in 0..self.instances.len() {
            let _ = self.kill(at);
        }
    }
}

fn own_settings(
    service: &str,
    replica: usize,
    outside: &Outside,
    exe: &str,
    http: Option<u16>,
) -> Vec<(String, String)> {
    let pairs: Vec<(&str, String)> = match service {
        "gateway" => vec![
            ("HTTP_ADDR", format!("127.0.0.1:{}", http.unwrap_or_default())),
            ("AUTH_MODE", "test".into()),
        ],
        "worker-supervisor" => vec![
            ("AGENT_PROGRAM", exe.to_string()),
            ("AGENT_ARGS_PREFIX", "fake-claude".into()),
            ("AGENT_MODEL", "sonnet".into()),
            ("AGENT_USER", String::new()),
            ("WORKER_ID", format!("supervisor-{replica}")),
            ("JOB_LEASE_SECS", "3".into()),
            (
                "WORK_DIR",
                outside
                    .dir
                    .path()
                    .join(format!("work-{replica}"))
                    .display()
                    .to_string(),
            ),
        ],
        "github-watcher" => vec![
            ("GITHUB_API_URL", outside.github_url.clone()),
            ("GITHUB_POLL_INTERVAL_MS", "150".into()),
            ("GITHUB_POLL_MAX_INTERVAL_MS", "600".into()),
        ],
        _ => vec![],
    };
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// One task from chat to merged, through the gateway at `base` (each step may go to any
/// gateway; they share everything): asked and confirmed, its plan approved, its pull request
/// merged once CI is green. The task's id.
pub async fn journey(
    http: &reqwest::Client,
    bases: &[String],
    github_url: &str,
    n: usize,
    limit: Duration,
) -> anyhow::Result<String> {
    let base = |step: usize| bases[(n + step) % bases.len()].clone();
    let request =
        format!("add a quick start section number {n} to the README of https://github.com/acme/widgets");
    let asked = post(
        http,
        &format!("{}/chat", base(0)),
        json!({"message": request}),
        limit,
    )
    .await?;
    let conversation = asked["conversation_id"].as_str().unwrap_or_default().to_string();
    let task_id = confirmed_to_merged(http, &base, github_url, &conversation, limit)
        .await
        .with_context(|| format!("conversation {conversation}"))?;
    Ok(task_id)
}

/// From the confirmation in `conversation` to its task merged and completed; the task's id.
async fn confirmed_to_merged(
    http: &reqwest::Client,
    base: &impl Fn(usize) -> String,
    github_url: &str,
    conversation: &str,
    limit: Duration,
) -> anyhow::Result<String> {
    // A "yes" said again (its answer lost to a crash) spawns the same task: one task.
    post(
        http,
        &format!("{}/chat", base(0)),
        json!({"message": "yes", "conversation_id": conversation}),
        limit,
    )
    .await?;
    let tasks = until_within(http, &format!("{}/tasks", base(1)), "the task", limit, |t| {
        t.as_array()
            .is_some_and(|a| a.iter().any(|t| t["conversation_id"] == conversation))
    })
    .await?;
    let task_id = tasks
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["conversation_id"] == conversation)
        .and_then(|t| t["id"].as_str())
        .unwrap_or_default()
        .to_string();
    merged(http, base, github_url, &task_id, limit)
        .await
        .with_context(|| format!("task {task_id}"))?;
    Ok(task_id)
}

/// From the task's plan review to its pull request merged and the task completed.
async fn merged(
    http: &reqwest::Client,
    base: &impl Fn(usize) -> String,
    github_url: &str,
    task_id: &str,
    limit: Duration,
) -> anyhow::Result<()> {
    let review = item(http, &base(2), task_id, "plan_review", limit).await?;
    post(
        http,
        &format!("{}/queue/{review}/respond", base(3)),
        json!({"response": "Approve"}),
        limit,
    )
    .await?;
    item(http, &base(4), task_id, "code_ready", limit).await?;
    let task = until_within(
        http,
        &format!("{}/tasks/{task_id}", base(5)),
        "its PR",
        limit,
        |t| t["pr_number"].is_number(),
    )
    .await?;
    let pr = task["pr_number"].as_u64().unwrap_or_default();
    http.post(format!(
        "{github_url}/_control/repos/acme/widgets/pulls/{pr}/merge"
    ))
    .send()
    .await?
    .error_for_status()?;
    until_within(
        http,
        &format!("{}/tasks/{task_id}", base(6)),
        "completed",
        limit,
        |t| t["status"] == "completed",
    )
    .await?;
    Ok(())
}

/// POSTs `body` as alice until it is answered, as a person tries again while a service is
/// down (a connection refused, a 5xx) or asks them to slow down (a 429); a 409 says it was done before (an approval whose answer
/// was lost). The answer.
async fn post(http: &reqwest::Client, url: &str, body: Value, limit: Duration) -> anyhow::Result<Value> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let sent = http
            .post(url)
            .header("x-user-id", "alice")
            .timeout(Duration::from_secs(30))
            .json(&body)
            .send()
            .await;
        let last = match sent {
            Ok(answer) if answer.status().is_success() => return Ok(answer.json().await.unwrap_or_default()),
            Ok(answer) if answer.status() == reqwest::StatusCode::CONFLICT => return Ok(Value::Null),
            Ok(answer) if answer.status() == reqwest::StatusCode::TOO_MANY_REQUESTS => {
                tokio::time::sleep(Duration::from_secs(1)).await;
                answer.status().to_string()
            }
            Ok(answer) if answer.status().is_client_error() => {
                anyhow::bail!(
                    "{url} answered {}: {}",
                    answer.status(),
                    answer.text().await.unwrap_or_default()
                )
            }
            Ok(answer) => answer.status().to_string(),
            Err(err) => err.to_string(),
        };
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "{url} never answered; last: {last}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The pending queue item of `kind` for `task_id`; its id.
async fn item(
    http: &reqwest::Client,
    base: &str,
    task_id: &str,
    kind: &str,
    limit: Duration,
) -> anyhow::Result<String> {
    let mine = |q: &Value| -> Option<String> {
        q.as_array()?
            .iter()
            .find(|i| i["task_id"] == task_id && i["item_type"] == kind)
            .and_then(|i| i["id"].as_str())
            .map(str::to_string)
    };
    let queue = until_within(http, &format!("{base}/queue"), kind, limit, |q| mine(q).is_some()).await?;
    mine(&queue).ok_or_else(|| anyhow::anyhow!("no {kind} for {task_id}"))
}

/// What finished journeys must leave behind, whatever crashed or ran twice: each task completed
/// through every status once in order; on GitHub one issue and one merged pull request per task
/// and no comment twice; in the inbox one item of each kind per task and its history once.
pub async fn check(
    http: &reqwest::Client,
    base: &str,
    outside: &Outside,
    task_ids: &[String],
) -> anyhow::Result<()> {
    for task_id in task_ids {
        let history = super::status_history(http, base, task_id).await?;
        anyhow::ensure!(history == FULL_HISTORY, "{task_id} went {history:?}");
    }
    let state = outside.github.snapshot();
    let widgets = &state.repos["acme/widgets"];
    anyhow::ensure!(
        widgets.issues.len() == task_ids.len(),
        "{} issues for {} tasks",
        widgets.issues.len(),
        task_ids.len()
    );
    anyhow::ensure!(
        widgets.pulls.len() == task_ids.len() && widgets.pulls.values().all(|p| p.merged),
        "{} pull requests for {} tasks, merged: {:?}",
        widgets.pulls.len(),
        task_ids.len(),
        widgets.pulls.values().map(|p| p.merged).collect::<Vec<_>>()
    );
    let comments = widgets
        .issues
        .values()
        .map(|i| (i.number, &i.comments))
        .chain(widgets.pulls.values().map(|p| (p.number, &p.comments)));
    for (number, comments) in comments {
        let mut bodies: Vec<&str> = comments.iter().map(|c| c.body.as_str()).collect();
        bodies.sort_unstable();
        let before = bodies.len();
        bodies.dedup();
        anyhow::ensure!(
            bodies.len() == before,
            "#{number} has a comment twice: {comments:?}"
        );
    }
    for task_id in task_ids {
        let mut items: Vec<String> = Vec::new();
        for status in ["pending", "responded", "cancelled"] {
            let page: Value = http
                .get(format!(
                    "{base}/queue?status={status}&task_id={task_id}&limit=200"
                ))
                .header("x-user-id", "alice")
                .send()
                .await?
                .json()
                .await?;
            items.extend(
                page.as_array()
                    .into_iter()
                    .flatten()
                    .map(|i| format!("{} {} {}", i["item_type"], i["title"], i["content"])),
            );
        }
        anyhow::ensure!(
            items.iter().any(|i| i.starts_with("\"plan_review\"")),
            "{task_id}: {items:?}"
        );
        items.sort_unstable();
        let before = items.len();
        items.dedup();
        anyhow::ensure!(items.len() == before, "{task_id} has an item twice");
    }
    Ok(())
}
