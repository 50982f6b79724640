//! The gateway's HTTP API and SSE feed over real scheduler and inbox services on real NATS and
//! Postgres, in the original client's contract.

use std::time::Duration;

use futures_util::StreamExt;
use mainloop_bus::{Bus, Expect, request};
use mainloop_events::v1::{
    JobMode, JobSucceeded, PlanOutcome, Question, QuestionOption, RepoRef, SpawnTask, TaskAccepted,
    job_succeeded,
};
use mainloop_events::{Envelope, Payload, subjects};
use mainloop_gateway::HttpConfig;
use mainloop_testkit::Infra;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const WEBHOOK_SECRET: &str = "It's a Secret to Everybody";

struct World {
    _infra: Infra,
    bus: Bus,
    base: String,
    http: reqwest::Client,
    shutdown: CancellationToken,
}

async fn start() -> anyhow::Result<World> {
    mainloop_runtime::tls::install();
    let infra = Infra::start()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let http = HttpConfig {
        github_webhook_secret: Some(mainloop_runtime::Secret::new(WEBHOOK_SECRET)),
        // A quick heartbeat: the streams below meet it between events and must pass it by.
        sse_heartbeat_secs: 1,
        ..HttpConfig::test_mode(&format!("127.0.0.1:{port}"))
    };
    let shutdown = CancellationToken::new();
    tokio::spawn(mainloop_scheduler::run(
        mainloop_scheduler::Config {
            common: infra.common(),
            // The original client's suites seed tasks in test mode.
            scheduling: mainloop_scheduler::SchedulingSettings {
                accept_test_seeds: true,
                ..Default::default()
            },
        },
        shutdown.clone(),
    ));
    tokio::spawn(mainloop_inbox::run(
        mainloop_inbox::Config::new(infra.common()),
        shutdown.clone(),
    ));
    tokio::spawn(mainloop_gateway::run(
        mainloop_gateway::Config {
            common: infra.common(),
            http,
        },
        shutdown.clone(),
    ));
    infra.ready(3).await?;
    let bus = infra.bus().await?;
    Ok(World {
        _infra: infra,
        bus,
        base: format!("http://127.0.0.1:{port}"),
        http: reqwest::Client::new(),
        shutdown,
    })
}

impl World {
    async fn get(&self, path: &str, user: &str) -> anyhow::Result<(StatusCode, Value)> {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .header("x-user-id", user)
            .send()
            .await?;
        Ok((response.status(), response.json().await.unwrap_or(Value::Null)))
    }

    async fn post(&self, path: &str, user: &str, body: Option<Value>) -> anyhow::Result<(StatusCode, Value)> {
        let mut request = self
            .http
            .post(format!("{}{path}", self.base))
            .header("x-user-id", user);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        Ok((response.status(), response.json().await.unwrap_or(Value::Null)))
    }

    async fn until(&self, path: &str, check: impl Fn(&Value) -> bool) -> anyhow::Result<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let (status, body) = self.get(path, "alice").await?;
            if status == StatusCode::OK && check(&body) {
                return Ok(body);
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "{path} never matched; last {status}: {body}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

async fn spawn_and_plan(world: &World) -> anyhow::Result<()> {
    let plan = PlanOutcome {
        plan_text: "1. Write it".into(),
        ..Default::default()
    };
    spawn_and_report(
        world,
        "alice",
        "t1",
        "add a quick start section to the README",
        plan,
    )
    .await
}

/// A real task of `user`, spawned, whose planning job reports `outcome`.
async fn spawn_and_report(
    world: &World,
    user: &str,
    task: &str,
    description: &str,
    outcome: PlanOutcome,
) -> anyhow::Result<()> {
    let spawn = SpawnTask {
        user_id: user.into(),
        task_id: task.into(),
        repo: Some(RepoRef {
            owner: "acme".into(),
            name: "widgets".into(),
            html_url: "https://github.com/acme/widgets".into(),
        }),
        description: description.into(),
        ..Default::default()
    };
    let _: TaskAccepted = request::send(
        &world.bus,
        "cmd.scheduler.spawn-task",
        &spawn,
        Duration::from_secs(5),
    )
    .await?;
    let events = world
        .bus
        .read_subject(subjects::TASKS, &subjects::task(user, task)?, 0)
        .await?;
    let Some(Payload::JobRequested(job)) = events.last().and_then(|s| s.event.payload.clone()) else {
        anyhow::bail!("no job")
    };
    let result = Envelope::new(
        user,
        task,
        Payload::JobSucceeded(JobSucceeded {
            job_id: job.job_id,
            attempt: job.attempt,
            mode: JobMode::Plan as i32,
            outcome: Some(job_succeeded::Outcome::Plan(outcome)),
            ..Default::default()
        }),
    );
    world
        .bus
        .publish(&subjects::job(user, task)?, &result, Expect::Any)
        .await?;
    Ok(())
}

/// Reads SSE frames until one with `event: name` arrives; returns (id, data).
async fn next_event(
    frames: &mut (impl futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    buffer: &mut String,
    name: &str,
) -> anyhow::Result<(Option<u64>, Value)> {
    loop {
        while let Some(end) = buffer.find("\n\n") {
            let frame: String = buffer.drain(..end + 2).collect();
            let field = |key: &str| frame.lines().find_map(|l| l.strip_prefix(key)).map(str::trim);
            if field("event:") == Some(name) {
                let data = serde_json::from_str(field("data:").unwrap_or("null"))?;
                return Ok((field("id:").and_then(|i| i.parse().ok()), data));
            }
        }
        let chunk = tokio::time::timeout(Duration::from_secs(10), frames.next())
            .await?
            .ok_or_else(|| anyhow::anyhow!("stream ended"))??;
        buffer.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test]
async fn the_original_contract_for_tasks_queue_and_projects() -> anyhow::Result<()> {
    let world = start().await?;
    spawn_and_plan(&world).await?;

    let tasks = world
        .until("/tasks", |t| t[0]["status"] == "waiting_plan_review")
        .await?;
    assert_eq!(tasks[0]["id"], "t1");
    assert_eq!(tasks[0]["plan_text"], "1. Write it");
    let (status, others) = world.get("/tasks", "bob").await?;
    assert_eq!(
        (status, others),
        (StatusCode::OK, json!([])),
        "bob sees none of alice's tasks"
    );
    let (status, body) = world.get("/tasks/t1", "bob").await?;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(body["detail"].is_string());

    let (status, projects) = world.get("/projects", "alice").await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(projects[0]["full_name"], "acme/widgets");
    let detail = world
        .get(
            &format!(
                "/projects/{}/detail",
                projects[0]["id"].as_str().unwrap_or_default()
            ),
            "alice",
        )
        .await?
        .1;
    assert_eq!(detail["tasks"][0]["id"], "t1");

    let queue = world
        .until("/queue?status=pending", |q| {
            q.as_array().is_some_and(|a| a.len() == 1)
        })
        .await?;
    assert_eq!(queue[0]["item_type"], "plan_review");
    assert_eq!(
        world.get("/queue/unread/count", "alice").await?.1,
        json!({"count": 1})
    );

    // Every field of the original's objects is there (null when empty, never left out).
    let task = world.get("/tasks/t1", "alice").await?.1;
    for (what, row, fields) in [
        ("task", &task, TASK_FIELDS),
        ("queue item", &queue[0], QUEUE_ITEM_FIELDS),
        ("project", &projects[0], PROJECT_FIELDS),
        (
            "project detail",
            &detail,
            &["project", "open_prs", "recent_commits", "tasks"][..],
        ),
    ] {
        assert_eq!(missing(row, fields), Vec::<&str>::new(), "{what}: {row}");
    }

    // Wrong state, bad input, unknown ids: 4xx with a reason, nothing changes.
    let (status, body) = world
        .post("/tasks/t1/start-implementation", "alice", None)
        .await?;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, body) = world
        .post(
            "/tasks/t1/answer-questions",
            "alice",
            Some(json!({"answers": {"q1": 5}})),
        )
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let malformed = world
        .http
        .post(format!("{}/queue/x/respond", world.base))
        .header("x-user-id", "alice")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await?;
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
    let huge = world
        .http
        .post(format!("{}/queue/x/respond", world.base))
        .header("x-user-id", "alice")
        .json(&json!({"response": "x".repeat(100_000)}))
        .send()
        .await?;
    assert_eq!(huge.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let (status, _) = world.post("/tasks/no.such/cancel", "alice", None).await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        world.get("/tasks/t1", "alice").await?.1["status"],
        "waiting_plan_review"
    );

    // The browser's approve button.
    let (status, body) = world
        .post(
            "/tasks/t1/approve-plan?action=approve&plan_revision=1",
            "alice",
            None,
        )
        .await?;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"status": "ok", "action": "approve"}))
    );
    world
        .until("/tasks/t1", |t| t["status"] == "implementing")
        .await?;
    let queue = world.get("/queue", "alice").await?.1;
    let types: Vec<&str> = queue
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["item_type"].as_str())
        .collect();
    assert_eq!(types, ["notification"], "only the approval is told: {queue}");
    assert_eq!(
        queue[0]["content"],
        "Revision 1 of the plan was approved by you. Implementing it now."
    );
    let (status, _) = world
        .post("/tasks/t1/approve-plan?action=approve", "alice", None)
        .await?;
    assert_eq!(status, StatusCode::CONFLICT, "approving twice is refused");
    world.shutdown.cancel();
    Ok(())
}

#[tokio::test]
async fn sse_delivers_changes_live_and_replays_after_reconnect() -> anyhow::Result<()> {
    let world = start().await?;
    // Opening the feed says alice is present, so her first message's needs are read ahead.
    let mut present = world.bus.client().subscribe("live.present.*").await?;
    world.bus.client().flush().await?;
    let response = world
        .http
        .get(format!("{}/events?user_id_query=alice", world.base))
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut frames = response.bytes_stream();
    let mut buffer = String::new();
    let (_, connected) = next_event(&mut frames, &mut buffer, "connected").await?;
    let said = tokio::time::timeout(Duration::from_secs(5), present.next())
        .await?
        .ok_or_else(|| anyhow::anyhow!("presence ended"))?;
    assert_eq!(said.subject.as_str(), "live.present.alice");
    assert_eq!(connected["user_id"], "alice");
    let iso = |v: &Value| {
        v["timestamp"]
            .as_str()
            .is_some_and(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok() && t.ends_with('Z'))
    };
    assert!(iso(&connected), "ISO 8601: {connected}");
    // Quiet for a second: the named heartbeat, with its timestamp, as the original client expects.
    let (id, heartbeat) = next_event(&mut frames, &mut buffer, "heartbeat").await?;
    assert!(iso(&heartbeat) && id.is_none(), "{heartbeat}");

    spawn_and_plan(&world).await?;
    let (first_id, first) = next_event(&mut frames, &mut buffer, "task:updated").await?;
    assert_eq!(
        (first["task_id"].as_str(), first["status"].as_str()),
        (Some("t1"), Some("pending"))
    );
    let mut seen = vec![first["status"].as_str().unwrap_or_default().to_string()];
    while seen.last().map(String::as_str) != Some("waiting_plan_review") {
        seen.push(
            next_event(&mut frames, &mut buffer, "task:updated").await?.1["status"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
    }
    assert_eq!(seen, ["pending", "planning", "waiting_plan_review"]);
    let (_, item) = next_event(&mut frames, &mut buffer, "inbox:updated").await?;
    assert_eq!(item["unread_count"], 1);
    drop(frames);

    // Reconnect after the first event: everything after it, in order, once.
    let replay = world
        .http
        .get(format!("{}/events?user_id_query=alice", world.base))
        .header("last-event-id", first_id.unwrap_or_default().to_string())
        .send()
        .await?;
    let mut frames = replay.bytes_stream();
    let mut buffer = String::new();
    let (_, again) = next_event(&mut frames, &mut buffer, "task:updated").await?;
    assert_eq!(
        again["status"], "planning",
        "replay starts right after the last event seen"
    );

    let bad = world
        .http
        .get(format!("{}/events?user_id_query=alice", world.base))
        .header("last-event-id", "abc")
        .send()
        .await?;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    world.shutdown.cancel();
    Ok(())
}

#[tokio::test]
async fn browsers_on_other_local_ports_pass_cors_and_others_do_not() -> anyhow::Result<()> {
    let world = start().await?;
    let preflight = world
        .http
        .request(reqwest::Method::OPTIONS, format!("{}/tasks", world.base))
        .header("origin", "http://localhost:5173")
        .header("access-control-request-method", "POST")
        .send()
        .await?;
    assert_eq!(preflight.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "http://localhost:5173"
    );
    let foreign = world
        .http
        .get(format!("{}/tasks", world.base))
        .header("origin", "https://evil.example")
        .send()
        .await?;
    assert!(foreign.headers().get("access-control-allow-origin").is_none());
    world.shutdown.cancel();
    Ok(())
}

/// A page elsewhere cannot drive the API through the person's browser, a rebinding page cannot
/// read it, and bad bytes get a 400; the app itself keeps working.
#[tokio::test]
async fn browsers_cannot_be_turned_against_the_person() -> anyhow::Result<()> {
    let world = start().await?;
    spawn_and_plan(&world).await?;
    world
        .until("/tasks/t1", |t| t["status"] == "waiting_plan_review")
        .await?;
    let url = format!("{}/tasks/t1/cancel", world.base);

    // A form on another site (what a browser sends for it).
    let form = world
        .http
        .post(&url)
        .header("x-user-id", "alice")
        .header("origin", "https://attacker.test")
        .header("sec-fetch-site", "cross-site")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("confirm=yes")
        .send()
        .await?;
    assert_eq!(form.status(), StatusCode::FORBIDDEN);
    assert!(
        form.json::<Value>().await?["detail"]
            .as_str()
            .is_some_and(|d| d.contains("attacker.test"))
    );
    // A fetch from another origin, JSON or not, and a cross-site request without Origin.
    for (origin, site, kind) in [
        (
            Some("https://attacker.test"),
            Some("cross-site"),
            Some("application/json"),
        ),
        (None, Some("cross-site"), None),
        (None, None, Some("text/plain")),
    ] {
        let mut request = world.http.post(&url).header("x-user-id", "alice");
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        if let Some(site) = site {
            request = request.header("sec-fetch-site", site);
        }
        if let Some(kind) = kind {
            request = request.header("content-type", kind).body("{}");
        }
        let answer = request.send().await?;
        assert!(
            answer.status().is_client_error(),
            "{origin:?} {site:?} {kind:?}: {}",
            answer.status()
        );
    }
    // DNS rebinding: the right address under a foreign name.
    let rebound = world
        .http
        .get(format!("{}/tasks", world.base))
        .header("host", "attacker.test:8080")
        .header("x-user-id", "alice")
        .send()
        .await?;
    assert_eq!(rebound.status(), StatusCode::MISDIRECTED_REQUEST);
    assert_eq!(
        world.get("/tasks/t1", "alice").await?.1["status"],
        "waiting_plan_review",
        "nothing changed"
    );

    // Bad bytes: a 400 with the reason, nothing stored.
    let (status, body) = world
        .post("/chat", "alice", Some(json!({"message": "hi\u{0}there"})))
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["detail"].as_str().is_some_and(|d| d.contains("NUL")));
    let (status, _) = world.get("/tasks?status=planning%00", "alice").await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let non_ascii = world
        .http
        .get(format!("{}/tasks", world.base))
        .header(
            "x-user-id",
            reqwest::header::HeaderValue::from_bytes(b"al\xe9ce")?,
        )
        .send()
        .await?;
    assert_eq!(
        non_ascii.status(),
        StatusCode::BAD_REQUEST,
        "never the shared default user"
    );

    // Refusals from the framework itself keep the API's shape too.
    let wrong_method = world
        .http
        .delete(format!("{}/tasks", world.base))
        .header("x-user-id", "alice")
        .send()
        .await?;
    assert_eq!(wrong_method.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert!(wrong_method.json::<Value>().await?["detail"].is_string());

    // The app itself: same origin, same-origin fetch metadata.
    let own = world
        .http
        .post(&url)
        .header("x-user-id", "alice")
        .header("origin", world.base.as_str())
        .header("sec-fetch-site", "same-origin")
        .send()
        .await?;
    assert_eq!(own.status(), StatusCode::OK);
    world.until("/tasks/t1", |t| t["status"] == "cancelled").await?;
    world.shutdown.cancel();
    Ok(())
}

/// 2,000 idle sockets do not stop the gateway from answering, and a socket that never sends a
/// request is closed after the header timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_cannot_starve_the_gateway() -> anyhow::Result<()> {
    use tokio::io::AsyncReadExt;
    let world = start().await?;
    let addr = world.base.trim_start_matches("http://").to_string();
    let mut idle = Vec::with_capacity(2000);
    let mut refused = Vec::new();
    for _ in 0..2000 {
        // On a loaded machine the kernel's accept queue may turn a few away; that is the
        // client's side, not the gateway's answer we are measuring.
        match tokio::net::TcpStream::connect(&addr).await {
            Ok(stream) => idle.push(stream),
            Err(err) => refused.push(err.to_string()),
        }
    }
    assert!(
        idle.len() >= 1900,
        "only {} idle sockets opened: {:?}",
        idle.len(),
        &refused[..refused.len().min(3)]
    );
    let started = std::time::Instant::now();
    let (status, _) = world.get("/tasks", "alice").await?;
    assert_eq!(status, StatusCode::OK);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "answered after {:?}",
        started.elapsed()
    );

    let mut silent = idle.pop().ok_or_else(|| anyhow::anyhow!("no socket"))?;
    let mut byte = [0u8; 1];
    let closed = tokio::time::timeout(Duration::from_secs(15), silent.read(&mut byte)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "a silent socket is closed after the header timeout: {closed:?}"
    );
    world.shutdown.cancel();
    Ok(())
}

/// A client that announces a body and then stops sending gets 408 with `{"detail"}` once the
/// body timeout passes, instead of holding a handler open.
#[tokio::test]
async fn a_body_that_stops_halfway_gets_408() -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let world = start().await?;
    let addr = world.base.trim_start_matches("http://").to_string();
    let mut socket = tokio::net::TcpStream::connect(&addr).await?;
    let head = format!(
        "POST /chat HTTP/1.1\r\nHost: {addr}\r\nX-User-ID: erin\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"message\": \"hel"
    );
    socket.write_all(head.as_bytes()).await?;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(
        mainloop_gateway::BODY_TIMEOUT + Duration::from_secs(10),
        socket.read_to_end(&mut answer),
    )
    .await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(read.is_ok(), "no answer to a stalled body: {answer:?}");
    assert!(
        answer.starts_with("HTTP/1.1 408"),
        "a stalled body is 408: {answer:?}"
    );
    assert!(
        answer.contains(r#"{"detail":"the request body did not arrive"#),
        "{answer}"
    );
    assert_eq!(world.get("/tasks", "erin").await?.0, StatusCode::OK);
    world.shutdown.cancel();
    Ok(())
}

/// A person who floods the chat gets 429 with Retry-After once their bucket is empty; another
/// person is not affected, and reads are never limited.
#[tokio::test]
async fn a_flood_of_chat_turns_meets_a_per_person_limit() -> anyhow::Result<()> {
    let world = start().await?;
    let mut statuses = Vec::new();
    let mut last = None;
    for _ in 0..12 {
        let answer = world
            .http
            .post(format!("{}/chat", world.base))
            .header("x-user-id", "carol")
            .json(&json!({"message": "hello"}))
            .send()
            .await?;
        statuses.push(answer.status());
        last = Some(answer);
    }
    let limited = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!(
        limited, 2,
        "ten go through, then the bucket is empty: {statuses:?}"
    );
    let last = last.ok_or_else(|| anyhow::anyhow!("no answer"))?;
    assert!(last.headers().contains_key("retry-after"));
    assert!(
        last.json::<Value>().await?["detail"]
            .as_str()
            .is_some_and(|d| d.contains("too many chat"))
    );
    let other = world
        .post("/chat", "dave", Some(json!({"message": "hello"})))
        .await?
        .0;
    assert_ne!(
        other,
        StatusCode::TOO_MANY_REQUESTS,
        "another person has their own bucket"
    );
    assert_eq!(
        world.get("/tasks", "carol").await?.0,
        StatusCode::OK,
        "reads are not limited"
    );
    world.shutdown.cancel();
    Ok(())
}

/// GitHub's webhook deliveries: a missing or wrong signature is 401 and stores nothing; a signed
/// one is 202 and goes to WORK once, however often GitHub sends the same delivery.
#[tokio::test]
async fn webhook_deliveries_are_verified_and_stored_once() -> anyhow::Result<()> {
    use hmac::Mac;
    let world = start().await?;
    let body = r#"{"action":"closed","number":2,"repository":{"full_name":"acme/widgets"}}"#;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(WEBHOOK_SECRET.as_bytes())?;
    mac.update(body.as_bytes());
    let signed: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let deliver = |signature: Option<String>, delivery: &'static str| {
        let mut request = world
            .http
            .post(format!("{}/webhooks/github", world.base))
            .header("content-type", "application/json")
            .header("x-github-event", "pull_request")
            .header("x-github-delivery", delivery)
            .body(body);
        if let Some(signature) = signature {
            request = request.header("x-hub-signature-256", signature);
        }
        request.send()
    };
    let stored = || async {
        anyhow::Ok(
            world
                .bus
                .read_subject(subjects::WORK, subjects::GITHUB_WEBHOOKS, 0)
                .await?
                .len(),
        )
    };
    let missing = deliver(None, "d-1").await?;
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    assert!(missing.json::<Value>().await?["detail"].is_string());
    let forged = "sha256=".to_string() + &"0".repeat(64);
    assert_eq!(
        deliver(Some(forged), "d-1").await?.status(),
        StatusCode::UNAUTHORIZED
    );
    let mut tampered = signed.clone();
    let last = tampered.pop();
    tampered.push(if last == Some('0') { '1' } else { '0' });
    let answer = deliver(Some(format!("sha256={tampered}")), "d-1").await?;
    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED, "one digit off");
    assert_eq!(stored().await?, 0, "nothing stored for a bad signature");

    for _ in 0..2 {
        let accepted = deliver(Some(format!("sha256={signed}")), "d-1").await?;
        assert_eq!(accepted.status(), StatusCode::ACCEPTED);
    }
    assert_eq!(stored().await?, 1, "the same delivery is stored once");
    let stored_event = world
        .bus
        .read_subject(subjects::WORK, subjects::GITHUB_WEBHOOKS, 0)
        .await?;
    let Some(Payload::GithubWebhookReceived(received)) = &stored_event[0].event.payload else {
        anyhow::bail!("{:?}", stored_event[0])
    };
    assert_eq!(
        (
            received.delivery_id.as_str(),
            received.event.as_str(),
            received.payload_json.as_str()
        ),
        ("d-1", "pull_request", body)
    );
    world.shutdown.cancel();
    Ok(())
}

/// The row of `path` (as `user`) for which `pick` holds, once it shows `status`.
async fn row_as(
    world: &World,
    path: &str,
    user: &str,
    pick: impl Fn(&Value) -> bool,
) -> anyhow::Result<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = world.get(path, user).await?;
        if let Some(row) = body.as_array().and_then(|rows| rows.iter().find(|r| pick(r))) {
            return Ok(row.clone());
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "{path} as {user}: never; last {body}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A row without what differs between any two tasks or items: ids, owners, times.
fn shape(row: &Value) -> Value {
    let mut row = row.clone();
    if let Some(fields) = row.as_object_mut() {
        for key in [
            "id",
            "user_id",
            "task_id",
            "project_id",
            "created_at",
            "updated_at",
            "started_at",
        ] {
            fields.remove(key);
        }
    }
    row
}

#[tokio::test]
async fn seeded_tasks_look_exactly_like_real_ones() -> anyhow::Result<()> {
    let world = start().await?;
    spawn_and_plan(&world).await?;
    let real = row_as(&world, "/tasks", "alice", |t| {
        t["status"] == "waiting_plan_review"
    })
    .await?;
    let real_item = row_as(&world, "/queue", "alice", |i| i["item_type"] == "plan_review").await?;

    let (status, seeded) = world
        .post(
            "/internal/test/seed-task",
            "bob",
            Some(json!({"status": "waiting_plan_review", "task_type": "feature",
                "description": "add a quick start section to the README",
                "repo_url": "https://github.com/acme/widgets", "plan": "1. Write it"})),
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{seeded}");
    assert_eq!(seeded["status"], "waiting_plan_review");
    let id = seeded["task_id"].as_str().unwrap_or_default().to_string();
    let task = row_as(&world, "/tasks", "bob", |t| {
        t["id"] == id.as_str() && t["status"] == "waiting_plan_review"
    })
    .await?;
    let item = row_as(&world, "/queue", "bob", |i| i["task_id"] == id.as_str()).await?;
    assert_eq!(shape(&task), shape(&real), "the task row");
    assert_eq!(shape(&item), shape(&real_item), "the queue item");

    // The original suites' questions (fixtures/seed-data.ts), option ids dropped.
    let (status, asked) = world
        .post(
            "/internal/test/seed-task",
            "carol",
            Some(json!({"status": "waiting_questions", "task_type": "feature", "description": "Add authentication",
                "repo_url": "https://github.com/test/repo", "questions": [
                    {"id": "q1", "header": "Authentication Method", "question": "Which authentication method should we use?",
                     "options": [{"id": "a", "label": "JWT tokens", "description": "Stateless"}, {"label": "Session cookies"}, {"label": "OAuth 2.0"}]},
                    {"id": "q2", "question": "Should we add rate limiting?", "options": [{"label": "Yes"}, {"label": "No"}, {"label": "Add later"}],
                     "multi_select": true}]})),
        )
        .await?;
    assert_eq!(
        (status, asked["status"].clone()),
        (StatusCode::OK, json!("waiting_questions"))
    );
    let id = asked["task_id"].as_str().unwrap_or_default().to_string();
    let task = row_as(&world, "/tasks", "carol", |t| {
        t["id"] == id.as_str() && t["status"] == "waiting_questions"
    })
    .await?;
    let questions = &task["pending_questions"];
    assert_eq!(questions[0]["header"], "Authentication Method");
    assert_eq!(
        questions[0]["options"][0],
        json!({"label": "JWT tokens", "description": "Stateless"})
    );
    assert_eq!(questions[1]["header"], "Should we add rate limiting?");
    assert_eq!(questions[1]["multi_select"], true);
    let item = row_as(&world, "/queue", "carol", |i| i["task_id"] == id.as_str()).await?;
    assert_eq!(item["item_type"], "question");

    // And a real task asking the same questions shows the same rows.
    let asked_for_real = PlanOutcome {
        questions: vec![
            Question {
                id: "q1".into(),
                header: "Authentication Method".into(),
                question: "Which authentication method should we use?".into(),
                options: ["JWT tokens", "Session cookies", "OAuth 2.0"]
                    .iter()
                    .map(|label| QuestionOption {
                        label: (*label).into(),
                        description: if *label == "JWT tokens" {
                            "Stateless".into()
                        } else {
                            String::new()
                        },
                    })
                    .collect(),
                multi_select: false,
            },
            Question {
                id: "q2".into(),
                header: "Should we add rate limiting?".into(),
                question: "Should we add rate limiting?".into(),
                options: ["Yes", "No", "Add later"]
                    .iter()
                    .map(|label| QuestionOption {
                        label: (*label).into(),
                        description: String::new(),
                    })
                    .collect(),
                multi_select: true,
            },
        ],
        ..Default::default()
    };
    spawn_and_report(&world, "carol", "t-real", "Add authentication", asked_for_real).await?;
    let real = row_as(&world, "/tasks", "carol", |t| {
        t["id"] == "t-real" && t["status"] == "waiting_questions"
    })
    .await?;
    let real_item = row_as(&world, "/queue", "carol", |i| i["task_id"] == "t-real").await?;
    let mut real = shape(&real);
    real["repo_url"] = json!("https://github.com/test/repo");
    assert_eq!(shape(&task), real, "the task row");
    assert_eq!(shape(&item), shape(&real_item), "the queue item");

    let (status, refused) = world
        .post(
            "/internal/test/seed-task",
            "carol",
            Some(json!({"status": "completed", "description": "x", "repo_url": "https://github.com/test/repo"})),
        )
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    world.shutdown.cancel();
    Ok(())
}

#[tokio::test]
async fn a_reset_empties_everything_and_the_same_task_starts_afresh() -> anyhow::Result<()> {
    let world = start().await?;
    spawn_and_plan(&world).await?;
    row_as(&world, "/tasks", "alice", |t| {
        t["status"] == "waiting_plan_review"
    })
    .await?;
    row_as(&world, "/queue", "alice", |i| i["item_type"] == "plan_review").await?;

    let (status, answer) = world.post("/internal/test/reset", "alice", None).await?;
    assert_eq!((status, answer), (StatusCode::OK, json!({"status": "ok"})));
    for path in ["/tasks", "/queue", "/projects"] {
        assert_eq!(
            world.get(path, "alice").await?,
            (StatusCode::OK, json!([])),
            "{path}"
        );
    }
    for name in [subjects::TASKS, subjects::INBOX, subjects::WORK] {
        let mut stream = world.bus.jetstream().get_stream(name).await?;
        assert_eq!(stream.info().await?.state.messages, 0, "{name}");
    }

    // Nothing of the old t1 is left anywhere: spawned again, it is a new task that plans again.
    spawn_and_plan(&world).await?;
    let again = row_as(&world, "/tasks", "alice", |t| {
        t["status"] == "waiting_plan_review"
    })
    .await?;
    assert_eq!(again["id"], "t1");
    world.shutdown.cancel();
    Ok(())
}

/// The original's WorkerTask fields (../shared/reference/seed-api.md §1.1).
const TASK_FIELDS: &[&str] = &[
    "id",
    "main_thread_id",
    "user_id",
    "task_type",
    "description",
    "prompt",
    "model",
    "repo_url",
    "project_id",
    "branch_name",
    "base_branch",
    "status",
    "workflow_run_id",
    "worker_pod_name",
    "created_at",
    "started_at",
    "completed_at",
    "result",
    "error",
    "issue_url",
    "issue_number",
    "issue_etag",
    "issue_last_modified",
    "pr_url",
    "pr_number",
    "pr_etag",
    "pr_last_modified",
    "commit_sha",
    "conversation_id",
    "message_id",
    "keywords",
    "skip_plan",
    "pending_questions",
    "plan_text",
];

/// The original's QueueItem fields (§1.2).
const QUEUE_ITEM_FIELDS: &[&str] = &[
    "id",
    "main_thread_id",
    "task_id",
    "user_id",
    "item_type",
    "priority",
    "title",
    "content",
    "context",
    "options",
    "status",
    "response",
    "responded_at",
    "read_at",
    "created_at",
    "expires_at",
];

/// The original's Project fields (§1.4).
const PROJECT_FIELDS: &[&str] = &[
    "id",
    "user_id",
    "owner",
    "name",
    "full_name",
    "description",
    "default_branch",
    "avatar_url",
    "html_url",
    "created_at",
    "last_used_at",
    "metadata_updated_at",
    "open_pr_count",
    "open_issue_count",
];

/// The fields `row` lacks (present with null counts as present).
fn missing<'a>(row: &Value, fields: &[&'a str]) -> Vec<&'a str> {
    fields
        .iter()
        .copied()
        .filter(|f| row.as_object().is_none_or(|o| !o.contains_key(*f)))
        .collect()
}
