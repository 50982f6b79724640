//! One chat turn: the person's message, the model's answer (said live as it is written), and
//! the tools it may use (`tools`), with what the model should know about the person's work
//! (`context`) in its system prompt. The conversation the model is given is remembered from
//! the turn before (`memory`), so the model is asked before the statement that stores the
//! message, its tools held until the store confirms (`held`).

use mainloop_bus::{Bus, Expect};
use mainloop_events::v1::{AssistantMessagePosted, CommandError, ErrorCode, UserMessagePosted};
use mainloop_events::{Envelope, Payload, subjects};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::compaction::{Compacted, Compactor};
use crate::context::Context;
use crate::held::{self, Go};
use crate::memory::{Memory, RECENT_AT_MOST, Remembered};
use crate::models::{ChatModel, ModelRequest, Role};
use crate::pyramid::Pyramid;
use crate::speech::Speech;
use crate::tools::{Asking, ChatTool, Toolbox};

pub struct Turns {
    pub bus: Bus,
    pub db: PgPool,
    pub llm: std::sync::Arc<dyn ChatModel>,
    pub tools: Vec<Box<dyn ChatTool>>,
    /// What the model is told of `tools`, made once.
    pub specs: std::sync::Arc<[crate::models::Tool]>,
    pub compactor: Compactor,
    pub pyramid: Pyramid,
    pub context: Context,
    pub memory: Memory,
    pub github_web_url: String,
}

#[derive(Debug, Deserialize)]
pub struct PostMessage {
    pub user_id: String,
    pub conversation_id: Option<String>,
    pub message: String,
}

/// What a turn gives the model besides the tools and the conversation: what the model should
/// know about the person's work, and what they said on earlier days (the pyramid of summaries).
struct Background {
    about: String,
    earlier: String,
}

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

/// The message, checked: not empty, not too long, from a user id that can name a subject.
fn checked(command: &PostMessage) -> Result<&str, CommandError> {
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
    Ok(text)
}

/// One turn's names: the person, the conversation (and its title when the message starts it),
/// the person's message and the reply.
struct Turn<'a> {
    user: &'a str,
    conversation: String,
    new_title: Option<String>,
    text: &'a str,
    message_id: String,
    reply_id: String,
}

impl Turns {
    pub async fn post(&self, command: PostMessage) -> Result<Value, CommandError> {
        let text = checked(&command)?;
        let (conversation, new_title) = match &command.conversation_id {
            Some(id) => (id.clone(), None),
            // Titled after the message that started it; the person may rename it.
            None => (
                uuid::Uuid::now_v7().to_string(),
                Some(crate::conversations::title_of(text)),
            ),
        };
        let turn = Turn {
            user: &command.user_id,
            conversation,
            new_title,
            text,
            message_id: uuid::Uuid::now_v7().to_string(),
            reply_id: uuid::Uuid::now_v7().to_string(),
        };
        let today = chrono::Utc::now().date_naive();
        let mut speech = Speech::new(&self.bus, turn.user, &turn.conversation, &turn.reply_id);
        let stored = self.store_and_answer(&turn, today, &mut speech).await?;
        let reply = speech.said().to_string();
        let (messages, message) = self
            .store_reply(&turn.reply_id, &turn.conversation, &reply)
            .await?;
        match stored.after_turn(text, &reply, messages) {
            Some(remembered) => self.memory.keep(&turn.conversation, remembered),
            None => self.memory.forget(&turn.conversation),
        }
        let announcing = self.announce(
            turn.user,
            &turn.conversation,
            Payload::AssistantMessagePosted(AssistantMessagePosted {
                message_id: turn.reply_id.clone(),
                content: reply,
                reply_to: turn.message_id.clone(),
            }),
        );
        tokio::join!(announcing, speech.finished(&message));
        // A conversation no longer than the compaction threshold has nothing to compact.
        if messages > self.compactor.after {
            self.compact_later(&turn.conversation);
        }
        self.remember_later(turn.user, today);
        Ok(json!({"conversation_id": turn.conversation, "message": message}))
    }

    /// Stores the person's message and answers it; returns the conversation as it was before
    /// the message. The model is asked at once, before the store, when this process remembers
    /// the conversation (or it is new): what the model says is said at once and its tools wait
    /// until the store confirms the conversation was as remembered; otherwise what was said is
    /// taken back and the model is asked again with what the store read (`memory`, `held`,
    /// `speech`). The person's message is announced once it is stored.
    async fn store_and_answer(
        &self,
        turn: &Turn<'_>,
        today: chrono::NaiveDate,
        speech: &mut Speech<'_>,
    ) -> Result<Remembered, CommandError> {
        let guess = match turn.new_title {
            Some(_) => Some(Remembered::new_conversation(turn.user)),
            None => self.memory.recall(turn.user, &turn.conversation),
        };
        let (giving, go) = held::go();
        let storing = async {
            // With a guess the model is asked first: its answer is what the person waits for.
            // Yielding once lets the request go out (on a pooled connection, its task runs
            // next) before the statement. Without one the store is on the way: no yield.
            if guess.is_some() {
                tokio::task::yield_now().await;
            }
            let stored = self.store_and_remember(turn, guess.as_ref()).await;
            giving.give(matches!((&guess, &stored), (Some(guess), Ok(stored)) if guess.current(stored)));
            if stored.is_ok() {
                let posted = Payload::UserMessagePosted(UserMessagePosted {
                    message_id: turn.message_id.clone(),
                    content: turn.text.to_string(),
                });
                self.announce(turn.user, &turn.conversation, posted).await;
            }
            stored
        };
        let answering = async {
            let background = self.background(turn.user, today).await;
            let answered = match &guess {
                Some(guess) => self.answer(turn, &background, guess, &go, speech).await,
                None => false,
            };
            (background, answered)
        };
        let ((background, answered), stored) = tokio::join!(answering, storing);
        let stored = stored?;
        if !answered {
            self.answer(turn, &background, &stored, &Go::now(), speech).await;
        }
        Ok(stored)
    }

    /// The person's tasks and earlier days, from what this service keeps warm.
    async fn background(&self, user: &str, today: chrono::NaiveDate) -> Background {
        let (about, earlier) = tokio::join!(self.context.about(user), self.pyramid.recall(user, today));
        let earlier = earlier.unwrap_or_else(|err| {
            tracing::warn!(error = %err, "earlier days could not be recalled");
            String::new()
        });
        Background { about, earlier }
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
    /// conversation of theirs (else "no such conversation") — in one statement that answers what
    /// the conversation was before it: its summary's place and how many messages it had. When
    /// that is the conversation as `guess`ed (this process answered the turn before), the guess
    /// is what the model sees; otherwise the messages after the summary are read (word for word,
    /// at most the newest `RECENT_AT_MOST`, should compaction lag), up to the person's message.
    async fn store_and_remember(
        &self,
        turn: &Turn<'_>,
        guess: Option<&Remembered>,
    ) -> Result<Remembered, CommandError> {
        let statement = match turn.new_title {
            Some(_) => {
                "WITH target AS (INSERT INTO conversations (id, user_id, title, message_count) \
                 VALUES ($2, $5, $6, 1) RETURNING id, summary, summarized_through_id, message_count), \
                 stored AS (INSERT INTO messages (id, conversation_id, role, content) SELECT $1, id, $3, $4 FROM target) \
                 SELECT summary, summarized_through_id, message_count::bigint - 1 FROM target"
            }
            None => {
                "WITH target AS (UPDATE conversations SET message_count = message_count + 1, updated_at = now() \
                 WHERE id = $2 AND user_id = $5 RETURNING id, summary, summarized_through_id, message_count), \
                 stored AS (INSERT INTO messages (id, conversation_id, role, content) SELECT $1, id, $3, $4 FROM target) \
                 SELECT summary, summarized_through_id, message_count::bigint - 1 FROM target"
            }
        };
        let before: Option<(Option<String>, Option<String>, i64)> = sqlx::query_as(statement)
            .bind(&turn.message_id)
            .bind(&turn.conversation)
            .bind("user")
            .bind(turn.text)
            .bind(turn.user)
            .bind(turn.new_title.as_deref().unwrap_or_default())
            .fetch_optional(&self.db)
            .await
            .map_err(internal)?;
        let Some((summary, summarized_through, count)) = before else {
            return Err(CommandError::not_found("no such conversation"));
        };
        let stored = Remembered {
            user: turn.user.to_string(),
            summary,
            summarized_through,
            recent: Default::default(),
            count,
        };
        if let Some(guess) = guess
            && guess.current(&stored)
        {
            return Ok(guess.clone());
        }
        let recent = self
            .recent_before(turn, stored.summarized_through.as_deref())
            .await
            .map_err(internal)?;
        Ok(Remembered { recent, ..stored })
    }

    /// The conversation's messages after the summary and before the person's message, oldest
    /// first (the newest `RECENT_AT_MOST`).
    async fn recent_before(
        &self,
        turn: &Turn<'_>,
        summarized_through: Option<&str>,
    ) -> Result<std::collections::VecDeque<(Role, std::sync::Arc<str>)>, sqlx::Error> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT role, content FROM (SELECT m.role, m.content, m.created_at, m.id FROM messages m \
               WHERE m.conversation_id = $1 \
                 AND (m.created_at, m.id) < (SELECT created_at, id FROM messages WHERE id = $2) \
                 AND ($3::text IS NULL OR (m.created_at, m.id) > (SELECT created_at, id FROM messages WHERE id = $3)) \
               ORDER BY m.created_at DESC, m.id DESC LIMIT $4) newest \
             ORDER BY created_at, id",
        )
        .bind(&turn.conversation)
        .bind(&turn.message_id)
        .bind(summarized_through)
        .bind(RECENT_AT_MOST as i64)
        .fetch_all(&self.db)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(role, content)| {
                let role = if role == "assistant" {
                    Role::Assistant
                } else {
                    Role::User
                };
                (role, content.into())
            })
            .collect())
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
    /// it arrives (`speech`), once `go` is given. A failure is said too, so the reply is never
    /// only a log line. Whether the turn was answered (not dropped for a no).
    async fn answer(
        &self,
        turn: &Turn<'_>,
        background: &Background,
        remembered: &Remembered,
        go: &Go,
        speech: &mut Speech<'_>,
    ) -> bool {
        let request = self.request(turn, background, remembered);
        let toolbox = Toolbox {
            tools: &self.tools,
            asking: Asking {
                bus: &self.bus,
                user: turn.user,
                conversation: &turn.conversation,
                latest: turn.text,
                github_web_url: &self.github_web_url,
            },
            go,
        };
        let llm = &self.llm;
        let answered = speech
            .while_speaking(go, async |deltas| llm.converse(request, &deltas, &toolbox).await)
            .await;
        match answered {
            None => false,
            Some(Ok(())) => true,
            Some(Err(reason)) => {
                tracing::warn!(%reason, model = %self.llm.describe(), "chat turn failed");
                speech.say(&format!("⚠ I could not answer: {reason}"), true).await;
                true
            }
        }
    }

    /// What the model is asked: the system prompt with the person's work, earlier days and the
    /// conversation's summary; the conversation's recent messages and this one; the tools.
    fn request(&self, turn: &Turn<'_>, background: &Background, remembered: &Remembered) -> ModelRequest {
        let mut system = format!("{SYSTEM}\n\n{}", background.about);
        if !background.earlier.is_empty() {
            system.push_str(&format!("\n\n{}", background.earlier));
        }
        if let Some(summary) = &remembered.summary {
            system.push_str(&format!("\n\nThe conversation so far, summarised:\n{summary}"));
        }
        ModelRequest {
            system,
            messages: remembered.history(turn.text),
            tools: self.specs.clone(),
            max_tokens: 2048,
        }
    }
}
