//! `mainloop events tail`: the event streams as JSON lines, for people and other tools.

use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use futures_util::StreamExt;
use mainloop_bus::Bus;
use mainloop_events::{Envelope, subjects};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::cli::TailArgs;

/// Streams whose messages are events (WORK is a work queue and cannot be read without taking work).
const EVENT_STREAMS: &[&str] = &[
    subjects::TASKS,
    subjects::JOBS,
    subjects::LOGS,
    subjects::GITHUB,
    subjects::CHAT,
    subjects::INBOX,
];

pub async fn tail(args: TailArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let bus = Bus::connect(
        &args.nats_url,
        "mainloop-events-tail",
        Duration::from_secs(10),
        &shutdown,
    )
    .await?;
    // `>` is every subject: the same as no filter, which a single stream cannot express.
    let subject = args.subject.clone().filter(|s| s != ">");
    let streams: Vec<String> = match &subject {
        Some(subject) => vec![
            bus.jetstream()
                .stream_by_subject(subject.as_str())
                .await
                .with_context(|| format!("no stream holds {subject}"))?,
        ],
        None => EVENT_STREAMS.iter().map(|s| (*s).to_string()).collect(),
    };
    let (lines, mut printed) = mpsc::channel::<String>(1024);
    let mut readers = tokio::task::JoinSet::new();
    for stream in streams {
        let (bus, lines, shutdown) = (bus.clone(), lines.clone(), shutdown.clone());
        let filter = subject.clone().unwrap_or_default();
        let (new, once) = (args.new, args.once);
        readers.spawn(async move { read_stream(&bus, &stream, &filter, new, once, lines, shutdown).await });
    }
    drop(lines);
    let mut stdout = tokio::io::stdout();
    while let Some(line) = printed.recv().await {
        stdout.write_all(line.as_bytes()).await?;
        stdout.write_all(b"\n").await?;
        stdout.flush().await?;
    }
    while let Some(result) = readers.join_next().await {
        result??;
    }
    Ok(())
}

async fn read_stream(
    bus: &Bus,
    stream_name: &str,
    filter: &str,
    new: bool,
    once: bool,
    lines: mpsc::Sender<String>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let stream = bus.jetstream().get_stream(stream_name).await?;
    let mut consumer = stream
        .create_consumer(pull::OrderedConfig {
            filter_subject: filter.to_string(),
            deliver_policy: if new {
                DeliverPolicy::New
            } else {
                DeliverPolicy::All
            },
            ..Default::default()
        })
        .await?;
    if once && consumer.info().await?.num_pending == 0 {
        return Ok(());
    }
    let mut messages = consumer.messages().await?;
    loop {
        let message = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            message = messages.next() => match message {
                Some(message) => message?,
                None => return Ok(()),
            },
        };
        let info = message.info().map_err(|e| anyhow::anyhow!("{e}"))?;
        let event = match Envelope::from_bytes(&message.payload) {
            Ok(envelope) => envelope.to_json()?,
            Err(err) => serde_json::json!({ "undecodable": err.to_string() }),
        };
        let line = serde_json::json!({
            "stream": stream_name,
            "seq": info.stream_sequence,
            "subject": message.subject.as_str(),
            "event": event,
        });
        let last = info.pending == 0;
        if lines.send(line.to_string()).await.is_err() || (once && last) {
            return Ok(());
        }
    }
}
