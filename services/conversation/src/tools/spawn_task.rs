//! `spawn_task`: start a worker on a GitHub repository — only when the person's latest message
//! confirms, only on a repository that exists and that the token may push to. The task's id is
//! derived from the conversation, repository and description, so the same request made again
//! (a retried turn, a model that calls twice) starts one task, not two.

use futures_util::future::BoxFuture;
use mainloop_bus::request::{self, RequestError};
use mainloop_events::v1::{ErrorCode, RepoRef};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{Asking, ChatTool, Outcome, confirms, unconfirmed};
use crate::models::Tool;
use crate::repo_url;

pub struct SpawnTask;

impl ChatTool for SpawnTask {
    fn spec(&self) -> Tool {
        Tool {
            name: "spawn_task".into(),
            description:
                "Start a worker on a GitHub repository: it plans in an issue, waits for approval, implements \
                in a draft pull request and fixes CI. Only after the person confirmed."
                    .into(),
            schema: json!({"type": "object", "required": ["repo_url", "task_description"], "properties": {
                "repo_url": {"type": "string", "description": "https://github.com/OWNER/NAME"},
                "task_description": {"type": "string"},
                "skip_planning": {"type": "boolean"}
            }}),
        }
    }

    fn run<'a>(&'a self, asking: &'a Asking<'a>, input: &'a Value) -> BoxFuture<'a, Outcome> {
        Box::pin(spawn(asking, input))
    }
}

async fn spawn(asking: &Asking<'_>, input: &Value) -> Outcome {
    if !confirms(asking.latest) {
        return unconfirmed("start");
    }
    let repo = match repo_url::parse(
        input["repo_url"].as_str().unwrap_or_default(),
        asking.github_web_url,
    ) {
        Ok(repo) => repo,
        Err(reason) => return Outcome::refused(reason),
    };
    if let Err(problem) = check_repository(asking, &repo).await {
        return Outcome::refused(problem);
    }
    let description = input["task_description"]
        .as_str()
        .unwrap_or_default()
        .trim()
        .to_string();
    let task_id = same_request(asking.conversation, &repo, &description);
    let command = mainloop_events::v1::SpawnTask {
        user_id: asking.user.to_string(),
        task_id: task_id.clone(),
        repo: Some(repo.clone()),
        description,
        skip_plan: input["skip_planning"].as_bool().unwrap_or(false),
        conversation_id: asking.conversation.to_string(),
    };
    match super::scheduler(asking.bus, "spawn-task", &command).await {
        Ok(_) => Outcome::done(format!("Task {task_id} spawned on {}/{}.", repo.owner, repo.name)),
        Err(refused) => Outcome::refused(format!("the task could not be spawned: {}", refused.content)),
    }
}

/// The task id of this request in this conversation: the same request gets the same id.
fn same_request(conversation: &str, repo: &RepoRef, description: &str) -> String {
    let digest = Sha256::digest(format!(
        "{conversation}\n{}/{}\n{}",
        repo.owner.to_lowercase(),
        repo.name.to_lowercase(),
        description.split_whitespace().collect::<Vec<_>>().join(" ")
    ));
    let mut bytes = [0_u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Uuid::from_bytes(bytes).to_string()
}

/// Before a task is spawned: the repository exists, our token can see it and may push to it.
/// What is wrong goes back to the person now, not at the first job. When GitHub cannot be asked
/// (no watcher running, an outage) the task is spawned; its jobs ask again.
async fn check_repository(asking: &Asking<'_>, repo: &RepoRef) -> Result<(), String> {
    let query = json!({"user_id": asking.user, "owner": repo.owner, "name": repo.name});
    let answer: Result<Value, RequestError> = request::send_json(
        asking.bus,
        "query.github.repo",
        &query,
        std::time::Duration::from_secs(15),
    )
    .await;
    let full_name = format!("{}/{}", repo.owner, repo.name);
    match answer {
        Ok(info) if info["can_push"] == false => Err(format!(
            "The GitHub token can see {full_name} but cannot push to it. Give it write access \
             (contents, issues and pull requests), then ask again."
        )),
        Ok(_) => Ok(()),
        Err(RequestError::Rejected {
            code: ErrorCode::NotFound,
            ..
        }) => Err(format!(
            "{full_name} is not on GitHub, or the GitHub token cannot see it. Check the name, or give the token access to it."
        )),
        Err(RequestError::Rejected { message, .. }) if message.contains("GITHUB_TOKEN") => Err(format!(
            "GitHub is not set up: {message}. Set GITHUB_TOKEN (or log in with `gh auth login`) and restart mainloop."
        )),
        Err(err) => {
            tracing::warn!(error = %err, repo = %full_name, "could not check the repository; spawning anyway");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use mainloop_events::v1::RepoRef;

    use super::same_request;

    #[test]
    fn the_same_request_gets_the_same_task_id() {
        let repo = |owner: &str| RepoRef {
            owner: owner.into(),
            name: "widgets".into(),
            html_url: String::new(),
        };
        let first = same_request("c1", &repo("acme"), "add a  quick start");
        assert_eq!(first, same_request("c1", &repo("Acme"), "add a quick start "));
        assert_ne!(first, same_request("c2", &repo("acme"), "add a quick start"));
        assert_ne!(first, same_request("c1", &repo("acme"), "add a license"));
        assert!(uuid::Uuid::parse_str(&first).is_ok(), "{first}");
    }
}
