//! One journey, one trace. The six services each run in a process of their own (`mainloop run
//! <service>`, the production shape) and export their spans over OTLP/HTTP to a receiver here.
//! A person opens their feed and confirms a task in chat; the task plans (an agent job), opens its
//! issue on GitHub and asks the person to review the plan, which reaches their feed. Every
//! service's spans for it carry the trace the gateway's `POST /chat` began: gateway →
//! conversation → scheduler → worker-supervisor (and the agent's `TRACEPARENT`) → github-watcher
//! → inbox → the gateway's SSE. Each process's own `/metrics` counts its part.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use common::{Outside, ask_and_confirm, sample, until};
use futures_util::StreamExt;
use mainloop_testkit::Infra;
use prost::Message;

/// The parts of OTLP's `ExportTraceServiceRequest` this test reads (opentelemetry-proto's
/// field numbers).
#[derive(Clone, PartialEq, Message)]
struct Export {
    #[prost(message, repeated, tag = "1")]
    resource_spans: Vec<ResourceSpans>,
}

#[derive(Clone, PartialEq, Message)]
struct ResourceSpans {
    #[prost(message, optional, tag = "1")]
    resource: Option<Resource>,
    #[prost(message, repeated, tag = "2")]
    scope_spans: Vec<ScopeSpans>,
}

#[derive(Clone, PartialEq, Message)]
struct Resource {
    #[prost(message, repeated, tag = "1")]
    attributes: Vec<KeyValue>,
}

#[derive(Clone, PartialEq, Message)]
struct KeyValue {
    #[prost(string, tag = "1")]
    key: String,
    #[prost(message, optional, tag = "2")]
    value: Option<AnyValue>,
}

#[derive(Clone, PartialEq, Message)]
struct AnyValue {
    #[prost(string, tag = "1")]
    string_value: String,
}

#[derive(Clone, PartialEq, Message)]
struct ScopeSpans {
    #[prost(message, repeated, tag = "2")]
    spans: Vec<Span>,
}

#[derive(Clone, PartialEq, Message)]
struct Span {
    #[prost(bytes = "vec", tag = "1")]
    trace_id: Vec<u8>,
    #[prost(string, tag = "5")]
    name: String,
}

/// Every span received: (service, trace id, span name).
type Received = Arc<Mutex<Vec<(String, Vec<u8>, String)>>>;

async fn receive(State(received): State<Received>, body: Bytes) -> &'static str {
    let Ok(export) = Export::decode(body) else {
        return "";
    };
    let Ok(mut received) = received.lock() else {
        return "";
    };
    for resource in export.resource_spans {
        let service = resource
            .resource
            .iter()
            .flat_map(|r| r.attributes.iter())
            .find(|a| a.key == "service.name")
            .and_then(|a| a.value.as_ref())
            .map(|v| v.string_value.clone())
            .unwrap_or_default();
        for span in resource.scope_spans.into_iter().flat_map(|s| s.spans) {
            received.push((service.clone(), span.trace_id, span.name));
        }
    }
    ""
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// `mainloop run <name>` with the shared settings, the service's own, and its health port.
fn service(
    name: &str,
    shared: &[(&str, String)],
    own: &[(&str, String)],
    logs: &std::path::Path,
) -> anyhow::Result<(Child, u16)> {
    let health = free_port()?;
    let child = Command::new(env!("CARGO_BIN_EXE_mainloop"))
        .args(["run", name])
        .envs(shared.iter().map(|(k, v)| (*k, v.as_str())))
        .envs(own.iter().map(|(k, v)| (*k, v.as_str())))
        .env("HEALTH_ADDR", format!("127.0.0.1:{health}"))
        .env_remove("CLAUDE_CODE_OAUTH_TOKEN")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(logs.join(format!("{name}.log")))?)
        .spawn()?;
    Ok((child, health))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journey_is_one_trace_across_all_six_services() -> anyhow::Result<()> {
    let outside = Outside::start("mainloop-trace-", None).await?;
    let received: Received = Arc::default();
    let receiver = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let otlp = format!("http://{}", receiver.local_addr()?);
    let app = axum::Router::new()
        .route("/v1/traces", axum::routing::post(receive))
        .with_state(received.clone());
    tokio::spawn(async move { axum::serve(receiver, app).await });

    let infra = Infra::start()?;
    let common = infra.common();
    let exe = env!("CARGO_BIN_EXE_mainloop").to_string();
    let shared = [
        ("NATS_URL", common.nats_url.clone()),
        ("DATABASE_URL", common.database_url.expose().to_string()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp),
        ("RUST_LOG", "info,async_nats=warn".to_string()),
        ("GITHUB_TOKEN", "gh".to_string()),
        ("ANTHROPIC_BASE_URL", outside.llm_url.clone()),
        ("ANTHROPIC_API_KEY", "sk".to_string()),
    ];
    let port = free_port()?;
    let logs = outside.dir.path();
    let work = logs.join("work");
    let services = [
        (
            "gateway",
            vec![
                ("HTTP_ADDR", format!("127.0.0.1:{port}")),
                ("AUTH_MODE", "test".into()),
            ],
        ),
        ("conversation", vec![]),
        ("scheduler", vec![]),
        (
            "worker-supervisor",
            vec![
                ("AGENT_PROGRAM", exe.clone()),
                ("AGENT_ARGS_PREFIX", "fake-claude".into()),
                ("AGENT_MODEL", "sonnet".into()),
                ("AGENT_USER", String::new()),
                ("WORK_DIR", work.display().to_string()),
            ],
        ),
        (
            "github-watcher",
            vec![
                ("GITHUB_API_URL", outside.github_url.clone()),
                ("GITHUB_POLL_INTERVAL_MS", "150".into()),
                ("GITHUB_POLL_MAX_INTERVAL_MS", "600".into()),
            ],
        ),
        ("inbox", vec![]),
    ];
    let mut running = Vec::new();
    for (name, own) in &services {
        running.push((*name, service(name, &shared, own, logs)?));
    }
    let http = outside.http.clone();
    for (name, (_, health)) in &running {
        until(
            &http,
            &format!("http://127.0.0.1:{health}/readyz"),
            &format!("{name} ready"),
            |r| r["status"] == "healthy",
        )
        .await?;
    }
    let base = format!("http://127.0.0.1:{port}");

    // The person's feed, open until the plan review reaches it.
    let feed = http
        .get(format!("{base}/events?user_id_query=alice"))
        .send()
        .await?;
    let review_reached = tokio::spawn(async move {
        let mut frames = feed.bytes_stream();
        let mut seen = String::new();
        while let Ok(Some(Ok(chunk))) = tokio::time::timeout(Duration::from_secs(60), frames.next()).await {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen.contains("waiting_plan_review") {
                return true;
            }
        }
        false
    });
    let confirmed = ask_and_confirm(
        &http,
        &base,
        "add a quick start section to the README of https://github.com/acme/widgets",
    )
    .await?;
    assert!(
        confirmed["message"]["content"]
            .as_str()
            .is_some_and(|c| c.contains("spawned")),
        "{confirmed}"
    );
    until(&http, &format!("{base}/tasks"), "the plan review", |t| {
        t[0]["status"] == "waiting_plan_review"
    })
    .await?;
    assert!(review_reached.await?, "the plan review never reached the feed");

    // Each process counts its own work on its own /metrics.
    for (name, (_, health)) in &running {
        let page = http
            .get(format!("http://127.0.0.1:{health}/metrics"))
            .send()
            .await?
            .text()
            .await?;
        let moved = |metric: &str, labels: &[&str]| sample(&page, metric, labels).is_some_and(|v| v > 0.0);
        let counted = match *name {
            "gateway" => moved(
                "mainloop_http_requests_total",
                &["route=\"/chat\"", "status=\"200\""],
            ),
            "conversation" => moved(
                "mainloop_commands_handled_total",
                &["subject=\"cmd.conversation.post-message\"", "outcome=\"done\""],
            ),
            "scheduler" => {
                moved(
                    "mainloop_commands_handled_total",
                    &["subject=\"cmd.scheduler.spawn-task\""],
                ) && moved("mainloop_events_handled_total", &["consumer=\"scheduler-tasks\""])
            }
            "worker-supervisor" => {
                moved("mainloop_jobs_finished_total", &["state=\"succeeded\""])
                    && moved("mainloop_agent_tokens_total", &["kind=\"output\""])
            }
            "github-watcher" => {
                moved("mainloop_github_requests_total", &[])
                    && moved("mainloop_github_rate_limit_remaining", &[])
            }
            _ => moved("mainloop_events_handled_total", &["consumer=\"inbox-tasks\""]),
        };
        assert!(counted, "{name}'s metrics did not move:\n{page}");
    }

    // Stopped, each process sends the spans it still holds.
    for (_, (child, _)) in &running {
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
    }
    for (name, (mut child, _)) in running {
        let status = tokio::task::spawn_blocking(move || child.wait()).await??;
        assert!(status.success(), "{name} exited with {status}");
    }

    let received = received.lock().map(|r| r.clone()).unwrap_or_default();
    // The services and span names of each trace; the journey's is the one all six share.
    let mut by_trace: BTreeMap<Vec<u8>, BTreeSet<String>> = BTreeMap::new();
    let mut names: BTreeMap<Vec<u8>, BTreeSet<String>> = BTreeMap::new();
    for (service, trace, name) in &received {
        by_trace.entry(trace.clone()).or_default().insert(service.clone());
        names
            .entry(trace.clone())
            .or_default()
            .insert(format!("{service}: {name}"));
    }
    let all: BTreeSet<String> = [
        "mainloop-gateway",
        "mainloop-conversation",
        "mainloop-scheduler",
        "mainloop-worker-supervisor",
        "mainloop-github-watcher",
        "mainloop-inbox",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    let whole = by_trace.iter().find(|(_, services)| **services == all);
    let Some((trace, _)) = whole else {
        let widest = by_trace.values().max_by_key(|s| s.len());
        anyhow::bail!(
            "no trace spans all six services; the widest: {widest:?}\n{} spans in all",
            received.len()
        );
    };
    let spans = &names[trace];
    for expected in [
        "mainloop-gateway: http.request",
        "mainloop-conversation: bus.command",
        "mainloop-worker-supervisor: job.run",
        "mainloop-inbox: inbox.feed",
        "mainloop-gateway: sse.send",
    ] {
        assert!(
            spans.contains(expected),
            "{expected} is not in the trace: {spans:?}"
        );
    }
    Ok(())
}
