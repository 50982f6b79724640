//! The person's push subscriptions, as request/reply commands: `cmd.inbox.push-key` (the
//! server's VAPID public key, for `pushManager.subscribe`), `cmd.inbox.push-subscribe` (a
//! browser's endpoint and keys, as `PushSubscription.toJSON()` gives them; the same endpoint
//! subscribing again replaces itself) and `cmd.inbox.push-unsubscribe`. Endpoints must be
//! `https://` (plain `http://` on loopback only for test suites), and the keys what RFC 8291
//! needs: a P-256 point and a 16-byte secret.

use base64::Engine as _;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use mainloop_bus::{Bus, request};
use mainloop_events::v1::CommandError;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{PushSettings, vapid};
use crate::queries::internal;

const ENDPOINT_MAX: usize = 2048;

#[derive(Debug, Deserialize)]
pub struct PushKey {}

#[derive(Debug, Deserialize)]
pub struct Subscribe {
    pub user_id: String,
    pub endpoint: String,
    pub p256dh: String,
    pub auth: String,
}

#[derive(Debug, Deserialize)]
pub struct Unsubscribe {
    pub user_id: String,
    pub endpoint: String,
}

#[derive(Debug, Serialize)]
struct Done {
    status: &'static str,
}

pub async fn serve(
    bus: &Bus,
    db: &PgPool,
    settings: &PushSettings,
    shutdown: &CancellationToken,
    tasks: &mut JoinSet<Result<(), String>>,
) -> Result<(), async_nats::SubscribeError> {
    let key_db = db.clone();
    spawn(bus, "push-key", shutdown, tasks, move |_: PushKey| {
        let db = key_db.clone();
        async move { push_key(&db).await }
    })
    .await?;
    let (sub_db, http) = (db.clone(), settings.allow_loopback_http);
    spawn(
        bus,
        "push-subscribe",
        shutdown,
        tasks,
        move |command: Subscribe| {
            let db = sub_db.clone();
            async move { subscribe(&db, command, http).await }
        },
    )
    .await?;
    let unsub_db = db.clone();
    spawn(
        bus,
        "push-unsubscribe",
        shutdown,
        tasks,
        move |command: Unsubscribe| {
            let db = unsub_db.clone();
            async move { unsubscribe(&db, command).await }
        },
    )
    .await
}

async fn spawn<Req, Resp, Fut>(
    bus: &Bus,
    name: &str,
    shutdown: &CancellationToken,
    tasks: &mut JoinSet<Result<(), String>>,
    handler: impl Fn(Req) -> Fut + Send + Sync + 'static,
) -> Result<(), async_nats::SubscribeError>
where
    Req: serde::de::DeserializeOwned + Send + 'static,
    Resp: Serialize + 'static,
    Fut: std::future::Future<Output = Result<Resp, CommandError>> + Send + 'static,
{
    let server = request::Server::bind(bus, &format!("cmd.inbox.{name}"), "inbox").await?;
    let shutdown = shutdown.clone();
    tasks.spawn(async move {
        server.run_json(shutdown, handler).await;
        Ok(())
    });
    Ok(())
}

async fn push_key(db: &PgPool) -> Result<Value, CommandError> {
    let key = vapid::key(db).await.map_err(|err| {
        tracing::error!(error = %err, "no VAPID key");
        CommandError::new(mainloop_events::v1::ErrorCode::Internal, "push is unavailable")
    })?;
    Ok(json!({"public_key": vapid::public_key(&key)}))
}

async fn subscribe(db: &PgPool, command: Subscribe, allow_http: bool) -> Result<Done, CommandError> {
    check_endpoint(&command.endpoint, allow_http)?;
    let p256dh = decode(&command.p256dh, "keys.p256dh")?;
    if p256::PublicKey::from_sec1_bytes(&p256dh).is_err() || p256dh.len() != 65 {
        return Err(CommandError::invalid(
            "keys.p256dh must be an uncompressed P-256 point (65 bytes)",
        ));
    }
    let auth = decode(&command.auth, "keys.auth")?;
    if auth.len() != 16 {
        return Err(CommandError::invalid("keys.auth must be 16 bytes"));
    }
    sqlx::query(
        "INSERT INTO push_subscriptions (endpoint, user_id, p256dh, auth) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (endpoint) DO UPDATE SET user_id = $2, p256dh = $3, auth = $4, created_at = now()",
    )
    .bind(&command.endpoint)
    .bind(&command.user_id)
    .bind(&p256dh)
    .bind(&auth)
    .execute(db)
    .await
    .map_err(internal)?;
    tracing::info!(user = %command.user_id, "a browser subscribed to pushes");
    Ok(Done { status: "ok" })
}

async fn unsubscribe(db: &PgPool, command: Unsubscribe) -> Result<Done, CommandError> {
    sqlx::query("DELETE FROM push_subscriptions WHERE endpoint = $1 AND user_id = $2")
        .bind(&command.endpoint)
        .bind(&command.user_id)
        .execute(db)
        .await
        .map_err(internal)?;
    Ok(Done { status: "ok" })
}

fn check_endpoint(endpoint: &str, allow_http: bool) -> Result<(), CommandError> {
    let bad = |why: &str| Err(CommandError::invalid(format!("endpoint {why}")));
    if endpoint.len() > ENDPOINT_MAX {
        return bad("is longer than 2048 characters");
    }
    let Ok(url) = reqwest::Url::parse(endpoint) else {
        return bad("is not a URL");
    };
    let loopback = matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
    match url.scheme() {
        "https" if url.host_str().is_some() => Ok(()),
        "http" if allow_http && loopback => Ok(()),
        _ => bad("must be an https:// URL of a push service"),
    }
}

/// Browsers give the keys base64url without padding; some libraries add it.
fn decode(text: &str, what: &str) -> Result<Vec<u8>, CommandError> {
    URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .or_else(|_| URL_SAFE.decode(text))
        .map_err(|_| CommandError::invalid(format!("{what} must be base64url")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_https_and_loopback_http_only_when_allowed() {
        assert!(check_endpoint("https://fcm.googleapis.com/fcm/send/abc", false).is_ok());
        assert!(check_endpoint("http://127.0.0.1:9000/push/1", true).is_ok());
        for (endpoint, allow) in [
            ("http://127.0.0.1:9000/push/1", false),
            ("http://10.0.0.1/push", true),
            ("file:///etc/passwd", true),
            ("not a url", true),
        ] {
            assert!(check_endpoint(endpoint, allow).is_err(), "{endpoint} {allow}");
        }
        assert!(check_endpoint(&format!("https://a.example/{}", "x".repeat(2100)), false).is_err());
    }

    #[test]
    fn keys_decode_with_or_without_padding() {
        assert_eq!(decode("AAECAw", "k").ok(), Some(vec![0, 1, 2, 3]));
        assert_eq!(decode("AAECAw==", "k").ok(), Some(vec![0, 1, 2, 3]));
        assert!(decode("not base64!", "k").is_err());
    }
}
