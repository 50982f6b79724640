//! A person who opens their feed has their tasks read ahead: the gateway's word on
//! `live.present.<user>` makes the conversation ask the inbox once, before any message, and the
//! first message then uses what was read (the inbox is not asked again) — even when it arrives
//! while that read is still under way. Here the inbox is a stand-in that counts its questions.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use mainloop_bus::{Bus, request};
use mainloop_events::subjects;
use mainloop_fakes::scripted_model::{ScriptedModel, Turn};
use mainloop_runtime::Secret;
use mainloop_testkit::Infra;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

struct World {
    _infra: Infra,
    bus: Bus,
    model: ScriptedModel,
    asked: Arc<AtomicUsize>,
    shutdown: CancellationToken,
}

/// The conversation service, a scripted model, and an inbox that takes `answer_after` to say
/// alice has one task running.
async fn start(answer_after: Duration) -> anyhow::Result<World> {
    mainloop_runtime::tls::install();
    let model = ScriptedModel::new("sk-ant-test", vec![]);
    let url = model
        .clone()
        .serve(tokio::net::TcpListener::bind("127.0.0.1:0").await?)
        .await?;
    let infra = Infra::start()?;
    let bus = infra.bus().await?;
    let asked = Arc::new(AtomicUsize::new(0));
    let inbox = request::Server::bind(&bus, "query.inbox.list-tasks", "inbox").await?;
    let shutdown = CancellationToken::new();
    let counted = asked.clone();
    tokio::spawn(inbox.run_json(shutdown.clone(), move |_: Value| {
        counted.fetch_add(1, Ordering::SeqCst);
        async move {
            tokio::time::sleep(answer_after).await;
            Ok(
                json!([{"id": "t-42", "status": "implementing", "repo_url": "https://github.com/acme/widgets",
                "description": "add a quick start"}]),
            )
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
    Ok(World {
        _infra: infra,
        bus,
        model,
        asked,
        shutdown,
    })
}

impl World {
    async fn present(&self) -> anyhow::Result<()> {
        self.bus
            .client()
            .publish(subjects::present("alice")?, Default::default())
            .await?;
        Ok(())
    }

    /// Says alice is present until the inbox is asked (presence is core NATS: a word said
    /// while the service is still subscribing is not heard, and is said again, as a browser's
    /// reconnect would).
    async fn present_until_asked(&self) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let mut said: Option<tokio::time::Instant> = None;
        while self.asked.load(Ordering::SeqCst) == 0 {
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "the inbox was never asked"
            );
            if said.is_none_or(|at| at.elapsed() >= Duration::from_millis(500)) {
                self.present().await?;
                said = Some(tokio::time::Instant::now());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }

    /// Alice asks what is running; the system prompt the model got.
    async fn ask(&self) -> anyhow::Result<String> {
        self.model
            .push(vec![Turn::Text("It is being implemented.".into())]);
        let answer: Value = request::send_json(
            &self.bus,
            "cmd.conversation.post-message",
            &json!({"user_id": "alice", "conversation_id": null, "message": "what is running?"}),
            Duration::from_secs(30),
        )
        .await?;
        assert_eq!(answer["message"]["content"], "It is being implemented.");
        let requests = self.model.agent_requests();
        Ok(requests
            .last()
            .map(|r| r["system"].to_string())
            .unwrap_or_default())
    }
}

const TOLD: &str = "t-42 [implementing] acme/widgets — add a quick start";

#[tokio::test]
async fn opening_the_feed_reads_the_persons_tasks_before_their_first_message() -> anyhow::Result<()> {
    let world = start(Duration::ZERO).await?;
    world.present_until_asked().await?;
    // Present again while warm: nothing is read again.
    world.present().await?;
    let system = world.ask().await?;
    assert!(system.contains(TOLD), "{system}");
    assert_eq!(
        world.asked.load(Ordering::SeqCst),
        1,
        "the message read the tasks again"
    );
    world.shutdown.cancel();
    Ok(())
}

#[tokio::test]
async fn a_message_during_the_read_ahead_waits_for_it_instead_of_reading_again() -> anyhow::Result<()> {
    let world = start(Duration::from_millis(400)).await?;
    world.present_until_asked().await?;
    // The read is under way (the inbox answers in 400 ms) when the message comes.
    let system = world.ask().await?;
    assert!(system.contains(TOLD), "{system}");
    assert_eq!(
        world.asked.load(Ordering::SeqCst),
        1,
        "the message read the tasks again"
    );
    world.shutdown.cancel();
    Ok(())
}
