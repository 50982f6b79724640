//! The chat models against servers that answer with the providers' real streams, byte for byte
//! (the Messages API's SSE from ../shared/reference/protocols.md §2.4, chat-completions chunks
//! from §3), cut into several network chunks: the text and the tool calls come out exactly, the
//! text is streamed in order, busy answers are retried as asked, and errors inside a 200 are
//! errors.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::post;
use mainloop_conversation::models::anthropic::Anthropic;
use mainloop_conversation::models::openai::OpenAi;
use mainloop_conversation::models::{
    Block, ChatModel, Delta, Message, ModelError, ModelReply, ModelRequest, Role, Stop, Tool,
};
use mainloop_runtime::Secret;
use serde_json::{Value, json};

/// One scripted answer: status, `retry-after`, body (sent in pieces of `chunk` bytes).
#[derive(Clone)]
struct Answer {
    status: u16,
    retry_after: Option<&'static str>,
    body: String,
}

fn ok(body: String) -> Answer {
    Answer {
        status: 200,
        retry_after: None,
        body,
    }
}

#[derive(Clone, Default)]
struct Scripted {
    answers: Arc<Mutex<Vec<Answer>>>,
    requests: Arc<Mutex<Vec<(Value, String)>>>,
}

async fn answer(State(script): State<Scripted>, headers: axum::http::HeaderMap, body: String) -> Response {
    let auth = headers
        .get("x-api-key")
        .or_else(|| headers.get("authorization"))
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    if let Ok(mut requests) = script.requests.lock() {
        requests.push((serde_json::from_str(&body).unwrap_or(Value::Null), auth));
    }
    let next = script
        .answers
        .lock()
        .ok()
        .and_then(|mut a| (!a.is_empty()).then(|| a.remove(0)));
    let Some(next) = next else {
        return Response::builder()
            .status(StatusCode::INTERNAL_SERVER_ERROR)
            .body(Body::from("no answer scripted"))
            .unwrap_or_default();
    };
    let streamed = next.status == 200;
    // The stream arrives in small pieces that cut through lines and events.
    let bytes = next.body.into_bytes();
    let pieces: Vec<Result<Vec<u8>, std::convert::Infallible>> =
        bytes.chunks(7).map(|c| Ok(c.to_vec())).collect();
    let mut response = Response::builder().status(next.status).header(
        "content-type",
        if streamed {
            "text/event-stream"
        } else {
            "application/json"
        },
    );
    if let Some(after) = next.retry_after {
        response = response.header("retry-after", after);
    }
    response
        .body(Body::from_stream(futures_util::stream::iter(pieces)))
        .unwrap_or_default()
}

async fn serve(answers: Vec<Answer>) -> anyhow::Result<(String, Scripted)> {
    mainloop_runtime::tls::install();
    let script = Scripted {
        answers: Arc::new(Mutex::new(answers)),
        ..Default::default()
    };
    let app = axum::Router::new()
        .route("/v1/messages", post(answer))
        .route("/v1/chat/completions", post(answer))
        .with_state(script.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((url, script))
}

fn request() -> ModelRequest {
    ModelRequest {
        system: "Be brief.".into(),
        messages: vec![
            Message::text(Role::User, "add a README to https://github.com/o/r"),
            Message {
                role: Role::Assistant,
                blocks: vec![
                    Block::Text("Spawning.".into()),
                    Block::ToolUse {
                        id: "toolu_0".into(),
                        name: "spawn_task".into(),
                        input: json!({"repo_url": "https://github.com/o/r"}),
                    },
                ],
            },
            Message {
                role: Role::User,
                blocks: vec![Block::ToolResult {
                    tool_use_id: "toolu_0".into(),
                    content: "not confirmed".into(),
                    is_error: true,
                }],
            },
        ],
        tools: vec![Tool {
            name: "spawn_task".into(),
            description: "Start a worker.".into(),
            schema: json!({"type": "object", "properties": {"repo_url": {"type": "string"}}}),
        }]
        .into(),
        max_tokens: 1024,
    }
}

/// Runs one turn; returns the reply (or error) and the text fragments streamed, in order.
async fn run(model: &dyn ChatModel) -> (Result<ModelReply, ModelError>, Vec<String>) {
    let (deltas, mut fragments) = tokio::sync::mpsc::unbounded_channel();
    let reply = model.turn(&request(), &deltas).await;
    drop(deltas);
    let mut seen = Vec::new();
    while let Some(delta) = fragments.recv().await {
        if let Delta::Text(fragment) = delta {
            seen.push(fragment);
        }
    }
    (reply, seen)
}

fn sse(events: &[(&str, Value)]) -> String {
    events
        .iter()
        .map(|(name, data)| format!("event: {name}\ndata: {data}\n\n"))
        .collect()
}

/// The Messages API's stream of a text block then a tool call, its input in three fragments (the
/// first empty), with a ping between.
fn anthropic_text_and_tool() -> String {
    sse(&[
        (
            "message_start",
            json!({"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"m","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":10,"output_tokens":1}}}),
        ),
        (
            "content_block_start",
            json!({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}),
        ),
        (
            "content_block_delta",
            json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Starting a worker "}}),
        ),
        ("ping", json!({"type":"ping"})),
        (
            "content_block_delta",
            json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"on o/r — ✓."}}),
        ),
        (
            "content_block_stop",
            json!({"type":"content_block_stop","index":0}),
        ),
        (
            "content_block_start",
            json!({"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_1","name":"spawn_task","input":{}}}),
        ),
        (
            "content_block_delta",
            json!({"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}),
        ),
        (
            "content_block_delta",
            json!({"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"repo_url\":"}}),
        ),
        (
            "content_block_delta",
            json!({"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"\"https://github.com/o/r\", \"n\": [1, 2]}"}}),
        ),
        (
            "content_block_stop",
            json!({"type":"content_block_stop","index":1}),
        ),
        (
            "message_delta",
            json!({"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":25}}),
        ),
        ("future_event_type", json!({"type":"future_event_type"})),
        ("message_stop", json!({"type":"message_stop"})),
    ])
}

fn anthropic(url: &str) -> Anthropic {
    Anthropic::new(url, Some(Secret::new("sk-ant")), "claude-test")
}

#[tokio::test]
async fn anthropic_text_and_a_tool_call_in_fragments_come_out_exactly() -> anyhow::Result<()> {
    let (url, script) = serve(vec![ok(anthropic_text_and_tool())]).await?;
    let (reply, fragments) = run(&anthropic(&url)).await;
    let reply = reply?;
    assert_eq!(
        reply,
        ModelReply {
            blocks: vec![
                Block::Text("Starting a worker on o/r — ✓.".into()),
                Block::ToolUse {
                    id: "toolu_1".into(),
                    name: "spawn_task".into(),
                    input: json!({"repo_url": "https://github.com/o/r", "n": [1, 2]}),
                },
            ],
            stop: Stop::ToolUse,
        }
    );
    assert_eq!(
        fragments,
        ["Starting a worker ", "on o/r — ✓."],
        "streamed as they came"
    );
    let (sent, key) = script.requests.lock().map(|r| r[0].clone()).unwrap_or_default();
    assert_eq!(key, "sk-ant");
    assert_eq!(sent["stream"], true);
    assert_eq!(sent["system"], "Be brief.");
    assert_eq!(
        sent["messages"][1]["content"][1],
        json!({"type": "tool_use", "id": "toolu_0", "name": "spawn_task", "input": {"repo_url": "https://github.com/o/r"}})
    );
    assert_eq!(
        sent["messages"][2]["content"][0],
        json!({"type": "tool_result", "tool_use_id": "toolu_0", "content": "not confirmed", "is_error": true})
    );
    assert_eq!(
        (&sent["model"], &sent["max_tokens"]),
        (&json!("claude-test"), &json!(1024))
    );
    assert_eq!(
        sent["messages"][0],
        json!({"role": "user", "content": [{"type": "text", "text": "add a README to https://github.com/o/r"}]})
    );
    assert_eq!(
        sent["tools"],
        json!([{"name": "spawn_task", "description": "Start a worker.",
            "input_schema": {"type": "object", "properties": {"repo_url": {"type": "string"}}}}])
    );
    Ok(())
}

#[tokio::test]
async fn anthropic_overloaded_then_answers() -> anyhow::Result<()> {
    let overloaded = Answer {
        status: 529,
        retry_after: Some("0"),
        body: json!({"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}).to_string(),
    };
    let limited = Answer {
        status: 429,
        retry_after: Some("0.2"),
        body: json!({"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}).to_string(),
    };
    let (url, script) = serve(vec![overloaded, limited, ok(anthropic_text_and_tool())]).await?;
    let started = std::time::Instant::now();
    let (reply, _) = run(&anthropic(&url)).await;
    assert_eq!(reply?.stop, Stop::ToolUse);
    assert_eq!(script.requests.lock().map(|r| r.len()).unwrap_or_default(), 3);
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(200),
        "retry-after was honoured"
    );

    let refused = Answer {
        status: 400,
        retry_after: None,
        body: json!({"type":"error","error":{"type":"invalid_request_error","message":"messages: bad"}})
            .to_string(),
    };
    let (url, script) = serve(vec![refused]).await?;
    let (reply, _) = run(&anthropic(&url)).await;
    assert_eq!(
        reply.map_err(|e| e.to_string()),
        Err("the chat model answered 400 invalid_request_error: messages: bad".to_string())
    );
    assert_eq!(
        script.requests.lock().map(|r| r.len()).unwrap_or_default(),
        1,
        "not retried"
    );
    Ok(())
}

#[tokio::test]
async fn anthropic_an_error_event_after_the_200_is_an_error() -> anyhow::Result<()> {
    let body = sse(&[
        (
            "message_start",
            json!({"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"m","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":10,"output_tokens":1}}}),
        ),
        (
            "content_block_start",
            json!({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}),
        ),
        (
            "content_block_delta",
            json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Let me"}}),
        ),
        (
            "error",
            json!({"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}),
        ),
    ]);
    let (url, script) = serve(vec![ok(body)]).await?;
    let (reply, fragments) = run(&anthropic(&url)).await;
    assert_eq!(
        reply.map_err(|e| e.to_string()),
        Err("the chat model answered 200 overloaded_error: Overloaded".to_string())
    );
    assert_eq!(fragments, ["Let me"]);
    assert_eq!(
        script.requests.lock().map(|r| r.len()).unwrap_or_default(),
        1,
        "never retried once text went out (it would be said twice)"
    );
    // Cut off without message_stop: an error too, not a silent half answer.
    let cut = sse(&[(
        "message_start",
        json!({"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"m","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":10,"output_tokens":1}}}),
    )]);
    let (url, _) = serve(vec![ok(cut)]).await?;
    let (reply, _) = run(&anthropic(&url)).await;
    assert!(matches!(reply, Err(ModelError::Protocol(_))), "{reply:?}");
    Ok(())
}

fn chunks(choices: &[Value]) -> String {
    let mut body: String = choices
        .iter()
        .map(|delta| {
            format!(
                "data: {}\n\n",
                json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "qwen", "choices": [delta]})
            )
        })
        .collect();
    // The usage chunk (`include_usage`) has no choices, then the end.
    body.push_str(&format!(
        "data: {}\n\ndata: [DONE]\n\n",
        json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "qwen", "choices": [],
            "usage": {"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21}})
    ));
    body
}

fn openai(url: &str) -> OpenAi {
    OpenAi::new(&format!("{url}/v1"), Some(Secret::new("sk-oa")), "qwen")
}

#[tokio::test]
async fn openai_text_and_two_tool_calls_by_index_come_out_exactly() -> anyhow::Result<()> {
    let body = chunks(&[
        json!({"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}),
        json!({"index": 0, "delta": {"content": "Two "}, "finish_reason": null}),
        json!({"index": 0, "delta": {"content": "things."}, "finish_reason": null}),
        json!({"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_a", "type": "function", "function": {"name": "spawn_task", "arguments": ""}}]}, "finish_reason": null}),
        json!({"index": 0, "delta": {"tool_calls": [{"index": 1, "id": "call_b", "type": "function", "function": {"name": "list_tasks", "arguments": "{}"}}]}, "finish_reason": null}),
        json!({"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{\"repo_url\": \"https://"}}]}, "finish_reason": null}),
        json!({"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "github.com/o/r\"}"}}]}, "finish_reason": null}),
        json!({"index": 0, "delta": {}, "finish_reason": "tool_calls"}),
    ]);
    let (url, script) = serve(vec![ok(body)]).await?;
    let (reply, fragments) = run(&openai(&url)).await;
    assert_eq!(
        reply?,
        ModelReply {
            blocks: vec![
                Block::Text("Two things.".into()),
                Block::ToolUse {
                    id: "call_a".into(),
                    name: "spawn_task".into(),
                    input: json!({"repo_url": "https://github.com/o/r"}),
                },
                Block::ToolUse {
                    id: "call_b".into(),
                    name: "list_tasks".into(),
                    input: json!({}),
                },
            ],
            stop: Stop::ToolUse,
        }
    );
    assert_eq!(fragments, ["Two ", "things."]);
    let (sent, key) = script.requests.lock().map(|r| r[0].clone()).unwrap_or_default();
    assert_eq!(key, "Bearer sk-oa");
    assert_eq!(
        sent["messages"][0],
        json!({"role": "system", "content": "Be brief."})
    );
    assert_eq!(
        sent["messages"][2],
        json!({"role": "assistant", "content": "Spawning.", "tool_calls": [{"id": "toolu_0", "type": "function",
            "function": {"name": "spawn_task", "arguments": "{\"repo_url\":\"https://github.com/o/r\"}"}}]})
    );
    assert_eq!(
        sent["messages"][3],
        json!({"role": "tool", "tool_call_id": "toolu_0", "content": "Error: not confirmed"})
    );
    assert_eq!(sent["tools"][0]["type"], "function");
    assert_eq!(sent["stream"], true);
    Ok(())
}

#[tokio::test]
async fn openai_a_whole_call_in_one_delta_busy_answers_and_errors_in_the_stream() -> anyhow::Result<()> {
    // Ollama sends a whole call at once, sometimes with its arguments as an object.
    let whole = chunks(&[
        json!({"index": 0, "delta": {"role": "assistant", "content": null, "tool_calls": [{"index": 0, "id": "call_x",
            "type": "function", "function": {"name": "spawn_task", "arguments": {"repo_url": "https://github.com/o/r"}}}]},
            "finish_reason": "stop"}),
    ]);
    let busy = Answer {
        status: 429,
        retry_after: Some("0"),
        body: json!({"error": {"message": "Rate limit reached", "type": "rate_limit_exceeded", "code": "rate_limit_exceeded"}}).to_string(),
    };
    let (url, script) = serve(vec![busy, ok(whole)]).await?;
    let (reply, fragments) = run(&openai(&url)).await;
    assert_eq!(
        reply?,
        ModelReply {
            blocks: vec![Block::ToolUse {
                id: "call_x".into(),
                name: "spawn_task".into(),
                input: json!({"repo_url": "https://github.com/o/r"}),
            }],
            stop: Stop::ToolUse,
        }
    );
    assert!(fragments.is_empty());
    assert_eq!(script.requests.lock().map(|r| r.len()).unwrap_or_default(), 2);

    let broken = format!(
        "data: {}\n\ndata: {}\n\n",
        json!({"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "Hm"}, "finish_reason": null}]}),
        json!({"error": {"message": "model crashed", "type": "server_error"}})
    );
    let (url, _) = serve(vec![ok(broken)]).await?;
    let (reply, fragments) = run(&openai(&url)).await;
    assert_eq!(
        reply.map_err(|e| e.to_string()),
        Err("the chat model answered 200 server_error: model crashed".to_string())
    );
    assert_eq!(fragments, ["Hm"]);
    Ok(())
}
