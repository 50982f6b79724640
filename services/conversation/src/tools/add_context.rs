//! `add_context_to_task`: a follow-up about a running task reaches it. The scheduler records it
//! (`ContextAdded`) and every job the task runs from then on reads it; a task in review takes it
//! as review feedback at once. It adds to the work the person already started, so it needs no
//! confirmation.

use futures_util::future::BoxFuture;
use serde_json::{Value, json};

use super::{Asking, ChatTool, Outcome, task_id};
use crate::models::Tool;

pub struct AddContext;

impl ChatTool for AddContext {
    fn spec(&self) -> Tool {
        Tool {
            name: "add_context_to_task".into(),
            description: "Pass what the person just said on to one of their running tasks (a correction, a detail, \
                something more to do); its next job reads it. Use it when the message is about a task already running."
                .into(),
            schema: json!({"type": "object", "required": ["task_id", "context"], "properties": {
                "task_id": {"type": "string", "description": "the task's id, from list_tasks"},
                "context": {"type": "string", "description": "what the task should know, in the person's words"}
            }}),
        }
    }

    fn run<'a>(&'a self, asking: &'a Asking<'a>, input: &'a Value) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let task = match task_id(input) {
                Ok(task) => task,
                Err(refused) => return refused,
            };
            let context = input["context"].as_str().unwrap_or_default().trim();
            if context.is_empty() {
                return Outcome::refused("context is empty: say what the task should know");
            }
            let command = mainloop_events::v1::AddContext {
                user_id: asking.user.to_string(),
                task_id: task.clone(),
                context: context.to_string(),
                source: format!("chat:{}", asking.conversation),
            };
            match super::scheduler(asking.bus, "add-context", &command).await {
                Ok(accepted) => Outcome::done(format!(
                    "Passed on to task {task} ({}); its next job reads it.",
                    accepted.status().api_name()
                )),
                Err(refused) => refused,
            }
        })
    }
}
