use thiserror::Error;

#[derive(Debug, Error)]
pub enum BusError {
    #[error("cannot reach NATS at {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("stream {stream}: {reason}")]
    Stream { stream: String, reason: String },
    /// Someone else appended to the aggregate first; nothing was stored. Reload and decide again.
    #[error("{subject} has moved past sequence {expected}; nothing was stored")]
    Conflict { subject: String, expected: u64 },
    #[error("publish to {subject} failed: {reason}")]
    Publish { subject: String, reason: String },
    #[error("consumer {consumer} on {stream}: {reason}")]
    Consumer {
        stream: String,
        consumer: String,
        reason: String,
    },
    #[error(transparent)]
    Event(#[from] mainloop_events::EventError),
}
