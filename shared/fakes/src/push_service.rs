//! A Web Push service (RFC 8030) as strict as the real ones: it hands out subscriptions (an
//! endpoint, and the browser's side of the keys: a P-256 key pair and a 16-byte secret) and
//! takes pushes to them only as FCM or Mozilla's autopush would: `aes128gcm` content, a `TTL`,
//! at most 4096 bytes, and a VAPID `Authorization` (RFC 8292) whose ES256 JWT verifies with the
//! key it names, is for this service's origin (`aud`, its port included), expires within a day
//! and names a `mailto:` or `https:` contact. Then it decrypts the body as the browser would
//! (RFC 8291) and keeps it. An unknown endpoint is 404, an expired one 410, and tests can make it
//! fail the next pushes (5xx, 429 with `Retry-After`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, VerifyingKey};
use serde_json::{Value, json};

const MAX_BODY: usize = 4096;
const DAY_SECS: i64 = 24 * 60 * 60;

/// One subscription as the browser would hold it; `endpoint`, `p256dh` and `auth` are what
/// `PushSubscription.toJSON()` gives the page.
#[derive(Clone)]
struct Browser {
    secret: p256::SecretKey,
    auth: [u8; 16],
    expired: bool,
    received: Vec<Value>,
}

/// A subscription's public side.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub endpoint: String,
    pub p256dh: String,
    pub auth: String,
}

/// An injected failure: the status, and `Retry-After` seconds.
type Fault = (u16, Option<u64>);

#[derive(Clone, Default)]
pub struct FakePushService {
    origin: Arc<Mutex<String>>,
    browsers: Arc<Mutex<HashMap<String, Browser>>>,
    /// The next pushes fail with these statuses (and `Retry-After` seconds), first first.
    faults: Arc<Mutex<Vec<Fault>>>,
    /// Every refusal, with its reason, for assertions.
    refusals: Arc<Mutex<Vec<String>>>,
}

impl FakePushService {
    /// Serves on `listener`; returns the service's origin (`http://127.0.0.1:<port>`).
    pub async fn serve(self, listener: tokio::net::TcpListener) -> std::io::Result<String> {
        let origin = format!("http://{}", listener.local_addr()?);
        if let Ok(mut o) = self.origin.lock() {
            o.clone_from(&origin);
        }
        let app = Router::new()
            .route("/push/{id}", post(push))
            .with_state(self.clone());
        crate::serving::serve(listener, app);
        Ok(origin)
    }

    /// A new subscription, as a browser's `pushManager.subscribe` would make.
    pub fn subscribe(&self) -> Subscription {
        let secret = loop {
            let mut bytes = [0u8; 32];
            if getrandom::fill(&mut bytes).is_ok()
                && let Ok(key) = p256::SecretKey::from_slice(&bytes)
            {
                break key;
            }
        };
        let mut auth = [0u8; 16];
        let _ = getrandom::fill(&mut auth);
        let id = uuid::Uuid::now_v7().simple().to_string();
        let public = secret.public_key().to_sec1_bytes();
        let subscription = Subscription {
            endpoint: format!("{}/push/{id}", self.origin()),
            p256dh: URL_SAFE_NO_PAD.encode(public),
            auth: URL_SAFE_NO_PAD.encode(auth),
        };
        if let Ok(mut browsers) = self.browsers.lock() {
            browsers.insert(
                id,
                Browser {
                    secret,
                    auth,
                    expired: false,
                    received: vec![],
                },
            );
        }
        subscription
    }

    /// What the browser behind `endpoint` received, decrypted, in order.
    pub fn received(&self, endpoint: &str) -> Vec<Value> {
        let id = endpoint.rsplit('/').next().unwrap_or_default();
        self.browsers
            .lock()
            .ok()
            .and_then(|b| b.get(id).map(|b| b.received.clone()))
            .unwrap_or_default()
    }

    /// The browser unsubscribed (or its subscription lapsed): pushes to it now get 410.
    pub fn expire(&self, endpoint: &str) {
        let id = endpoint.rsplit('/').next().unwrap_or_default();
        if let Ok(mut browsers) = self.browsers.lock()
            && let Some(browser) = browsers.get_mut(id)
        {
            browser.expired = true;
        }
    }

    /// The next push is answered `status` (with `Retry-After: retry_after` when given).
    pub fn fail_next(&self, status: u16, retry_after: Option<u64>) {
        if let Ok(mut faults) = self.faults.lock() {
            faults.push((status, retry_after));
        }
    }

    pub fn refusals(&self) -> Vec<String> {
        self.refusals.lock().map(|r| r.clone()).unwrap_or_default()
    }

    fn origin(&self) -> String {
        self.origin.lock().map(|o| o.clone()).unwrap_or_default()
    }

    fn refuse(&self, status: StatusCode, reason: String) -> Response {
        if let Ok(mut refusals) = self.refusals.lock() {
            refusals.push(format!("{} {reason}", status.as_u16()));
        }
        (
            status,
            axum::Json(json!({"code": status.as_u16(), "error": reason})),
        )
            .into_response()
    }
}

async fn push(
    State(service): State<FakePushService>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fault = service
        .faults
        .lock()
        .ok()
        .and_then(|mut f| (!f.is_empty()).then(|| f.remove(0)));
    if let Some((status, retry_after)) = fault {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = service.refuse(status, "an injected failure".into());
        if let Some(secs) = retry_after
            && let Ok(value) = secs.to_string().parse()
        {
            response.headers_mut().insert("retry-after", value);
        }
        return response;
    }
    let Some(browser) = service.browsers.lock().ok().and_then(|b| b.get(&id).cloned()) else {
        return service.refuse(StatusCode::NOT_FOUND, "no such subscription".into());
    };
    if browser.expired {
        return service.refuse(StatusCode::GONE, "the subscription has expired".into());
    }
    if let Err((status, reason)) = check(&headers, &body, &service.origin()) {
        return service.refuse(status, reason);
    }
    let auth = web_push_native::Auth::from(browser.auth);
    let Ok(plain) = web_push_native::decrypt(body.to_vec(), &browser.secret, &auth) else {
        return service.refuse(
            StatusCode::BAD_REQUEST,
            "the body does not decrypt for this subscription".into(),
        );
    };
    let said = serde_json::from_slice(&plain)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&plain).into()));
    if let Ok(mut browsers) = service.browsers.lock()
        && let Some(browser) = browsers.get_mut(&id)
    {
        browser.received.push(said);
    }
    (
        StatusCode::CREATED,
        [("location", format!("/message/{}", uuid::Uuid::now_v7()))],
    )
        .into_response()
}

/// The headers and size a push service demands.
fn check(headers: &HeaderMap, body: &[u8], origin: &str) -> Result<(), (StatusCode, String)> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if header("content-encoding") != Some("aes128gcm") {
        return Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Encoding must be aes128gcm".into(),
        ));
    }
    if header("ttl").and_then(|t| t.parse::<u64>().ok()).is_none() {
        return Err((StatusCode::BAD_REQUEST, "a TTL header is required".into()));
    }
    if body.len() > MAX_BODY {
        return Err((
            StatusCode::PAYLOAD_TOO_LARGE,
            "the body is over 4096 bytes".into(),
        ));
    }
    let authorization = header("authorization").unwrap_or_default();
    vapid(authorization, origin).map_err(|reason| (StatusCode::UNAUTHORIZED, reason))
}

/// Checks `vapid t=<JWT>, k=<key>` as RFC 8292 asks.
fn vapid(authorization: &str, origin: &str) -> Result<(), String> {
    let (token, key) = authorization
        .strip_prefix("vapid t=")
        .and_then(|rest| rest.split_once(", k="))
        .ok_or("Authorization must be `vapid t=…, k=…`")?;
    let decode = |text: &str| {
        URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| "not base64url".to_string())
    };
    let key = VerifyingKey::from_sec1_bytes(&decode(key)?).map_err(|_| "k is not a P-256 key")?;
    let (signed, signature) = token.rsplit_once('.').ok_or("the JWT has no signature")?;
    let signature = Signature::from_slice(&decode(signature)?).map_err(|_| "the signature is not ES256")?;
    key.verify(signed.as_bytes(), &signature)
        .map_err(|_| "the JWT's signature does not verify with k")?;
    let mut parts = signed.split('.');
    let header: Value =
        serde_json::from_slice(&decode(parts.next().unwrap_or_default())?).unwrap_or_default();
    let claims: Value =
        serde_json::from_slice(&decode(parts.next().unwrap_or_default())?).unwrap_or_default();
    if header["alg"] != "ES256" {
        return Err("the JWT's alg must be ES256".into());
    }
    if claims["aud"] != origin {
        return Err(format!("aud must be {origin}, not {}", claims["aud"]));
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    match claims["exp"].as_i64() {
        Some(exp) if exp > now && exp <= now + DAY_SECS => {}
        _ => return Err("exp must be in the next 24 hours".into()),
    }
    let sub = claims["sub"].as_str().unwrap_or_default();
    if !(sub.starts_with("mailto:") || sub.starts_with("https:")) {
        return Err("sub must be a mailto: or https: contact".into());
    }
    Ok(())
}
