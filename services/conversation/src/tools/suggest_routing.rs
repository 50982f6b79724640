//! `suggest_routing`: when the model cannot tell whether a message is about a running task, the
//! person decides in the inbox: "Route to this task" passes it on, "Create new task" starts one
//! with it on the same repository. Asking changes no work, so it needs no confirmation.

use futures_util::future::BoxFuture;
use serde_json::{Value, json};

use super::{Asking, ChatTool, Outcome, task_id};
use crate::models::Tool;

pub struct SuggestRouting;

impl ChatTool for SuggestRouting {
    fn spec(&self) -> Tool {
        Tool {
            name: "suggest_routing".into(),
            description:
                "When you are not sure whether the person's message is about one of their running tasks, \
                ask them in the inbox: they choose to pass it on to that task or to start a new task with it."
                    .into(),
            schema: json!({"type": "object", "required": ["task_id", "message"], "properties": {
                "task_id": {"type": "string", "description": "the running task it may be about, from list_tasks"},
                "message": {"type": "string", "description": "the person's message, as they said it"}
            }}),
        }
    }

    fn run<'a>(&'a self, asking: &'a Asking<'a>, input: &'a Value) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let task = match task_id(input) {
                Ok(task) => task,
                Err(refused) => return refused,
            };
            let message = input["message"].as_str().unwrap_or_default().trim();
            if message.is_empty() {
                return Outcome::refused("message is empty: give the person's message");
            }
            let command = mainloop_events::v1::SuggestRouting {
                user_id: asking.user.to_string(),
                task_id: task.clone(),
                message: message.to_string(),
                source: format!("chat:{}", asking.conversation),
            };
            match super::scheduler(asking.bus, "suggest-routing", &command).await {
                Ok(_) => Outcome::done(format!(
                    "The person is asked in their inbox whether this is about task {task}; their answer is applied there."
                )),
                Err(refused) => refused,
            }
        })
    }
}
