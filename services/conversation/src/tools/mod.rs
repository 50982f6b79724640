//! The main thread's tools, and nothing else: no shell, no files, no network. One file per tool;
//! each says what it is for (its [`Tool`] spec, which the model reads) and does it for one
//! person. Tools that change work — starting, cancelling or retrying a task — need the person's
//! confirmation in their latest message, checked here in code, never left to the prompt.

mod add_context;
mod cancel_task;
mod list_tasks;
mod retry_task;
mod spawn_task;
mod suggest_routing;

use std::time::Duration;

use futures_util::future::BoxFuture;
use mainloop_bus::Bus;
use mainloop_bus::request::{self, RequestError};
use mainloop_events::v1::{ErrorCode, TaskAccepted};
use serde_json::Value;

use crate::held::Go;
use crate::models::{Tool, ToolRunner};

/// Who asks, in which conversation, with which latest message.
pub struct Asking<'a> {
    pub bus: &'a Bus,
    pub user: &'a str,
    pub conversation: &'a str,
    /// The person's latest message: confirmations are read from it.
    pub latest: &'a str,
    pub github_web_url: &'a str,
}

/// What a tool says back to the model.
pub use crate::models::ToolOutcome as Outcome;

pub trait ChatTool: Send + Sync {
    fn spec(&self) -> Tool;
    fn run<'a>(&'a self, asking: &'a Asking<'a>, input: &'a Value) -> BoxFuture<'a, Outcome>;
}

/// Every tool the model may use.
pub fn all() -> Vec<Box<dyn ChatTool>> {
    vec![
        Box::new(spawn_task::SpawnTask),
        Box::new(list_tasks::ListTasks),
        Box::new(add_context::AddContext),
        Box::new(cancel_task::CancelTask),
        Box::new(retry_task::RetryTask),
        Box::new(suggest_routing::SuggestRouting),
    ]
}

/// The tools, run for one person's turn once its `go` is given (see `held`).
pub struct Toolbox<'a> {
    pub tools: &'a [Box<dyn ChatTool>],
    pub asking: Asking<'a>,
    pub go: &'a Go,
}

impl ToolRunner for Toolbox<'_> {
    /// Runs tool `name`, or says there is none.
    fn run<'a>(&'a self, name: &'a str, input: &'a Value) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            if !self.go.given().await {
                return Outcome::refused("this turn is being started again");
            }
            match self.tools.iter().find(|t| t.spec().name == name) {
                Some(tool) => tool.run(&self.asking, input).await,
                None => Outcome::refused(format!("there is no tool {name}")),
            }
        })
    }
}

const CONFIRMATIONS: &[&str] = &[
    "yes",
    "y",
    "yep",
    "sure",
    "ok",
    "okay",
    "confirm",
    "i confirm",
    "go ahead",
    "do it",
    "please do",
    "yes please",
    "go",
];

/// Whether the person's message confirms: a confirmation on its own ("yes", "go ahead."), one
/// that starts the message ("yes, do it"), or an explicit "I confirm" anywhere in it ("add a
/// README to …, I confirm, go ahead").
pub fn confirms(message: &str) -> bool {
    let lower = message.trim().to_lowercase();
    let lower = lower.trim_end_matches(['.', '!']);
    CONFIRMATIONS.contains(&lower) || lower.starts_with("yes") || lower.contains("i confirm")
}

/// The refusal a tool that changes work gives without a confirmation.
fn unconfirmed(what: &str) -> Outcome {
    Outcome::refused(format!(
        "The person has not confirmed. Say what you will {what} and ask them to confirm first."
    ))
}

/// The task id the model gave, checked to be an id at all (the scheduler says whether it is the
/// person's).
fn task_id(input: &Value) -> Result<String, Outcome> {
    let id = input["task_id"].as_str().unwrap_or_default().trim();
    if id.is_empty() || mainloop_events::subjects::token("task id", id).is_err() {
        return Err(Outcome::refused(
            "task_id must name one of the person's tasks (use list_tasks)",
        ));
    }
    Ok(id.to_string())
}

/// How long a scheduler that is away for a moment (restarting: nobody listens yet; or it says
/// it is unavailable) is asked again before the model hears it could not be asked. Commands are
/// idempotent (a repeated spawn spawns once), so asking again does no harm.
const SCHEDULER_AWAY: Duration = Duration::from_secs(20);

/// Whether the scheduler may answer if asked again soon.
fn away(err: &RequestError) -> bool {
    matches!(
        err,
        RequestError::NoResponders(_)
            | RequestError::Rejected {
                code: ErrorCode::Unavailable,
                ..
            }
    )
}

/// Sends a scheduler command, asking again while the scheduler is away; its refusal (no such
/// task, not in a state for it) goes back to the model as it was said.
async fn scheduler<C: prost::Message>(bus: &Bus, name: &str, command: &C) -> Result<TaskAccepted, Outcome> {
    use backon::{ExponentialBuilder, Retryable};
    let subject = format!("cmd.scheduler.{name}");
    let ask = || request::send::<_, TaskAccepted>(bus, &subject, command, Duration::from_secs(15));
    let answer = ask
        .retry(
            ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(100))
                .with_max_delay(Duration::from_secs(2))
                .with_total_delay(Some(SCHEDULER_AWAY))
                .without_max_times(),
        )
        .when(away)
        .notify(|err, after| tracing::info!(%subject, error = %err, ?after, "the scheduler is away; asking again"))
        .await;
    match answer {
        Ok(accepted) => Ok(accepted),
        Err(RequestError::Rejected {
            code: ErrorCode::NotFound,
            ..
        }) => Err(Outcome::refused("the person has no such task (use list_tasks)")),
        Err(RequestError::Rejected { message, .. }) => Err(Outcome::refused(message)),
        Err(err) => Err(Outcome::refused(format!(
            "the scheduler could not be asked: {err}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::confirms;

    #[test]
    fn only_a_confirmation_confirms() {
        for yes in [
            "yes",
            "Yes!",
            "I confirm",
            "go ahead.",
            "yes, do it",
            "add a README to https://github.com/a/b, I confirm, go ahead",
        ] {
            assert!(confirms(yes), "{yes}");
        }
        for no in [
            "add a README to https://github.com/a/b",
            "no",
            "maybe later",
            "what would you do?",
            "don't go ahead yet",
        ] {
            assert!(!confirms(no), "{no}");
        }
    }
}
