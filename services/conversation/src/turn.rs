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
        // One statement stores the message and reads the conversation's memory, while the
        // person's tasks and earlier days come from what this service keeps warm.
        let user_message = uuid::Uuid::now_v7().to_string();
        let today = chrono::Utc::now().date_naive();
        let (memory, about, earlier) = tokio::join!(
            self.store_and_remember(
                &command.user_id,
                &conversation,
                new.as_deref(),
                &user_message,
                text
            ),
            self.context.about(&command.user_id),
            self.pyramid.recall(&command.user_id, today)
        );
        let (summary, history) = memory?;
        let earlier = earlier.unwrap_or_else(|err| {
            tracing::warn!(error = %err, "earlier days could not be recalled");
            String::new()
        });
        let prepared = Prepared {
            summary,
            history,
            about,
            earlier,
        };

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
        let (messages, message) = self.store_reply(&reply_id, &conversation, &reply).await?;
        let announcing = self.announce(
            &command.user_id,
            &conversation,
            Payload::AssistantMessagePosted(AssistantMessagePosted {
                message_id: reply_id.clone(),
                content: reply,
                reply_to: user_message,
            }),
        );
        tokio::join!(announcing, speech.finished(&message));
        // A conversation no longer than the compaction threshold has nothing to compact.
        if messages > self.compactor.after {
            self.compact_later(&conversation);
        }
        self.remember_later(&command.user_id, today);
        Ok(json!({"conversation_id": conversation, "message": message}))
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

    /// Stores the person's message — with the conversation when it is new, and only in a
    /// conversation of theirs (else "no such conversation") — and reads what the model remembers
    /// of the conversation, in one statement: its summary, and the messages after it word for
    /// word (at most the newest `RECENT_AT_MOST`, should compaction lag), starting with one of the
    /// person's and ending with this one. The statement reads the conversation as it was before
    /// it wrote, so this message is added at the end here.
    async fn store_and_remember(
        &self,
        user: &str,
        conversation: &str,
        new_title: Option<&str>,
        id: &str,
        content: &str,
    ) -> Result<(Option<String>, Vec<Message>), CommandError> {
        macro_rules! then_remember {
            () => {
                "stored AS (INSERT INTO messages (id, conversation_id, role, content) SELECT $1, id, $3, $4 FROM target) \
                 SELECT t.summary, recent.role, recent.content FROM target t LEFT JOIN LATERAL \
                   (SELECT role, content, created_at, id FROM (SELECT m.role, m.content, m.created_at, m.id FROM messages m \
                     WHERE m.conversation_id = t.id AND (t.summarized_through_id IS NULL \
                       OR (m.created_at, m.id) > (SELECT created_at, id FROM messages WHERE id = t.summarized_through_id)) \
                     ORDER BY m.created_at DESC, m.id DESC LIMIT $7) newest) recent ON true \
                 ORDER BY recent.created_at, recent.id"
            };
        }
        let statement = match new_title {
            Some(_) => concat!(
                "WITH target AS (INSERT INTO conversations (id, user_id, title, message_count) \
                 VALUES ($2, $5, $6, 1) RETURNING id, summary, summarized_through_id), ",
                then_remember!()
            ),
            None => concat!(
                "WITH target AS (UPDATE conversations SET message_count = message_count + 1, updated_at = now() \
                 WHERE id = $2 AND user_id = $5 RETURNING id, summary, summarized_through_id), ",
                then_remember!()
            ),
        };
        let rows: Vec<(Option<String>, Option<String>, Option<String>)> = sqlx::query_as(statement)
            .bind(id)
            .bind(conversation)
            .bind("user")
            .bind(content)
            .bind(user)
            .bind(new_title.unwrap_or_default())
            .bind(RECENT_AT_MOST)
            .fetch_all(&self.db)
            .await
            .map_err(internal)?;
        let Some((summary, _, _)) = rows.first() else {
            return Err(CommandError::not_found("no such conversation"));
        };
        let summary = summary.clone();
        let messages = rows
            .into_iter()
            .filter_map(|(_, role, content)| Some((role?, content?)))
            .chain([("user".to_string(), content.to_string())])
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

    /// Stores mainloop's reply in the conversation the person's message was stored in; returns
    /// how many messages the conversation now has, and the reply as the API shows it.
    async fn store_reply(
        &self,
        id: &str,
        conversation: &str,
        content: &str,
    ) -> Result<(i64, Value), CommandError> {
        sqlx::query_as(
            "WITH target AS (UPDATE conversations SET message_count = message_count + 1, updated_at = now() \
             WHERE id = $2 RETURNING id, message_count), \
             stored AS (INSERT INTO messages (id, conversation_id, role, content) \
               SELECT $1, id, 'assistant', $3 FROM target RETURNING *) \
             SELECT target.message_count::bigint, api_message_body(ROW(stored.*)::messages) FROM target, stored",
        )
        .bind(id)
        .bind(conversation)
        .bind(content)
        .fetch_optional(&self.db)
        .await
        .map_err(internal)?
        .ok_or_else(|| CommandError::not_found("no such conversation"))
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
        prepared: Prepared,
        speech: &mut Speech<'_>,
    ) {
        if let Err(reason) = self.converse(user, conversation, latest, prepared, speech).await {
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
