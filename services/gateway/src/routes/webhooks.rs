//! `POST /webhooks/github`: GitHub's webhook deliveries. The signature (`X-Hub-Signature-256`)
//! is checked on the raw body before anything reads it; a missing or wrong one, or no secret
//! configured, is 401 and nothing is stored. A verified delivery goes to WORK
//! (`work.webhooks.github`) for the github-watcher, with its `X-GitHub-Delivery` id as the
//! message id, so a quick repeat is dropped by JetStream (the watcher drops later ones), and
//! GitHub gets 202 at once.

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use mainloop_bus::Expect;
use mainloop_events::v1::GitHubWebhookReceived;
use mainloop_events::{Envelope, Payload, subjects};
use serde_json::{Value, json};

use crate::api_error::ApiError;
use crate::extract::RawBody;
use crate::signature;
use crate::state::AppState;

/// GitHub caps payloads at 25 MB, but the events mainloop reads are far smaller.
const WEBHOOK_BODY_LIMIT: usize = 5 * 1024 * 1024;

/// Who webhook deliveries belong to on the bus: GitHub, not a person.
const GITHUB_USER: &str = "github";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/webhooks/github", post(github))
        .layer(DefaultBodyLimit::max(WEBHOOK_BODY_LIMIT))
}

fn unauthorized(detail: &str) -> ApiError {
    tracing::warn!(%detail, "webhook delivery refused");
    ApiError::new(StatusCode::UNAUTHORIZED, detail)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
}

async fn github(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Some(secret) = &state.webhook_secret else {
        return Err(unauthorized(
            "webhooks are not set up here: start mainloop with GITHUB_WEBHOOK_SECRET",
        ));
    };
    let Some(signed) = header(&headers, "x-hub-signature-256") else {
        return Err(unauthorized("the delivery has no X-Hub-Signature-256"));
    };
    if !signature::verify(secret.expose().as_bytes(), &body, signed) {
        return Err(unauthorized(
            "the delivery's signature does not match the webhook secret",
        ));
    }
    let delivery = header(&headers, "x-github-delivery")
        .and_then(|d| subjects::token("delivery id", d).ok())
        .ok_or_else(|| ApiError::bad_request("X-GitHub-Delivery is missing or not a delivery id"))?;
    let event = header(&headers, "x-github-event")
        .ok_or_else(|| ApiError::bad_request("X-GitHub-Event is missing"))?;
    let payload_json = String::from_utf8(body.to_vec())
        .ok()
        .filter(|text| serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok())
        .ok_or_else(|| {
            ApiError::bad_request(
                "the delivery is not JSON (set the webhook's content type to application/json)",
            )
        })?;
    let mut envelope = Envelope::new(
        GITHUB_USER,
        delivery,
        Payload::GithubWebhookReceived(GitHubWebhookReceived {
            delivery_id: delivery.to_string(),
            event: event.to_string(),
            payload_json,
        }),
    );
    // The same delivery (a redelivery) is the same message: stored once.
    envelope.id = format!("github-delivery-{delivery}");
    state
        .bus
        .publish(subjects::GITHUB_WEBHOOKS, &envelope, Expect::Any)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "webhook delivery not stored");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the delivery could not be stored; GitHub may redeliver it",
            )
        })?;
    tracing::info!(%delivery, %event, "webhook delivery accepted");
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"status": "accepted", "delivery": delivery})),
    ))
}
