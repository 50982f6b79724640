//! Web Push: items that need the person call their browsers and phones back. A browser
//! subscribes (`cmd.inbox.push-subscribe`, with the endpoint and keys its push service gave it,
//! after fetching the server's VAPID key from `cmd.inbox.push-key`); each `InboxItemAdded` of a
//! kind that needs the person is then sent to every subscription of theirs: encrypted for that
//! browser alone (RFC 8291), signed as this server (VAPID, RFC 8292), read from the INBOX stream
//! by a durable consumer so nothing is lost, and recorded per endpoint so nothing goes twice. A
//! push service that says a subscription is gone (404, 410) has it removed.

mod message;
mod send;
mod subscriptions;
mod vapid;

use std::sync::Arc;
use std::time::Duration;

use mainloop_bus::{Bus, ConsumerSpec, consumer};
use mainloop_events::subjects;
use sqlx::PgPool;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// The durable consumer that sends pushes (`dead.INBOX.inbox-push` for what never went).
const CONSUMER: &str = "inbox-push";

/// How pushes are sent.
#[derive(Debug, Clone)]
pub struct PushSettings {
    /// Who runs this server, for the push services (VAPID `sub`: `mailto:` or `https:`).
    pub contact: String,
    /// Plain `http://` endpoints on loopback are accepted only for test suites.
    pub allow_loopback_http: bool,
    pub timeout: Duration,
}

pub async fn serve(
    bus: &Bus,
    db: &PgPool,
    settings: PushSettings,
    shutdown: &CancellationToken,
    tasks: &mut JoinSet<Result<(), String>>,
) -> Result<(), async_nats::SubscribeError> {
    subscriptions::serve(bus, db, &settings, shutdown, tasks).await?;
    let sender = Arc::new(send::Sender::new(db.clone(), settings));
    let mut spec = ConsumerSpec::new(subjects::INBOX, CONSUMER, "inbox.>");
    spec.concurrency = 4;
    spec.prefetch = 16;
    spec.ack_wait = Duration::from_secs(60);
    let (bus, shutdown) = (bus.clone(), shutdown.clone());
    tasks.spawn(async move {
        consumer::run(&bus, spec, sender, shutdown)
            .await
            .map_err(|e| e.to_string())
    });
    Ok(())
}
