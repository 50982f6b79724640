//! One agent run: the CLI as a child process in its own process group, the prompt on stdin, its
//! stdout read line by line, its permission prompts answered by policy, and one outcome. A run
//! resumes the task's earlier agent session when it has one (a fresh session if the CLI no
//! longer knows it). Stopping a run (cancel, timeout, or its end) interrupts the CLI first, so
//! it cleans up its shells, then kills every process the run started, wherever it went.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use mainloop_events::v1::{JobMode, LogSource, Question};
use mainloop_local_servers::{SIGINT, SIGKILL, signal_group, signal_process};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio_util::sync::CancellationToken;

use super::policy::{self, Captured, WRITING_TOOLS};
use super::process_tree;
use super::protocol::{self, AgentLine, AgentResult};

/// How to start the agent CLI.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub program: PathBuf,
    /// Arguments before the CLI's own (e.g. `fake-claude` when the program is `mainloop`).
    pub args_prefix: Vec<String>,
    /// The agent's whole environment besides PATH/HOME/LANG: API endpoint and key, git identity.
    pub env: Vec<(String, String)>,
    pub model: String,
    pub timeout: Duration,
    /// The unprivileged user the agent runs as (uid, gid), when the supervisor is root.
    pub run_as: Option<(u32, u32)>,
    /// Where a run's usage goes: the supervisor's metrics, or a pod's line back to it.
    pub on_usage: fn(super::protocol::Usage),
}

/// One run's inputs.
#[derive(Debug, Clone)]
pub struct AgentRun {
    pub mode: JobMode,
    pub prompt: String,
    pub cwd: PathBuf,
    /// The task's own HOME, kept across its jobs (sessions and plans live there).
    pub home: PathBuf,
    /// The task's agent session to continue (`--resume`).
    pub resume: Option<String>,
    /// Marks every process of this run (see `process_tree`).
    pub run_id: String,
}

/// How a run ended. Serialized (tagged by `kind`) when a Kubernetes Job's agent step reports it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AgentOutcome {
    Plan {
        plan_text: String,
        questions: Vec<Question>,
        session_id: String,
    },
    Done {
        summary: String,
        session_id: String,
    },
    Failed {
        error: String,
        retryable: bool,
    },
    Cancelled,
}

impl AgentOutcome {
    /// The run's words with secrets removed and NUL made visible, before anything stores them
    /// (the plan goes to the issue, the summary into our commit message and the PR).
    pub fn cleaned(self, redactor: &crate::redact::Redactor) -> AgentOutcome {
        let clean = |text: String| redactor.clean(&text);
        match self {
            AgentOutcome::Plan {
                plan_text,
                questions,
                session_id,
            } => AgentOutcome::Plan {
                plan_text: clean(plan_text),
                questions: questions
                    .into_iter()
                    .map(|mut q| {
                        q.question = clean(q.question);
                        q.header = clean(q.header);
                        for option in &mut q.options {
                            option.label = clean(std::mem::take(&mut option.label));
                            option.description = clean(std::mem::take(&mut option.description));
                        }
                        q
                    })
                    .collect(),
                session_id,
            },
            AgentOutcome::Done { summary, session_id } => AgentOutcome::Done {
                summary: clean(summary),
                session_id,
            },
            AgentOutcome::Failed { error, retryable } => AgentOutcome::Failed {
                error: clean(error),
                retryable,
            },
            AgentOutcome::Cancelled => AgentOutcome::Cancelled,
        }
    }
}

/// How long stdout may stay open after the result line.
const RESULT_DRAIN: Duration = Duration::from_secs(3);

/// How long the CLI gets to clean up after SIGINT before everything of the run is killed.
const INTERRUPT_GRACE: Duration = Duration::from_millis(1500);

/// Runs the agent to its end. `log` receives every line worth showing, already tagged.
pub async fn run_agent(
    config: &AgentConfig,
    run: &AgentRun,
    cancel: &CancellationToken,
    mut log: impl FnMut(LogSource, String),
) -> AgentOutcome {
    match run_once(config, run, cancel, &mut log).await {
        Ended::ResumeFailed(error) => {
            log(
                LogSource::System,
                format!("{error}; starting a fresh agent session"),
            );
            let fresh = AgentRun {
                resume: None,
                ..run.clone()
            };
            match run_once(config, &fresh, cancel, &mut log).await {
                Ended::Outcome(outcome) => outcome,
                Ended::ResumeFailed(error) => AgentOutcome::Failed {
                    error,
                    retryable: true,
                },
            }
        }
        Ended::Outcome(outcome) => outcome,
    }
}

enum Ended {
    Outcome(AgentOutcome),
    ResumeFailed(String),
}

fn command(config: &AgentConfig, run: &AgentRun) -> Command {
    let mut command = Command::new(&config.program);
    command
        .args(&config.args_prefix)
        .args([
            "-p",
            "--input-format",
            "stream-json",
            "--permission-prompt-tool",
            "stdio",
        ])
        .args([
            "--output-format",
            "stream-json",
            "--verbose",
            "--model",
            &config.model,
        ]);
    if run.mode == JobMode::Plan {
        // The policy denies these too; switching them off spares the model the attempt.
        command
            .args(["--permission-mode", "plan", "--disallowedTools"])
            .args(WRITING_TOOLS);
    } else {
        command
            .args(["--permission-mode", "acceptEdits", "--allowedTools"])
            .args([
                "Bash(git add:*)",
                "Bash(git commit:*)",
                "Bash(git status:*)",
                "Bash(git diff:*)",
            ]);
    }
    if let Some(session) = &run.resume {
        command.args(["--resume", session]);
    }
    command
        .current_dir(&run.cwd)
        .env_clear()
        .env(
            "PATH",
            std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()),
        )
        .env("HOME", &run.home)
        .env("LANG", "C.UTF-8")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .env("DISABLE_AUTOUPDATER", "1")
        // A few quick retries inside a run; longer outages are paced by the scheduler's durable
        // backoff between attempts, not by one run retrying for three minutes.
        .env("CLAUDE_CODE_MAX_RETRIES", "3")
        .env(process_tree::MARKER, &run.run_id);
    // The job's trace, for an agent that reports its own spans; an explicit one (a pod's) wins.
    if let Some(traceparent) = mainloop_bus::trace::traceparent() {
        command.env("TRACEPARENT", traceparent);
    }
    command
        .envs(config.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some((uid, gid)) = config.run_as {
        command.uid(uid).gid(gid);
    }
    die_with_supervisor(&mut command);
    command
}

async fn run_once(
    config: &AgentConfig,
    run: &AgentRun,
    cancel: &CancellationToken,
    log: &mut impl FnMut(LogSource, String),
) -> Ended {
    let mut child = match command(config, run).spawn() {
        Ok(child) => child,
        Err(err) => {
            return Ended::Outcome(AgentOutcome::Failed {
                error: format!("cannot start {}: {err}", config.program.display()),
                retryable: false,
            });
        }
    };
    let pid = child.id().unwrap_or(0);
    let (Some(mut stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        stop(pid, &run.run_id, &mut child).await;
        return Ended::Outcome(AgentOutcome::Failed {
            error: "agent pipes unavailable".into(),
            retryable: true,
        });
    };
    let mut stdout = BufReader::new(stdout).lines();
    let mut stderr = BufReader::new(stderr).lines();
    let mut stdin_open = write_line(&mut stdin, &protocol::user_turn(&run.prompt)).await;
    let mut stdin = Some(stdin);

    let (mut captured, mut result, mut session) = (Captured::default(), None::<AgentResult>, String::new());
    let deadline = tokio::time::sleep(config.timeout);
    tokio::pin!(deadline);
    // Once the result is in, stdout has a moment to close; a background process the run left
    // holding it (it inherited the pipe) does not keep the job waiting.
    let drained = tokio::time::sleep(Duration::from_secs(3600 * 24));
    tokio::pin!(drained);
    let mut stderr_open = true;
    loop {
        tokio::select! {
            () = &mut drained, if result.is_some() => break,
            () = cancel.cancelled() => {
                stop(pid, &run.run_id, &mut child).await;
                return Ended::Outcome(AgentOutcome::Cancelled);
            }
            () = &mut deadline => {
                stop(pid, &run.run_id, &mut child).await;
                return Ended::Outcome(AgentOutcome::Failed {
                    error: format!("the agent ran longer than {:?}", config.timeout),
                    retryable: true,
                });
            }
            line = stderr.next_line(), if stderr_open => match line {
                Ok(Some(line)) => log(LogSource::Stderr, line),
                _ => stderr_open = false,
            },
            line = stdout.next_line() => {
                let Ok(Some(line)) = line else { break };
                let Ok(parsed) = protocol::parse_line(&line) else {
                    log(LogSource::Stderr, line);
                    continue;
                };
                for item in parsed {
                    match item {
                        AgentLine::Init { session_id, model } => {
                            log(LogSource::System, format!("agent session {session_id} on {model}"));
                            session = session_id;
                        }
                        AgentLine::Permission { request_id, tool_name, input } => {
                            let answer = policy::answer(run.mode, &request_id, &tool_name, &input, &mut captured);
                            if let Some(stdin) = stdin.as_mut() {
                                stdin_open = stdin_open && write_line(stdin, &answer).await;
                            }
                        }
                        AgentLine::Result(done) => {
                            // One turn only: closing stdin lets the CLI exit.
                            stdin = None;
                            (config.on_usage)(done.usage);
                            result = Some(done);
                            drained.as_mut().reset(tokio::time::Instant::now() + RESULT_DRAIN);
                        }
                        other => log_line(other, log),
                    }
                }
            }
        }
    }
    drop(stdin);
    let status = match tokio::time::timeout(Duration::from_secs(30), child.wait()).await {
        Ok(Ok(status)) => status.to_string(),
        _ => "killed after its output ended".into(),
    };
    // What the run left running (a dev server started with `&`) ends with it.
    stop(pid, &run.run_id, &mut child).await;
    if !stdin_open {
        log(
            LogSource::System,
            "the agent stopped reading its input early".into(),
        );
    }
    if let Some(result) = result
        .as_ref()
        .filter(|r| run.resume.is_some() && r.resume_failed())
    {
        return Ended::ResumeFailed(result.errors.join("; "));
    }
    Ended::Outcome(outcome(run.mode, result, captured, session, &status))
}

fn log_line(line: AgentLine, log: &mut impl FnMut(LogSource, String)) {
    match line {
        AgentLine::Text(text) => log(LogSource::Agent, text),
        AgentLine::ToolUse { name, summary } => log(LogSource::Agent, format!("→ {name} {summary}")),
        AgentLine::ToolResult { is_error, summary } => {
            log(
                LogSource::Agent,
                format!("{} {summary}", if is_error { "✗" } else { "←" }),
            );
        }
        AgentLine::ApiRetry(detail) => log(LogSource::System, format!("API retry: {detail}")),
        _ => {}
    }
}

fn outcome(
    mode: JobMode,
    result: Option<AgentResult>,
    captured: Captured,
    session_id: String,
    status: &str,
) -> AgentOutcome {
    let Some(result) = result else {
        return AgentOutcome::Failed {
            error: format!("the agent exited ({status}) without a result"),
            retryable: true,
        };
    };
    if result.is_error {
        return AgentOutcome::Failed {
            error: result.describe(),
            retryable: result.retryable(),
        };
    }
    let session_id = if session_id.is_empty() {
        result.session_id
    } else {
        session_id
    };
    match mode {
        JobMode::Plan => {
            let plan_text = if captured.plan.is_empty() && captured.questions.is_empty() {
                result.text
            } else {
                captured.plan
            };
            AgentOutcome::Plan {
                plan_text,
                questions: captured.questions,
                session_id,
            }
        }
        _ => AgentOutcome::Done {
            summary: result.text,
            session_id,
        },
    }
}

async fn write_line(stdin: &mut ChildStdin, line: &str) -> bool {
    stdin.write_all(line.as_bytes()).await.is_ok()
        && stdin.write_all(b"\n").await.is_ok()
        && stdin.flush().await.is_ok()
}

/// SIGINT to the CLI first (it then stops its shells, which SIGTERM to the group does not do),
/// then SIGKILL to everything the run started: its group, and every process carrying its marker
/// or descending from it, wherever it went (`setsid`, `nohup`, a double fork). The CLI's pid and
/// group are only signalled while it is our unreaped child, so a recycled pid is never hit.
async fn stop(pid: u32, run_id: &str, child: &mut Child) {
    let running = pid > 0 && matches!(child.try_wait(), Ok(None));
    if running {
        let descendants = process_tree::find(run_id, pid);
        signal_process(pid, SIGINT);
        if tokio::time::timeout(INTERRUPT_GRACE, child.wait()).await.is_err() {
            // Still unreaped: its pid and group are still its own.
            signal_group(pid, SIGKILL);
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
        process_tree::kill(&descendants);
    }
    // Found again each round: a process may fork while we kill.
    for _ in 0..5 {
        let left = process_tree::find(run_id, 0);
        if left.is_empty() {
            break;
        }
        process_tree::kill(&left);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The agent gets SIGKILL from the kernel if the supervisor dies first (even by SIGKILL), so no
/// orphaned agent keeps editing a clone that a restarted supervisor hands to the next attempt.
#[allow(unsafe_code)]
fn die_with_supervisor(command: &mut Command) {
    // SAFETY: prctl is async-signal-safe and touches no memory of ours; it runs in the child
    // between fork and exec.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
