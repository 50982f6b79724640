//! The time mainloop adds between a person's message and the first words of the reply in their
//! browser, with 50 people chatting at once, beside the model's own first-token time measured in
//! the same run. Real gateway, conversation and inbox on real NATS and Postgres; each person
//! opens the app (an `/events` stream) at a moment of their own and posts `/chat`, reading a
//! while before each message; the model is a local Messages API that streams its reply and
//! notes when each request arrived and when it sent the first word.
//!
//! For each message: `total` = first `chat:delta` at the person − `POST /chat` sent;
//! `model` = first word sent − request arrived at the model; `added` = `total − model` (the
//! gateway, the conversation's reads of its memory and the person's tasks, the request to the
//! model, and the way back through NATS and SSE), also shown apart for each person's first
//! message (a new conversation) and the later ones. Goal: added ≤ 5 ms at p99.
//! `BENCH_PEOPLE` (50), `BENCH_ROUNDS` (10) and `BENCH_THINK_MS` (500: how long a person reads
//! before writing again, on average; 0 is a flood) set the load; the gateway allows a person a burst
//! of 10 messages, so more rounds meet its rate limit (and the bench says so).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use futures_util::StreamExt;
use mainloop_gateway::HttpConfig;
use mainloop_runtime::Secret;
use mainloop_testkit::Infra;
use mainloop_testkit::bench::{Steal, env, percentile};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// When the model received each request and sent its first word, by the person's message.
#[derive(Clone, Default)]
struct Clock {
    seen: Arc<Mutex<HashMap<String, (Instant, Instant)>>>,
}

/// The Messages API, streaming: the reply's first word at once, the rest 20 ms later.
async fn messages(State(clock): State<Clock>, body: String) -> Response {
    let arrived = Instant::now();
    let request: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let said = request["messages"]
        .as_array()
        .and_then(|m| m.last())
        .and_then(|m| m["content"][0]["text"].as_str())
        .unwrap_or_default()
        .to_string();
    let frame = |event: &str, data: Value| format!("event: {event}\ndata: {data}\n\n");
    let start = frame(
        "message_start",
        json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "model": "m",
            "content": [], "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 10, "output_tokens": 1}}}),
    ) + &frame(
        "content_block_start",
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    ) + &frame(
        "content_block_delta",
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Sure, "}}),
    );
    let rest = frame(
        "content_block_delta",
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "here it is."}}),
    ) + &frame(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    ) + &frame(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 5}}),
    ) + &frame("message_stop", json!({"type": "message_stop"}));
    let stream = futures_util::stream::once(async move {
        if let Ok(mut seen) = clock.seen.lock() {
            seen.insert(said, (arrived, Instant::now()));
        }
        Ok::<_, Infallible>(start)
    })
    .chain(futures_util::stream::once(async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        Ok::<_, Infallible>(rest)
    }));
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(stream))
        .unwrap_or_default()
}

/// A fraction in [0, 1) from a name, so people's moments are spread out, the same in every run.
fn fastrand_fraction(name: &str) -> f64 {
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    (hash % 1000) as f64 / 1000.0
}

/// One person: their event stream open, `rounds` messages one after another; for each, when it
/// was posted and when its first `chat:delta` arrived.
async fn person(
    http: reqwest::Client,
    base: String,
    who: String,
    rounds: usize,
    think: Duration,
) -> anyhow::Result<Vec<(String, Instant, Instant)>> {
    // People open the app at moments of their own, not all in one millisecond.
    tokio::time::sleep(think.mul_f64(fastrand_fraction(&who))).await;
    let events = http
        .get(format!("{base}/events?user_id_query={who}"))
        .send()
        .await?
        .error_for_status()?;
    let mut frames = events.bytes_stream();
    let mut buffer = String::new();
    // Until `connected`: the stream is open.
    while !buffer.contains("event: connected") && !buffer.contains("event:connected") {
        let chunk = frames
            .next()
            .await
            .ok_or_else(|| anyhow::anyhow!("no events"))??;
        buffer.push_str(&String::from_utf8_lossy(&chunk));
    }
    buffer.clear();
    let mut conversation: Option<String> = None;
    let mut timings = Vec::new();
    for round in 0..rounds {
        // Before each message a person reads (the app, then each answer) for a while of their
        // own, 0.5–1.5 × `think`: with one fixed pause, people whose replies once ended
        // together (a stalled moment) would write together in every round after, in lockstep.
        tokio::time::sleep(think.mul_f64(0.5 + fastrand_fraction(&format!("{who} {round}")))).await;
        let message = format!("{who} message {round}");
        let posted = Instant::now();
        let mut post = {
            let http = http.clone();
            let body = json!({"message": message, "conversation_id": conversation});
            let url = format!("{base}/chat");
            let who = who.clone();
            tokio::spawn(async move {
                let answer = http.post(url).header("x-user-id", who).json(&body).send().await?;
                let status = answer.status();
                let body: Value = answer.json().await?;
                anyhow::ensure!(status.is_success(), "POST /chat answered {status}: {body}");
                anyhow::Ok(body)
            })
        };
        let mut answered = None;
        let first = loop {
            if let Some(end) = buffer.find("\n\n") {
                let frame: String = buffer.drain(..end + 2).collect();
                if frame.contains("chat:delta") {
                    break Instant::now();
                }
                continue;
            }
            tokio::select! {
                chunk = tokio::time::timeout(Duration::from_secs(30), frames.next()) => {
                    let chunk = chunk?.ok_or_else(|| anyhow::anyhow!("the event stream ended"))??;
                    buffer.push_str(&String::from_utf8_lossy(&chunk));
                }
                // A refused message (a rate limit, say) never streams: say so instead of waiting.
                done = &mut post, if answered.is_none() => answered = Some(done??),
            }
        };
        let answered = match answered {
            Some(answered) => answered,
            None => post.await??,
        };
        conversation = answered["conversation_id"].as_str().map(str::to_string);
        // The rest of this reply's frames are read before the next message.
        while !buffer.contains("chat:message") {
            let chunk = frames
                .next()
                .await
                .ok_or_else(|| anyhow::anyhow!("the event stream ended"))??;
            buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
        buffer.clear();
        timings.push((message, posted, first));
    }
    Ok(timings)
}

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name("people")
        .enable_all()
        .build()?;
    runtime.block_on(async {
        mainloop_runtime::tls::install();
        let people = env("BENCH_PEOPLE", 50) as usize;
        let rounds = env("BENCH_ROUNDS", 10) as usize;
        let think = Duration::from_millis(env("BENCH_THINK_MS", 500));
        let clock = Clock::default();
        let model = axum::Router::new()
            .route("/v1/messages", axum::routing::post(messages))
            .with_state(clock.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let model_url = format!("http://{}", listener.local_addr()?);
        // As a streaming API does, each write goes out when it is made (without it, the rest of
        // a reply waits ~40 ms for the delayed ACK of its first words, and that lines the
        // people up into bursts no real crowd makes).
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        tokio::spawn(async move { axum::serve(listener, model).await });

        let infra = Infra::start()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let shutdown = CancellationToken::new();
        // mainloop runs on a runtime of its own, as it runs in a process of its own; the people
        // and the model (a browser, a provider) are elsewhere, so their tasks never queue behind
        // mainloop's in one runtime and get counted as time mainloop added.
        let services = tokio::runtime::Builder::new_multi_thread()
            .thread_name("mainloop")
            .worker_threads(2)
            .enable_all()
            .build()?;
        services.spawn(mainloop_inbox::run(
            mainloop_inbox::Config::new(infra.common()),
            shutdown.clone(),
        ));
        services.spawn(mainloop_conversation::run(
            mainloop_conversation::Config {
                common: infra.common(),
                llm: mainloop_conversation::LlmSettings::anthropic(&model_url, Some(Secret::new("sk")), "m"),
            },
            shutdown.clone(),
        ));
        services.spawn(mainloop_gateway::run(
            mainloop_gateway::Config {
                common: infra.common(),
                http: HttpConfig::test_mode(&format!("127.0.0.1:{port}")),
            },
            shutdown.clone(),
        ));
        infra.ready(3).await?;
        let base = format!("http://127.0.0.1:{port}");

        // Warm up: a message from as many other people at once, so the pools' connections (to
        // Postgres, NATS and the model) and their prepared statements exist, as in a service
        // that has been running; the people measured still each start a new conversation.
        let warming: Vec<_> = (0..people)
            .map(|n| tokio::spawn(person(reqwest::Client::new(), base.clone(), format!("warm{n}"), 1, think)))
            .collect();
        for warm in warming {
            warm.await??;
        }
        // Each person's browser, made before the clock starts: making an HTTP client (its TLS
        // roots) is the browser's cost, not mainloop's, and fifty at once would be counted.
        let browsers: Vec<reqwest::Client> = (0..people).map(|_| reqwest::Client::new()).collect();
        let started = Instant::now();
        let steal = Steal::start();
        let runs: Vec<_> = browsers
            .into_iter()
            .enumerate()
            .map(|(n, http)| tokio::spawn(person(http, base.clone(), format!("p{n}"), rounds, think)))
            .collect();
        let mut timings = Vec::new();
        for run in runs {
            timings.extend(run.await??);
        }
        let elapsed = started.elapsed();
        let stolen = steal.share();
        let seen = clock.seen.lock().map(|s| s.clone()).unwrap_or_default();
        let (mut total, mut model, mut added) = (Vec::new(), Vec::new(), Vec::new());
        let (mut before, mut after) = (Vec::new(), Vec::new());
        let (mut firsts, mut laters) = (Vec::new(), Vec::new());
        for (message, posted, first) in timings {
            let Some((arrived, sent)) = seen.get(&message) else {
                continue;
            };
            let ms = |d: Duration| d.as_secs_f64() * 1000.0;
            let own = sent.saturating_duration_since(*arrived);
            let whole = first.saturating_duration_since(posted);
            total.push(ms(whole));
            model.push(ms(own));
            added.push(ms(whole.saturating_sub(own)));
            // A person's first message starts their conversation; the rest continue it.
            if message.ends_with(" message 0") {
                firsts.push(ms(whole.saturating_sub(own)));
            } else {
                laters.push(ms(whole.saturating_sub(own)));
            }
            before.push(ms(arrived.saturating_duration_since(posted)));
            after.push(ms(first.saturating_duration_since(*sent)));
        }
        for list in [&mut total, &mut model, &mut added, &mut before, &mut after, &mut firsts, &mut laters] {
            list.sort_by(f64::total_cmp);
        }
        println!(
            "first token in the browser, {people} people x {rounds} messages, {} ms on average between a reply and the next message ({} measured, after {people} others' first messages) in {:.1} s",
            think.as_millis(),
            added.len(),
            elapsed.as_secs_f64()
        );
        for (name, list) in [
            ("message -> first token at the person", &total),
            ("the model's own first token", &model),
            ("added by mainloop", &added),
            ("  of which: message -> model asked", &before),
            ("  of which: first token -> person", &after),
            ("  a person's first message", &firsts),
            ("  their later messages", &laters),
        ] {
            println!(
                "  {name:<38} p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms",
                percentile(list, 0.5),
                percentile(list, 0.99),
                percentile(list, 1.0)
            );
        }
        println!(
            "  ratio added/model at p50: {:.2} (goal: added <= 5 ms at p99)",
            percentile(&added, 0.5) / percentile(&model, 0.5).max(0.001)
        );
        if let Some(stolen) = stolen {
            println!("  CPU time the host took from this machine meanwhile (steal): {:.1}%", stolen * 100.0);
        }
        shutdown.cancel();
        services.shutdown_background();
        anyhow::Ok(())
    })
}
