//! Compaction on real Postgres: over 300 messages arriving in batches, each message is
//! summarised exactly once and in order, and the newest are kept word for word; two triggers at
//! once make one compaction; a compaction that dies in the middle (the model call dropped, as
//! in a crash) loses nothing and the next one covers the same messages once.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use mainloop_conversation::compaction::{Compacted, Compactor};
use mainloop_conversation::models::{Block, ChatModel, Deltas, ModelError, ModelReply, ModelRequest, Stop};
use mainloop_runtime::Secret;
use mainloop_testkit::TestPostgres;
use sqlx::PgPool;
use tokio::sync::Notify;

/// A model that writes summaries and remembers which message ids each one was given; it can be
/// held before answering.
#[derive(Default)]
struct Summariser {
    given: Mutex<Vec<Vec<String>>>,
    hold: Mutex<Option<Arc<Notify>>>,
    called: Notify,
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
            let ids: Vec<String> = text
                .lines()
                .filter_map(|l| l.strip_prefix('[')?.split_once(']').map(|(id, _)| id.to_string()))
                .collect();
            self.called.notify_one();
            let hold = self.hold.lock().ok().and_then(|h| h.clone());
            if let Some(hold) = hold {
                hold.notified().await;
            }
            let n = {
                let mut given = self
                    .given
                    .lock()
                    .map_err(|_| ModelError::Protocol("poisoned".into()))?;
                given.push(ids);
                given.len()
            };
            Ok(ModelReply {
                blocks: vec![Block::Text(format!("summary {n}"))],
                stop: Stop::EndTurn,
            })
        })
    }
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
    sqlx::query("INSERT INTO conversations (id, user_id) VALUES ('c1', 'alice')")
        .execute(&db)
        .await?;
    Ok((pg, db))
}

/// Messages `from..=to`, alternating the person and mainloop, in order.
async fn say(db: &PgPool, from: i32, to: i32) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO messages (id, conversation_id, role, content, created_at) \
         SELECT 'm' || lpad(g::text, 4, '0'), 'c1', CASE WHEN g % 2 = 1 THEN 'user' ELSE 'assistant' END, \
                'message ' || g, timestamptz '2026-12-01 00:00:00+00' + g * interval '1 second' \
         FROM generate_series($1::int, $2::int) g",
    )
    .bind(from)
    .bind(to)
    .execute(db)
    .await?;
    Ok(())
}

fn compactor(db: &PgPool, model: &Arc<Summariser>) -> Compactor {
    Compactor {
        db: db.clone(),
        model: model.clone(),
        after: 40,
        keep: 20,
    }
}

fn id(n: i32) -> String {
    format!("m{n:04}")
}

#[tokio::test]
async fn each_message_is_summarised_once_in_order_over_300_messages() -> anyhow::Result<()> {
    let (_pg, db) = database().await?;
    let model = Arc::new(Summariser::default());
    let compactor = compactor(&db, &model);
    for (from, to) in [(1, 30), (31, 100), (101, 130), (131, 210), (211, 300)] {
        say(&db, from, to).await?;
        compactor.compact("c1").await?;
    }
    let given = model.given.lock().map(|g| g.clone()).unwrap_or_default();
    let all: Vec<String> = given.concat();
    let expected: Vec<String> = (1..=280).map(id).collect();
    assert_eq!(
        all, expected,
        "every message but the newest 20, each once, in order"
    );
    assert_eq!(
        given.len(),
        4,
        "30 messages were too few to compact; then four compactions"
    );
    let (summary, through): (Option<String>, Option<String>) =
        sqlx::query_as("SELECT summary, summarized_through_id FROM conversations WHERE id = 'c1'")
            .fetch_one(&db)
            .await?;
    assert_eq!(
        (summary.as_deref(), through.as_deref()),
        (Some("summary 4"), Some("m0280"))
    );
    assert_eq!(compactor.compact("c1").await?, Compacted::NotNeeded);
    Ok(())
}

#[tokio::test]
async fn two_triggers_make_one_compaction_and_a_dropped_one_loses_nothing() -> anyhow::Result<()> {
    let (_pg, db) = database().await?;
    say(&db, 1, 100).await?;
    let model = Arc::new(Summariser::default());
    let hold = Arc::new(Notify::new());
    if let Ok(mut h) = model.hold.lock() {
        *h = Some(hold.clone());
    }
    let compactor = compactor(&db, &model);

    // A compaction dies while the model writes (its task is dropped, as in a crash).
    let dying = tokio::spawn({
        let compactor = compactor.clone();
        async move { compactor.compact("c1").await }
    });
    model.called.notified().await;
    dying.abort();
    let _ = dying.await;
    let through: Option<String> =
        sqlx::query_scalar("SELECT summarized_through_id FROM conversations WHERE id = 'c1'")
            .fetch_one(&db)
            .await?;
    assert_eq!(through, None, "nothing was stored");

    // Two triggers at once: the second finds the first at work and leaves.
    let first = tokio::spawn({
        let compactor = compactor.clone();
        async move { compactor.compact("c1").await }
    });
    model.called.notified().await;
    assert_eq!(compactor.compact("c1").await?, Compacted::Busy);
    hold.notify_one();
    assert_eq!(
        first.await??,
        Compacted::Through {
            message_id: id(80),
            messages: 80
        }
    );
    let given = model.given.lock().map(|g| g.clone()).unwrap_or_default();
    assert_eq!(given.len(), 1, "one summary written");
    assert_eq!(given[0], (1..=80).map(id).collect::<Vec<_>>());
    Ok(())
}
