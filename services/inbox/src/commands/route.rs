//! The answer to a routing suggestion ("is this message about this task?"): "Route to this task"
//! passes the message on to the task (`cmd.scheduler.add-context`); "Create new task" starts a
//! task with the message on the same repository (`cmd.scheduler.spawn-task`; its id is the
//! item's, so the answer starts one task however often it arrives).

use mainloop_events::v1::{AddContext, CommandError, RepoRef, SpawnTask};
use serde_json::Value;

use super::Context;
use super::respond::forward;

pub async fn apply(
    context: &Context,
    user_id: &str,
    task_id: &str,
    item_id: &str,
    response: &str,
    item: &Value,
) -> Result<(), CommandError> {
    let message = item["message"].as_str().unwrap_or_default().to_string();
    let source = item["source"].as_str().unwrap_or_default().to_string();
    match response.to_lowercase().as_str() {
        "route to this task" => {
            let add = AddContext {
                user_id: user_id.to_string(),
                task_id: task_id.to_string(),
                context: message,
                source,
            };
            forward(context, "add-context", &add).await?;
        }
        "create new task" => {
            let repo = repo(item["repo_url"].as_str().unwrap_or_default()).ok_or_else(|| {
                CommandError::invalid("the task's repository is unknown; start the new task in the chat")
            })?;
            let spawn = SpawnTask {
                user_id: user_id.to_string(),
                task_id: item_id.to_string(),
                repo: Some(repo),
                description: message,
                skip_plan: false,
                conversation_id: source.strip_prefix("chat:").unwrap_or_default().to_string(),
            };
            forward(context, "spawn-task", &spawn).await?;
        }
        _ => {
            return Err(CommandError::invalid(
                "respond with \"Route to this task\" or \"Create new task\"",
            ));
        }
    }
    Ok(())
}

/// `https://github.com/owner/name` (or a GitHub Enterprise URL) as a repository.
fn repo(url: &str) -> Option<RepoRef> {
    let mut parts = url.trim_end_matches('/').rsplit('/');
    let name = parts.next()?.trim_end_matches(".git").to_string();
    let owner = parts.next()?.to_string();
    (!owner.is_empty() && !name.is_empty() && url.starts_with("http")).then(|| RepoRef {
        owner,
        name,
        html_url: url.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::repo;

    #[test]
    fn repository_urls_name_their_repository() {
        let widgets = repo("https://github.com/acme/widgets").unwrap_or_default();
        assert_eq!(
            (widgets.owner.as_str(), widgets.name.as_str()),
            ("acme", "widgets")
        );
        assert!(repo("").is_none());
        assert!(repo("widgets").is_none());
    }
}
