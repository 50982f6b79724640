//! `list_tasks`: the person's tasks as they stand (newest first, at most 50), optionally one
//! status, and what needs them in the inbox — so "what is running?" and "what needs me?" get
//! true answers. Reads the inbox's read model; changes nothing.

use std::time::Duration;

use futures_util::future::BoxFuture;
use mainloop_bus::request;
use serde_json::{Value, json};

use super::{Asking, ChatTool, Outcome};
use crate::models::Tool;

pub struct ListTasks;

impl ChatTool for ListTasks {
    fn spec(&self) -> Tool {
        Tool {
            name: "list_tasks".into(),
            description:
                "The person's tasks with their status, repository and links, and the inbox items that need \
                them. Use it to answer what is running, what is done and what needs the person."
                    .into(),
            schema: json!({"type": "object", "properties": {
                "status": {"type": "string", "description": "only tasks in this status, e.g. implementing, under_review, failed"}
            }}),
        }
    }

    fn run<'a>(&'a self, asking: &'a Asking<'a>, input: &'a Value) -> BoxFuture<'a, Outcome> {
        Box::pin(list(asking, input))
    }
}

async fn list(asking: &Asking<'_>, input: &Value) -> Outcome {
    let status = input["status"].as_str().filter(|s| !s.trim().is_empty());
    let query = json!({"user_id": asking.user, "status": status});
    let tasks: Value = match request::send_json(
        asking.bus,
        "query.inbox.list-tasks",
        &query,
        Duration::from_secs(10),
    )
    .await
    {
        Ok(tasks) => tasks,
        Err(err) => return Outcome::refused(format!("the tasks could not be read: {err}")),
    };
    let needs: Value = request::send_json(
        asking.bus,
        "query.inbox.list-queue",
        &json!({"user_id": asking.user}),
        Duration::from_secs(10),
    )
    .await
    .unwrap_or(Value::Null);
    Outcome::done(describe(&tasks, &needs))
}

/// The tasks and what needs the person, one line each, as the model reads them.
pub fn describe(tasks: &Value, needs: &Value) -> String {
    let tasks: Vec<String> = tasks
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            let mut line = format!(
                "- {} [{}] {} — {}",
                t["id"].as_str().unwrap_or_default(),
                t["status"].as_str().unwrap_or_default(),
                t["repo_url"]
                    .as_str()
                    .unwrap_or_default()
                    .trim_start_matches("https://github.com/"),
                t["description"]
                    .as_str()
                    .unwrap_or_default()
                    .chars()
                    .take(120)
                    .collect::<String>()
            );
            for (label, key) in [("PR", "pr_url"), ("issue", "issue_url"), ("error", "error")] {
                if let Some(value) = t[key].as_str().filter(|v| !v.is_empty()) {
                    line.push_str(&format!(" · {label}: {value}"));
                }
            }
            line
        })
        .collect();
    let waiting: Vec<String> = needs
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| {
            !matches!(
                i["item_type"].as_str(),
                Some("notification" | "feedback_addressed")
            )
        })
        .map(|i| {
            format!(
                "- {} ({}, task {})",
                i["title"].as_str().unwrap_or_default(),
                i["item_type"].as_str().unwrap_or_default(),
                i["task_id"].as_str().unwrap_or_default()
            )
        })
        .collect();
    let tasks = if tasks.is_empty() {
        "No tasks.".to_string()
    } else {
        format!("Tasks (newest first):\n{}", tasks.join("\n"))
    };
    let waiting = if waiting.is_empty() {
        "Nothing in the inbox needs the person.".to_string()
    } else {
        format!("Needs the person:\n{}", waiting.join("\n"))
    };
    format!("{tasks}\n\n{waiting}")
}
