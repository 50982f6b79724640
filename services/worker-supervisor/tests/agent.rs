//! The Claude Code adapter against the CLI's recorded output: the parser reads every recorded
//! line, and a run driven by a replay of a recording gets the plan, questions or failure the
//! recording holds, answering permission prompts as the policy says.

use std::path::PathBuf;
use std::time::Duration;

use mainloop_events::v1::JobMode;
use mainloop_worker_supervisor::agent::protocol::{AgentLine, parse_line};
use mainloop_worker_supervisor::agent::{AgentConfig, AgentOutcome, AgentRun, run_agent};
use tokio_util::sync::CancellationToken;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/claude-code")
}

fn lines_of(name: &str) -> anyhow::Result<Vec<AgentLine>> {
    let text = std::fs::read_to_string(fixtures().join(format!("{name}.jsonl")))?;
    let mut parsed = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        parsed.extend(parse_line(line)?);
    }
    Ok(parsed)
}

#[test]
fn every_recorded_line_parses() -> anyhow::Result<()> {
    let mut files = 0;
    for entry in std::fs::read_dir(fixtures())? {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        if name.ends_with(".jsonl") && !name.ends_with(".stdin.jsonl") {
            lines_of(name.trim_end_matches(".jsonl"))?;
            files += 1;
        }
    }
    assert!(files >= 20, "only {files} recordings found");
    Ok(())
}

#[test]
fn plans_questions_and_outcomes_are_read_from_the_recordings() -> anyhow::Result<()> {
    let plan = lines_of("plan-sdk-deny")?;
    let exit_plan = plan.iter().find_map(|l| match l {
        AgentLine::Permission { tool_name, input, .. } if tool_name == "ExitPlanMode" => {
            input["plan"].as_str()
        }
        _ => None,
    });
    assert!(
        exit_plan.is_some_and(|p| p.starts_with("# Plan: add hello.txt")),
        "{exit_plan:?}"
    );

    let ask = lines_of("ask-sdk-answer")?;
    let questions = ask.iter().find_map(|l| match l {
        AgentLine::Permission { tool_name, input, .. } if tool_name == "AskUserQuestion" => {
            Some(mainloop_worker_supervisor::agent::protocol::questions(input))
        }
        _ => None,
    });
    let questions = questions.unwrap_or_default();
    assert_eq!(questions.len(), 2);
    assert_eq!(
        (
            questions[0].header.as_str(),
            questions[0].options.len(),
            questions[1].multi_select
        ),
        ("Greeting", 2, true)
    );

    let result = |name: &str| -> anyhow::Result<_> {
        Ok(lines_of(name)?.into_iter().find_map(|l| match l {
            AgentLine::Result(r) => Some(r),
            _ => None,
        }))
    };
    let overloaded = result("error-529")?.unwrap_or_default();
    assert!(
        overloaded.is_error && overloaded.subtype == "success" && overloaded.retryable(),
        "{overloaded:?}"
    );
    let max_turns = result("maxturns-1")?.unwrap_or_default();
    assert!(max_turns.is_error && !max_turns.retryable() && max_turns.subtype == "error_max_turns");
    assert!(
        !result("implement-acceptEdits-allowedTools")?
            .unwrap_or_default()
            .is_error
    );
    assert_eq!(
        result("sigterm-during-bash")?,
        None,
        "a killed CLI prints no result"
    );
    Ok(())
}

struct Replay {
    dir: tempfile::TempDir,
}

impl Replay {
    fn new() -> anyhow::Result<Self> {
        Ok(Replay {
            dir: tempfile::tempdir()?,
        })
    }

    fn config(&self, fixture: &str, exit: i32, sleep: Option<u32>) -> AgentConfig {
        let mut env = vec![
            (
                "REPLAY_FIXTURE".to_string(),
                fixtures().join(format!("{fixture}.jsonl")).display().to_string(),
            ),
            (
                "REPLAY_RECEIVED".to_string(),
                self.received().display().to_string(),
            ),
            ("REPLAY_EXIT".to_string(), exit.to_string()),
        ];
        if let Some(seconds) = sleep {
            env.push(("REPLAY_SLEEP".into(), seconds.to_string()));
        }
        AgentConfig {
            program: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/replay.sh"),
            args_prefix: vec![],
            env,
            model: "sonnet".into(),
            timeout: Duration::from_secs(20),
            run_as: None,
            on_usage: |_| {},
        }
    }

    fn received(&self) -> PathBuf {
        self.dir.path().join("stdin.jsonl")
    }

    fn run(&self, mode: JobMode) -> AgentRun {
        AgentRun {
            mode,
            prompt: "Plan how to add hello.txt".into(),
            cwd: self.dir.path().into(),
            home: self.dir.path().into(),
            resume: None,
            run_id: format!("test-{}", self.dir.path().display()),
        }
    }
}

#[tokio::test]
async fn a_plan_run_stops_at_the_plan_and_reports_it() -> anyhow::Result<()> {
    let replay = Replay::new()?;
    let mut logged = Vec::new();
    let outcome = run_agent(
        &replay.config("plan-sdk-deny", 0, None),
        &replay.run(JobMode::Plan),
        &CancellationToken::new(),
        |_, line| logged.push(line),
    )
    .await;
    let AgentOutcome::Plan {
        plan_text,
        questions,
        session_id,
    } = outcome
    else {
        anyhow::bail!("{outcome:?}")
    };
    assert!(plan_text.starts_with("# Plan: add hello.txt"));
    assert!(questions.is_empty());
    assert_eq!(session_id, "e6f38fb2-eae2-4cce-909d-b4346ce1a5bf");
    let sent: Vec<serde_json::Value> = std::fs::read_to_string(replay.received())?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert_eq!(
        sent[0]["message"]["content"], "Plan how to add hello.txt",
        "the prompt is the first user turn"
    );
    assert_eq!(
        sent[1]["response"]["request_id"],
        "edf7b9cd-6a5b-455b-9aa0-e16f0d508200"
    );
    assert_eq!(
        sent[1]["response"]["response"]["behavior"], "deny",
        "the plan is captured, not executed"
    );
    assert!(logged.iter().any(|l| l.contains("I'll read the README first.")));
    Ok(())
}

#[tokio::test]
async fn failures_are_told_apart_by_the_result_line() -> anyhow::Result<()> {
    let replay = Replay::new()?;
    let cancel = CancellationToken::new();
    let overloaded = run_agent(
        &replay.config("error-529", 1, None),
        &replay.run(JobMode::Implement),
        &cancel,
        |_, _| {},
    )
    .await;
    assert!(
        matches!(&overloaded, AgentOutcome::Failed { retryable: true, error } if error.contains("529")),
        "{overloaded:?}"
    );
    let max_turns = run_agent(
        &replay.config("maxturns-1", 1, None),
        &replay.run(JobMode::Implement),
        &cancel,
        |_, _| {},
    )
    .await;
    assert!(
        matches!(&max_turns, AgentOutcome::Failed { retryable: false, .. }),
        "{max_turns:?}"
    );
    let killed = run_agent(
        &replay.config("sigterm-during-bash", 124, None),
        &replay.run(JobMode::Implement),
        &cancel,
        |_, _| {},
    )
    .await;
    assert!(
        matches!(&killed, AgentOutcome::Failed { retryable: true, error } if error.contains("without a result")),
        "{killed:?}"
    );
    let done = run_agent(
        &replay.config("implement-acceptEdits-allowedTools", 0, None),
        &replay.run(JobMode::Implement),
        &cancel,
        |_, _| {},
    )
    .await;
    assert!(
        matches!(&done, AgentOutcome::Done { summary, .. } if summary == "Created hello.txt and committed it."),
        "{done:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_cancelled_run_is_stopped_with_its_whole_process_group() -> anyhow::Result<()> {
    let replay = Replay::new()?;
    let cancel = CancellationToken::new();
    let stopper = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        stopper.cancel();
    });
    let started = std::time::Instant::now();
    let outcome = run_agent(
        &replay.config("text-simple", 0, Some(60)),
        &replay.run(JobMode::Implement),
        &cancel,
        |_, _| {},
    )
    .await;
    assert_eq!(outcome, AgentOutcome::Cancelled);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "stopped promptly, not after the sleep"
    );
    Ok(())
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| !stat.contains(") Z "))
}

/// The CLI's Bash tool starts commands in sessions of their own; a cancelled run must not leave
/// them running in the worktree.
#[tokio::test]
async fn cancel_stops_what_the_agent_started_in_another_session() -> anyhow::Result<()> {
    let replay = Replay::new()?;
    let pid_file = replay.dir.path().join("background.pid");
    let mut config = replay.config("text-simple", 0, Some(60));
    config
        .env
        .push(("REPLAY_BACKGROUND".into(), pid_file.display().to_string()));
    let cancel = CancellationToken::new();
    let (stopper, watched) = (cancel.clone(), pid_file.clone());
    let background = tokio::spawn(async move {
        while !watched.is_file()
            || std::fs::read_to_string(&watched)
                .unwrap_or_default()
                .trim()
                .is_empty()
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let pid: u32 = std::fs::read_to_string(&watched)
            .unwrap_or_default()
            .trim()
            .parse()
            .unwrap_or(0);
        stopper.cancel();
        pid
    });
    let outcome = run_agent(&config, &replay.run(JobMode::Implement), &cancel, |_, _| {}).await;
    assert_eq!(outcome, AgentOutcome::Cancelled);
    let pid = background.await?;
    assert!(pid > 0, "the background process was started");
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while alive(pid) {
        assert!(
            std::time::Instant::now() < deadline,
            "pid {pid} still alive 2 s after the cancel"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

#[tokio::test]
async fn a_background_process_holding_stdout_does_not_hold_the_run() -> anyhow::Result<()> {
    let replay = Replay::new()?;
    let pid_file = replay.dir.path().join("holder.pid");
    let mut config = replay.config("text-simple", 0, None);
    config
        .env
        .push(("REPLAY_HOLD_STDOUT".into(), pid_file.display().to_string()));
    // Without the drain after the result, the run would wait for stdout until its timeout
    // (20 s here) and fail as having run too long.
    let outcome = run_agent(
        &config,
        &replay.run(JobMode::Implement),
        &CancellationToken::new(),
        |_, _| {},
    )
    .await;
    assert!(matches!(outcome, AgentOutcome::Done { .. }), "{outcome:?}");
    let pid: u32 = std::fs::read_to_string(&pid_file)?.trim().parse()?;
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while alive(pid) {
        assert!(
            std::time::Instant::now() < deadline,
            "the process holding stdout lives on"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

#[tokio::test]
async fn an_api_error_reads_as_the_api_message_not_the_subtype() -> anyhow::Result<()> {
    let replay = Replay::new()?;
    let outcome = run_agent(
        &replay.config("error-400", 1, None),
        &replay.run(JobMode::Implement),
        &CancellationToken::new(),
        |_, _| {},
    )
    .await;
    assert_eq!(
        outcome,
        AgentOutcome::Failed {
            error: "Claude API error 400: messages: text content blocks must be non-empty".into(),
            retryable: false,
        }
    );
    Ok(())
}

/// A session the CLI no longer has (a new machine, a cleaned home) is not a failed job: the run
/// starts a fresh session.
#[tokio::test]
async fn a_resume_the_cli_refuses_falls_back_to_a_fresh_session() -> anyhow::Result<()> {
    let replay = Replay::new()?;
    let mut config = replay.config("implement-acceptEdits-allowedTools", 0, None);
    config.env.push((
        "REPLAY_RESUME_FIXTURE".into(),
        fixtures().join("resume-unknown-id.jsonl").display().to_string(),
    ));
    let mut run = replay.run(JobMode::Implement);
    run.resume = Some("11111111-2222-4333-8444-555555555555".into());
    let mut logged = Vec::new();
    let outcome = run_agent(&config, &run, &CancellationToken::new(), |_, line| {
        logged.push(line)
    })
    .await;
    assert!(matches!(&outcome, AgentOutcome::Done { .. }), "{outcome:?}");
    let args = std::fs::read_to_string(format!("{}.args", replay.received().display()))?;
    let runs: Vec<&str> = args.lines().collect();
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert!(runs[0].contains("--resume 11111111-2222-4333-8444-555555555555"));
    assert!(!runs[1].contains("--resume"), "the second run is a fresh session");
    assert!(
        logged
            .iter()
            .any(|l| l.contains("starting a fresh agent session")),
        "{logged:?}"
    );
    Ok(())
}

#[tokio::test]
async fn plan_runs_switch_off_the_tools_that_write() -> anyhow::Result<()> {
    let replay = Replay::new()?;
    run_agent(
        &replay.config("plan-sdk-deny", 0, None),
        &replay.run(JobMode::Plan),
        &CancellationToken::new(),
        |_, _| {},
    )
    .await;
    let args = std::fs::read_to_string(format!("{}.args", replay.received().display()))?;
    assert!(
        args.contains("--permission-mode plan --disallowedTools Bash Write Edit MultiEdit NotebookEdit"),
        "{args}"
    );
    assert!(
        !args.contains("git commit"),
        "nothing is pre-allowed while planning: {args}"
    );
    Ok(())
}
