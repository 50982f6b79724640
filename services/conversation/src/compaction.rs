//! Compaction: a long conversation keeps its recent messages word for word and the rest as one
//! running summary. When more than `after` messages are not in the summary, all but the newest
//! `keep` of them are summarised, in order, together with the summary so far, into the new
//! summary; `summarized_through_id` then names the last message it covers. The original's
//! compaction re-summarised the same 30 messages forever; here each message is summarised once:
//!
//! - The range is always "after `summarized_through_id`", in (created_at, id) order.
//! - One compaction at a time per conversation: a transaction-scoped advisory lock, taken without
//!   waiting; a second trigger finds it held and leaves.
//! - The new summary is stored only if `summarized_through_id` is still what it was read as, in
//!   one statement, so a crash before it loses nothing (the next trigger redoes the range) and a
//!   crash after it repeats nothing.

use std::sync::Arc;

use sqlx::PgPool;

use crate::models::{ChatModel, Message, ModelRequest, Role};

const INSTRUCTIONS: &str = "You keep the memory of a conversation between a person and mainloop, which runs AI \
coding workers on GitHub repositories. Write the new summary: everything in the summary so far, plus what the new \
messages add — decisions, repositories, tasks started or changed, preferences, open questions. Plain prose, at most \
300 words. Answer with the summary only.";

#[derive(Clone)]
pub struct Compactor {
    pub db: PgPool,
    pub model: Arc<dyn ChatModel>,
    /// Compact when more messages than this are outside the summary.
    pub after: i64,
    /// Keep this many newest messages word for word.
    pub keep: i64,
}

/// What one compaction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compacted {
    /// Nothing to do: few messages outside the summary.
    NotNeeded,
    /// Another compaction of this conversation is running.
    Busy,
    /// The summary now covers messages up to and including this id.
    Through { message_id: String, messages: usize },
}

#[derive(Debug, thiserror::Error)]
pub enum CompactionError {
    #[error("the conversation store failed: {0}")]
    Store(#[from] sqlx::Error),
    #[error("the summary could not be written: {0}")]
    Model(String),
}

#[derive(sqlx::FromRow)]
struct Said {
    id: String,
    role: String,
    content: String,
}

impl Compactor {
    /// Compacts `conversation` if it needs it.
    pub async fn compact(&self, conversation: &str) -> Result<Compacted, CompactionError> {
        let mut tx = self.db.begin().await?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(hashtextextended($1, 7))")
            .bind(conversation)
            .fetch_one(&mut *tx)
            .await?;
        if !locked {
            return Ok(Compacted::Busy);
        }
        let (summary, through): (Option<String>, Option<String>) =
            sqlx::query_as("SELECT summary, summarized_through_id FROM conversations WHERE id = $1")
                .bind(conversation)
                .fetch_one(&mut *tx)
                .await?;
        let outside: Vec<Said> = sqlx::query_as(
            "SELECT m.id, m.role, m.content FROM messages m WHERE m.conversation_id = $1 AND ($2::text IS NULL \
             OR (m.created_at, m.id) > (SELECT created_at, id FROM messages WHERE id = $2)) ORDER BY m.created_at, m.id",
        )
        .bind(conversation)
        .bind(&through)
        .fetch_all(&mut *tx)
        .await?;
        if i64::try_from(outside.len()).unwrap_or(i64::MAX) <= self.after {
            return Ok(Compacted::NotNeeded);
        }
        let take = outside.len() - usize::try_from(self.keep).unwrap_or(0).min(outside.len());
        let range = &outside[..take];
        let Some(last) = range.last() else {
            return Ok(Compacted::NotNeeded);
        };
        let new_summary = self.summarise(summary.as_deref(), range).await?;
        let stored = sqlx::query(
            "UPDATE conversations SET summary = $2, summarized_through_id = $3 \
             WHERE id = $1 AND summarized_through_id IS NOT DISTINCT FROM $4",
        )
        .bind(conversation)
        .bind(&new_summary)
        .bind(&last.id)
        .bind(&through)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(if stored == 1 {
            Compacted::Through {
                message_id: last.id.clone(),
                messages: range.len(),
            }
        } else {
            Compacted::Busy
        })
    }

    async fn summarise(&self, summary: Option<&str>, range: &[Said]) -> Result<String, CompactionError> {
        let transcript: Vec<String> = range
            .iter()
            .map(|m| format!("[{}] {}: {}", m.id, m.role, m.content))
            .collect();
        let request = ModelRequest {
            system: INSTRUCTIONS.into(),
            messages: vec![Message::text(
                Role::User,
                &format!(
                    "Summary so far:\n{}\n\nNew messages, oldest first:\n{}",
                    summary.unwrap_or("(none yet)"),
                    transcript.join("\n")
                ),
            )],
            tools: Default::default(),
            max_tokens: 1024,
        };
        // Nobody watches a summary being written.
        let (deltas, _unheard) = tokio::sync::mpsc::unbounded_channel();
        let reply = self
            .model
            .turn(&request, &deltas)
            .await
            .map_err(|e| CompactionError::Model(e.to_string()))?;
        let text = reply.text().join("\n");
        if text.trim().is_empty() {
            return Err(CompactionError::Model("the model wrote an empty summary".into()));
        }
        Ok(text.trim().to_string())
    }
}
