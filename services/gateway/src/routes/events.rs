//! `GET /events`: the person's INBOX feed as server-sent events. Every event's `id` is its
//! stream sequence; a client that reconnects with `Last-Event-ID` (or `?last_event_id=`) gets
//! everything after it, in order, once. A new connection starts with what happens from now on,
//! since the page loads the current state over REST. Chat replies stream in the same feed as
//! they are written (`chat:delta`, a `chat:retract` should the words be taken back, then
//! `chat:message`), live only. The first frame is
//! `connected` (`{user_id, timestamp}`), and after `SSE_HEARTBEAT_SECS` (30) with nothing else
//! said comes a named `heartbeat` (`{timestamp}`), as the original client expects; timestamps
//! are ISO 8601 in UTC. Opening the feed says the person is present (`live.present.<user>`).
//! What the feed hears live comes from the gateway's one reading of the streams (`feeds`);
//! only a reconnect's replay reads the stream for this connection.

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::{Stream, StreamExt, stream};
use mainloop_events::{Envelope, Payload, subjects};
use serde::Deserialize;
use serde_json::{Value, json};

use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::api_error::ApiError;
use crate::auth::User;
use crate::extract::Params;
use crate::feeds::{self, Following, Live};
use crate::services::inbox_query;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/events", get(events))
}

#[derive(Debug, Deserialize)]
struct EventParams {
    last_event_id: Option<u64>,
}

async fn events(
    State(state): State<AppState>,
    User(user): User,
    headers: HeaderMap,
    Params(params): Params<EventParams>,
) -> Result<Response, ApiError> {
    let last_seen = match headers.get("last-event-id").and_then(|v| v.to_str().ok()) {
        Some(text) if !text.is_empty() => Some(
            text.parse::<u64>()
                .map_err(|_| ApiError::bad_request("Last-Event-ID must be a number"))?,
        ),
        _ => params.last_event_id,
    };
    let subject = subjects::inbox(&user).map_err(|e| ApiError::bad_request(e.to_string()))?;
    // Its place in the feed first, so nothing said while the replay reads is missed.
    let following = state.feeds.follow(&user);
    let replayed = match last_seen {
        Some(after) => Some(feeds::replay(&state.bus, subject, after).await.map_err(|e| {
            tracing::error!(error = %e, "feed unavailable");
            ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "the event feed is unavailable",
            )
        })?),
        None => None,
    };
    say_present(&state, &user).await;
    let heartbeat = state.heartbeat;
    let connected = Event::default()
        .event("connected")
        .json_data(json!({"user_id": user.clone(), "timestamp": now()}))
        .unwrap_or_default();
    // The replayed inbox events all say the unread count as it is now, asked once.
    let unread_now = UnreadNow::default();
    let heard = stream::iter(replayed)
        .flatten()
        .map(|stored| stored.map(|stored| (Live::Inbox(stored), true)))
        .chain(live(following).map(|live| Ok((live, false))))
        // A replay that fails ends the feed: the browser reconnects from what it has.
        .take_while(|heard| std::future::ready(heard.is_ok()))
        .filter_map(|heard| std::future::ready(heard.ok()))
        .scan(last_seen.unwrap_or(0), |last, (heard, replayed)| {
            std::future::ready(Some(once_in_order(last, heard).map(|heard| (heard, replayed))))
        })
        .filter_map(std::future::ready)
        .filter_map(move |(heard, replayed)| {
            let unread = replayed.then(|| unread_now.clone());
            to_event(state.clone(), user.clone(), heard, unread)
        });
    let open = crate::metrics::OpenFeed::new("events");
    let stream = stream::once(async { connected })
        .chain(with_heartbeats(heard, heartbeat))
        .map(move |event| {
            let _counted = &open;
            Ok::<_, Infallible>(event)
        });
    let mut response = sse(stream).into_response();
    response
        .headers_mut()
        .insert("x-accel-buffering", axum::http::HeaderValue::from_static("no"));
    Ok(response)
}

/// What a connection hears live, until it falls behind or the gateway stops.
fn live(following: Following) -> impl Stream<Item = Live> + Send + 'static {
    stream::unfold(following, |mut following| async move {
        following.next().await.map(|live| (live, following))
    })
}

/// An INBOX event already sent (replayed, then heard live too) is not sent again: each goes
/// out once, in stream order. Chat frames always pass.
fn once_in_order(last: &mut u64, heard: Live) -> Option<Live> {
    match &heard {
        Live::Inbox(stored) if stored.sequence <= *last => None,
        Live::Inbox(stored) => {
            *last = stored.sequence;
            Some(heard)
        }
        Live::Chat(_) => Some(heard),
    }
}

/// The unread count as it was first asked on this connection: what every replayed
/// `inbox:updated` says, so a replay asks the inbox once, not once an event.
type UnreadNow = std::sync::Arc<tokio::sync::OnceCell<Option<Value>>>;

/// The SSE event of what was heard; an INBOX event is sent in the span that ends its trace.
/// `unread_now` is given for replayed events (else the count is asked for this event).
async fn to_event(
    state: AppState,
    user: String,
    heard: Live,
    unread_now: Option<UnreadNow>,
) -> Option<Event> {
    match heard {
        Live::Inbox(stored) => {
            let span = tracing::info_span!("sse.send", subject = %stored.subject, seq = stored.sequence);
            let _ = span.set_parent(mainloop_bus::trace::extract(stored.headers.as_ref()));
            to_sse(&state, &user, stored.sequence, &stored.event, unread_now)
                .instrument(span)
                .await
        }
        Live::Chat(frame) => Event::default().event(frame.0).json_data(&frame.1).ok(),
    }
}

/// Says on `live.present.<user>` that the person is here, so what their first message needs
/// is read before they send it (see the conversation's `warm`). Only a hint: never fails a feed.
async fn say_present(state: &AppState, user: &str) {
    let Ok(subject) = subjects::present(user) else {
        return;
    };
    if let Err(err) = state.bus.client().publish(subject, Default::default()).await {
        tracing::debug!(error = %err, "presence not said");
    }
}

fn sse(
    stream: impl Stream<Item = Result<Event, Infallible>> + Send + 'static,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// The original client's event names: `task:updated` and `inbox:updated`.
async fn to_sse(
    state: &AppState,
    user: &str,
    sequence: u64,
    event: &Envelope,
    unread_now: Option<UnreadNow>,
) -> Option<Event> {
    let (name, data) = match event.payload.as_ref()? {
        Payload::TaskCardUpdated(card) => (
            "task:updated",
            json!({
                "task_id": card.task_id,
                "status": card.status().api_name(),
                "description": card.description,
                "repo": card.repo_full_name,
                "issue_url": card.issue_url,
                "pr_url": card.pr_url,
                "error": card.error,
            }),
        ),
        Payload::InboxItemAdded(item) => (
            "inbox:updated",
            inbox_update(state, user, &item.item_id, "added", unread_now).await,
        ),
        Payload::InboxItemResolved(item) => (
            "inbox:updated",
            inbox_update(state, user, &item.item_id, "resolved", unread_now).await,
        ),
        Payload::InboxItemRead(item) => (
            "inbox:updated",
            inbox_update(state, user, &item.item_id, "read", unread_now).await,
        ),
        _ => return None,
    };
    Event::default()
        .id(sequence.to_string())
        .event(name)
        .json_data(data)
        .ok()
}

async fn inbox_update(
    state: &AppState,
    user: &str,
    item_id: &str,
    change: &str,
    unread_now: Option<UnreadNow>,
) -> Value {
    let count = match unread_now {
        Some(now) => now.get_or_init(|| unread_count(state, user)).await.clone(),
        None => unread_count(state, user).await,
    };
    json!({"item_id": item_id, "change": change, "unread_count": count})
}

/// The person's unread count, from the inbox; none when it cannot be asked.
async fn unread_count(state: &AppState, user: &str) -> Option<Value> {
    let count = inbox_query(state, "unread-count", json!({"user_id": user}))
        .await
        .ok();
    count.and_then(|c| c.get("count").cloned())
}

/// Says `heartbeat` whenever `quiet` passes with nothing else said.
fn with_heartbeats(
    events: impl Stream<Item = Event> + Send + 'static,
    quiet: Duration,
) -> impl Stream<Item = Event> + Send + 'static {
    stream::unfold(Box::pin(events), move |mut events| async move {
        match tokio::time::timeout(quiet, events.next()).await {
            Ok(Some(event)) => Some((event, events)),
            Ok(None) => None,
            Err(_) => {
                let beat = Event::default()
                    .event("heartbeat")
                    .json_data(json!({"timestamp": now()}))
                    .unwrap_or_default();
                Some((beat, events))
            }
        }
    })
}

/// Now, in ISO 8601 (UTC, microseconds): `2026-12-02T06:30:29.123456Z`.
fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::response::sse::Event;
    use futures_util::{StreamExt, stream};

    use super::with_heartbeats;

    /// What the stream said, and after how long.
    async fn heard(
        events: impl futures_util::Stream<Item = Event> + Send + 'static,
        limit: usize,
    ) -> Vec<(u64, String)> {
        let start = tokio::time::Instant::now();
        with_heartbeats(events, Duration::from_secs(30))
            .take(limit)
            .map(|event| {
                let said = format!("{event:?}");
                let name = if said.contains("heartbeat") {
                    "heartbeat"
                } else {
                    "event"
                };
                (start.elapsed().as_secs(), name.to_string())
            })
            .collect()
            .await
    }

    #[tokio::test(start_paused = true)]
    async fn a_heartbeat_comes_after_thirty_quiet_seconds_and_only_then() {
        let events = stream::once(async {
            tokio::time::sleep(Duration::from_secs(20)).await;
            Event::default().event("task:updated").data("{}")
        })
        .chain(stream::pending());
        assert_eq!(
            heard(events, 3).await,
            [
                (20, "event".into()),
                (50, "heartbeat".into()),
                (80, "heartbeat".into())
            ]
        );
    }
}
