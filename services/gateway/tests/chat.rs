//! The main thread through the real gateway and conversation service on real NATS and Postgres,
//! against the fake Anthropic API streaming its real event sequence. Replies stream: the person's
//! `/events` carries `chat:delta` fragments in order and then `chat:message` once, equal to their
//! concatenation and to what `POST /chat` returns and stores; nobody else sees them. A model that
//! breaks off mid-answer leaves its words and the reason in the thread, and the next message
//! works. Several conversations: created, titled after their first message, renamed, listed
//! newest first, searched across, each person seeing only their own.

use std::time::Duration;

use futures_util::StreamExt;
use mainloop_fakes::anthropic::FakeAnthropic;
use mainloop_gateway::HttpConfig;
use mainloop_runtime::Secret;
use mainloop_testkit::Infra;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

struct World {
    _infra: Infra,
    base: String,
    llm_url: String,
    http: reqwest::Client,
    shutdown: CancellationToken,
}

async fn start() -> anyhow::Result<World> {
    mainloop_runtime::tls::install();
    let llm_url = FakeAnthropic::new("sk-ant-test")
        .serve(tokio::net::TcpListener::bind("127.0.0.1:0").await?)
        .await?;
    let infra = Infra::start()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let shutdown = CancellationToken::new();
    tokio::spawn(mainloop_conversation::run(
        mainloop_conversation::Config {
            common: infra.common(),
            llm: mainloop_conversation::LlmSettings::anthropic(
                &llm_url,
                Some(Secret::new("sk-ant-test")),
                "claude-test",
            ),
        },
        shutdown.clone(),
    ));
    tokio::spawn(mainloop_gateway::run(
        mainloop_gateway::Config {
            common: infra.common(),
            http: HttpConfig::test_mode(&format!("127.0.0.1:{port}")),
        },
        shutdown.clone(),
    ));
    infra.ready(2).await?;
    Ok(World {
        _infra: infra,
        base: format!("http://127.0.0.1:{port}"),
        llm_url,
        http: reqwest::Client::new(),
        shutdown,
    })
}

/// An SSE reader: the named events in order, with their data.
struct Feed<S> {
    frames: S,
    buffer: String,
}

impl<S: futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin> Feed<S> {
    /// The next event named one of `names`.
    async fn next(&mut self, names: &[&str]) -> anyhow::Result<(String, Value)> {
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let frame: String = self.buffer.drain(..end + 2).collect();
                let field = |key: &str| frame.lines().find_map(|l| l.strip_prefix(key)).map(str::trim);
                if let Some(name) = field("event:").filter(|n| names.contains(n)) {
                    return Ok((
                        name.to_string(),
                        serde_json::from_str(field("data:").unwrap_or("null"))?,
                    ));
                }
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.frames.next())
                .await?
                .ok_or_else(|| anyhow::anyhow!("stream ended"))??;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

async fn feed(
    world: &World,
    user: &str,
) -> anyhow::Result<Feed<impl futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin>> {
    let response = world
        .http
        .get(format!("{}/events?user_id_query={user}", world.base))
        .send()
        .await?
        .error_for_status()?;
    let mut feed = Feed {
        frames: response.bytes_stream(),
        buffer: String::new(),
    };
    feed.next(&["connected"]).await?;
    Ok(feed)
}

async fn chat(world: &World, body: Value) -> anyhow::Result<Value> {
    Ok(world
        .http
        .post(format!("{}/chat", world.base))
        .header("x-user-id", "alice")
        .json(&body)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?)
}

/// Reads one reply off the feed: its fragments (checking `seq` runs 1, 2, …) and the message.
async fn reply(
    feed: &mut Feed<impl futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin>,
) -> anyhow::Result<(Vec<String>, Value)> {
    let mut fragments = Vec::new();
    loop {
        let (name, data) = feed.next(&["chat:delta", "chat:message"]).await?;
        if name == "chat:message" {
            return Ok((fragments, data));
        }
        assert_eq!(
            data["seq"].as_u64(),
            Some(fragments.len() as u64 + 1),
            "in order: {data}"
        );
        fragments.push(data["text"].as_str().unwrap_or_default().to_string());
    }
}

#[tokio::test]
async fn a_reply_streams_to_its_person_and_equals_what_is_stored() -> anyhow::Result<()> {
    let world = start().await?;
    let mut alice = feed(&world, "alice").await?;
    let mut bob = feed(&world, "bob").await?;
    let answer = chat(&world, json!({"message": "hi there"})).await?;
    let (fragments, message) = reply(&mut alice).await?;
    assert!(fragments.len() > 3, "streamed in pieces: {fragments:?}");
    let said: String = fragments.concat();
    assert_eq!(message["message"]["content"], said.as_str());
    assert_eq!(answer["message"]["content"], said.as_str());
    assert!(said.starts_with("Hello! Tell me what to build"), "{said}");
    assert_eq!(message["conversation_id"], answer["conversation_id"]);
    // Stored once, as said.
    let stored: Value = world
        .http
        .get(format!(
            "{}/conversations/{}",
            world.base,
            answer["conversation_id"].as_str().unwrap_or_default()
        ))
        .header("x-user-id", "alice")
        .send()
        .await?
        .json()
        .await?;
    let replies: Vec<&Value> = stored["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["role"] == "assistant")
        .collect();
    assert_eq!(replies.len(), 1, "{stored}");
    assert_eq!(replies[0]["content"], said.as_str());
    // Bob's feed carries nothing of it.
    assert!(
        tokio::time::timeout(
            Duration::from_millis(500),
            bob.next(&["chat:delta", "chat:message"])
        )
        .await
        .is_err(),
        "another person's reply reached bob"
    );
    world.shutdown.cancel();
    Ok(())
}

#[tokio::test]
async fn a_model_that_breaks_off_leaves_its_words_and_the_reason_and_the_next_message_works()
-> anyhow::Result<()> {
    let world = start().await?;
    let mut alice = feed(&world, "alice").await?;
    world
        .http
        .post(format!("{}/_control/fail", world.llm_url))
        .json(&json!({"status": 200, "type": "overloaded_error", "mid_stream": true}))
        .send()
        .await?
        .error_for_status()?;
    let broken = chat(&world, json!({"message": "hi"})).await?;
    let (fragments, message) = reply(&mut alice).await?;
    assert_eq!(
        fragments,
        [
            "Hello! Tell ",
            "\n\n⚠ I could not answer: the chat model answered 200 overloaded_error: Overloaded"
        ]
    );
    assert_eq!(message["message"]["content"], fragments.concat().as_str());
    assert_eq!(broken["message"]["content"], fragments.concat().as_str());

    let next = chat(
        &world,
        json!({"message": "hi again", "conversation_id": broken["conversation_id"]}),
    )
    .await?;
    let (fragments, _) = reply(&mut alice).await?;
    assert!(
        next["message"]["content"]
            .as_str()
            .is_some_and(|c| c.starts_with("Hello!") && c == fragments.concat()),
        "{next}"
    );
    world.shutdown.cancel();
    Ok(())
}

async fn call(
    world: &World,
    method: reqwest::Method,
    path: &str,
    user: &str,
    body: Option<Value>,
) -> anyhow::Result<(u16, Value)> {
    let mut request = world
        .http
        .request(method, format!("{}{path}", world.base))
        .header("x-user-id", user);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let answer = request.send().await?;
    Ok((
        answer.status().as_u16(),
        answer.json().await.unwrap_or(Value::Null),
    ))
}

#[tokio::test]
async fn conversations_are_created_renamed_listed_and_searched() -> anyhow::Result<()> {
    use reqwest::Method;
    let world = start().await?;
    let deploy = chat(&world, json!({"message": "how do I deploy widgets to staging?"})).await?;
    let deploy_id = deploy["conversation_id"].as_str().unwrap_or_default().to_string();
    let (status, empty) = call(&world, Method::POST, "/conversations", "alice", Some(json!({}))).await?;
    assert_eq!(status, 200, "{empty}");
    assert_eq!(empty["conversation"]["title"], "New Conversation");
    let empty_id = empty["conversation"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    chat(
        &world,
        json!({"message": "the invoices page is slow", "conversation_id": empty_id}),
    )
    .await?;

    let (_, listed) = call(&world, Method::GET, "/conversations", "alice", None).await?;
    let titles: Vec<&str> = listed["conversations"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["title"].as_str())
        .collect();
    assert_eq!(
        titles,
        ["New Conversation", "how do I deploy widgets to staging?"],
        "newest first, titled after their first message"
    );

    let (status, renamed) = call(
        &world,
        Method::PATCH,
        &format!("/conversations/{empty_id}"),
        "alice",
        Some(json!({"title": "  Invoices\n performance "})),
    )
    .await?;
    assert_eq!(
        (status, renamed["conversation"]["title"].as_str()),
        (200, Some("Invoices performance"))
    );
    let (status, _) = call(
        &world,
        Method::PATCH,
        &format!("/conversations/{empty_id}"),
        "bob",
        Some(json!({"title": "mine"})),
    )
    .await?;
    assert_eq!(status, 404, "bob cannot rename alice's conversation");
    let (status, refused) = call(
        &world,
        Method::PATCH,
        &format!("/conversations/{empty_id}"),
        "alice",
        Some(json!({"title": " "})),
    )
    .await?;
    assert_eq!(status, 400, "{refused}");

    let (status, found) = call(
        &world,
        Method::GET,
        "/conversations/search?q=deploying%20staging",
        "alice",
        None,
    )
    .await?;
    assert_eq!(status, 200, "{found}");
    let first = &found["results"][0];
    assert_eq!(first["conversation_id"], deploy_id.as_str(), "{found}");
    assert_eq!(first["role"], "user");
    assert!(
        first["snippet"]
            .as_str()
            .is_some_and(|s| s.contains("**deploy**") && s.contains("**staging**")),
        "stemmed and marked: {first}"
    );
    let (_, invoices) = call(
        &world,
        Method::GET,
        "/conversations/search?q=invoices",
        "alice",
        None,
    )
    .await?;
    assert_eq!(
        invoices["results"][0]["conversation_title"],
        "Invoices performance"
    );
    let (_, nothing) = call(&world, Method::GET, "/conversations/search?q=deploy", "bob", None).await?;
    assert_eq!(nothing["total"], 0, "bob finds none of alice's messages");
    let (status, _) = call(&world, Method::GET, "/conversations/search?q=%20", "alice", None).await?;
    assert_eq!(status, 400);
    world.shutdown.cancel();
    Ok(())
}
