//! `mainloop events tail` against a real JetStream: every stream, filters, and following.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use mainloop_bus::{Bus, Expect};
use mainloop_events::v1::{TaskSpawned, UserMessagePosted};
use mainloop_events::{Envelope, Payload, subjects};
use mainloop_testkit::TestNats;
use tokio_util::sync::CancellationToken;

fn tail(nats: &TestNats, extra: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mainloop"));
    command
        .args(["events", "tail", "--nats-url", &nats.url()])
        .args(extra)
        .env("RUST_LOG", "warn");
    command
}

fn lines(output: &std::process::Output) -> anyhow::Result<Vec<serde_json::Value>> {
    anyhow::ensure!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8(output.stdout.clone())?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?)
}

fn spawned() -> Envelope {
    Envelope::new(
        "u1",
        "t1",
        Payload::TaskSpawned(TaskSpawned {
            task_id: "t1".into(),
            ..Default::default()
        }),
    )
}

fn said(text: &str) -> Envelope {
    Envelope::new(
        "u1",
        "c1",
        Payload::UserMessagePosted(UserMessagePosted {
            message_id: "m1".into(),
            content: text.into(),
        }),
    )
}

#[tokio::test]
async fn tail_prints_every_stream_filters_by_subject_and_follows() -> anyhow::Result<()> {
    let nats = TestNats::start()?;
    let bus = Bus::connect(
        &nats.url(),
        "test",
        Duration::from_secs(5),
        &CancellationToken::new(),
    )
    .await?;
    bus.ensure_streams(1).await?;
    assert!(lines(&tail(&nats, &["--once", "--subject", "chat.>"]).output()?)?.is_empty());
    let (task, chat) = (spawned(), said("hello"));
    bus.publish(&subjects::task("u1", "t1")?, &task, Expect::Any)
        .await?;
    bus.publish(&subjects::chat("u1", "c1")?, &chat, Expect::Any)
        .await?;

    let all = lines(&tail(&nats, &["--once"]).output()?)?;
    let mut ids: Vec<&str> = all.iter().filter_map(|l| l["event"]["id"].as_str()).collect();
    ids.sort_unstable();
    let mut expected = vec![task.id.as_str(), chat.id.as_str()];
    expected.sort_unstable();
    assert_eq!(ids, expected, "{all:?}");

    let whole_stream = lines(&tail(&nats, &["--once", "--subject", "chat.>"]).output()?)?;
    assert_eq!(whole_stream.len(), 1, "a filter equal to the stream's subjects");
    let only_chat = lines(&tail(&nats, &["--once", "--subject", "chat.u1.>"]).output()?)?;
    assert_eq!(only_chat.len(), 1);
    assert_eq!(only_chat[0]["stream"], "CHAT");
    assert_eq!(only_chat[0]["seq"], 1);
    assert_eq!(only_chat[0]["event"]["userMessagePosted"]["content"], "hello");

    // Following from now on: only what is published after the start.
    let mut follower = tail(&nats, &["--new", "--subject", "chat.>"])
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = follower
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut published = Vec::new();
    let mut received = None;
    for attempt in 0..50 {
        // The follower may not be subscribed yet: keep publishing new messages until one arrives.
        let later = said(&format!("are you there? ({attempt})"));
        bus.publish(&subjects::chat("u1", "c1")?, &later, Expect::Any)
            .await?;
        published.push(later.id);
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            received = Some(line);
            break;
        }
    }
    let _ = follower.kill();
    let _ = follower.wait();
    let line: serde_json::Value =
        serde_json::from_str(&received.ok_or_else(|| anyhow::anyhow!("nothing followed"))?)?;
    let id = line["event"]["id"].as_str().unwrap_or_default().to_string();
    assert!(published.contains(&id), "{line}");
    assert_ne!(id, chat.id, "an event from before the start must not appear");
    Ok(())
}

#[tokio::test]
async fn tail_of_a_subject_no_stream_holds_is_a_clear_error() -> anyhow::Result<()> {
    let nats = TestNats::start()?;
    let bus = Bus::connect(
        &nats.url(),
        "test",
        Duration::from_secs(5),
        &CancellationToken::new(),
    )
    .await?;
    bus.ensure_streams(1).await?;
    let output = tail(&nats, &["--once", "--subject", "nowhere.>"]).output()?;
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("no stream holds nowhere.>"));
    Ok(())
}
