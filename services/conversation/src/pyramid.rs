//! Memory that lasts across conversations: the temporal pyramid. Each past day a person talked is
//! summarised once (every conversation of theirs that day, in order); each past week (Monday to
//! Sunday) from its days; each past month from its days. A turn is given, newest first and within
//! a budget of characters: the days of the last week, the weeks of the month before, then months.
//! Building runs in the background after a person's first reply of the day (days end, they do
//! not change), one build at a time per person (an advisory lock taken without waiting), each
//! summary stored once (its row's key is the person, the span and its first day), so a crash
//! repeats at most the summary it was writing. What a turn recalls is kept for the day (at most
//! `RECALL_KEPT`, for summaries another replica wrote), so a turn reads no memories on its way
//! to the model.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{Datelike, Days, Months, NaiveDate};
use sqlx::PgPool;

use crate::models::{ChatModel, Message, ModelRequest, Role};

const INSTRUCTIONS: &str = "You keep a person's long-term memory of their conversations with mainloop, which runs \
AI coding workers on GitHub repositories. Summarise what you are given: decisions, repositories, tasks, preferences, \
open questions. Plain prose, at most 120 words. Answer with the summary only.";

/// Summaries written per build at most (older gaps are filled by later builds).
const PER_BUILD: usize = 12;
/// How far back days are summarised.
const DAYS_BACK: u64 = 400;
/// How long a recall is kept before it is read again.
const RECALL_KEPT: Duration = Duration::from_secs(600);

#[derive(Clone)]
pub struct Pyramid {
    db: PgPool,
    model: Arc<dyn ChatModel>,
    /// Characters of memory a turn is given at most.
    budget: usize,
    known: Arc<Mutex<Known>>,
}

/// What this process knows without asking Postgres, per person.
#[derive(Default)]
struct Known {
    /// The day their pyramid was last built.
    built: HashMap<String, NaiveDate>,
    /// Their recall: for which day, since when, what.
    recalled: HashMap<String, (NaiveDate, Instant, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum PyramidError {
    #[error("the conversation store failed: {0}")]
    Store(#[from] sqlx::Error),
    #[error("a summary could not be written: {0}")]
    Model(String),
}

/// A span of the pyramid: its kind and first day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Span {
    Day(NaiveDate),
    Week(NaiveDate),
    Month(NaiveDate),
}

impl Span {
    fn kind(self) -> &'static str {
        match self {
            Span::Day(_) => "day",
            Span::Week(_) => "week",
            Span::Month(_) => "month",
        }
    }

    fn start(self) -> NaiveDate {
        match self {
            Span::Day(d) | Span::Week(d) | Span::Month(d) => d,
        }
    }

    /// The day after the span's last.
    fn end(self) -> NaiveDate {
        match self {
            Span::Day(d) => d + Days::new(1),
            Span::Week(d) => d + Days::new(7),
            Span::Month(d) => d + Months::new(1),
        }
    }

    fn label(self) -> String {
        match self {
            Span::Day(d) => d.format("%Y-%m-%d").to_string(),
            Span::Week(d) => format!("week of {}", d.format("%Y-%m-%d")),
            Span::Month(d) => d.format("%Y-%m").to_string(),
        }
    }
}

fn monday_of(day: NaiveDate) -> NaiveDate {
    day - Days::new(u64::from(day.weekday().num_days_from_monday()))
}

fn first_of_month(day: NaiveDate) -> NaiveDate {
    day.with_day(1).unwrap_or(day)
}

impl Pyramid {
    pub fn new(db: PgPool, model: Arc<dyn ChatModel>, budget: usize) -> Self {
        Pyramid {
            db,
            model,
            budget,
            known: Arc::default(),
        }
    }

    /// Forgets what was built and recalled (a test suite's reset).
    pub fn forget_all(&self) {
        *self.known() = Known::default();
    }

    fn known(&self) -> std::sync::MutexGuard<'_, Known> {
        self.known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// [`Pyramid::build`], unless it already ran for `user` today.
    pub async fn build_once_a_day(&self, user: &str, today: NaiveDate) -> Result<usize, PyramidError> {
        if self.known().built.get(user) == Some(&today) {
            return Ok(0);
        }
        let written = self.build(user, today).await?;
        self.known().built.insert(user.to_string(), today);
        Ok(written)
    }

    /// Writes the summaries `user` is missing for spans that ended before `today`; returns how many.
    pub async fn build(&self, user: &str, today: NaiveDate) -> Result<usize, PyramidError> {
        let mut tx = self.db.begin().await?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(hashtextextended($1, 11))")
            .bind(user)
            .fetch_one(&mut *tx)
            .await?;
        if !locked {
            return Ok(0);
        }
        let mut written = 0;
        for span in missing(&mut tx, user, today).await? {
            if written == PER_BUILD {
                break;
            }
            // Read on the build's own connection: a week is made of days written moments ago.
            let material = material(&mut tx, user, span).await?;
            if material.is_empty() {
                continue;
            }
            let summary = self.summarise(span, &material).await?;
            sqlx::query(
                "INSERT INTO memories (user_id, span, starts_on, summary) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            )
            .bind(user)
            .bind(span.kind())
            .bind(span.start())
            .bind(&summary)
            .execute(&mut *tx)
            .await?;
            written += 1;
        }
        tx.commit().await?;
        if written > 0 {
            self.known().recalled.remove(user);
        }
        Ok(written)
    }

    async fn summarise(&self, span: Span, material: &[String]) -> Result<String, PyramidError> {
        let request = ModelRequest {
            system: INSTRUCTIONS.into(),
            messages: vec![Message::text(
                Role::User,
                &format!("Summarise {}:\n{}", span.label(), material.join("\n")),
            )],
            tools: Default::default(),
            max_tokens: 512,
        };
        let (deltas, _unheard) = tokio::sync::mpsc::unbounded_channel();
        let reply = self
            .model
            .turn(&request, &deltas)
            .await
            .map_err(|e| PyramidError::Model(e.to_string()))?;
        let text = reply.text().join("\n");
        if text.trim().is_empty() {
            return Err(PyramidError::Model("the model wrote an empty summary".into()));
        }
        Ok(text.trim().to_string())
    }

    /// What a turn is told of earlier days, newest first, within the budget: the days of the last
    /// week, the weeks before it back to a month, then months.
    pub async fn recall(&self, user: &str, today: NaiveDate) -> Result<String, sqlx::Error> {
        if let Some((day, since, said)) = self.known().recalled.get(user)
            && *day == today
            && since.elapsed() < RECALL_KEPT
        {
            return Ok(said.clone());
        }
        let said = self.read_recall(user, today).await?;
        self.known()
            .recalled
            .insert(user.to_string(), (today, Instant::now(), said.clone()));
        Ok(said)
    }

    async fn read_recall(&self, user: &str, today: NaiveDate) -> Result<String, sqlx::Error> {
        let kept: Vec<(String, NaiveDate, String)> = sqlx::query_as(
            "SELECT span, starts_on, summary FROM memories WHERE user_id = $1 ORDER BY starts_on DESC, span",
        )
        .bind(user)
        .fetch_all(&self.db)
        .await?;
        let week_ago = today - Days::new(7);
        let month_ago = today - Days::new(35);
        let spans: Vec<(Span, String)> = kept
            .into_iter()
            .map(|(kind, start, summary)| {
                let span = match kind.as_str() {
                    "day" => Span::Day(start),
                    "week" => Span::Week(start),
                    _ => Span::Month(start),
                };
                (span, summary)
            })
            .collect();
        // Each stretch of time once, newest first, in the finest summary its age allows: days
        // of the last week; weeks back to a month, before the oldest day given; months before.
        let mut until = today;
        let mut chosen: Vec<&(Span, String)> = Vec::new();
        for wanted in spans
            .iter()
            .filter(|(s, _)| matches!(s, Span::Day(d) if *d >= week_ago))
        {
            chosen.push(wanted);
            until = until.min(wanted.0.start());
        }
        for wanted in spans
            .iter()
            .filter(|(s, _)| matches!(s, Span::Week(d) if *d >= month_ago))
        {
            if wanted.0.end() <= until {
                chosen.push(wanted);
                until = until.min(wanted.0.start());
            }
        }
        for wanted in spans.iter().filter(|(s, _)| matches!(s, Span::Month(_))) {
            if wanted.0.end() <= until {
                chosen.push(wanted);
                until = until.min(wanted.0.start());
            }
        }
        let mut said = Vec::new();
        let mut used = 0;
        for (span, summary) in chosen {
            let line = format!("- {}: {summary}", span.label());
            if used + line.len() > self.budget {
                break;
            }
            used += line.len();
            said.push(line);
        }
        Ok(if said.is_empty() {
            String::new()
        } else {
            format!(
                "What you remember of earlier days, newest first:\n{}",
                said.join("\n")
            )
        })
    }
}

/// Spans that ended before `today`, had something said in them, and have no summary yet:
/// days first (oldest first), then the weeks and months they complete. Read on the build's own
/// connection: it holds one already, and waiting for a second could starve the pool.
async fn missing(
    db: &mut sqlx::PgConnection,
    user: &str,
    today: NaiveDate,
) -> Result<Vec<Span>, sqlx::Error> {
    let since = today - Days::new(DAYS_BACK);
    let talked: Vec<NaiveDate> = sqlx::query_scalar(
        "SELECT DISTINCT (m.created_at AT TIME ZONE 'UTC')::date AS day FROM messages m \
         JOIN conversations c ON c.id = m.conversation_id \
         WHERE c.user_id = $1 AND m.created_at >= $2::date AND m.created_at < $3::date ORDER BY day",
    )
    .bind(user)
    .bind(since)
    .bind(today)
    .fetch_all(&mut *db)
    .await?;
    let have: Vec<(String, NaiveDate)> =
        sqlx::query_as("SELECT span, starts_on FROM memories WHERE user_id = $1")
            .bind(user)
            .fetch_all(&mut *db)
            .await?;
    let has = |span: Span| {
        have.iter()
            .any(|(kind, start)| kind == span.kind() && *start == span.start())
    };
    let mut spans: Vec<Span> = talked.iter().map(|d| Span::Day(*d)).collect();
    let mut weeks: Vec<Span> = talked.iter().map(|d| Span::Week(monday_of(*d))).collect();
    let mut months: Vec<Span> = talked.iter().map(|d| Span::Month(first_of_month(*d))).collect();
    weeks.dedup();
    months.dedup();
    spans.extend(weeks);
    spans.extend(months);
    Ok(spans
        .into_iter()
        .filter(|span| span.end() <= today && !has(*span))
        .collect())
}

/// What a span's summary is made of: a day's messages, or the day summaries of a week or month.
async fn material(db: &mut sqlx::PgConnection, user: &str, span: Span) -> Result<Vec<String>, sqlx::Error> {
    match span {
        Span::Day(day) => {
            sqlx::query_scalar(
                "SELECT m.role || ' (' || c.title || '): ' || m.content FROM messages m \
                 JOIN conversations c ON c.id = m.conversation_id \
                 WHERE c.user_id = $1 AND m.created_at >= $2::date AND m.created_at < $3::date \
                 ORDER BY m.created_at, m.id",
            )
            .bind(user)
            .bind(day)
            .bind(span.end())
            .fetch_all(&mut *db)
            .await
        }
        Span::Week(_) | Span::Month(_) => {
            sqlx::query_scalar(
                "SELECT to_char(starts_on, 'YYYY-MM-DD') || ': ' || summary FROM memories \
                 WHERE user_id = $1 AND span = 'day' AND starts_on >= $2 AND starts_on < $3 ORDER BY starts_on",
            )
            .bind(user)
            .bind(span.start())
            .bind(span.end())
            .fetch_all(&mut *db)
            .await
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;

    use super::{Span, first_of_month, monday_of};

    #[test]
    fn spans_know_their_days() {
        let day = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap_or_default();
        assert_eq!(monday_of(day("2026-12-02")), day("2026-11-30"));
        assert_eq!(first_of_month(day("2026-12-02")), day("2026-12-01"));
        assert_eq!(Span::Week(day("2026-11-30")).end(), day("2026-12-07"));
        assert_eq!(Span::Month(day("2026-11-01")).end(), day("2026-12-01"));
        assert_eq!(Span::Week(day("2026-11-30")).label(), "week of 2026-11-30");
    }
}
