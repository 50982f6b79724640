//! A person who opens their feed has their tasks read ahead: the gateway's word on
//! `live.present.<user>` makes the conversation ask the inbox once, before any message, and the
//! first message then uses what was read (the inbox is not asked again). Here the inbox is a
//! stand-in that counts its questions.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use mainloop_bus::request;
use mainloop_events::subjects;
use mainloop_fakes::scripted_model::{ScriptedModel, Turn};
use mainloop_runtime::Secret;
use mainloop_testkit::Infra;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn opening_the_feed_reads_the_persons_tasks_before_their_first_message() -> anyhow::Result<()> {
    mainloop_runtime::tls::install();
    let model = ScriptedModel::new("sk-ant-test", vec![]);
    let url = model
        .clone()
        .serve(tokio::net::TcpListener::bind("127.0.0.1:0").await?)
        .await?;
    let infra = Infra::start()?;
    let bus = infra.bus().await?;
    // The inbox: alice has one task running; every question is counted.
    let asked = Arc::new(AtomicUsize::new(0));
    let inbox = request::Server::bind(&bus, "query.inbox.list-tasks", "inbox").await?;
    let shutdown = CancellationToken::new();
    let counted = asked.clone();
    tokio::spawn(inbox.run_json(shutdown.clone(), move |_: Value| {
        counted.fetch_add(1, Ordering::SeqCst);
        async {
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

    bus.client()
        .publish(subjects::present("alice")?, Default::default())
        .await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while asked.load(Ordering::SeqCst) == 0 {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the inbox was never asked"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Present again while warm: nothing is read again.
    bus.client()
        .publish(subjects::present("alice")?, Default::default())
        .await?;

    model.push(vec![Turn::Text("It is being implemented.".into())]);
    let answer: Value = request::send_json(
        &bus,
        "cmd.conversation.post-message",
        &json!({"user_id": "alice", "conversation_id": null, "message": "what is running?"}),
        Duration::from_secs(30),
    )
    .await?;
    assert_eq!(answer["message"]["content"], "It is being implemented.");
    let requests = model.agent_requests();
    let system = requests[0]["system"].to_string();
    assert!(
        system.contains("t-42 [implementing] acme/widgets — add a quick start"),
        "{system}"
    );
    assert_eq!(
        asked.load(Ordering::SeqCst),
        1,
        "the message read the tasks again"
    );
    shutdown.cancel();
    Ok(())
}
