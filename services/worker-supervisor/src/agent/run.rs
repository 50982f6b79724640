//! One agent run: the CLI as a child process in its own process group, the prompt on stdin, its
//! stdout read line by line, its permission prompts answered by policy, and one outcome.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use mainloop_events::v1::{JobMode, LogSource, Question};
use mainloop_local_servers::{SIGKILL, SIGTERM, signal_group};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

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
}

/// One run's inputs.
#[derive(Debug, Clone)]
pub struct AgentRun {
    pub mode: JobMode,
    pub prompt: String,
    pub cwd: PathBuf,
    /// The task's own HOME, kept across its jobs (sessions and plans live there).
    pub home: PathBuf,
}

#[derive(Debug, Clone, PartialEq)]
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

const PLAN_CAPTURED: &str = "Plan captured by mainloop; the person will review it. Stop here.";
const QUESTIONS_SENT: &str =
    "Your questions were sent to the person; their answers come with the next planning round. Stop here.";
const DECIDE_YOURSELF: &str =
    "Nobody is watching this run; decide yourself and note the decision in your summary.";
const NO_PUSH: &str = "Do not push; mainloop pushes the branch and opens the pull request.";

fn mode_flag(mode: JobMode) -> &'static str {
    if mode == JobMode::Plan {
        "plan"
    } else {
        "acceptEdits"
    }
}

/// Runs the agent to its end. `log` receives every line worth showing, already tagged.
pub async fn run_agent(
    config: &AgentConfig,
    run: &AgentRun,
    cancel: &CancellationToken,
    mut log: impl FnMut(LogSource, String),
) -> AgentOutcome {
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
        ])
        .args(["--permission-mode", mode_flag(run.mode)])
        .args([
            "--allowedTools",
            "Bash(git add:*)",
            "Bash(git commit:*)",
            "Bash(git status:*)",
            "Bash(git diff:*)",
        ])
        .current_dir(&run.cwd)
        .env_clear()
        .env(
            "PATH",
            std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()),
        )
        .env("HOME", &run.home)
        .env("LANG", "C.UTF-8")
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .env("DISABLE_AUTOUPDATER", "1")
        .envs(config.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    die_with_supervisor(&mut command);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(err) => {
            return AgentOutcome::Failed {
                error: format!("cannot start {}: {err}", config.program.display()),
                retryable: false,
            };
        }
    };
    let pid = child.id().unwrap_or(0);
    let (Some(mut stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return AgentOutcome::Failed {
            error: "agent pipes unavailable".into(),
            retryable: true,
        };
    };
    let mut stdout = BufReader::new(stdout).lines();
    let mut stderr = BufReader::new(stderr).lines();
    let mut stdin_open = write_line(&mut stdin, &protocol::user_turn(&run.prompt)).await;
    let mut stdin = Some(stdin);

    let (mut plan, mut questions, mut result, mut session) =
        (String::new(), Vec::new(), None::<AgentResult>, String::new());
    let deadline = tokio::time::sleep(config.timeout);
    tokio::pin!(deadline);
    let mut stderr_open = true;
    loop {
        tokio::select! {
            () = cancel.cancelled() => {
                stop(pid, &mut child).await;
                return AgentOutcome::Cancelled;
            }
            () = &mut deadline => {
                stop(pid, &mut child).await;
                return AgentOutcome::Failed { error: format!("the agent ran longer than {:?}", config.timeout), retryable: true };
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
                        AgentLine::Text(text) => log(LogSource::Agent, text),
                        AgentLine::ToolUse { name, summary } => log(LogSource::Agent, format!("→ {name} {summary}")),
                        AgentLine::ToolResult { is_error, summary } => {
                            log(LogSource::Agent, format!("{} {summary}", if is_error { "✗" } else { "←" }));
                        }
                        AgentLine::ApiRetry(detail) => log(LogSource::System, format!("API retry: {detail}")),
                        AgentLine::Permission { request_id, tool_name, input } => {
                            let answer = answer_permission(run.mode, &request_id, &tool_name, &input, &mut plan, &mut questions);
                            if let Some(stdin) = stdin.as_mut() {
                                stdin_open = stdin_open && write_line(stdin, &answer).await;
                            }
                        }
                        AgentLine::Result(done) => {
                            // One turn only: closing stdin lets the CLI exit.
                            stdin = None;
                            result = Some(done);
                        }
                        AgentLine::Other => {}
                    }
                }
            }
        }
    }
    drop(stdin);
    let status = match tokio::time::timeout(Duration::from_secs(30), child.wait()).await {
        Ok(Ok(status)) => status.to_string(),
        _ => {
            stop(pid, &mut child).await;
            "killed after its output ended".into()
        }
    };
    if !stdin_open {
        log(
            LogSource::System,
            "the agent stopped reading its input early".into(),
        );
    }
    outcome(run.mode, result, plan, questions, session, &status)
}

fn answer_permission(
    mode: JobMode,
    request_id: &str,
    tool: &str,
    input: &Value,
    plan: &mut String,
    questions: &mut Vec<Question>,
) -> String {
    match tool {
        "ExitPlanMode" => {
            *plan = input["plan"].as_str().unwrap_or_default().to_string();
            protocol::deny(request_id, PLAN_CAPTURED)
        }
        "AskUserQuestion" if mode == JobMode::Plan => {
            *questions = protocol::questions(input);
            protocol::deny(request_id, QUESTIONS_SENT)
        }
        "AskUserQuestion" => protocol::deny(request_id, DECIDE_YOURSELF),
        "Bash" if input["command"].as_str().is_some_and(|c| c.contains("git push")) => {
            protocol::deny(request_id, NO_PUSH)
        }
        _ => protocol::allow(request_id, input),
    }
}

fn outcome(
    mode: JobMode,
    result: Option<AgentResult>,
    plan: String,
    questions: Vec<Question>,
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
    match mode {
        JobMode::Plan => {
            let plan_text = if plan.is_empty() && questions.is_empty() {
                result.text
            } else {
                plan
            };
            AgentOutcome::Plan {
                plan_text,
                questions,
                session_id,
            }
        }
        _ => AgentOutcome::Done {
            summary: result.text,
            session_id,
        },
    }
}

async fn write_line(stdin: &mut tokio::process::ChildStdin, line: &str) -> bool {
    stdin.write_all(line.as_bytes()).await.is_ok()
        && stdin.write_all(b"\n").await.is_ok()
        && stdin.flush().await.is_ok()
}

/// SIGTERM to the whole group (the CLI leaves shell commands behind otherwise), then SIGKILL.
async fn stop(pid: u32, child: &mut tokio::process::Child) {
    if pid > 0 {
        signal_group(pid, SIGTERM);
    }
    if tokio::time::timeout(Duration::from_secs(5), child.wait())
        .await
        .is_err()
        && pid > 0
    {
        signal_group(pid, SIGKILL);
        let _ = child.wait().await;
    }
}

/// The agent gets SIGKILL from the kernel if the supervisor dies first (even by SIGKILL), so no
/// orphaned agent keeps editing a worktree that a restarted supervisor hands to the next attempt.
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
