//! Commands over NATS request/reply. A command is a protobuf message sent to
//! `cmd.<service>.<command>`; the reply is a `CommandReply` holding either the typed answer or a
//! `CommandError` with a code the gateway maps to an HTTP status. Commands are never stored: the
//! events they cause are.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use bytes::Bytes;
use futures_util::StreamExt;
use mainloop_events::v1::{CommandError, CommandReply, ErrorCode, command_reply};
use prost::Message;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::{Bus, trace};

#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The service answered and refused, with its reason.
    #[error("{code:?}: {message}")]
    Rejected { code: ErrorCode, message: String },
    #[error("no service is listening on {0}")]
    NoResponders(String),
    #[error("{0} did not answer in time")]
    TimedOut(String),
    #[error("request to {subject} failed: {reason}")]
    Transport { subject: String, reason: String },
    #[error("reply from {subject} is malformed: {reason}")]
    BadReply { subject: String, reason: String },
}

/// Sends `command` and waits up to `timeout` for the typed answer.
pub async fn send<Req: Message, Resp: Message + Default>(
    bus: &Bus,
    subject: &str,
    command: &Req,
    timeout: Duration,
) -> Result<Resp, RequestError> {
    let bytes = send_raw(bus, subject, command.encode_to_vec(), timeout).await?;
    Resp::decode(bytes.as_slice()).map_err(|e| RequestError::BadReply {
        subject: subject.to_string(),
        reason: e.to_string(),
    })
}

/// Sends `body` and returns the `ok` bytes of the reply, or the typed refusal.
async fn send_raw(
    bus: &Bus,
    subject: &str,
    body: Vec<u8>,
    timeout: Duration,
) -> Result<Vec<u8>, RequestError> {
    use async_nats::RequestErrorKind as Kind;
    let mut headers = HeaderMap::new();
    trace::inject_current(&mut headers);
    let request = async_nats::Request::new()
        .payload(body.into())
        .headers(headers)
        .timeout(Some(timeout));
    let reply = bus
        .client()
        .send_request(subject.to_string(), request)
        .await
        .map_err(|err| match err.kind() {
            Kind::NoResponders => RequestError::NoResponders(subject.to_string()),
            Kind::TimedOut => RequestError::TimedOut(subject.to_string()),
            _ => RequestError::Transport {
                subject: subject.to_string(),
                reason: err.to_string(),
            },
        })?;
    let bad = |reason: String| RequestError::BadReply {
        subject: subject.to_string(),
        reason,
    };
    match CommandReply::decode(reply.payload)
        .map_err(|e| bad(e.to_string()))?
        .result
    {
        Some(command_reply::Result::Ok(bytes)) => Ok(bytes),
        Some(command_reply::Result::Error(error)) => Err(RequestError::Rejected {
            code: error.code(),
            message: error.message,
        }),
        None => Err(bad("empty reply".into())),
    }
}

/// Sends a JSON query and waits up to `timeout` for its JSON answer.
pub async fn send_json<Req: serde::Serialize, Resp: serde::de::DeserializeOwned>(
    bus: &Bus,
    subject: &str,
    query: &Req,
    timeout: Duration,
) -> Result<Resp, RequestError> {
    let body = serde_json::to_vec(query).map_err(|e| RequestError::Transport {
        subject: subject.to_string(),
        reason: e.to_string(),
    })?;
    let bytes = send_raw(bus, subject, body, timeout).await?;
    serde_json::from_slice(&bytes).map_err(|e| RequestError::BadReply {
        subject: subject.to_string(),
        reason: e.to_string(),
    })
}

/// Answers commands on `subject` until `shutdown`. Replicas share the work through
/// `queue_group`. A command that does not decode is refused with `ERROR_CODE_INVALID`.
pub async fn serve<Req, Resp, F, Fut>(
    bus: &Bus,
    subject: &str,
    queue_group: &str,
    shutdown: CancellationToken,
    handler: F,
) -> Result<(), async_nats::SubscribeError>
where
    Req: Message + Default + 'static,
    Resp: Message + 'static,
    F: Fn(Req) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Resp, CommandError>> + Send,
{
    let server = Server::bind(bus, subject, queue_group).await?;
    server.run(shutdown, handler).await;
    Ok(())
}

/// A command subject that is already subscribed, so a service can say it is ready before it
/// starts answering and no early request finds nobody listening.
pub struct Server {
    bus: Bus,
    requests: async_nats::Subscriber,
}

impl Server {
    pub async fn bind(
        bus: &Bus,
        subject: &str,
        queue_group: &str,
    ) -> Result<Self, async_nats::SubscribeError> {
        let requests = bus
            .client()
            .queue_subscribe(subject.to_string(), queue_group.to_string())
            .await?;
        // The subscription is registered with the server once the client has flushed it.
        bus.client().flush().await.map_err(|e| {
            async_nats::SubscribeError::with_source(async_nats::client::SubscribeErrorKind::Other, e)
        })?;
        Ok(Server {
            bus: bus.clone(),
            requests,
        })
    }

    /// Answers protobuf commands until `shutdown`, then lets in-flight answers finish.
    pub async fn run<Req, Resp, F, Fut>(self, shutdown: CancellationToken, handler: F)
    where
        Req: Message + Default + 'static,
        Resp: Message + 'static,
        F: Fn(Req) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Resp, CommandError>> + Send,
    {
        let decode = |bytes: Bytes| Req::decode(bytes).map_err(|e| e.to_string());
        self.run_with(shutdown, decode, |r: Resp| r.encode_to_vec(), handler)
            .await;
    }

    /// Answers JSON queries (read models) the same way: the request is a JSON document and the
    /// `ok` bytes of the reply are JSON.
    pub async fn run_json<Req, Resp, F, Fut>(self, shutdown: CancellationToken, handler: F)
    where
        Req: serde::de::DeserializeOwned + Send + 'static,
        Resp: serde::Serialize + 'static,
        F: Fn(Req) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Resp, CommandError>> + Send,
    {
        let decode = |bytes: Bytes| serde_json::from_slice::<Req>(&bytes).map_err(|e| e.to_string());
        let encode = |r: Resp| serde_json::to_vec(&r).unwrap_or_default();
        self.run_with(shutdown, decode, encode, handler).await;
    }

    async fn run_with<Req, Resp, F, Fut>(
        self,
        shutdown: CancellationToken,
        decode: fn(Bytes) -> Result<Req, String>,
        encode: fn(Resp) -> Vec<u8>,
        handler: F,
    ) where
        Req: Send + 'static,
        Resp: 'static,
        F: Fn(Req) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Resp, CommandError>> + Send,
    {
        let Server { bus, mut requests } = self;
        let bus = &bus;
        let handler = Arc::new(handler);
        let mut in_flight = JoinSet::new();
        loop {
            let request = tokio::select! {
                () = shutdown.cancelled() => break,
                request = requests.next() => match request { Some(r) => r, None => break },
            };
            let Some(reply_to) = request.reply.clone() else {
                tracing::warn!(subject = %request.subject, "command without a reply subject ignored");
                continue;
            };
            let (bus, handler) = (bus.clone(), handler.clone());
            let span = tracing::info_span!("bus.command", subject = %request.subject);
            let _ = span.set_parent(trace::extract(request.headers.as_ref()));
            in_flight.spawn(
                async move {
                    let started = std::time::Instant::now();
                    let result = match decode(request.payload) {
                        Ok(command) => handler(command).await.map(encode),
                        Err(err) => Err(CommandError::new(
                            ErrorCode::Invalid,
                            format!("malformed command: {err}"),
                        )),
                    };
                    if let Err(error) = &result {
                        tracing::info!(code = ?error.code(), message = %error.message, "command refused");
                    }
                    crate::metrics::command(&request.subject, result.is_ok(), started.elapsed());
                    let reply = CommandReply {
                        result: Some(match result {
                            Ok(bytes) => command_reply::Result::Ok(bytes),
                            Err(error) => command_reply::Result::Error(error),
                        }),
                    };
                    let payload: Bytes = reply.encode_to_vec().into();
                    if let Err(err) = bus.client().publish(reply_to, payload).await {
                        tracing::warn!(error = %err, "command reply not sent");
                    }
                }
                .instrument(span),
            );
            while in_flight.try_join_next().is_some() {}
        }
        while in_flight.join_next().await.is_some() {}
    }
}
