//! The `/events` feeds of one gateway hear the INBOX stream once and hand each person's events
//! to that person's connections. A reconnect with `Last-Event-ID` while events keep coming gets
//! every event after it exactly once and in order (the replay read from the stream, then the
//! live ones, joined without a gap or a repeat); nobody hears another person's events; many
//! connections of one person each hear everything; a replay of many inbox items asks the inbox
//! for the unread count once, not once an item.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use mainloop_bus::{Bus, Expect, request};
use mainloop_events::v1::{InboxItemAdded, TaskCardUpdated};
use mainloop_events::{Envelope, Payload, subjects};
use mainloop_gateway::HttpConfig;
use mainloop_testkit::Infra;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

struct World {
    _infra: Infra,
    bus: Bus,
    base: String,
    http: reqwest::Client,
    shutdown: CancellationToken,
}

async fn start() -> anyhow::Result<World> {
    mainloop_runtime::tls::install();
    let infra = Infra::start()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let shutdown = CancellationToken::new();
    tokio::spawn(mainloop_gateway::run(
        mainloop_gateway::Config {
            common: infra.common(),
            http: HttpConfig::test_mode(&format!("127.0.0.1:{port}")),
        },
        shutdown.clone(),
    ));
    infra.ready(1).await?;
    let bus = infra.bus().await?;
    Ok(World {
        _infra: infra,
        bus,
        base: format!("http://127.0.0.1:{port}"),
        http: reqwest::Client::new(),
        shutdown,
    })
}

/// A task card of `user`'s, its description `n`, on their INBOX subject.
async fn card(bus: &Bus, user: &str, n: usize) -> anyhow::Result<()> {
    let payload = Payload::TaskCardUpdated(TaskCardUpdated {
        task_id: format!("{user}-task"),
        description: format!("{user} {n}"),
        ..Default::default()
    });
    bus.publish(
        &subjects::inbox(user)?,
        &Envelope::new(user, format!("{user}-task"), payload),
        Expect::Any,
    )
    .await?;
    Ok(())
}

/// One open feed: its frames as they come.
struct Feed {
    frames: std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buffer: String,
}

impl Feed {
    async fn open(world: &World, user: &str, last_event_id: Option<u64>) -> anyhow::Result<Feed> {
        let mut request = world
            .http
            .get(format!("{}/events?user_id_query={user}", world.base));
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id.to_string());
        }
        let response = request.send().await?.error_for_status()?;
        let mut feed = Feed {
            frames: Box::pin(response.bytes_stream()),
            buffer: String::new(),
        };
        feed.next("connected").await?;
        Ok(feed)
    }

    /// The next event named `name`: its id and data.
    async fn next(&mut self, name: &str) -> anyhow::Result<(Option<u64>, Value)> {
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let frame: String = self.buffer.drain(..end + 2).collect();
                let field = |key: &str| frame.lines().find_map(|l| l.strip_prefix(key)).map(str::trim);
                if field("event:") == Some(name) {
                    let data = serde_json::from_str(field("data:").unwrap_or("null"))?;
                    return Ok((field("id:").and_then(|i| i.parse().ok()), data));
                }
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.frames.next())
                .await?
                .ok_or_else(|| anyhow::anyhow!("the feed ended"))??;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// Cards until the one described `last`: (id, description) each.
    async fn cards_until(&mut self, last: &str) -> anyhow::Result<Vec<(u64, String)>> {
        let mut cards = Vec::new();
        loop {
            let (id, card) = self.next("task:updated").await?;
            let description = card["description"].as_str().unwrap_or_default().to_string();
            cards.push((id.unwrap_or_default(), description.clone()));
            if description == last {
                return Ok(cards);
            }
        }
    }
}

#[tokio::test]
async fn a_reconnect_while_events_keep_coming_gets_each_once_in_order() -> anyhow::Result<()> {
    let world = start().await?;
    let mut first = Feed::open(&world, "alice", None).await?;
    let publishing = {
        let bus = world.bus.clone();
        tokio::spawn(async move {
            for n in 0..300 {
                card(&bus, "alice", n).await?;
                card(&bus, "bob", n).await?;
            }
            anyhow::Ok(())
        })
    };
    let before = first.cards_until("alice 99").await?;
    drop(first);
    let last_seen = before.last().map(|(id, _)| *id);
    // Reconnected while alice's cards 100 and on are still being published.
    let mut again = Feed::open(&world, "alice", last_seen).await?;
    let after = again.cards_until("alice 299").await?;
    publishing.await??;
    let described = |cards: &[(u64, String)]| cards.iter().map(|(_, d)| d.clone()).collect::<Vec<_>>();
    let expected = |range: std::ops::Range<usize>| range.map(|n| format!("alice {n}")).collect::<Vec<_>>();
    assert_eq!(described(&before), expected(0..100));
    assert_eq!(described(&after), expected(100..300));
    // Ids are the stream's sequences, rising, and bob's cards (between alice's) never came.
    let ids: Vec<u64> = before.iter().chain(&after).map(|(id, _)| *id).collect();
    assert!(ids.windows(2).all(|w| w[1] == w[0] + 2), "{ids:?}");
    world.shutdown.cancel();
    Ok(())
}

#[tokio::test]
async fn each_connection_of_a_person_hears_everything_and_a_reconnect_with_nothing_missed_waits_for_new()
-> anyhow::Result<()> {
    let world = start().await?;
    let mut feeds = Vec::new();
    for _ in 0..3 {
        feeds.push(Feed::open(&world, "alice", None).await?);
    }
    for n in 0..20 {
        card(&world.bus, "alice", n).await?;
    }
    let mut last_id = None;
    for feed in &mut feeds {
        let cards = feed.cards_until("alice 19").await?;
        assert_eq!(cards.len(), 20);
        last_id = cards.last().map(|(id, _)| *id);
    }
    drop(feeds);
    // Nothing was missed: the reconnect hears only what comes next.
    let mut again = Feed::open(&world, "alice", last_id).await?;
    card(&world.bus, "alice", 20).await?;
    let cards = again.cards_until("alice 20").await?;
    assert_eq!(cards.len(), 1);
    assert_eq!(Some(cards[0].0), last_id.map(|id| id + 1));
    world.shutdown.cancel();
    Ok(())
}

#[tokio::test]
async fn a_replay_of_many_inbox_items_asks_for_the_unread_count_once() -> anyhow::Result<()> {
    let world = start().await?;
    // The inbox, standing in: it counts the questions and says 42 unread.
    let asked = Arc::new(AtomicUsize::new(0));
    let inbox = request::Server::bind(&world.bus, "query.inbox.unread-count", "inbox").await?;
    let counted = asked.clone();
    tokio::spawn(inbox.run_json(world.shutdown.clone(), move |_: Value| {
        counted.fetch_add(1, Ordering::SeqCst);
        async move { Ok(json!({"count": 42})) }
    }));
    for n in 0..100 {
        let payload = Payload::InboxItemAdded(InboxItemAdded {
            item_id: format!("item-{n}"),
            task_id: "t1".into(),
            title: format!("question {n}"),
            ..Default::default()
        });
        world
            .bus
            .publish(
                &subjects::inbox("alice")?,
                &Envelope::new("alice", "t1", payload),
                Expect::Any,
            )
            .await?;
    }
    let mut feed = Feed::open(&world, "alice", Some(0)).await?;
    for n in 0..100 {
        let (_, update) = feed.next("inbox:updated").await?;
        assert_eq!(update["item_id"], format!("item-{n}"));
        assert_eq!(update["unread_count"], 42);
    }
    assert_eq!(asked.load(Ordering::SeqCst), 1);
    // A live one asks for itself.
    let payload = Payload::InboxItemAdded(InboxItemAdded {
        item_id: "item-live".into(),
        task_id: "t1".into(),
        ..Default::default()
    });
    world
        .bus
        .publish(
            &subjects::inbox("alice")?,
            &Envelope::new("alice", "t1", payload),
            Expect::Any,
        )
        .await?;
    let (_, update) = feed.next("inbox:updated").await?;
    assert_eq!(
        (update["item_id"].as_str(), update["unread_count"].as_u64()),
        (Some("item-live"), Some(42))
    );
    assert_eq!(asked.load(Ordering::SeqCst), 2);
    world.shutdown.cancel();
    Ok(())
}
