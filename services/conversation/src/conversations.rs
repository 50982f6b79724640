//! Several conversations per person: create one (optionally titled), rename one, and search
//! every message of all of them (Postgres full-text search, best matches first, with the
//! matching words marked in a snippet). A conversation started by a message is titled after it.

use mainloop_events::v1::{CommandError, ErrorCode};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::PgPool;

fn internal(err: sqlx::Error) -> CommandError {
    tracing::error!(error = %err, "conversation store failed");
    CommandError::new(ErrorCode::Internal, "the conversation store is unavailable")
}

/// Longest title, in characters.
const TITLE_CHARS: usize = 80;

/// A title as people read it: one line, trimmed, at most 80 characters.
pub fn title_of(text: &str) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() <= TITLE_CHARS {
        return line;
    }
    let mut short: String = line.chars().take(TITLE_CHARS - 1).collect();
    short.push('…');
    short
}

fn checked_title(title: Option<&str>) -> Result<Option<String>, CommandError> {
    match title.map(title_of) {
        Some(title) if title.is_empty() => Err(CommandError::invalid("the title is empty")),
        Some(title) if title.contains('\0') => Err(CommandError::invalid("the title holds a NUL character")),
        other => Ok(other),
    }
}

async fn body(db: &PgPool, user: &str, id: &str) -> Result<Value, CommandError> {
    let found: Option<Value> =
        sqlx::query_scalar("SELECT body FROM api_conversations WHERE id = $1 AND user_id = $2")
            .bind(id)
            .bind(user)
            .fetch_optional(db)
            .await
            .map_err(internal)?;
    found.ok_or_else(|| CommandError::not_found("no such conversation"))
}

#[derive(Debug, Deserialize)]
pub struct Create {
    pub user_id: String,
    pub title: Option<String>,
}

pub async fn create(db: PgPool, command: Create) -> Result<Value, CommandError> {
    mainloop_events::subjects::token("user id", &command.user_id)
        .map_err(|e| CommandError::invalid(e.to_string()))?;
    let title = checked_title(command.title.as_deref())?.unwrap_or_else(|| "New Conversation".into());
    let id = uuid::Uuid::now_v7().to_string();
    sqlx::query("INSERT INTO conversations (id, user_id, title) VALUES ($1, $2, $3)")
        .bind(&id)
        .bind(&command.user_id)
        .bind(&title)
        .execute(&db)
        .await
        .map_err(internal)?;
    Ok(json!({"conversation": body(&db, &command.user_id, &id).await?}))
}

#[derive(Debug, Deserialize)]
pub struct Rename {
    pub user_id: String,
    pub conversation_id: String,
    pub title: String,
}

pub async fn rename(db: PgPool, command: Rename) -> Result<Value, CommandError> {
    let title = checked_title(Some(&command.title))?.unwrap_or_default();
    let renamed = sqlx::query("UPDATE conversations SET title = $3 WHERE id = $1 AND user_id = $2")
        .bind(&command.conversation_id)
        .bind(&command.user_id)
        .bind(&title)
        .execute(&db)
        .await
        .map_err(internal)?
        .rows_affected();
    if renamed == 0 {
        return Err(CommandError::not_found("no such conversation"));
    }
    Ok(json!({"conversation": body(&db, &command.user_id, &command.conversation_id).await?}))
}

#[derive(Debug, Deserialize)]
pub struct Search {
    pub user_id: String,
    pub q: String,
    pub limit: Option<i64>,
}

/// The person's messages that match `q` (web-search syntax: words, "a phrase", -not), best
/// first, at most `limit` (default 20, at most 100).
pub async fn search(db: PgPool, query: Search) -> Result<Value, CommandError> {
    let q = query.q.trim();
    if q.is_empty() {
        return Err(CommandError::invalid("say what to search for (q)"));
    }
    if q.chars().count() > 500 || q.contains('\0') {
        return Err(CommandError::invalid(
            "the search is longer than 500 characters or holds a NUL",
        ));
    }
    let limit = query.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(CommandError::invalid("limit must be between 1 and 100"));
    }
    let found: Vec<Value> = sqlx::query_scalar(
        "SELECT json_build_object('conversation_id', c.id, 'conversation_title', c.title, 'message_id', m.id, \
           'role', m.role, 'created_at', api_time(m.created_at), \
           'snippet', ts_headline('english', m.content, q, 'StartSel=**, StopSel=**, MaxWords=24, MinWords=8')) \
         FROM messages m JOIN conversations c ON c.id = m.conversation_id, websearch_to_tsquery('english', $2) q \
         WHERE c.user_id = $1 AND to_tsvector('english', m.content) @@ q \
         ORDER BY ts_rank(to_tsvector('english', m.content), q) DESC, m.created_at DESC LIMIT $3",
    )
    .bind(&query.user_id)
    .bind(q)
    .bind(limit)
    .fetch_all(&db)
    .await
    .map_err(internal)?;
    Ok(json!({"total": found.len(), "results": found}))
}

#[cfg(test)]
mod tests {
    use super::title_of;

    #[test]
    fn titles_are_one_short_line() {
        assert_eq!(
            title_of("  add a quick start\n to widgets "),
            "add a quick start to widgets"
        );
        let long = title_of(&"word ".repeat(40));
        assert_eq!(long.chars().count(), 80);
        assert!(long.ends_with('…'));
    }
}
