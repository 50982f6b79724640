//! One chat turn: the person's message, the model's answer (said live as it is written), and
//! the tools it may use (`tools`), with what the model should know about the person's work
//! (`context`) in its system prompt.

use mainloop_bus::{Bus, Expect};
use mainloop_events::v1::{AssistantMessagePosted, CommandError, ErrorCode, UserMessagePosted};
use mainloop_events::{Envelope, Payload, subjects};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::compaction::{Compacted, Compactor};
use crate::context::Context;
use crate::models::{ChatModel, Message, ModelRequest, Role};
use crate::pyramid::Pyramid;
use crate::speech::Speech;
use crate::tools::{Asking, ChatTool, Toolbox};

pub struct Turns {
    pub bus: Bus,
    pub db: PgPool,
    pub llm: std::sync::Arc<dyn ChatModel>,
    pub tools: Vec<Box<dyn ChatTool>>,
    pub compactor: Compactor,
    pub pyramid: Pyramid,
    pub context: Context,
    pub github_web_url: String,
}

#[derive(Debug, Deserialize)]
pub struct PostMessage {
    pub user_id: String,
    pub conversation_id: Option<String>,
    pub message: String,
}

/// What a turn gives the model besides the tools: the conversation's summary, its messages
/// since, and what the model should know about the person's work.
struct Prepared {
    summary: Option<String>,
    history: Vec<Message>,
    about: String,
    /// What the person said on earlier days, from the pyramid of summaries.
    earlier: String,
}

/// Messages given word for word at most, should compaction lag behind.
const RECENT_AT_MOST: i64 = 60;

const SYSTEM: &str = "You are the main thread of mainloop, which runs AI coding workers on GitHub repositories. \
When the person asks for development work, restate what you understood, name the repository (ask for its GitHub URL if \
it is missing) and ask them to confirm. Only after they confirm, call spawn_task. A worker plans in a GitHub issue, waits \
for the person's approval, implements in a draft pull request and fixes CI. When a message is about a task already \
running (a correction, a detail, more to do), pass it on with add_context_to_task instead of starting a new task; \
when you cannot tell, ask the person with suggest_routing. \
Use list_tasks to answer what is running or what needs the person; never guess. Cancelling or retrying a task needs \
the person's confirmation first. Keep answers short.";

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
        let (conversation, new) = match &command.conversation_id {
            Some(id) => (id.clone(), None),
            // Titled after the message that started it; the person may rename it.
            None => (
                uuid::Uuid::now_v7().to_string(),
                Some(crate::conversations::title_of(text)),
            ),
        };
        // The message is stored and announced while what the model needs is read: the first
        // words of the reply wait for the slower of the two, not for both.
        let user_message = uuid::Uuid::now_v7().to_string();
        let storing = self.store_user_message(
            &command.user_id,
            &conversation,
            new.as_deref(),
            &user_message,
            text,
        );
        let today = chrono::Utc::now().date_naive();
        let remembering = async {
            let (memory, about, earlier) = tokio::join!(
                self.memory(&conversation, &user_message, text),
                self.context.about(&command.user_id),
                self.pyramid.recall(&command.user_id, today)
            );
            let earlier = earlier.unwrap_or_else(|err| {
                tracing::warn!(error = %err, "earlier days could not be recalled");
                String::new()
            });
            memory.map(|(summary, history)| Prepared {
                summary,
                history,
                about,
                earlier,
            })
        };
        let (stored, prepared) = tokio::join!(storing, remembering);
        stored?;

        let reply_id = uuid::Uuid::now_v7().to_string();
        let mut speech = Speech::new(&self.bus, &command.user_id, &conversation, &reply_id);
        // The person's message is announced while the model thinks (before the reply is).
        let announcing = self.announce(
            &command.user_id,
            &conversation,
            Payload::UserMessagePosted(UserMessagePosted {
                message_id: user_message.clone(),
                content: text.to_string(),
            }),
        );
        let answering = self.answer(&command.user_id, &conversation, text, prepared, &mut speech);
        tokio::join!(announcing, answering);
        let reply = speech.said().to_string();
        let messages = self.store_reply(&reply_id, &conversation, &reply).await?;
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
        // A conversation no longer than the compaction threshold has nothing to compact.
        if messages > self.compactor.after {
            self.compact_later(&conversation);
        }
        self.remember_later(&command.user_id, today);
        Ok(json!({"conversation_id": conversation, "message": message}))
    }

    /// What the model remembers of the conversation: its summary, and the messages after it
    /// word for word (at most the newest `RECENT_AT_MOST`, should compaction lag), starting with
    /// one of the person's and ending with their latest (`latest_id`, which may or may not be
    /// stored yet: it is read apart from the rest).
    async fn memory(
        &self,
        conversation: &str,
        latest_id: &str,
        latest: &str,
    ) -> Result<(Option<String>, Vec<Message>), sqlx::Error> {
        // One read: the summary rides along on each message row (and alone when there is none).
        let recent: Vec<(Option<String>, Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT c.summary, recent.role, recent.content FROM conversations c LEFT JOIN LATERAL \
               (SELECT role, content, created_at, id FROM (SELECT m.role, m.content, m.created_at, m.id FROM messages m \
                 WHERE m.conversation_id = c.id AND m.id <> $3 AND (c.summarized_through_id IS NULL \
                   OR (m.created_at, m.id) > (SELECT created_at, id FROM messages WHERE id = c.summarized_through_id)) \
                 ORDER BY m.created_at DESC, m.id DESC LIMIT $2) newest) recent ON true \
             WHERE c.id = $1 ORDER BY recent.created_at, recent.id",
        )
        .bind(conversation)
        .bind(RECENT_AT_MOST)
        .bind(latest_id)
        .fetch_all(&self.db)
        .await?;
        let summary = recent.first().and_then(|(summary, _, _)| summary.clone());
        let recent = recent
            .into_iter()
            .filter_map(|(_, role, content)| Some((role?, content?)));
        let messages = recent
            .into_iter()
            .chain([("user".to_string(), latest.to_string())])
            .skip_while(|(role, _)| role == "assistant")
            .map(|(role, content)| {
                let role = if role == "assistant" {
                    Role::Assistant
                } else {
                    Role::User
                };
                Message::text(role, &content)
            })
            .collect();
        Ok((summary, messages))
    }

    /// Writes the summaries of the person's past days, weeks and months that are missing, in
    /// the background, once a day (see `pyramid`).
    fn remember_later(&self, user: &str, today: chrono::NaiveDate) {
        let (pyramid, user) = (self.pyramid.clone(), user.to_string());
        tokio::spawn(async move {
            match pyramid.build_once_a_day(&user, today).await {
                Ok(0) => {}
                Ok(written) => tracing::info!(%user, written, "earlier days summarised"),
                Err(err) => {
                    tracing::warn!(%user, error = %err, "earlier days not summarised; the next turn tries again")
                }
            }
        });
    }

    /// Compacts the conversation in the background when it has grown (see `compaction`).
    fn compact_later(&self, conversation: &str) {
        let (compactor, conversation) = (self.compactor.clone(), conversation.to_string());
        tokio::spawn(async move {
            match compactor.compact(&conversation).await {
                Ok(Compacted::Through { messages, .. }) => {
                    tracing::info!(%conversation, messages, "conversation compacted")
                }
                Ok(_) => {}
                Err(err) => {
                    tracing::warn!(%conversation, error = %err, "compaction failed; the next turn tries again")
                }
            }
        });
    }

    /// Stores the person's message — in one statement, with the conversation when it is new,
    /// and only in a conversation of theirs (else "no such conversation").
    async fn store_user_message(
        &self,
        user: &str,
        conversation: &str,
        new_title: Option<&str>,
        id: &str,
        content: &str,
    ) -> Result<(), CommandError> {
        let statement = match new_title {
            Some(_) => {
                "WITH target AS (INSERT INTO conversations (id, user_id, title, message_count) \
                 VALUES ($2, $5, $6, 1) RETURNING id) \
                 INSERT INTO messages (id, conversation_id, role, content) SELECT $1, id, $3, $4 FROM target"
            }
            None => {
                "WITH target AS (UPDATE conversations SET message_count = message_count + 1, updated_at = now() \
                 WHERE id = $2 AND user_id = $5 RETURNING id) \
                 INSERT INTO messages (id, conversation_id, role, content) SELECT $1, id, $3, $4 FROM target"
            }
        };
        let stored = sqlx::query(statement)
            .bind(id)
            .bind(conversation)
            .bind("user")
            .bind(content)
            .bind(user)
            .bind(new_title.unwrap_or_default())
            .execute(&self.db)
            .await
            .map_err(internal)?
            .rows_affected();
        if stored == 0 {
            return Err(CommandError::not_found("no such conversation"));
        }
        Ok(())
    }

    /// Stores mainloop's reply in the conversation the person's message was stored in; returns
    /// how many messages the conversation now has.
    async fn store_reply(&self, id: &str, conversation: &str, content: &str) -> Result<i64, CommandError> {
        let count: Option<i64> = sqlx::query_scalar(
            "WITH target AS (UPDATE conversations SET message_count = message_count + 1, updated_at = now() \
             WHERE id = $2 RETURNING id, message_count), \
             stored AS (INSERT INTO messages (id, conversation_id, role, content) SELECT $1, id, 'assistant', $3 FROM target) \
             SELECT message_count::bigint FROM target",
        )
        .bind(id)
        .bind(conversation)
        .bind(content)
        .fetch_optional(&self.db)
        .await
        .map_err(internal)?;
        Ok(count.unwrap_or(0))
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
    async fn answer(
        &self,
        user: &str,
        conversation: &str,
        latest: &str,
        prepared: Result<Prepared, sqlx::Error>,
        speech: &mut Speech<'_>,
    ) {
        let outcome = match prepared {
            Ok(prepared) => self.converse(user, conversation, latest, prepared, speech).await,
            Err(err) => Err(format!("the conversation could not be read: {err}")),
        };
        if let Err(reason) = outcome {
            tracing::warn!(%reason, model = %self.llm.describe(), "chat turn failed");
            speech.say(&format!("⚠ I could not answer: {reason}"), true).await;
        }
    }

    async fn converse(
        &self,
        user: &str,
        conversation: &str,
        latest: &str,
        prepared: Prepared,
        speech: &mut Speech<'_>,
    ) -> Result<(), String> {
        let Prepared {
            summary,
            history,
            about,
            earlier,
        } = prepared;
        let mut system = format!("{SYSTEM}\n\n{about}");
        if !earlier.is_empty() {
            system.push_str(&format!("\n\n{earlier}"));
        }
        if let Some(summary) = summary {
            system.push_str(&format!("\n\nThe conversation so far, summarised:\n{summary}"));
        }
        let request = ModelRequest {
            system,
            messages: history,
            tools: self.tools.iter().map(|t| t.spec()).collect(),
            max_tokens: 2048,
        };
        let toolbox = Toolbox {
            tools: &self.tools,
            asking: Asking {
                bus: &self.bus,
                user,
                conversation,
                latest,
                github_web_url: &self.github_web_url,
            },
        };
        let llm = &self.llm;
        speech
            .while_speaking(async |deltas| llm.converse(request, &deltas, &toolbox).await)
            .await
            .map_err(|e| e.to_string())
    }
}
