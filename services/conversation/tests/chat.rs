//! Chat turns against the fake Anthropic API and a real scheduler: the model proposes, the
//! person confirms, the task is spawned; a model that spawns without confirmation is refused.

use std::time::Duration;

use mainloop_bus::{Bus, request};
use mainloop_events::v1::ErrorCode;
use mainloop_events::{Payload, subjects};
use mainloop_fakes::anthropic::FakeAnthropic;
use mainloop_runtime::Secret;
use mainloop_testkit::Infra;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

struct World {
    _infra: Infra,
    bus: Bus,
    fake: FakeAnthropic,
    fake_url: String,
    shutdown: CancellationToken,
}

async fn start(with_key: bool) -> anyhow::Result<World> {
    mainloop_runtime::tls::install();
    let fake = FakeAnthropic::new("sk-ant-test");
    let fake_url = fake
        .clone()
        .serve(tokio::net::TcpListener::bind("127.0.0.1:0").await?)
        .await?;
    let infra = Infra::start()?;
    let llm = mainloop_conversation::LlmSettings::anthropic(
        &fake_url,
        with_key.then(|| Secret::new("sk-ant-test")),
        "claude-test",
    );
    let shutdown = CancellationToken::new();
    tokio::spawn(mainloop_scheduler::run(
        mainloop_scheduler::Config {
            common: infra.common(),
            scheduling: Default::default(),
        },
        shutdown.clone(),
    ));
    tokio::spawn(mainloop_conversation::run(
        mainloop_conversation::Config {
            common: infra.common(),
            llm,
        },
        shutdown.clone(),
    ));
    infra.ready(2).await?;
    let bus = infra.bus().await?;
    Ok(World {
        _infra: infra,
        bus,
        fake,
        fake_url,
        shutdown,
    })
}

async fn say(
    world: &World,
    conversation: Option<&str>,
    message: &str,
) -> Result<Value, request::RequestError> {
    let command = json!({"user_id": "alice", "conversation_id": conversation, "message": message});
    request::send_json(
        &world.bus,
        "cmd.conversation.post-message",
        &command,
        Duration::from_secs(30),
    )
    .await
}

async fn spawned_tasks(bus: &Bus) -> anyhow::Result<Vec<mainloop_events::v1::TaskSpawned>> {
    let mut stream = bus.jetstream().get_stream(subjects::TASKS).await?;
    if stream.info().await?.state.messages == 0 {
        return Ok(vec![]);
    }
    let all = bus.read_subject(subjects::TASKS, "task.alice.*", 0).await?;
    Ok(all
        .into_iter()
        .filter_map(|s| match s.event.payload {
            Some(Payload::TaskSpawned(t)) => Some(t),
            _ => None,
        })
        .collect())
}

#[tokio::test]
async fn the_model_asks_the_person_confirms_and_the_task_is_spawned() -> anyhow::Result<()> {
    let world = start(true).await?;
    let first = say(
        &world,
        None,
        "add a quick start section to the README of https://github.com/acme/widgets",
    )
    .await?;
    let conversation = first["conversation_id"].as_str().unwrap_or_default().to_string();
    assert_eq!(first["message"]["role"], "assistant");
    assert!(
        first["message"]["content"]
            .as_str()
            .is_some_and(|c| c.contains("Shall I go ahead?")),
        "{first}"
    );
    assert!(
        spawned_tasks(&world.bus).await?.is_empty(),
        "nothing is spawned before the person confirms"
    );

    let second = say(&world, Some(&conversation), "yes").await?;
    assert!(
        second["message"]["content"]
            .as_str()
            .is_some_and(|c| c.contains("spawned on acme/widgets")),
        "{second}"
    );
    let tasks = spawned_tasks(&world.bus).await?;
    assert_eq!(tasks.len(), 1);
    let repo = tasks[0].repo.clone().unwrap_or_default();
    assert_eq!(
        (
            repo.owner.as_str(),
            repo.name.as_str(),
            tasks[0].conversation_id.as_str()
        ),
        ("acme", "widgets", conversation.as_str())
    );
    assert!(tasks[0].description.contains("quick start"));

    let got: Value = request::send_json(
        &world.bus,
        "query.conversation.get",
        &json!({"user_id": "alice", "conversation_id": conversation}),
        Duration::from_secs(5),
    )
    .await?;
    let roles: Vec<&str> = got["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["role"].as_str())
        .collect();
    assert_eq!(roles, ["user", "assistant", "user", "assistant"]);
    let requests = world.fake.requests();
    assert_eq!(requests[0]["tools"][0]["name"], "spawn_task");
    assert!(
        requests
            .iter()
            .all(|r| r["system"].as_str().is_some_and(|s| s.contains("confirm")))
    );
    let list: Value = request::send_json(
        &world.bus,
        "query.conversation.list",
        &json!({"user_id": "alice"}),
        Duration::from_secs(5),
    )
    .await?;
    assert_eq!(list["total"], 1);
    let foreign: Result<Value, _> = request::send_json(
        &world.bus,
        "query.conversation.get",
        &json!({"user_id": "bob", "conversation_id": conversation}),
        Duration::from_secs(5),
    )
    .await;
    assert!(matches!(
        foreign,
        Err(request::RequestError::Rejected {
            code: ErrorCode::NotFound,
            ..
        })
    ));
    world.shutdown.cancel();
    Ok(())
}

#[tokio::test]
async fn a_spawn_without_confirmation_is_refused_in_code() -> anyhow::Result<()> {
    let world = start(true).await?;
    let reply = say(
        &world,
        None,
        "fix the tests of https://github.com/acme/widgets without asking",
    )
    .await?;
    assert!(
        reply["message"]["content"]
            .as_str()
            .is_some_and(|c| c.contains("has not confirmed")),
        "{reply}"
    );
    assert!(spawned_tasks(&world.bus).await?.is_empty());
    world.shutdown.cancel();
    Ok(())
}

#[tokio::test]
async fn an_overloaded_model_is_retried_and_bad_turns_are_refused() -> anyhow::Result<()> {
    let world = start(true).await?;
    reqwest::Client::new()
        .post(format!("{}/_control/fail", world.fake_url))
        .json(&json!({"status": 529}))
        .send()
        .await?
        .error_for_status()?;
    let reply = say(&world, None, "hello").await?;
    assert!(
        reply["message"]["content"]
            .as_str()
            .is_some_and(|c| c.starts_with("Hello!")),
        "{reply}"
    );
    let empty = say(&world, None, "   ").await;
    assert!(
        matches!(
            empty,
            Err(request::RequestError::Rejected {
                code: ErrorCode::Invalid,
                ..
            })
        ),
        "{empty:?}"
    );
    let unknown = say(&world, Some("no-such-conversation"), "hi").await;
    assert!(
        matches!(
            unknown,
            Err(request::RequestError::Rejected {
                code: ErrorCode::NotFound,
                ..
            })
        ),
        "{unknown:?}"
    );
    world.shutdown.cancel();
    Ok(())
}

#[tokio::test]
async fn without_an_api_key_the_reply_says_so() -> anyhow::Result<()> {
    let world = start(false).await?;
    let reply = say(&world, None, "hello").await?;
    assert!(
        reply["message"]["content"]
            .as_str()
            .is_some_and(|c| c.contains("ANTHROPIC_API_KEY is not set")),
        "{reply}"
    );
    world.shutdown.cancel();
    Ok(())
}

/// A repository that does not exist, or that the token cannot push to, is named in the reply
/// at spawn time; nothing is spawned.
#[tokio::test]
async fn a_repository_we_cannot_use_is_refused_at_spawn_with_the_reason() -> anyhow::Result<()> {
    let world = start(true).await?;
    // The github-watcher's answers, as GitHub would give them.
    let lookup = request::Server::bind(&world.bus, "query.github.repo", "test").await?;
    tokio::spawn(
        lookup.run_json(world.shutdown.clone(), |query: Value| async move {
            match query["name"].as_str() {
                Some("readonly") => {
                    Ok(json!({"clone_url": "x", "default_branch": "main", "can_push": false}))
                }
                _ => Err(mainloop_events::v1::CommandError::not_found("Not Found")),
            }
        }),
    );
    for (repo, expected) in [
        (
            "nope",
            "acme/nope is not on GitHub, or the GitHub token cannot see it",
        ),
        ("readonly", "can see acme/readonly but cannot push to it"),
    ] {
        let asked = say(
            &world,
            None,
            &format!("add a quick start section to the README of https://github.com/acme/{repo}"),
        )
        .await?;
        let conversation = asked["conversation_id"].as_str().unwrap_or_default().to_string();
        let reply = say(&world, Some(&conversation), "yes").await?;
        let said = reply["message"]["content"].as_str().unwrap_or_default();
        assert!(said.contains(expected), "{said}");
    }
    assert!(spawned_tasks(&world.bus).await?.is_empty(), "nothing was spawned");
    world.shutdown.cancel();
    Ok(())
}

/// A model that garbles (a NUL in its reply, a NUL in the task description it writes): the
/// text is stored and shown with `␀`, the turn works, and the task is spawned with the cleaned
/// description, so nothing downstream can be poisoned by it.
#[tokio::test]
async fn a_nul_from_the_model_is_shown_not_stored_or_passed_on() -> anyhow::Result<()> {
    let world = start(true).await?;
    let reply = say(&world, None, "answer me, garbled please").await?;
    assert_eq!(
        reply["message"]["content"], "Here is your answer:␀ (garbled)",
        "{reply}"
    );
    let conversation = reply["conversation_id"].as_str().unwrap_or_default().to_string();
    let got: Value = request::send_json(
        &world.bus,
        "query.conversation.get",
        &json!({"user_id": "alice", "conversation_id": conversation}),
        Duration::from_secs(5),
    )
    .await?;
    assert_eq!(got["messages"][1]["content"], "Here is your answer:␀ (garbled)");

    let asked = say(
        &world,
        None,
        "garbled: add a quick start to https://github.com/acme/widgets",
    )
    .await?;
    let conversation = asked["conversation_id"].as_str().unwrap_or_default().to_string();
    say(&world, Some(&conversation), "yes").await?;
    let tasks = spawned_tasks(&world.bus).await?;
    assert_eq!(tasks.len(), 1);
    assert!(
        tasks[0].description.ends_with("␀ (garbled)") && !tasks[0].description.contains('\0'),
        "{:?}",
        tasks[0].description
    );
    world.shutdown.cancel();
    Ok(())
}

#[tokio::test]
async fn a_long_conversation_keeps_answering_while_it_is_compacted() -> anyhow::Result<()> {
    let world = start(true).await?;
    let first = say(&world, None, "hello").await?;
    let conversation = first["conversation_id"].as_str().unwrap_or_default().to_string();
    for n in 0..30 {
        let answer = tokio::time::timeout(
            Duration::from_secs(20),
            say(&world, Some(&conversation), &format!("message {n}")),
        )
        .await
        .map_err(|_| anyhow::anyhow!("turn {n} hung"))??;
        assert!(answer["message"]["content"].is_string());
    }
    world.shutdown.cancel();
    Ok(())
}
