//! Reading one aggregate's history: the events on one subject, in order, by direct message
//! gets (no consumer to create or clean up), on a stream handle made without asking the server
//! for the stream's info (a round trip each read saved; a missing stream still fails the get).

use async_nats::jetstream::stream::LastRawMessageErrorKind as Kind;
use mainloop_events::Envelope;

use crate::{Bus, BusError};

/// One stored event and where it sits in its stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    pub stream_sequence: u64,
    pub event: Envelope,
}

impl Bus {
    /// The stream sequence of the last message on `subject`, or 0 when there is none.
    pub async fn last_sequence(&self, stream: &str, subject: &str) -> Result<u64, BusError> {
        let fail = |reason: String| BusError::Stream {
            stream: stream.to_string(),
            reason,
        };
        let stream_handle = self
            .jetstream()
            .get_stream_no_info(stream)
            .await
            .map_err(|e| fail(e.to_string()))?;
        match stream_handle.get_last_raw_message_by_subject(subject).await {
            Ok(message) => Ok(message.sequence),
            Err(err) if not_found(err.kind()) => Ok(0),
            Err(err) => Err(fail(err.to_string())),
        }
    }

    /// The last event on `subject`, if there is one.
    pub async fn last_event(&self, stream: &str, subject: &str) -> Result<Option<Stored>, BusError> {
        let fail = |reason: String| BusError::Stream {
            stream: stream.to_string(),
            reason,
        };
        let stream_handle = self
            .jetstream()
            .get_stream_no_info(stream)
            .await
            .map_err(|e| fail(e.to_string()))?;
        match stream_handle.get_last_raw_message_by_subject(subject).await {
            Ok(message) => Ok(Some(Stored {
                stream_sequence: message.sequence,
                event: Envelope::from_bytes(&message.payload)?,
            })),
            Err(err) if not_found(err.kind()) => Ok(None),
            Err(err) => Err(fail(err.to_string())),
        }
    }

    /// Every event on `subject` after stream sequence `after`, oldest first.
    pub async fn read_subject(
        &self,
        stream: &str,
        subject: &str,
        after: u64,
    ) -> Result<Vec<Stored>, BusError> {
        let fail = |reason: String| BusError::Stream {
            stream: stream.to_string(),
            reason,
        };
        let stream_handle = self
            .jetstream()
            .get_stream_no_info(stream)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let mut events = Vec::new();
        let mut next = after + 1;
        loop {
            let message = stream_handle
                .raw_message_builder()
                .sequence(next)
                .next_by_subject(subject)
                .send()
                .await;
            match message {
                Ok(message) => {
                    events.push(Stored {
                        stream_sequence: message.sequence,
                        event: Envelope::from_bytes(&message.payload)?,
                    });
                    next = message.sequence + 1;
                }
                Err(err) if not_found(err.kind()) => return Ok(events),
                Err(err) => return Err(fail(err.to_string())),
            }
        }
    }
}

fn not_found(kind: Kind) -> bool {
    match kind {
        Kind::NoMessageFound => true,
        Kind::JetStream(err) => err.error_code() == async_nats::jetstream::ErrorCode::NO_MESSAGE_FOUND,
        _ => false,
    }
}
