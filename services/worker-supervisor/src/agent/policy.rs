//! What the agent may do, answered on each of its permission prompts. Planning is read-only:
//! only tools that read (files, search, the web) and the plan and question tools go through;
//! every tool that writes or runs a command is denied, whatever the CLI's own plan mode would
//! have asked. The plan (ExitPlanMode) and the questions (AskUserQuestion) are captured and the
//! run told to stop. Coding may edit and run commands, but never push: the supervisor pushes.

use mainloop_events::v1::{JobMode, Question};
use serde_json::Value;

use super::protocol;

/// Tools that only read, allowed while planning (Claude Code 2.1 names).
pub const READ_ONLY_TOOLS: &[&str] = &[
    "Read",
    "Glob",
    "Grep",
    "LS",
    "NotebookRead",
    "WebFetch",
    "WebSearch",
    "TodoWrite",
    "TaskCreate",
    "TaskGet",
    "TaskList",
    "TaskUpdate",
    "Task",
];

/// Tools that write or run commands, also switched off on the command line while planning.
pub const WRITING_TOOLS: &[&str] = &["Bash", "Write", "Edit", "MultiEdit", "NotebookEdit"];

const PLAN_CAPTURED: &str = "Plan captured by mainloop; the person will review it. Stop here.";
const QUESTIONS_SENT: &str =
    "Your questions were sent to the person; their answers come with the next planning round. Stop here.";
const DECIDE_YOURSELF: &str =
    "Nobody is watching this run; decide yourself and note the decision in your summary.";
const NO_PUSH: &str = "Do not push; mainloop pushes the branch and opens the pull request.";
const READ_ONLY: &str =
    "Planning is read-only: nothing may be written or run now. Put the change in the plan instead.";

/// What a run captured from its prompts.
#[derive(Debug, Default)]
pub struct Captured {
    pub plan: String,
    pub questions: Vec<Question>,
}

/// The control_response line for one permission prompt.
pub fn answer(mode: JobMode, request_id: &str, tool: &str, input: &Value, captured: &mut Captured) -> String {
    match tool {
        "ExitPlanMode" => {
            captured.plan = input["plan"].as_str().unwrap_or_default().to_string();
            protocol::deny(request_id, PLAN_CAPTURED)
        }
        "AskUserQuestion" if mode == JobMode::Plan => {
            captured.questions = protocol::questions(input);
            protocol::deny(request_id, QUESTIONS_SENT)
        }
        "AskUserQuestion" => protocol::deny(request_id, DECIDE_YOURSELF),
        _ if mode == JobMode::Plan && !READ_ONLY_TOOLS.contains(&tool) => {
            protocol::deny(request_id, READ_ONLY)
        }
        "Bash" if input["command"].as_str().is_some_and(|c| c.contains("git push")) => {
            protocol::deny(request_id, NO_PUSH)
        }
        _ => protocol::allow(request_id, input),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn behavior(mode: JobMode, tool: &str, input: Value) -> String {
        let line: Value = serde_json::from_str(&answer(mode, "r1", tool, &input, &mut Captured::default()))
            .unwrap_or_default();
        line["response"]["response"]["behavior"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    #[test]
    fn planning_denies_every_tool_that_writes_or_runs_commands() {
        for tool in [
            "Write",
            "Edit",
            "MultiEdit",
            "NotebookEdit",
            "Bash",
            "CronCreate",
            "EnterWorktree",
            "SomeNewTool",
        ] {
            assert_eq!(
                behavior(JobMode::Plan, tool, json!({"command": "ls"})),
                "deny",
                "{tool}"
            );
        }
        for tool in ["Read", "Grep", "Glob", "WebFetch"] {
            assert_eq!(behavior(JobMode::Plan, tool, json!({})), "allow", "{tool}");
        }
    }

    #[test]
    fn coding_may_edit_and_run_but_never_push() {
        assert_eq!(
            behavior(JobMode::Implement, "Write", json!({"file_path": "a"})),
            "allow"
        );
        assert_eq!(
            behavior(JobMode::Fix, "Bash", json!({"command": "cargo test"})),
            "allow"
        );
        assert_eq!(
            behavior(
                JobMode::Implement,
                "Bash",
                json!({"command": "git commit -m x && git push origin HEAD"})
            ),
            "deny"
        );
    }

    #[test]
    fn the_plan_and_the_questions_are_captured_and_the_run_told_to_stop() {
        let mut captured = Captured::default();
        let line = answer(
            JobMode::Plan,
            "r1",
            "ExitPlanMode",
            &json!({"plan": "# Plan"}),
            &mut captured,
        );
        assert!(line.contains("deny") && captured.plan == "# Plan");
        let questions = json!({"questions": [{"question": "Where?", "header": "Place", "options": [{"label": "Top", "description": ""}], "multiSelect": false}]});
        answer(JobMode::Plan, "r2", "AskUserQuestion", &questions, &mut captured);
        assert_eq!(captured.questions.len(), 1);
        assert_eq!(captured.questions[0].question, "Where?");
    }
}
