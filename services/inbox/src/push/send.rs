//! Sending: each `InboxItemAdded` that needs the person goes to every subscription of theirs
//! not yet sent it (`push_sent`), encrypted for that browser and VAPID-signed. What the push
//! service answers decides what follows: 201 sent; 404 or 410 the subscription is gone and is
//! removed; 429 comes back when it says (`Retry-After`); a 5xx or no answer is retried with
//! backoff by the consumer (then dead-lettered); any other refusal is logged and the
//! subscription skipped, since sending the same again cannot help.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mainloop_bus::{Delivery, Handler, HandlerError};
use mainloop_events::Payload;
use p256::ecdsa::SigningKey;
use reqwest::StatusCode;
use sqlx::PgPool;
use web_push_native::Auth;

use super::message::{self, Notification};
use super::{PushSettings, vapid};

/// How long a push service keeps an undelivered notification (seconds): a day.
const TTL_SECS: u32 = 24 * 60 * 60;
const RETRY_AFTER_DEFAULT: Duration = Duration::from_secs(60);

pub struct Sender {
    db: PgPool,
    http: reqwest::Client,
    settings: PushSettings,
}

#[derive(sqlx::FromRow)]
struct Subscription {
    endpoint: String,
    p256dh: Vec<u8>,
    auth: Vec<u8>,
}

/// What came of one push.
enum Outcome {
    Sent,
    Gone,
    Refused(String),
}

impl Sender {
    pub fn new(db: PgPool, settings: PushSettings) -> Self {
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .build()
            .unwrap_or_default();
        Sender { db, http, settings }
    }

    async fn send_all(&self, user: &str, notification: &Notification) -> Result<(), HandlerError> {
        let subscriptions: Vec<Subscription> = sqlx::query_as(
            "SELECT s.endpoint, s.p256dh, s.auth FROM push_subscriptions s WHERE s.user_id = $1 \
             AND NOT EXISTS (SELECT 1 FROM push_sent p WHERE p.item_id = $2 AND p.endpoint = s.endpoint)",
        )
        .bind(user)
        .bind(&notification.item_id)
        .fetch_all(&self.db)
        .await
        .map_err(transient)?;
        if subscriptions.is_empty() {
            return Ok(());
        }
        let key = vapid::key(&self.db).await.map_err(transient)?;
        let body = serde_json::to_vec(notification).map_err(|e| HandlerError::Permanent(e.to_string()))?;
        for subscription in subscriptions {
            match self.send(&key, &subscription, &body).await? {
                Outcome::Sent => self.record(&notification.item_id, &subscription.endpoint).await?,
                Outcome::Gone => self.forget(&subscription.endpoint).await?,
                Outcome::Refused(why) => {
                    tracing::warn!(endpoint = %subscription.endpoint, %why, "a push service refused a push");
                }
            }
        }
        Ok(())
    }

    async fn send(&self, key: &SigningKey, to: &Subscription, body: &[u8]) -> Result<Outcome, HandlerError> {
        let Some((url, public, auth)) = parse(to) else {
            return Ok(Outcome::Gone);
        };
        let encrypted = web_push_native::encrypt(body.to_vec(), &public, &auth)
            .map_err(|e| HandlerError::Permanent(format!("encryption failed: {e}")))?;
        let origin = url.origin().ascii_serialization();
        let response = self
            .http
            .post(url)
            .header(
                "authorization",
                vapid::authorization(key, &origin, &self.settings.contact, now_secs()),
            )
            .header("content-encoding", "aes128gcm")
            .header("content-type", "application/octet-stream")
            .header("ttl", TTL_SECS)
            .header("urgency", "high")
            .body(encrypted)
            .send()
            .await
            .map_err(|e| HandlerError::Transient(format!("push service unreachable: {e}")))?;
        let status = response.status();
        match status {
            s if s.is_success() => Ok(Outcome::Sent),
            StatusCode::NOT_FOUND | StatusCode::GONE => Ok(Outcome::Gone),
            StatusCode::TOO_MANY_REQUESTS => Err(HandlerError::RetryAfter {
                reason: "the push service asked to slow down".into(),
                after: retry_after(&response),
            }),
            s if s.is_server_error() => Err(HandlerError::Transient(format!("push service answered {s}"))),
            s => Ok(Outcome::Refused(format!(
                "{s}: {}",
                response
                    .text()
                    .await
                    .unwrap_or_default()
                    .chars()
                    .take(200)
                    .collect::<String>()
            ))),
        }
    }

    async fn record(&self, item: &str, endpoint: &str) -> Result<(), HandlerError> {
        sqlx::query("INSERT INTO push_sent (item_id, endpoint) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(item)
            .bind(endpoint)
            .execute(&self.db)
            .await
            .map_err(transient)?;
        Ok(())
    }

    async fn forget(&self, endpoint: &str) -> Result<(), HandlerError> {
        tracing::info!(%endpoint, "a push subscription is gone; removed");
        sqlx::query("DELETE FROM push_subscriptions WHERE endpoint = $1")
            .bind(endpoint)
            .execute(&self.db)
            .await
            .map_err(transient)?;
        Ok(())
    }
}

impl Handler for Sender {
    async fn handle(&self, delivery: Delivery) -> Result<(), HandlerError> {
        let Some(Payload::InboxItemAdded(item)) = &delivery.event.payload else {
            return Ok(());
        };
        let Some(notification) = message::for_item(item) else {
            return Ok(());
        };
        self.send_all(&delivery.event.user_id, &notification).await
    }
}

/// The stored subscription as the encryption needs it; `None` if it no longer parses.
fn parse(to: &Subscription) -> Option<(reqwest::Url, p256::PublicKey, Auth)> {
    let url = reqwest::Url::parse(&to.endpoint).ok()?;
    let public = p256::PublicKey::from_sec1_bytes(&to.p256dh).ok()?;
    let auth: [u8; 16] = to.auth.as_slice().try_into().ok()?;
    Some((url, public, Auth::from(auth)))
}

fn retry_after(response: &reqwest::Response) -> Duration {
    response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(RETRY_AFTER_DEFAULT, Duration::from_secs)
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn transient(err: impl std::fmt::Display) -> HandlerError {
    HandlerError::Transient(err.to_string())
}
