//! Every live chat subject (`live.chat.<user>.<conversation>`, core NATS), heard once for every
//! feed of this gateway and handed to the person's connections as `chat:delta`,
//! `chat:retract` and `chat:message` frames, each read once.

use std::sync::Arc;

use futures_util::StreamExt;
use mainloop_bus::Bus;
use serde_json::Value;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{Feeds, Live};

pub async fn start(
    bus: &Bus,
    feeds: Feeds,
    tasks: &mut JoinSet<()>,
    shutdown: CancellationToken,
) -> Result<(), async_nats::SubscribeError> {
    let mut said = bus.client().subscribe("live.chat.>").await?;
    tasks.spawn(async move {
        loop {
            let message = tokio::select! {
                () = shutdown.cancelled() => return,
                message = said.next() => match message {
                    Some(message) => message,
                    None => return,
                },
            };
            let Some(user) = message
                .subject
                .strip_prefix("live.chat.")
                .and_then(|s| s.split('.').next())
            else {
                continue;
            };
            feeds.say(user, || {
                frame(&message.payload).map(|frame| Live::Chat(Arc::new(frame)))
            });
        }
    });
    Ok(())
}

/// The SSE event name and data of what the conversation said (`{"type": "delta" | "retract" |
/// "message", …}`); anything else is not passed on.
fn frame(payload: &[u8]) -> Option<(&'static str, Value)> {
    let mut said: Value = serde_json::from_slice(payload).ok()?;
    let name = match said["type"].as_str()? {
        "delta" => "chat:delta",
        "retract" => "chat:retract",
        "message" => "chat:message",
        _ => return None,
    };
    said.as_object_mut()?.remove("type");
    Some((name, said))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::frame;

    #[test]
    fn deltas_retractions_and_messages_pass_without_their_type_and_nothing_else_does() {
        assert_eq!(
            frame(br#"{"type":"delta","seq":1,"text":"Hi"}"#),
            Some(("chat:delta", json!({"seq": 1, "text": "Hi"})))
        );
        assert_eq!(
            frame(br#"{"type":"retract","message_id":"m","seq":2}"#),
            Some(("chat:retract", json!({"message_id": "m", "seq": 2})))
        );
        assert_eq!(
            frame(br#"{"type":"message","message":{}}"#),
            Some(("chat:message", json!({"message": {}})))
        );
        assert_eq!(frame(br#"{"type":"other"}"#), None);
        assert_eq!(frame(b"not json"), None);
    }
}
