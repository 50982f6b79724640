//! The last `n` events on one subject of a stream, without reading the ones before them: the
//! sequence where they start is found by halving the stream's range, asking the server at each
//! step how many of the subject's messages lie from there to the end (a consumer's `num_pending`,
//! kept in memory on the server and let go after a few seconds), then those `n` are read with
//! one ordered consumer. A 20,000-line worker log's last 1,000 lines cost some twenty questions
//! and one read, not 20,000 gets.

use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use async_nats::jetstream::stream::Stream;
use futures_util::StreamExt;
use mainloop_events::Envelope;

use crate::read::Stored;
use crate::{Bus, BusError};

/// How long the server keeps a consumer made only to count.
const COUNTING_KEPT: Duration = Duration::from_secs(5);

impl Bus {
    /// The last `n` events on `subject` in `stream`, oldest first (fewer when there are fewer).
    pub async fn read_last(&self, stream: &str, subject: &str, n: u64) -> Result<Vec<Stored>, BusError> {
        let fail = |reason: String| BusError::Stream {
            stream: stream.to_string(),
            reason,
        };
        let handle = self
            .jetstream()
            .get_stream(stream)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let state = &handle.cached_info().state;
        let (first, last) = (state.first_sequence.max(1), state.last_sequence);
        if n == 0 || last < first {
            return Ok(Vec::new());
        }
        let start = start_of_last(&handle, subject, n, first, last)
            .await
            .map_err(fail)?;
        let mut read = read_from(&handle, subject, start).await.map_err(|e| match e {
            Unread::Stream(reason) => fail(reason),
            Unread::Event(err) => err,
        })?;
        // Written while it was looked for: still only the last `n`.
        let extra = read
            .len()
            .saturating_sub(usize::try_from(n).unwrap_or(usize::MAX));
        read.drain(..extra);
        Ok(read)
    }
}

/// The smallest sequence from which at most `n` of the subject's messages remain: `first` when
/// there are no more than `n` in all, else the sequence of the `n`-th from the end.
async fn start_of_last(handle: &Stream, subject: &str, n: u64, first: u64, last: u64) -> Result<u64, String> {
    if remaining(handle, subject, first).await? <= n {
        return Ok(first);
    }
    // remaining(low) > n >= remaining(high + 1): the answer lies in (low, high].
    let (mut low, mut high) = (first, last);
    while low + 1 < high {
        let middle = low + (high - low) / 2;
        if remaining(handle, subject, middle).await? > n {
            low = middle;
        } else {
            high = middle;
        }
    }
    Ok(high)
}

/// How many messages on `subject` lie from sequence `from` to the end of the stream.
async fn remaining(handle: &Stream, subject: &str, from: u64) -> Result<u64, String> {
    let counting = handle
        .create_consumer(pull::Config {
            filter_subject: subject.to_string(),
            deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: from },
            ack_policy: AckPolicy::None,
            inactive_threshold: COUNTING_KEPT,
            memory_storage: true,
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    Ok(counting.cached_info().num_pending)
}

enum Unread {
    Stream(String),
    Event(BusError),
}

/// Every message on `subject` from sequence `start` to the end as the stream stands now.
async fn read_from(handle: &Stream, subject: &str, start: u64) -> Result<Vec<Stored>, Unread> {
    let consumer = handle
        .create_consumer(pull::OrderedConfig {
            filter_subject: subject.to_string(),
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: start,
            },
            ..Default::default()
        })
        .await
        .map_err(|e| Unread::Stream(e.to_string()))?;
    let mut read = Vec::new();
    if consumer.cached_info().num_pending == 0 {
        return Ok(read);
    }
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| Unread::Stream(e.to_string()))?;
    while let Some(message) = messages.next().await {
        let message = message.map_err(|e| Unread::Stream(e.to_string()))?;
        let info = message.info().map_err(|e| Unread::Stream(e.to_string()))?;
        let (stream_sequence, done) = (info.stream_sequence, info.pending == 0);
        read.push(Stored {
            stream_sequence,
            event: Envelope::from_bytes(&message.payload).map_err(|e| Unread::Event(e.into()))?,
        });
        if done {
            return Ok(read);
        }
    }
    Err(Unread::Stream("the read ended early".into()))
}
