//! `retry_task`: start a failed or cancelled task again where it stopped (what its cancellation
//! closed on GitHub is reopened) — only when the person's latest message confirms.

use futures_util::future::BoxFuture;
use serde_json::{Value, json};

use super::{Asking, ChatTool, Outcome, confirms, task_id, unconfirmed};
use crate::models::Tool;

pub struct RetryTask;

impl ChatTool for RetryTask {
    fn spec(&self) -> Tool {
        Tool {
            name: "retry_task".into(),
            description:
                "Retry one of the person's failed or cancelled tasks where it stopped. Only after the person \
                confirmed."
                    .into(),
            schema: json!({"type": "object", "required": ["task_id"], "properties": {
                "task_id": {"type": "string", "description": "the task's id, from list_tasks"}
            }}),
        }
    }

    fn run<'a>(&'a self, asking: &'a Asking<'a>, input: &'a Value) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            if !confirms(asking.latest) {
                return unconfirmed("retry");
            }
            let task = match task_id(input) {
                Ok(task) => task,
                Err(refused) => return refused,
            };
            let command = mainloop_events::v1::RetryTask {
                user_id: asking.user.to_string(),
                task_id: task.clone(),
            };
            match super::scheduler(asking.bus, "retry-task", &command).await {
                Ok(accepted) => Outcome::done(format!(
                    "Task {task} is retried; it is {} now.",
                    accepted.status().api_name()
                )),
                Err(refused) => refused,
            }
        })
    }
}
