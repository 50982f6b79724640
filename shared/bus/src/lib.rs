//! The bus: how every mainloop service talks to NATS JetStream.
//!
//! - [`Bus::connect`] retries until the server answers; [`Bus::ensure_streams`] declares the
//!   streams of [`streams::STREAMS`] idempotently, so any service may start first.
//! - [`Bus::publish`] stores an [`Envelope`](mainloop_events::Envelope) exactly once: the event id
//!   is the `Nats-Msg-Id`, and an [`Expect::LastSubjectSequence`] turns a concurrent write to the
//!   same aggregate into [`BusError::Conflict`] with nothing stored.
//! - [`consumer::run`] drives a durable pull consumer: bounded concurrency, ack only after the
//!   handler succeeded, nak with backoff on transient errors, and a dead letter (stream
//!   DEADLETTER) for a message that keeps failing, so nothing vanishes silently.
//! - [`keyed::run`] drives a projection that keeps order per aggregate (per subject) instead of
//!   for the whole stream, so one slow or failing task holds back only itself.
//! - Every consumer is counted ([`metrics`]): events handled, handler time, lag, dead letters.
//! - W3C `traceparent` travels in message headers ([`trace`]), so one trace spans services.
//! - [`request`] carries commands with typed errors over NATS request/reply.

mod bus;
pub mod consumer;
pub mod dead_letter;
mod error;
pub mod keyed;
pub mod metrics;
mod publish;
mod read;
pub mod request;
pub mod streams;
mod tail;
pub mod trace;

pub use bus::Bus;
pub use consumer::{ConsumerSpec, Delivery, Handler, HandlerError};
pub use error::BusError;
pub use keyed::{KeyedHandler, KeyedSpec};
pub use publish::{Expect, Pending, Published};
pub use read::Stored;
