//! The dead-letter record: a message that could not be handled is copied, with its reason, to
//! `dead.<stream>.<consumer>` on stream DEADLETTER before it is terminated.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, consumer};
use futures_util::StreamExt;
use mainloop_events::subjects;

use crate::{Bus, BusError, ConsumerSpec};

pub const REASON: &str = "Mainloop-Dead-Reason";
pub const SUBJECT: &str = "Mainloop-Dead-Subject";
pub const STREAM_SEQUENCE: &str = "Mainloop-Dead-Stream-Sequence";
pub const DELIVERIES: &str = "Mainloop-Dead-Deliveries";

/// A message that was given up on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub stream: String,
    pub consumer: String,
    pub subject: String,
    pub stream_sequence: u64,
    pub deliveries: u32,
    pub reason: String,
    pub payload: Vec<u8>,
}

/// Header values cannot hold line breaks; reasons are cut so a huge error cannot bloat the record.
fn header_safe(reason: &str) -> String {
    reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(1024)
        .collect()
}

pub(crate) async fn record(
    bus: &Bus,
    spec: &ConsumerSpec,
    message: &jetstream::Message,
    stream_sequence: u64,
    deliveries: u32,
    reason: &str,
) -> Result<(), BusError> {
    let subject = subjects::dead_letter(&spec.stream, &spec.durable)?;
    let mut headers = HeaderMap::new();
    // One record per message and consumer, however often this runs.
    let id = format!("dead:{}:{}:{stream_sequence}", spec.stream, spec.durable);
    headers.insert(async_nats::header::NATS_MESSAGE_ID, id.as_str());
    headers.insert(REASON, header_safe(reason).as_str());
    headers.insert(SUBJECT, message.subject.as_str());
    headers.insert(STREAM_SEQUENCE, stream_sequence.to_string().as_str());
    headers.insert(DELIVERIES, deliveries.to_string().as_str());
    let failed = |reason: String| BusError::Publish {
        subject: subject.clone(),
        reason,
    };
    bus.jetstream()
        .publish_with_headers(subject.clone(), headers, message.payload.clone())
        .await
        .map_err(|e| failed(e.to_string()))?
        .await
        .map_err(|e| failed(e.to_string()))?;
    Ok(())
}

/// Reads the dead letters on `filter` (e.g. `dead.>` or `dead.TASKS.inbox`), oldest first.
pub async fn list(bus: &Bus, filter: &str) -> Result<Vec<DeadLetter>, BusError> {
    let fail = |reason: String| BusError::Stream {
        stream: subjects::DEADLETTER.to_string(),
        reason,
    };
    let stream = bus
        .jetstream()
        .get_stream(subjects::DEADLETTER)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let pending = stream.cached_info().state.messages;
    if pending == 0 {
        return Ok(Vec::new());
    }
    let reader = stream
        .create_consumer(consumer::pull::Config {
            filter_subject: filter.to_string(),
            ack_policy: consumer::AckPolicy::None,
            inactive_threshold: Duration::from_secs(30),
            ..Default::default()
        })
        .await
        .map_err(|e| fail(e.to_string()))?;
    let batch = usize::try_from(pending).unwrap_or(usize::MAX).min(10_000);
    let mut messages = reader
        .fetch()
        .max_messages(batch)
        .expires(Duration::from_millis(500))
        .messages()
        .await
        .map_err(|e| fail(e.to_string()))?;
    let mut letters = Vec::new();
    while let Some(message) = messages.next().await {
        let message = message.map_err(|e| fail(e.to_string()))?;
        let header = |name: &str| {
            message
                .headers
                .as_ref()
                .and_then(|h| h.get(name))
                .map(|v| v.as_str().to_string())
                .unwrap_or_default()
        };
        let mut origin = message.subject.as_str().splitn(3, '.').skip(1);
        letters.push(DeadLetter {
            stream: origin.next().unwrap_or_default().to_string(),
            consumer: origin.next().unwrap_or_default().to_string(),
            subject: header(SUBJECT),
            stream_sequence: header(STREAM_SEQUENCE).parse().unwrap_or(0),
            deliveries: header(DELIVERIES).parse().unwrap_or(0),
            reason: header(REASON),
            payload: message.payload.to_vec(),
        });
    }
    Ok(letters)
}
