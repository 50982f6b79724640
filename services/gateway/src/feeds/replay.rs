//! What a reconnecting feed missed: the person's INBOX events after the `Last-Event-ID` it
//! gave, read with one ordered consumer of their subject, up to the last one stored when the
//! read began. What is stored after that reaches the connection live (its place in `Feeds` is
//! taken first, so nothing falls between; what comes both ways is told apart by sequence).

use std::sync::Arc;

use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use futures_util::{Stream, StreamExt, stream};
use mainloop_bus::Bus;
use mainloop_events::{Envelope, subjects};

use super::Stored;

/// The events on `subject` after sequence `after`, oldest first, as a stream that ends at the
/// last one stored when it was made; a read that fails is its last item (an error), and an
/// event that cannot be read is left out (logged).
pub async fn replay(
    bus: &Bus,
    subject: String,
    after: u64,
) -> Result<impl Stream<Item = Result<Arc<Stored>, String>> + Send + 'static, String> {
    let stream = bus
        .jetstream()
        .get_stream_no_info(subjects::INBOX)
        .await
        .map_err(|e| e.to_string())?;
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            filter_subject: subject,
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: after.saturating_add(1),
            },
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    let messages = match consumer.cached_info().num_pending {
        0 => None,
        _ => Some(consumer.messages().await.map_err(|e| e.to_string())?),
    };
    let read = stream::unfold(messages, |messages| async move {
        let mut messages = messages?;
        let read = match messages.next().await {
            Some(Ok(message)) => message,
            Some(Err(err)) => return Some((Err(err.to_string()), None)),
            None => return Some((Err("the replay ended early".to_string()), None)),
        };
        let Ok(info) = read.info() else {
            return Some((Err("a replayed event has no stream position".to_string()), None));
        };
        let (sequence, last) = (info.stream_sequence, info.pending == 0);
        let stored = match Envelope::from_bytes(&read.payload) {
            Ok(event) => Some(Arc::new(Stored {
                sequence,
                subject: read.subject.to_string(),
                event,
                headers: read.headers.clone(),
            })),
            Err(err) => {
                tracing::warn!(sequence, error = %err, "a replayed INBOX event could not be read");
                None
            }
        };
        Some((Ok(stored), (!last).then_some(messages)))
    });
    Ok(read.filter_map(|read| std::future::ready(read.transpose())))
}
