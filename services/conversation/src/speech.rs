//! A reply as it is written: each fragment of the model's text goes out on the live subject
//! `live.chat.<user>.<conversation>` (core NATS, not stored) as `{"type": "delta", …}` with a
//! running `seq`, and once the reply is stored, the whole message once as `{"type": "message"}`.
//! The stored reply is exactly what was said: the fragments, in order, with a blank line between
//! the model's turns around tool calls. A turn started before its memory was confirmed speaks
//! at once, and when the memory proves stale takes its words back with `{"type": "retract"}`
//! (same `seq` run) before the turn asked again speaks (`held`).

use mainloop_bus::Bus;
use serde_json::{Value, json};

use crate::held::Go;
use crate::models::{Delta, Deltas};

pub struct Speech<'a> {
    bus: &'a Bus,
    subject: Option<String>,
    conversation: &'a str,
    message_id: &'a str,
    said: String,
    seq: u64,
}

impl<'a> Speech<'a> {
    pub fn new(bus: &'a Bus, user: &str, conversation: &'a str, message_id: &'a str) -> Self {
        Speech {
            bus,
            subject: mainloop_events::subjects::chat_live(user, conversation).ok(),
            conversation,
            message_id,
            said: String::new(),
            seq: 0,
        }
    }

    /// Everything said so far.
    pub fn said(&self) -> &str {
        &self.said
    }

    /// Says `text` (a fragment), after a blank line when it starts a new turn of the model.
    pub async fn say(&mut self, text: &str, new_turn: bool) {
        if text.is_empty() {
            return;
        }
        let text = if new_turn && !self.said.is_empty() {
            format!("\n\n{text}")
        } else {
            text.to_string()
        };
        self.said.push_str(&text);
        self.seq += 1;
        let delta = json!({"type": "delta", "conversation_id": self.conversation, "message_id": self.message_id,
            "seq": self.seq, "text": text});
        self.publish(&delta).await;
    }

    /// Runs `turn` (the model, writing to the `Deltas` it is given) while saying each fragment
    /// as it arrives, a new turn of the model as a new paragraph; returns what `turn` returned.
    /// The fragments are said at once, before `go` is given: the store's answer is not waited
    /// for on the way to the first word. A no takes back what was said (a `retract`) and drops
    /// the turn (None); a yes lets it finish. Tools wait for the word themselves (`Toolbox`).
    pub async fn while_speaking<T>(&mut self, go: &Go, turn: impl AsyncFnOnce(Deltas) -> T) -> Option<T> {
        let (deltas, mut fragments) = tokio::sync::mpsc::unbounded_channel::<Delta>();
        let running = turn(deltas);
        tokio::pin!(running);
        let word = go.given();
        tokio::pin!(word);
        let (mut given, mut speaking, mut result) = (false, true, None);
        let mut first = true;
        while !given || speaking || result.is_none() {
            tokio::select! {
                biased;
                yes = &mut word, if !given => {
                    if !yes {
                        self.retract().await;
                        return None;
                    }
                    given = true;
                }
                fragment = fragments.recv(), if speaking => match fragment {
                    Some(Delta::Text(fragment)) if !fragment.is_empty() => {
                        self.say(&fragment, first).await;
                        first = false;
                    }
                    Some(Delta::Text(_)) => {}
                    Some(Delta::NewTurn) => first = true,
                    None => speaking = false,
                },
                done = &mut running, if result.is_none() => result = Some(done),
            }
        }
        result
    }

    /// Takes back everything said so far (`{"type": "retract"}`): the words were of an answer
    /// that is dropped, and another follows under the same message id.
    async fn retract(&mut self) {
        if self.said.is_empty() {
            return;
        }
        self.said.clear();
        self.seq += 1;
        let retract = json!({"type": "retract", "conversation_id": self.conversation, "message_id": self.message_id,
            "seq": self.seq});
        self.publish(&retract).await;
    }

    /// The stored message, once, for clients following live.
    pub async fn finished(&self, message: &Value) {
        self.publish(&json!({"type": "message", "conversation_id": self.conversation, "message": message}))
            .await;
    }

    async fn publish(&self, value: &Value) {
        let Some(subject) = &self.subject else {
            return;
        };
        if let Err(err) = self
            .bus
            .client()
            .publish(subject.clone(), value.to_string().into())
            .await
        {
            tracing::warn!(error = %err, "a live chat fragment was not sent");
        }
    }
}
