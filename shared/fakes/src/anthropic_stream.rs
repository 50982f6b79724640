//! A whole Messages API answer as the API streams it (`stream: true`): `message_start`, for each
//! content block a `content_block_start`, its deltas (text in several `text_delta`s, a tool's
//! input in several `input_json_delta` fragments, the first one empty, as recorded from the real
//! API) and `content_block_stop`, a `ping`, `message_delta` with the stop reason, `message_stop`.
//! With `fail_after_start`, the stream breaks off after the first text fragment with an `error`
//! event, as the API does when it is overloaded mid-answer (the HTTP status was already 200).

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::Notify;

/// `message` is a complete non-streaming answer (`id`, `model`, `content`, `stop_reason`, `usage`).
pub fn response(message: &Value, fail_after_start: Option<&str>) -> Response {
    held_response(message, fail_after_start, None)
}

/// As [`response`]; with `hold`, the stream stops after its first text fragment until `hold` is
/// notified (a test can then see a reply arrive part by part, whatever the machine's load).
pub fn held_response(message: &Value, fail_after_start: Option<&str>, hold: Option<Arc<Notify>>) -> Response {
    let frames: String = events(message, fail_after_start)
        .into_iter()
        .map(|(event, data)| format!("event: {event}\ndata: {data}\n\n"))
        .collect();
    // Several chunks on the wire, as a real stream arrives.
    let chunks: Vec<String> = frames.split_inclusive("\n\n").map(String::from).collect();
    let stream = futures_util::stream::unfold(
        (chunks.into_iter(), hold, false),
        |(mut chunks, mut hold, wait)| async move {
            if wait && let Some(gate) = hold.take() {
                gate.notified().await;
            }
            let chunk = chunks.next()?;
            // The first text fragment goes out; what follows waits for the gate.
            let wait = hold.is_some() && chunk.contains("text_delta");
            Some((Ok::<_, Infallible>(chunk), (chunks, hold, wait)))
        },
    );
    Response::builder()
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// Splits `text` into pieces of about `size` characters (on character boundaries).
fn pieces(text: &str, size: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    chars.chunks(size.max(1)).map(|c| c.iter().collect()).collect()
}

pub fn events(message: &Value, fail_after_start: Option<&str>) -> Vec<(&'static str, Value)> {
    let mut start = message.clone();
    start["content"] = json!([]);
    start["stop_reason"] = Value::Null;
    start["usage"] = json!({"input_tokens": message["usage"]["input_tokens"], "output_tokens": 1});
    let mut events = vec![(
        "message_start",
        json!({"type": "message_start", "message": start}),
    )];
    for (index, block) in message["content"].as_array().into_iter().flatten().enumerate() {
        if block["type"] == "tool_use" {
            events.push((
                "content_block_start",
                json!({"type": "content_block_start", "index": index, "content_block":
                    {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}}),
            ));
            let input = block["input"].to_string();
            for part in std::iter::once(String::new()).chain(pieces(&input, 9)) {
                events.push((
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": part}}),
                ));
            }
        } else {
            events.push((
                "content_block_start",
                json!({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}),
            ));
            for (n, part) in pieces(block["text"].as_str().unwrap_or_default(), 12)
                .into_iter()
                .enumerate()
            {
                events.push((
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": part}}),
                ));
                if n == 0
                    && let Some(kind) = fail_after_start
                {
                    events.push((
                        "error",
                        json!({"type": "error", "error": {"type": kind, "message": "Overloaded"}}),
                    ));
                    return events;
                }
            }
        }
        events.push((
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
        ));
        if index == 0 {
            events.push(("ping", json!({"type": "ping"})));
        }
    }
    events.push((
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": message["stop_reason"], "stop_sequence": null},
            "usage": {"output_tokens": message["usage"]["output_tokens"]}}),
    ));
    events.push(("message_stop", json!({"type": "message_stop"})));
    events
}
