use async_nats::HeaderMap;
use async_nats::jetstream::context::{PublishAckFuture, PublishErrorKind};
use mainloop_events::Envelope;

use crate::{Bus, BusError, trace};

/// What the writer knows about the aggregate's subject before appending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Append whatever is there (feeds, logs, observations).
    Any,
    /// Append only if the subject's last message is at this stream sequence; 0 means the subject
    /// must be empty (a new aggregate).
    LastSubjectSequence(u64),
}

/// Where an event was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    pub stream_sequence: u64,
    /// True when the server already had this event id: nothing new was stored.
    pub duplicate: bool,
}

/// An event sent and not yet acknowledged: events sent one after another on one connection are
/// stored in the order they were sent, so many can be in flight and still keep their order.
pub struct Pending {
    subject: String,
    expect: Expect,
    ack: PublishAckFuture,
}

impl Pending {
    /// Waits for the server to say where the event was stored.
    pub async fn stored(self) -> Result<Published, BusError> {
        let Pending { subject, expect, ack } = self;
        let ack = ack.await.map_err(|err| match (err.kind(), expect) {
            (PublishErrorKind::WrongLastSequence, Expect::LastSubjectSequence(expected)) => {
                BusError::Conflict {
                    subject: subject.clone(),
                    expected,
                }
            }
            _ => BusError::Publish {
                subject: subject.clone(),
                reason: err.to_string(),
            },
        })?;
        Ok(Published {
            stream_sequence: ack.sequence,
            duplicate: ack.duplicate,
        })
    }
}

impl Bus {
    /// Stores `event` on `subject` once: its id is the `Nats-Msg-Id`, so publishing it again
    /// (a retry after a lost ack, a redelivered handler) returns the first copy as a duplicate.
    pub async fn publish(
        &self,
        subject: &str,
        event: &Envelope,
        expect: Expect,
    ) -> Result<Published, BusError> {
        self.send(subject, event, expect).await?.stored().await
    }

    /// Sends `event` as [`Bus::publish`] does, without waiting for it to be stored; the current
    /// trace goes with it.
    pub async fn send(&self, subject: &str, event: &Envelope, expect: Expect) -> Result<Pending, BusError> {
        event.validate()?;
        let mut headers = HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, event.id.as_str());
        if let Expect::LastSubjectSequence(sequence) = expect {
            headers.insert(
                async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
                sequence.to_string().as_str(),
            );
        }
        trace::inject_current(&mut headers);
        let ack = self
            .jetstream()
            .publish_with_headers(subject.to_string(), headers, event.to_bytes().into())
            .await
            .map_err(|err| BusError::Publish {
                subject: subject.to_string(),
                reason: err.to_string(),
            })?;
        Ok(Pending {
            subject: subject.to_string(),
            expect,
            ack,
        })
    }
}
