//! The temporal pyramid on real Postgres: a person's past days, weeks and months are each
//! summarised once (today's and unfinished spans not yet), and a turn is given the days of the
//! last week, the weeks before them back to a month, then months — newest first, each stretch of
//! time once, within the budget.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::NaiveDate;
use futures_util::future::BoxFuture;
use mainloop_conversation::models::{Block, ChatModel, Deltas, ModelError, ModelReply, ModelRequest, Stop};
use mainloop_conversation::pyramid::Pyramid;
use mainloop_runtime::Secret;
use mainloop_testkit::TestPostgres;
use sqlx::PgPool;

/// Writes "summary of <span>" and remembers which spans it was asked for.
#[derive(Default)]
struct Summariser {
    asked: Mutex<Vec<String>>,
}

impl ChatModel for Summariser {
    fn describe(&self) -> String {
        "summariser".into()
    }

    fn turn<'a>(
        &'a self,
        request: &'a ModelRequest,
        _: &'a Deltas,
    ) -> BoxFuture<'a, Result<ModelReply, ModelError>> {
        Box::pin(async move {
            let text = match request.messages.first().and_then(|m| m.blocks.first()) {
                Some(Block::Text(text)) => text.clone(),
                _ => String::new(),
            };
            let span = text
                .strip_prefix("Summarise ")
                .and_then(|rest| rest.split_once(":\n"))
                .map(|(span, _)| span.to_string())
                .unwrap_or_default();
            if let Ok(mut asked) = self.asked.lock() {
                asked.push(span.clone());
            }
            Ok(ModelReply {
                blocks: vec![Block::Text(format!("summary of {span}"))],
                stop: Stop::EndTurn,
            })
        })
    }
}

fn day(text: &str) -> NaiveDate {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap_or_default()
}

async fn database() -> anyhow::Result<(TestPostgres, PgPool)> {
    let pg = TestPostgres::start()?;
    let db = mainloop_runtime::db::connect(
        &Secret::new(pg.url()),
        "conversation",
        5,
        Duration::from_secs(30),
        &tokio_util::sync::CancellationToken::new(),
    )
    .await?;
    mainloop_conversation::MIGRATOR.run(&db).await?;
    for (id, user) in [("c1", "alice"), ("c2", "alice"), ("c3", "bob")] {
        sqlx::query("INSERT INTO conversations (id, user_id, title) VALUES ($1, $2, $1)")
            .bind(id)
            .bind(user)
            .execute(&db)
            .await?;
    }
    Ok((pg, db))
}

async fn said(db: &PgPool, conversation: &str, at: &str, text: &str) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO messages (id, conversation_id, role, content, created_at) \
         VALUES (gen_random_uuid()::text, $1, 'user', $2, $3::timestamptz)",
    )
    .bind(conversation)
    .bind(text)
    .bind(at)
    .execute(db)
    .await?;
    Ok(())
}

#[tokio::test]
async fn past_days_weeks_and_months_are_summarised_once_and_recalled_by_age() -> anyhow::Result<()> {
    let (_pg, db) = database().await?;
    let today = day("2026-12-02");
    said(&db, "c1", "2026-10-15 09:00:00+00", "set up widgets CI").await?;
    said(&db, "c1", "2026-11-20 09:00:00+00", "deploy widgets").await?;
    said(&db, "c2", "2026-11-20 18:00:00+00", "gadgets too").await?;
    said(&db, "c2", "2026-11-28 09:00:00+00", "invoices are slow").await?;
    said(&db, "c1", "2026-12-01 09:00:00+00", "retry the deploy").await?;
    said(&db, "c1", "2026-12-02 09:00:00+00", "today: not yet").await?;
    said(&db, "c3", "2026-11-20 09:00:00+00", "bob's own day").await?;
    let model = Arc::new(Summariser::default());
    let pyramid = Pyramid::new(db.clone(), model.clone(), 4_000);

    assert_eq!(pyramid.recall("alice", today).await?, "", "nothing built yet");
    assert_eq!(pyramid.build_once_a_day("alice", today).await?, 9);
    assert_eq!(pyramid.build_once_a_day("alice", today).await?, 0, "once a day");
    let mut asked = model.asked.lock().map(|a| a.clone()).unwrap_or_default();
    asked.sort();
    assert_eq!(
        asked,
        [
            "2026-10",
            "2026-10-15",
            "2026-11",
            "2026-11-20",
            "2026-11-28",
            "2026-12-01",
            "week of 2026-10-12",
            "week of 2026-11-16",
            "week of 2026-11-23"
        ],
        "finished spans only: not today, not this week or month"
    );
    assert_eq!(pyramid.build("alice", today).await?, 0, "each once");

    assert_eq!(
        pyramid.recall("alice", today).await?,
        "What you remember of earlier days, newest first:\n\
         - 2026-12-01: summary of 2026-12-01\n\
         - 2026-11-28: summary of 2026-11-28\n\
         - week of 2026-11-16: summary of week of 2026-11-16\n\
         - 2026-10: summary of 2026-10"
    );
    let small = Pyramid::new(db.clone(), model.clone(), 80);
    assert_eq!(
        small.recall("alice", today).await?,
        "What you remember of earlier days, newest first:\n\
         - 2026-12-01: summary of 2026-12-01\n\
         - 2026-11-28: summary of 2026-11-28",
        "within the budget, newest first"
    );
    assert_eq!(
        pyramid.recall("bob", today).await?,
        "",
        "bob's summaries are not written by alice's build"
    );
    Ok(())
}

/// Many people's builds at once on a small pool: a build never waits for a second connection
/// while it holds one (it did, and twelve people at once starved a pool of five).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builds_at_once_do_not_starve_the_pool() -> anyhow::Result<()> {
    let (_pg, db) = database().await?;
    let people: Vec<String> = (0..12).map(|n| format!("p{n}")).collect();
    for person in &people {
        sqlx::query("INSERT INTO conversations (id, user_id, title) VALUES ($1, $1, $1)")
            .bind(person)
            .execute(&db)
            .await?;
        said(&db, person, "2026-12-01 09:00:00+00", "yesterday's words").await?;
    }
    let pyramid = Pyramid::new(db.clone(), Arc::new(Summariser::default()), 4_000);
    let today = day("2026-12-02");
    let builds = people.iter().map(|person| {
        let pyramid = pyramid.clone();
        let person = person.clone();
        tokio::spawn(async move { pyramid.build(&person, today).await })
    });
    for build in futures_util::future::join_all(builds).await {
        assert_eq!(build?.map_err(|e| anyhow::anyhow!("{e}"))?, 1, "yesterday, once");
    }
    Ok(())
}
