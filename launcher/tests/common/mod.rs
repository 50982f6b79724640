//! What the end-to-end tests share: `mainloop up` wired to the fakes, and waiting on the API.

// Each test binary includes this module and uses part of it.
#![allow(dead_code)]

pub mod fleet;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use mainloop_fakes::anthropic::FakeAnthropic;
use mainloop_fakes::github::FakeGitHub;
use serde_json::{Value, json};

/// The outside world faked at its real protocols, in a temp dir another user can reach: GitHub
/// (token "gh") with a private `acme/widgets` under CI policy `ci` (none: checks only when a test
/// sets them), and the Anthropic API (key "sk").
pub struct Outside {
    pub dir: tempfile::TempDir,
    pub github: FakeGitHub,
    pub github_url: String,
    pub llm_url: String,
    pub http: reqwest::Client,
}

impl Outside {
    pub async fn start(prefix: &str, ci: Option<&str>) -> anyhow::Result<Self> {
        use std::os::unix::fs::PermissionsExt;
        mainloop_runtime::tls::install();
        let dir = tempfile::Builder::new().prefix(prefix).tempdir()?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        let github = FakeGitHub::new(dir.path().join("github"), "gh");
        let github_url = github
            .clone()
            .serve(tokio::net::TcpListener::bind("127.0.0.1:0").await?)
            .await?;
        let llm_url = FakeAnthropic::new("sk")
            .serve(tokio::net::TcpListener::bind("127.0.0.1:0").await?)
            .await?;
        let http = reqwest::Client::new();
        let mut repo = json!({"owner": "acme", "name": "widgets"});
        if let Some(ci) = ci {
            repo["ci"] = json!(ci);
        }
        http.post(format!("{github_url}/_control/repos"))
            .json(&repo)
            .send()
            .await?
            .error_for_status()?;
        Ok(Outside {
            dir,
            github,
            github_url,
            llm_url,
            http,
        })
    }
}

/// A running `mainloop up` against the given fake GitHub and fake Anthropic, with the fake
/// Claude Code CLI as its agent and test authentication (X-User-ID).
pub struct Mainloop {
    child: Child,
    /// What it printed up to "mainloop is running".
    pub printed: Vec<String>,
}

impl Mainloop {
    pub fn start(
        data: &Path,
        port: u16,
        github: &str,
        github_token: &str,
        llm: &str,
        llm_key: &str,
    ) -> anyhow::Result<Self> {
        Self::start_with(data, port, github, github_token, llm, llm_key, &[])
    }

    /// The same with more settings in the environment.
    pub fn start_with(
        data: &Path,
        port: u16,
        github: &str,
        github_token: &str,
        llm: &str,
        llm_key: &str,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let exe = env!("CARGO_BIN_EXE_mainloop");
        // Quick polling unless the test sets its own (flags would win over the environment).
        let polling: &[&str] = if env.iter().any(|(k, _)| k.starts_with("GITHUB_POLL")) {
            &[]
        } else {
            &[
                "--github-poll-interval-ms",
                "150",
                "--github-poll-max-interval-ms",
                "600",
            ]
        };
        let mut child = Command::new(exe)
            .args([
                "up",
                "--http-addr",
                &format!("127.0.0.1:{port}"),
                "--auth-mode",
                "test",
                "--data-dir",
            ])
            .arg(data)
            .args([
                "--agent-program",
                exe,
                "--agent-args-prefix",
                "fake-claude",
                "--agent-model",
                "sonnet",
            ])
            .args(["--github-api-url", github])
            .args(polling)
            // Secrets come as the README says, in the environment, never on a command line.
            .env("GITHUB_TOKEN", github_token)
            .env("ANTHROPIC_BASE_URL", llm)
            .env("ANTHROPIC_API_KEY", llm_key)
            .env_remove("CLAUDE_CODE_OAUTH_TOKEN")
            .env_remove("NATS_URL")
            .env_remove("DATABASE_URL")
            .env("RUST_LOG", "info,async_nats=warn")
            // A job lost in a crash is retried after a short wait here, not the default 30 s.
            .env("JOB_RETRY_BASE_MS", "200")
            // The fake CLI is this test build's binary, which another user may not reach.
            .env("AGENT_USER", "")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(Self::log_path(data))?)
            .spawn()?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow::anyhow!("no stdout"))?;
        let mut up = Mainloop {
            child,
            printed: Vec::new(),
        };
        for line in BufReader::new(stdout).lines() {
            let line = line?;
            let running = line.contains("mainloop is running");
            up.printed.push(line);
            if running {
                // Stdout is closed from here on, as a closed terminal would: whatever `up`
                // says later (a server started again) must not stop it.
                return Ok(up);
            }
        }
        anyhow::bail!("mainloop up ended before it was running: {:?}", up.printed)
    }

    /// Where its log lines (stderr) go: beside the data dir.
    pub fn log_path(data: &Path) -> std::path::PathBuf {
        data.with_extension("log")
    }

    /// The NATS URL it printed.
    pub fn nats_url(&self) -> Option<String> {
        self.printed.iter().find_map(|l| {
            l.split_whitespace()
                .find(|w| w.starts_with("nats://"))
                .map(str::to_string)
        })
    }

    /// The `mainloop up` process.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILLs the server `name` (`nats-server`, `postgres`) that `up` started and waits until
    /// `up` has started a new one.
    pub async fn kill_server(&self, name: &str) -> anyhow::Result<()> {
        let old = child_named(self.pid(), name).ok_or_else(|| anyhow::anyhow!("no {name} child"))?;
        let status = Command::new("kill").args(["-KILL", &old.to_string()]).status()?;
        anyhow::ensure!(status.success(), "kill {name} failed");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while child_named(self.pid(), name).is_none_or(|pid| pid == old) {
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "{name} was not started again"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// SIGKILL: no draining, no clean shutdown; its servers die with it.
    pub fn crash(mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for Mainloop {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// Polls `url` (as alice) until `check` holds; a timeout names the last answer.
pub async fn until(
    http: &reqwest::Client,
    url: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> anyhow::Result<Value> {
    until_within(http, url, what, Duration::from_secs(60), check).await
}

/// [`until`] with its own time limit.
pub async fn until_within(
    http: &reqwest::Client,
    url: &str,
    what: &str,
    limit: Duration,
    check: impl Fn(&Value) -> bool,
) -> anyhow::Result<Value> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut last = Value::Null;
    loop {
        if let Ok(response) = http.get(url).header("x-user-id", "alice").send().await
            && let Ok(body) = response.json::<Value>().await
        {
            if check(&body) {
                return Ok(body);
            }
            last = body;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what} at {url}; last answer: {last}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The statuses a task passed through, in order, from `/tasks/{id}/history`.
pub async fn status_history(
    http: &reqwest::Client,
    base: &str,
    task_id: &str,
) -> anyhow::Result<Vec<String>> {
    let history = until(http, &format!("{base}/tasks/{task_id}/history"), "history", |h| {
        h.as_array().is_some_and(|a| !a.is_empty())
    })
    .await?;
    Ok(history
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|h| h["status"].as_str().map(str::to_string))
        .collect())
}

/// A whole journey, start to merge.
pub const FULL_HISTORY: [&str; 7] = [
    "pending",
    "planning",
    "waiting_plan_review",
    "ready_to_implement",
    "implementing",
    "under_review",
    "completed",
];

/// Watches every process's command line while a test runs, and collects any that contains
/// `needle` (a secret that must never be an argument).
pub struct ArgvWatch {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<(usize, Vec<String>)>>,
}

impl ArgvWatch {
    pub fn start(needle: &str) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (flag, needle) = (stop.clone(), needle.as_bytes().to_vec());
        let thread = std::thread::spawn(move || {
            let (mut samples, mut seen) = (0, Vec::new());
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                samples += 1;
                for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
                    let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
                        continue;
                    };
                    if cmdline.windows(needle.len()).any(|w| w == needle.as_slice()) {
                        seen.push(String::from_utf8_lossy(&cmdline).replace('\0', " "));
                    }
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            (samples, seen)
        });
        ArgvWatch {
            stop,
            thread: Some(thread),
        }
    }

    /// How many times every process was looked at, and the command lines that held the needle.
    pub fn finish(mut self) -> (usize, Vec<String>) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.take().and_then(|t| t.join().ok()).unwrap_or_default()
    }
}

/// Every live descendant of `pid`, from /proc.
pub fn descendants(pid: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let child: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            let after_name = &stat[stat.rfind(')')? + 2..];
            let parent = after_name.split_whitespace().nth(1)?.parse().ok()?;
            Some((child, parent))
        })
        .collect();
    let mut found = vec![pid];
    let mut i = 0;
    while i < found.len() {
        let current = found[i];
        found.extend(parents.iter().filter(|(_, p)| *p == current).map(|(c, _)| *c));
        i += 1;
    }
    found.remove(0);
    found
}

pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| !stat.contains(") Z "))
        .unwrap_or(false)
}

pub fn command_name(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// The direct child of `parent` named `name`.
pub fn child_named(parent: u32, name: &str) -> Option<u32> {
    descendants(parent).into_iter().find(|pid| {
        command_name(*pid) == name
            && std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    stat[stat.rfind(')')? + 2..]
                        .split_whitespace()
                        .nth(1)?
                        .parse::<u32>()
                        .ok()
                })
                == Some(parent)
    })
}

/// Asks for `request` in a new conversation as alice, then confirms ("yes"), as a person does:
/// the task is spawned. Returns the confirming turn's answer.
pub async fn ask_and_confirm(http: &reqwest::Client, base: &str, request: &str) -> anyhow::Result<Value> {
    let chat = |body: Value| {
        http.post(format!("{base}/chat"))
            .header("x-user-id", "alice")
            .json(&body)
            .send()
    };
    let asked: Value = chat(json!({"message": request}))
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(
        chat(json!({"message": "yes", "conversation_id": asked["conversation_id"]}))
            .await?
            .error_for_status()?
            .json()
            .await?,
    )
}

/// The sum of `name`'s samples whose labels hold every one of `labels` (`key="value"`).
pub fn sample(page: &str, name: &str, labels: &[&str]) -> Option<f64> {
    let values: Vec<f64> = page
        .lines()
        .filter(|line| line.starts_with(&format!("{name}{{")) || line.starts_with(&format!("{name} ")))
        .filter(|line| labels.iter().all(|label| line.contains(label)))
        .filter_map(|line| line.rsplit(' ').next()?.parse().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}
