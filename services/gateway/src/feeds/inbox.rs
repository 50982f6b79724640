//! The INBOX stream, heard once for every feed of this gateway: an ordered consumer of the
//! whole stream from the gateway's start, each event decoded only when someone it is for is
//! connected here. Should the consumer fail, it is made again from the next sequence after the
//! last one heard, so no connected person misses an event.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use futures_util::StreamExt;
use mainloop_bus::Bus;
use mainloop_events::{Envelope, subjects};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{Feeds, Live, Stored};

/// How long to wait before making the consumer again after a failure.
const AGAIN_AFTER: Duration = Duration::from_secs(1);

pub fn start(bus: Bus, feeds: Feeds, tasks: &mut JoinSet<()>, shutdown: CancellationToken) {
    tasks.spawn(async move {
        let mut next: Option<u64> = None;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                failed = hear(&bus, &feeds, &mut next) => {
                    tracing::warn!(error = %failed, "the INBOX feed stopped; following it again");
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(AGAIN_AFTER) => {}
            }
        }
    });
}

/// Hands out every INBOX event from `next` (or from now) until the consumer fails; `next` is
/// kept one past the last event heard.
async fn hear(bus: &Bus, feeds: &Feeds, next: &mut Option<u64>) -> String {
    let stream = match bus.jetstream().get_stream_no_info(subjects::INBOX).await {
        Ok(stream) => stream,
        Err(err) => return err.to_string(),
    };
    let deliver_policy = match *next {
        Some(start_sequence) => DeliverPolicy::ByStartSequence { start_sequence },
        None => DeliverPolicy::New,
    };
    let consumer = match stream
        .create_consumer(pull::OrderedConfig {
            deliver_policy,
            ..Default::default()
        })
        .await
    {
        Ok(consumer) => consumer,
        Err(err) => return err.to_string(),
    };
    let mut messages = match consumer.messages().await {
        Ok(messages) => messages,
        Err(err) => return err.to_string(),
    };
    while let Some(message) = messages.next().await {
        let message = match message {
            Ok(message) => message,
            Err(err) => return err.to_string(),
        };
        let Ok(info) = message.info() else {
            continue;
        };
        let sequence = info.stream_sequence;
        *next = Some(sequence + 1);
        let user = message.subject.trim_start_matches("inbox.");
        feeds.say(user, || {
            let event = Envelope::from_bytes(&message.payload)
                .inspect_err(|err| tracing::warn!(sequence, error = %err, "an INBOX event could not be read"))
                .ok()?;
            Some(Live::Inbox(Arc::new(Stored {
                sequence,
                subject: message.subject.to_string(),
                event,
                headers: message.headers.clone(),
            })))
        });
    }
    "the consumer ended".into()
}
