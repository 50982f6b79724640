//! What the gateway's `/events` feeds hear, heard once per gateway and handed out in memory:
//! one ordered consumer of the whole INBOX stream (`inbox`) and one subscription to every live
//! chat subject (`chat`), each fanned out to the people connected here. Opening a feed costs a
//! place in a map, not a consumer on the server; a person's connections share one bounded
//! buffer of `BUFFERED` items, and a connection that falls that far behind is ended rather than
//! let grow (the browser reconnects with `Last-Event-ID` and misses nothing stored). What a
//! reconnect missed is read from the stream once, by `replay`, before the live items.

mod chat;
mod inbox;
mod replay;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use mainloop_bus::Bus;
use mainloop_events::Envelope;
use serde_json::Value;
use tokio::sync::broadcast;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use replay::replay;

/// Items held for a person's connections before the slowest is ended.
const BUFFERED: usize = 256;

/// One thing said to a person, as every connection of theirs hears it.
#[derive(Clone, Debug)]
pub enum Live {
    /// An INBOX event, with its stream sequence (the SSE `id`) and the trace it belongs to.
    Inbox(Arc<Stored>),
    /// A chat frame: `chat:delta`, `chat:retract` or `chat:message`, and its data.
    Chat(Arc<(&'static str, Value)>),
}

/// An INBOX event as the stream holds it.
#[derive(Debug)]
pub struct Stored {
    pub sequence: u64,
    pub subject: String,
    pub event: Envelope,
    pub headers: Option<async_nats::HeaderMap>,
}

/// The people connected to this gateway, each with the sender their connections hear.
#[derive(Clone, Default)]
pub struct Feeds {
    people: Arc<Mutex<HashMap<String, broadcast::Sender<Live>>>>,
}

/// A connection's place in a person's feed; leaving it (dropping) forgets the person when it
/// was the last.
pub struct Following {
    feeds: Feeds,
    user: String,
    heard: broadcast::Receiver<Live>,
}

impl Feeds {
    /// Starts hearing the INBOX stream and the live chat subjects (in `tasks`, until `shutdown`).
    pub async fn start(
        bus: &Bus,
        tasks: &mut JoinSet<()>,
        shutdown: &CancellationToken,
    ) -> Result<Feeds, async_nats::SubscribeError> {
        let feeds = Feeds::default();
        chat::start(bus, feeds.clone(), tasks, shutdown.clone()).await?;
        inbox::start(bus.clone(), feeds.clone(), tasks, shutdown.clone());
        Ok(feeds)
    }

    fn people(&self) -> MutexGuard<'_, HashMap<String, broadcast::Sender<Live>>> {
        self.people.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new connection of `user`'s: it hears everything said to them from now on.
    pub fn follow(&self, user: &str) -> Following {
        let heard = self
            .people()
            .entry(user.to_string())
            .or_insert_with(|| broadcast::channel(BUFFERED).0)
            .subscribe();
        Following {
            feeds: self.clone(),
            user: user.to_string(),
            heard,
        }
    }

    /// Says `live` to every connection of `user`'s here; nobody connected, nothing to do.
    fn say(&self, user: &str, live: impl FnOnce() -> Option<Live>) {
        let people = self.people();
        if let Some(sender) = people.get(user)
            && let Some(live) = live()
        {
            let _ = sender.send(live);
        }
    }

    /// People connected now.
    #[cfg(test)]
    fn connected(&self) -> usize {
        self.people().len()
    }
}

impl Following {
    /// The next thing said, or None when this connection fell `BUFFERED` behind (it is ended;
    /// the browser reconnects) or the gateway is stopping.
    pub async fn next(&mut self) -> Option<Live> {
        match self.heard.recv().await {
            Ok(live) => Some(live),
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::info!(user = %self.user, missed, "a feed fell behind; ended so it reconnects");
                metrics::counter!("mainloop_sse_clients_dropped_total", "reason" => "behind").increment(1);
                None
            }
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}

impl Drop for Following {
    fn drop(&mut self) {
        let mut people = self.feeds.people();
        // This connection's receiver still counts: it was the last when the count is one.
        if people
            .get(&self.user)
            .is_some_and(|sender| sender.receiver_count() <= 1)
        {
            people.remove(&self.user);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::{BUFFERED, Feeds, Live};

    fn chat(n: usize) -> Option<Live> {
        Some(Live::Chat(Arc::new(("chat:delta", json!({"seq": n})))))
    }

    fn seq(live: Option<Live>) -> Option<u64> {
        match live {
            Some(Live::Chat(frame)) => frame.1["seq"].as_u64(),
            _ => None,
        }
    }

    #[tokio::test]
    async fn a_connection_that_falls_behind_is_ended_while_the_others_hear_on() {
        let feeds = Feeds::default();
        let mut slow = feeds.follow("alice");
        let mut quick = feeds.follow("alice");
        let mut other = feeds.follow("bob");
        for n in 0..BUFFERED + 1 {
            feeds.say("alice", || chat(n));
            assert_eq!(seq(quick.next().await), Some(n as u64));
        }
        assert!(slow.next().await.is_none(), "the slow connection is ended");
        feeds.say("alice", || chat(BUFFERED + 1));
        assert_eq!(seq(quick.next().await), Some(BUFFERED as u64 + 1));
        // Bob heard nothing of alice's; nothing is made for a person nobody follows.
        feeds.say("bob", || chat(7));
        assert_eq!(seq(other.next().await), Some(7));
        let mut made = false;
        feeds.say("carol", || {
            made = true;
            chat(1)
        });
        assert!(!made);
    }

    #[test]
    fn a_person_is_forgotten_with_their_last_connection() {
        let feeds = Feeds::default();
        let first = feeds.follow("alice");
        let second = feeds.follow("alice");
        assert_eq!(feeds.connected(), 1);
        drop(first);
        assert_eq!(feeds.connected(), 1);
        drop(second);
        assert_eq!(feeds.connected(), 0);
    }
}
