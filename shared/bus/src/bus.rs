use std::time::{Duration, Instant};

use async_nats::jetstream;
use tokio_util::sync::CancellationToken;

use crate::BusError;

/// A connection to NATS and its JetStream context. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct Bus {
    client: async_nats::Client,
    jetstream: jetstream::Context,
}

impl Bus {
    /// Connects as `name` (shown in the server's connection list), retrying with backoff until
    /// `give_up_after` has passed or `shutdown` is cancelled: services may start before NATS.
    pub async fn connect(
        url: &str,
        name: &str,
        give_up_after: Duration,
        shutdown: &CancellationToken,
    ) -> Result<Self, BusError> {
        let deadline = Instant::now() + give_up_after;
        let mut delay = Duration::from_millis(50);
        loop {
            let options = async_nats::ConnectOptions::new()
                .name(name)
                .connection_timeout(Duration::from_secs(5))
                // After the first connection, the client reconnects forever on its own.
                .max_reconnects(None);
            match options.connect(url).await {
                Ok(client) => return Ok(Bus::from_client(client)),
                Err(err) if Instant::now() < deadline && !shutdown.is_cancelled() => {
                    tracing::warn!(url, error = %err, retry_in = ?delay, "NATS not reachable yet");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = shutdown.cancelled() => {}
                    }
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
                Err(err) => {
                    return Err(BusError::Connect {
                        url: url.to_string(),
                        reason: err.to_string(),
                    });
                }
            }
        }
    }

    pub fn from_client(client: async_nats::Client) -> Self {
        let jetstream = jetstream::new(client.clone());
        Bus { client, jetstream }
    }

    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    pub fn jetstream(&self) -> &jetstream::Context {
        &self.jetstream
    }

    /// Declares every mainloop stream (see [`crate::streams`]); safe to call from every service
    /// at every start.
    pub async fn ensure_streams(&self, replicas: usize) -> Result<(), BusError> {
        crate::streams::ensure_all(&self.jetstream, replicas).await
    }

    /// Flushes what we published and acked, then closes: called last on shutdown.
    pub async fn drain(&self) {
        if let Err(err) = self.client.drain().await {
            tracing::warn!(error = %err, "NATS drain failed");
        }
    }
}
