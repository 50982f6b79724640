//! A conversation the service remembers is answered without waiting for its store: the model is
//! asked beside the statement that stores the person's message. Here the test holds that
//! statement back (it locks the conversation's row) to show what is kept meanwhile: the model is
//! already asked and its first words reach the person, but no tool runs until the message is
//! stored; and when the conversation changed behind the service's back (a turn in another
//! replica), the early answer is dropped — what it said is retracted, what it called never runs —
//! and the model asked again with what the store read.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use mainloop_bus::{Bus, request};
use mainloop_events::subjects;
use mainloop_events::v1::{SpawnTask, TaskAccepted};
use mainloop_fakes::scripted_model::{ScriptedModel, Turn};
use mainloop_runtime::Secret;
use mainloop_testkit::Infra;
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

struct World {
    _infra: Infra,
    bus: Bus,
    db: PgPool,
    model: ScriptedModel,
    spawned: Arc<AtomicUsize>,
    shutdown: CancellationToken,
}

/// The conversation service, a scripted model, and a scheduler stand-in that counts spawns.
async fn start() -> anyhow::Result<World> {
    mainloop_runtime::tls::install();
    let model = ScriptedModel::new("sk-ant-test", vec![]);
    let url = model
        .clone()
        .serve(tokio::net::TcpListener::bind("127.0.0.1:0").await?)
        .await?;
    let infra = Infra::start()?;
    let bus = infra.bus().await?;
    let shutdown = CancellationToken::new();
    let spawned = Arc::new(AtomicUsize::new(0));
    let scheduler = request::Server::bind(&bus, "cmd.scheduler.spawn-task", "scheduler").await?;
    let counted = spawned.clone();
    tokio::spawn(scheduler.run(shutdown.clone(), move |_: SpawnTask| {
        counted.fetch_add(1, Ordering::SeqCst);
        async move {
            Ok(TaskAccepted {
                task_id: "t-1".into(),
                ..Default::default()
            })
        }
    }));
    tokio::spawn(mainloop_conversation::run(
        mainloop_conversation::Config {
            common: infra.common(),
            llm: mainloop_conversation::LlmSettings::anthropic(
                &url,
                Some(Secret::new("sk-ant-test")),
                "claude-test",
            ),
        },
        shutdown.clone(),
    ));
    infra.ready(1).await?;
    let db = mainloop_runtime::db::connect(
        &infra.common().database_url,
        "conversation",
        2,
        Duration::from_secs(30),
        &shutdown,
    )
    .await?;
    Ok(World {
        _infra: infra,
        bus,
        db,
        model,
        spawned,
        shutdown,
    })
}

impl World {
    /// Alice says `message` in `conversation` (a new one when None), in the background.
    fn say(
        &self,
        conversation: Option<&str>,
        message: &str,
    ) -> tokio::task::JoinHandle<anyhow::Result<Value>> {
        let bus = self.bus.clone();
        let command = json!({"user_id": "alice", "conversation_id": conversation, "message": message});
        tokio::spawn(async move {
            Ok(request::send_json(
                &bus,
                "cmd.conversation.post-message",
                &command,
                Duration::from_secs(30),
            )
            .await?)
        })
    }

    /// A first turn, answered in full; the conversation's id.
    async fn converse(&self) -> anyhow::Result<String> {
        self.model.push(vec![Turn::Text("Hello.".into())]);
        let answer = self.say(None, "hi").await??;
        Ok(answer["conversation_id"].as_str().unwrap_or_default().to_string())
    }

    /// Holds every statement that writes `conversation` until the transaction is dropped.
    async fn hold(&self, conversation: &str) -> anyhow::Result<sqlx::Transaction<'static, sqlx::Postgres>> {
        let mut holding = self.db.begin().await?;
        sqlx::query("SELECT 1 FROM conversations WHERE id = $1 FOR UPDATE")
            .bind(conversation)
            .execute(&mut *holding)
            .await?;
        Ok(holding)
    }

    /// Waits until the model has been asked `n` times.
    async fn asked(&self, n: usize) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while self.model.agent_requests().len() < n {
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "the model was asked {} times, not {n}",
                self.model.agent_requests().len()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    }

    /// Another replica takes a turn in `conversation`: this service does not know.
    async fn turn_elsewhere(&self, conversation: &str) -> anyhow::Result<()> {
        sqlx::query(
            "WITH turn AS (UPDATE conversations SET message_count = message_count + 2 WHERE id = $1 RETURNING id) \
             INSERT INTO messages (id, conversation_id, role, content, created_at) \
             SELECT x.id, turn.id, x.role, x.content, now() + x.after FROM turn, (VALUES \
               ('elsewhere-1', 'user', 'from the other tab', interval '0'), \
               ('elsewhere-2', 'assistant', 'answered there', interval '1 ms')) AS x(id, role, content, after)",
        )
        .bind(conversation)
        .execute(&self.db)
        .await?;
        Ok(())
    }

    /// What the conversation says live in `conversation`, from now on.
    async fn live(&self, conversation: &str) -> anyhow::Result<async_nats::Subscriber> {
        let live = self
            .bus
            .client()
            .subscribe(subjects::chat_live("alice", conversation)?)
            .await?;
        self.bus.client().flush().await?;
        Ok(live)
    }

    async fn stored(&self, content: &str) -> anyhow::Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT count(*) FROM messages WHERE content = $1")
                .bind(content)
                .fetch_one(&self.db)
                .await?,
        )
    }
}

/// The next frame said live.
async fn next_frame(live: &mut async_nats::Subscriber) -> anyhow::Result<Value> {
    let message = tokio::time::timeout(Duration::from_secs(10), live.next())
        .await?
        .ok_or_else(|| anyhow::anyhow!("the live subject ended"))?;
    Ok(serde_json::from_slice(&message.payload)?)
}

/// The words of these delta frames, joined.
fn said(deltas: &[Value]) -> String {
    deltas.iter().filter_map(|f| f["text"].as_str()).collect()
}

/// The texts of the user messages the model was given in request `n`.
fn said_to_model(model: &ScriptedModel, n: usize) -> Vec<String> {
    model.agent_requests()[n]["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| m["content"][0]["text"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test]
async fn the_model_is_asked_and_speaks_before_the_store_answers() -> anyhow::Result<()> {
    let world = start().await?;
    let conversation = world.converse().await?;
    let mut live = world.live(&conversation).await?;
    world.model.push(vec![Turn::Text("Right away.".into())]);
    let holding = world.hold(&conversation).await?;
    let answer = world.say(Some(&conversation), "and now?");
    // The store waits on the lock, yet the model is asked and its words reach the person.
    world.asked(2).await?;
    assert_eq!(said_to_model(&world.model, 1), ["hi", "Hello.", "and now?"]);
    let first = next_frame(&mut live).await?;
    assert_eq!(
        (first["type"].as_str(), first["seq"].as_u64()),
        (Some("delta"), Some(1))
    );
    assert_eq!(world.stored("and now?").await?, 0);
    holding.rollback().await?;
    let answer = answer.await??;
    assert_eq!(answer["message"]["content"], "Right away.");
    assert_eq!(world.stored("and now?").await?, 1);
    let last = next_frame(&mut live).await?;
    assert_eq!(last["type"], "message");
    assert_eq!(world.model.agent_requests().len(), 2);
    world.shutdown.cancel();
    Ok(())
}

#[tokio::test]
async fn words_said_on_a_conversation_changed_elsewhere_are_retracted_before_the_answer_given()
-> anyhow::Result<()> {
    let world = start().await?;
    let conversation = world.converse().await?;
    world.turn_elsewhere(&conversation).await?;
    let mut live = world.live(&conversation).await?;
    world.model.push(vec![
        Turn::Text("Early words.".into()),
        Turn::Text("Asked again, with everything.".into()),
    ]);
    let holding = world.hold(&conversation).await?;
    let answer = world.say(Some(&conversation), "and now?");
    let early = next_frame(&mut live).await?;
    assert_eq!(
        (early["type"].as_str(), early["text"].as_str()),
        (Some("delta"), Some("Early words."))
    );
    holding.rollback().await?;
    let answer = answer.await??;
    assert_eq!(answer["message"]["content"], "Asked again, with everything.");
    let mut frames = vec![early];
    while frames.last().and_then(|f| f["type"].as_str()) != Some("message") {
        frames.push(next_frame(&mut live).await?);
    }
    let seen: Vec<(&str, Option<u64>)> = frames
        .iter()
        .map(|f| (f["type"].as_str().unwrap_or_default(), f["seq"].as_u64()))
        .collect();
    let after = frames.len() - 1;
    assert_eq!(seen[..2], [("delta", Some(1)), ("retract", Some(2))]);
    assert!(
        (2..after).all(|i| seen[i] == ("delta", Some(i as u64 + 1))),
        "{seen:?}"
    );
    assert_eq!(said(&frames[2..after]), "Asked again, with everything.");
    let reply_id = answer["message"]["id"].as_str();
    assert!(
        frames[..after]
            .iter()
            .all(|f| f["message_id"].as_str() == reply_id)
    );
    assert_eq!(
        frames[after]["message"]["content"],
        "Asked again, with everything."
    );
    assert_eq!(world.stored("Early words.").await?, 0);
    world.shutdown.cancel();
    Ok(())
}

#[tokio::test]
async fn a_conversation_changed_elsewhere_is_answered_again_and_the_early_answer_never_acts()
-> anyhow::Result<()> {
    let world = start().await?;
    let conversation = world.converse().await?;
    world.turn_elsewhere(&conversation).await?;
    let mut live = world.live(&conversation).await?;
    // Asked on what this service remembered, the model calls a tool that changes work; asked
    // again on what the store read, it answers.
    let confirmed = "add a README to https://github.com/acme/widgets, I confirm, go ahead";
    world.model.push(vec![
        Turn::Tool {
            name: "spawn_task".into(),
            input: json!({"repo_url": "https://github.com/acme/widgets", "task_description": "add a README"}),
        },
        Turn::Text("Asked again, with everything.".into()),
    ]);
    let holding = world.hold(&conversation).await?;
    let answer = world.say(Some(&conversation), confirmed);
    world.asked(2).await?;
    assert_eq!(said_to_model(&world.model, 1), ["hi", "Hello.", confirmed]);
    holding.rollback().await?;
    let answer = answer.await??;
    assert_eq!(answer["message"]["content"], "Asked again, with everything.");
    assert_eq!(
        said_to_model(&world.model, 2),
        ["hi", "Hello.", "from the other tab", "answered there", confirmed]
    );
    // The early answer's tool call never ran, and the person saw only the answer given.
    assert_eq!(world.spawned.load(Ordering::SeqCst), 0);
    let mut frames = vec![next_frame(&mut live).await?];
    while frames.last().and_then(|f| f["type"].as_str()) != Some("message") {
        frames.push(next_frame(&mut live).await?);
    }
    let deltas = &frames[..frames.len() - 1];
    assert!(deltas.iter().all(|f| f["type"] == "delta"), "{frames:?}");
    assert_eq!(said(deltas), "Asked again, with everything.");
    // What the turn left is remembered: the next message is answered on all of it.
    world.model.push(vec![Turn::Text("Yes.".into())]);
    world.say(Some(&conversation), "anything else?").await??;
    assert_eq!(world.model.agent_requests().len(), 4);
    assert_eq!(
        said_to_model(&world.model, 3),
        [
            "hi",
            "Hello.",
            "from the other tab",
            "answered there",
            confirmed,
            "Asked again, with everything.",
            "anything else?"
        ]
    );
    world.shutdown.cancel();
    Ok(())
}

#[tokio::test]
async fn a_conversation_of_someone_else_is_not_found_and_the_model_is_not_asked() -> anyhow::Result<()> {
    let world = start().await?;
    let conversation = world.converse().await?;
    let command = json!({"user_id": "mallory", "conversation_id": conversation, "message": "mine now"});
    let refused = request::send_json::<_, Value>(
        &world.bus,
        "cmd.conversation.post-message",
        &command,
        Duration::from_secs(30),
    )
    .await;
    let Err(request::RequestError::Rejected { message, .. }) = refused else {
        anyhow::bail!("mallory's message was not refused: {refused:?}");
    };
    assert_eq!(message, "no such conversation");
    assert_eq!(world.model.agent_requests().len(), 1);
    assert_eq!(world.stored("mine now").await?, 0);
    world.shutdown.cancel();
    Ok(())
}
