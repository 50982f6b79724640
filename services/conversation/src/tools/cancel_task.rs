//! `cancel_task`: stop one of the person's tasks (its job, issue and pull request are closed with
//! a note) — only when their latest message confirms.

use futures_util::future::BoxFuture;
use serde_json::{Value, json};

use super::{Asking, ChatTool, Outcome, confirms, task_id, unconfirmed};
use crate::models::Tool;

pub struct CancelTask;

impl ChatTool for CancelTask {
    fn spec(&self) -> Tool {
        Tool {
            name: "cancel_task".into(),
            description:
                "Cancel one of the person's tasks: its worker stops, its issue and pull request are closed \
                with a note. Only after the person confirmed."
                    .into(),
            schema: json!({"type": "object", "required": ["task_id"], "properties": {
                "task_id": {"type": "string", "description": "the task's id, from list_tasks"}
            }}),
        }
    }

    fn run<'a>(&'a self, asking: &'a Asking<'a>, input: &'a Value) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            if !confirms(asking.latest) {
                return unconfirmed("cancel");
            }
            let task = match task_id(input) {
                Ok(task) => task,
                Err(refused) => return refused,
            };
            let command = mainloop_events::v1::CancelTask {
                user_id: asking.user.to_string(),
                task_id: task.clone(),
            };
            match super::scheduler(asking.bus, "cancel-task", &command).await {
                Ok(_) => Outcome::done(format!("Task {task} is cancelled.")),
                Err(refused) => refused,
            }
        })
    }
}
