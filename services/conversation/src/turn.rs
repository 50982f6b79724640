//! One chat turn: the person's message, the model's answer, and the tools it may use. The model
//! has one tool, `spawn_task`, and it only works when the person's latest message confirms:
//! confirmation is enforced here, not left to the prompt.

use std::time::Duration;

use mainloop_bus::request::RequestError;
use mainloop_bus::{Bus, Expect, request};
use mainloop_events::v1::{
    AssistantMessagePosted, CommandError, ErrorCode, RepoRef, SpawnTask, TaskAccepted, UserMessagePosted,
};
use mainloop_events::{Envelope, Payload, subjects};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::models::{Block, ChatModel, Message, ModelRequest, Role, Stop, Tool};
use crate::repo_url;
use crate::speech::Speech;

pub struct Turns {
    pub bus: Bus,
    pub db: PgPool,
    pub llm: std::sync::Arc<dyn ChatModel>,
    pub github_web_url: String,
}

#[derive(Debug, Deserialize)]
pub struct PostMessage {
    pub user_id: String,
    pub conversation_id: Option<String>,
    pub message: String,
}

const SYSTEM: &str = "You are the main thread of mainloop, which runs AI coding workers on GitHub repositories. \
When the person asks for development work, restate what you understood, name the repository (ask for its GitHub URL if \
it is missing) and ask them to confirm. Only after they confirm, call spawn_task. A worker plans in a GitHub issue, waits \
for the person's approval, implements in a draft pull request and fixes CI. Keep answers short.";

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

/// Whether the person's message confirms what was proposed.
pub fn confirms(message: &str) -> bool {
    let lower = message.trim().to_lowercase();
    let lower = lower.trim_end_matches(['.', '!']);
    CONFIRMATIONS.contains(&lower) || lower.starts_with("yes") || lower.contains("i confirm")
}

fn tools() -> Vec<Tool> {
    vec![Tool {
        name: "spawn_task".into(),
        description: "Start a worker on a GitHub repository. Only after the person confirmed.".into(),
        schema: json!({"type": "object", "required": ["repo_url", "task_description"], "properties": {
            "repo_url": {"type": "string", "description": "https://github.com/OWNER/NAME"},
            "task_description": {"type": "string"},
            "skip_planning": {"type": "boolean"}
        }}),
    }]
}

fn internal(err: sqlx::Error) -> CommandError {
    tracing::error!(error = %err, "conversation store failed");
    CommandError::new(ErrorCode::Internal, "the conversation store is unavailable")
}

impl Turns {
    pub async fn post(&self, command: PostMessage) -> Result<Value, CommandError> {
        let text = command.message.trim();
        if text.is_empty() {
            return Err(CommandError::invalid("the message is empty"));
        }
        if text.len() > 32_000 {
            return Err(CommandError::invalid(
                "the message is longer than 32,000 characters",
            ));
        }
        subjects::token("user id", &command.user_id).map_err(|e| CommandError::invalid(e.to_string()))?;
        let conversation = match &command.conversation_id {
            Some(id) => {
                let found: Option<String> =
                    sqlx::query_scalar("SELECT id FROM conversations WHERE id = $1 AND user_id = $2")
                        .bind(id)
                        .bind(&command.user_id)
                        .fetch_optional(&self.db)
                        .await
                        .map_err(internal)?;
                found.ok_or_else(|| CommandError::not_found("no such conversation"))?
            }
            None => {
                let id = uuid::Uuid::now_v7().to_string();
                sqlx::query("INSERT INTO conversations (id, user_id) VALUES ($1, $2)")
                    .bind(&id)
                    .bind(&command.user_id)
                    .execute(&self.db)
                    .await
                    .map_err(internal)?;
                id
            }
        };
        let user_message = self.store(&conversation, "user", text).await?;
        self.announce(
            &command.user_id,
            &conversation,
            Payload::UserMessagePosted(UserMessagePosted {
                message_id: user_message.clone(),
                content: text.to_string(),
            }),
        )
        .await;

        let reply_id = uuid::Uuid::now_v7().to_string();
        let mut speech = Speech::new(&self.bus, &command.user_id, &conversation, &reply_id);
        self.answer(&command.user_id, &conversation, text, &mut speech)
            .await;
        let reply = speech.said().to_string();
        self.store_as(&reply_id, &conversation, "assistant", &reply)
            .await?;
        self.announce(
            &command.user_id,
            &conversation,
            Payload::AssistantMessagePosted(AssistantMessagePosted {
                message_id: reply_id.clone(),
                content: reply,
                reply_to: user_message,
            }),
        )
        .await;
        let message: Value = sqlx::query_scalar("SELECT body FROM api_messages WHERE id = $1")
            .bind(&reply_id)
            .fetch_one(&self.db)
            .await
            .map_err(internal)?;
        speech.finished(&message).await;
        Ok(json!({"conversation_id": conversation, "message": message}))
    }

    async fn store(&self, conversation: &str, role: &str, content: &str) -> Result<String, CommandError> {
        let id = uuid::Uuid::now_v7().to_string();
        self.store_as(&id, conversation, role, content).await?;
        Ok(id)
    }

    async fn store_as(
        &self,
        id: &str,
        conversation: &str,
        role: &str,
        content: &str,
    ) -> Result<(), CommandError> {
        let mut tx = self.db.begin().await.map_err(internal)?;
        sqlx::query("INSERT INTO messages (id, conversation_id, role, content) VALUES ($1, $2, $3, $4)")
            .bind(id)
            .bind(conversation)
            .bind(role)
            .bind(content)
            .execute(&mut *tx)
            .await
            .map_err(internal)?;
        sqlx::query(
            "UPDATE conversations SET message_count = message_count + 1, updated_at = now() WHERE id = $1",
        )
        .bind(conversation)
        .execute(&mut *tx)
        .await
        .map_err(internal)?;
        tx.commit().await.map_err(internal)?;
        Ok(())
    }

    /// CHAT events, for other tools and the live feed; the rows are the conversation's record.
    async fn announce(&self, user: &str, conversation: &str, payload: Payload) {
        let Ok(subject) = subjects::chat(user, conversation) else {
            return;
        };
        if let Err(err) = self
            .bus
            .publish(&subject, &Envelope::new(user, conversation, payload), Expect::Any)
            .await
        {
            tracing::warn!(error = %err, "chat event not published");
        }
    }

    /// Runs the model, with its tools, until it answers in words; what it writes is said live as
    /// it arrives (`speech`). A failure is said too, so the reply is never only a log line.
    async fn answer(&self, user: &str, conversation: &str, latest: &str, speech: &mut Speech<'_>) {
        if let Err(reason) = self.converse(user, conversation, latest, speech).await {
            tracing::warn!(%reason, model = %self.llm.describe(), "chat turn failed");
            speech.say(&format!("⚠ I could not answer: {reason}"), true).await;
        }
    }

    async fn converse(
        &self,
        user: &str,
        conversation: &str,
        latest: &str,
        speech: &mut Speech<'_>,
    ) -> Result<(), String> {
        let history: Vec<(String, String)> = sqlx::query_as(
            "SELECT role, content FROM (SELECT role, content, created_at FROM messages WHERE conversation_id = $1 \
             ORDER BY created_at DESC LIMIT 20) recent ORDER BY created_at",
        )
        .bind(conversation)
        .fetch_all(&self.db)
        .await
        .map_err(|e| e.to_string())?;
        let mut request = ModelRequest {
            system: SYSTEM.to_string(),
            messages: history
                .into_iter()
                .map(|(role, content)| {
                    let role = if role == "assistant" {
                        Role::Assistant
                    } else {
                        Role::User
                    };
                    Message::text(role, &content)
                })
                .collect(),
            tools: tools(),
            max_tokens: 2048,
        };
        for _ in 0..4 {
            let llm = &self.llm;
            let reply = speech
                .while_speaking(async |deltas| llm.turn(&request, &deltas).await)
                .await
                .map_err(|e| e.to_string())?;
            let calls: Vec<&Block> = reply
                .blocks
                .iter()
                .filter(|b| matches!(b, Block::ToolUse { .. }))
                .collect();
            if reply.stop != Stop::ToolUse || calls.is_empty() {
                return Ok(());
            }
            let mut results = Vec::new();
            for call in calls {
                if let Block::ToolUse { id, name, input } = call {
                    let (content, is_error) = self.spawn(user, conversation, latest, name, input).await;
                    results.push(Block::ToolResult {
                        tool_use_id: id.clone(),
                        content,
                        is_error,
                    });
                }
            }
            request.messages.push(Message {
                role: Role::Assistant,
                blocks: reply.blocks.clone(),
            });
            request.messages.push(Message {
                role: Role::User,
                blocks: results,
            });
        }
        Err("the model kept calling tools".into())
    }

    async fn spawn(
        &self,
        user: &str,
        conversation: &str,
        latest: &str,
        name: &str,
        input: &Value,
    ) -> (String, bool) {
        if name != "spawn_task" {
            return (format!("there is no tool {name}"), true);
        }
        if !confirms(latest) {
            return (
                "The person has not confirmed. Ask them to confirm before spawning.".into(),
                true,
            );
        }
        let repo = match repo_url::parse(
            input["repo_url"].as_str().unwrap_or_default(),
            &self.github_web_url,
        ) {
            Ok(repo) => repo,
            Err(reason) => return (reason, true),
        };
        if let Err(problem) = self.check_repository(user, &repo).await {
            return (problem, true);
        }
        let task_id = uuid::Uuid::now_v7().to_string();
        let command = SpawnTask {
            user_id: user.to_string(),
            task_id: task_id.clone(),
            repo: Some(repo.clone()),
            description: input["task_description"].as_str().unwrap_or_default().to_string(),
            skip_plan: input["skip_planning"].as_bool().unwrap_or(false),
            conversation_id: conversation.to_string(),
        };
        match request::send::<_, TaskAccepted>(
            &self.bus,
            "cmd.scheduler.spawn-task",
            &command,
            Duration::from_secs(15),
        )
        .await
        {
            Ok(_) => (
                format!("Task {task_id} spawned on {}/{}.", repo.owner, repo.name),
                false,
            ),
            Err(err) => (format!("the task could not be spawned: {err}"), true),
        }
    }
}

impl Turns {
    /// Before a task is spawned: the repository exists, our token can see it and may push to
    /// it. What is wrong goes back to the person now, not at the first job. When GitHub cannot
    /// be asked (no watcher running, an outage) the task is spawned; its jobs ask again.
    async fn check_repository(&self, user: &str, repo: &RepoRef) -> Result<(), String> {
        let query = json!({"user_id": user, "owner": repo.owner, "name": repo.name});
        let answer: Result<Value, RequestError> =
            request::send_json(&self.bus, "query.github.repo", &query, Duration::from_secs(15)).await;
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
}

#[cfg(test)]
mod tests {
    use super::confirms;

    #[test]
    fn only_a_confirmation_confirms() {
        for yes in ["yes", "Yes!", "I confirm", "go ahead.", "yes, do it"] {
            assert!(confirms(yes), "{yes}");
        }
        for no in [
            "add a README to https://github.com/a/b",
            "no",
            "maybe later",
            "what would you do?",
        ] {
            assert!(!confirms(no), "{no}");
        }
    }
}
