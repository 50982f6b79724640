//! Webhooks as GitHub sends them. A test registers a URL and a secret (`POST /_control/webhooks`
//! `{url, secret, events?}`); from then on the fake posts a delivery for what happens on it (a
//! comment, a check run, a commit status, a pull request merged or closed), each signed
//! (`X-Hub-Signature-256`: HMAC-SHA256 of the body), named (`X-GitHub-Event`) and numbered
//! (`X-GitHub-Delivery`, a GUID). Deliveries are recorded with the status they got;
//! `POST /_control/webhooks/redeliver {id}` sends one again with the same GUID, as GitHub's
//! "Redeliver" does, and `{"id": ..., "signature": "bad"}` sends it with a wrong signature.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Sha256;

use super::FakeGitHub;
use super::model::Repo;

#[derive(Debug, Clone, Deserialize)]
pub struct Hook {
    pub url: String,
    pub secret: String,
    /// Events to send; empty: all.
    #[serde(default)]
    pub events: Vec<String>,
}

/// One delivery sent, and what the receiver answered (`None` while in flight or unreachable).
#[derive(Debug, Clone, Serialize)]
pub struct Sent {
    pub id: String,
    pub event: String,
    pub status: Option<u16>,
    #[serde(skip)]
    pub payload: Value,
    #[serde(skip)]
    pub url: String,
    #[serde(skip)]
    pub secret: String,
}

/// `repository` and `sender` as GitHub puts them in every payload.
pub fn repository(repo: &Repo) -> Value {
    json!({"id": 1, "name": repo.name, "full_name": format!("{}/{}", repo.owner, repo.name),
        "owner": {"login": repo.owner}, "private": true})
}

/// Sends `payload` as an `event` delivery to every hook that wants it.
pub fn deliver(gh: &FakeGitHub, event: &str, mut payload: Value, sender: &str) {
    payload["sender"] = json!({"login": sender, "type": "User"});
    let sends: Vec<Sent> = match gh.state.lock() {
        Ok(mut state) => {
            let hooks: Vec<Hook> = state
                .hooks
                .iter()
                .filter(|h| h.events.is_empty() || h.events.iter().any(|e| e == event))
                .cloned()
                .collect();
            let sends: Vec<Sent> = hooks
                .into_iter()
                .map(|hook| Sent {
                    id: uuid::Uuid::now_v7().to_string(),
                    event: event.to_string(),
                    status: None,
                    payload: payload.clone(),
                    url: hook.url,
                    secret: hook.secret,
                })
                .collect();
            state.deliveries.extend(sends.iter().cloned());
            sends
        }
        Err(_) => return,
    };
    for sent in sends {
        tokio::spawn(send(gh.clone(), sent, None));
    }
}

/// Sends a recorded delivery again, with the same GUID (and, for tests, maybe a bad signature).
pub fn redeliver(gh: &FakeGitHub, id: &str, signature: Option<String>) -> bool {
    let sent = gh
        .state
        .lock()
        .ok()
        .and_then(|s| s.deliveries.iter().find(|d| d.id == id).cloned());
    match sent {
        Some(sent) => {
            tokio::spawn(send(gh.clone(), sent, signature));
            true
        }
        None => false,
    }
}

pub fn sign(secret: &str, body: &[u8]) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(body);
    let digest: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={digest}")
}

async fn send(gh: FakeGitHub, sent: Sent, signature: Option<String>) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let body = serde_json::to_vec(&sent.payload).unwrap_or_default();
    let signature = signature.unwrap_or_else(|| sign(&sent.secret, &body));
    let answer = reqwest::Client::new()
        .post(&sent.url)
        .header("content-type", "application/json")
        .header("user-agent", "GitHub-Hookshot/fake")
        .header("x-github-event", &sent.event)
        .header("x-github-delivery", &sent.id)
        .header("x-github-hook-id", "1")
        .header("x-hub-signature-256", signature)
        .body(body)
        .send()
        .await;
    let status = answer.ok().map(|a| a.status().as_u16());
    if let Ok(mut state) = gh.state.lock()
        && let Some(recorded) = state.deliveries.iter_mut().rev().find(|d| d.id == sent.id)
    {
        recorded.status = status;
    }
}
