//! Following a task's worker log over SSE (`GET /tasks/{id}/logs/stream`), through the real
//! gateway, scheduler and inbox on real NATS and Postgres, with log lines written to LOGS as the
//! worker-supervisor writes them: the task's status first, then every line from the start, then
//! live; a follower that reconnects with `Last-Event-ID` gets every line once, in order; one
//! job's lines with `job_id`; when the task ends, the rest of its lines, its status and `end`.

use std::time::Duration;

use futures_util::StreamExt;
use mainloop_bus::{Bus, Expect, request};
use mainloop_events::v1::{LogSource, RepoRef, SpawnTask, TaskAccepted, WorkerLog};
use mainloop_events::{Envelope, Payload, subjects};
use mainloop_gateway::HttpConfig;
use mainloop_testkit::Infra;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

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
    let shutdown = CancellationToken::new();
    tokio::spawn(mainloop_scheduler::run(
        mainloop_scheduler::Config {
            common: infra.common(),
            scheduling: Default::default(),
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
            http: HttpConfig::test_mode(&format!("127.0.0.1:{port}")),
        },
        shutdown.clone(),
    ));
    infra.ready(3).await?;
    let bus = infra.bus().await?;
    let world = World {
        _infra: infra,
        bus,
        base: format!("http://127.0.0.1:{port}"),
        http: reqwest::Client::new(),
        shutdown,
    };
    let spawn = SpawnTask {
        user_id: "alice".into(),
        task_id: "t1".into(),
        repo: Some(RepoRef {
            owner: "acme".into(),
            name: "widgets".into(),
            html_url: "https://github.com/acme/widgets".into(),
        }),
        description: "add a quick start section to the README".into(),
        ..Default::default()
    };
    let _: TaskAccepted = request::send(
        &world.bus,
        "cmd.scheduler.spawn-task",
        &spawn,
        Duration::from_secs(5),
    )
    .await?;
    // The inbox knows the task once its row is there.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !world
        .http
        .get(format!("{}/tasks/t1", world.base))
        .header("x-user-id", "alice")
        .send()
        .await?
        .status()
        .is_success()
    {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the task never reached the inbox"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Ok(world)
}

impl World {
    /// Writes line `n` of `job` as the worker-supervisor does.
    async fn line(&self, job: &str, n: u64) -> anyhow::Result<()> {
        let log = Payload::WorkerLog(WorkerLog {
            job_id: job.into(),
            attempt: 1,
            source: LogSource::Agent as i32,
            line: format!("{job} line {n}"),
            line_no: n,
        });
        self.bus
            .publish(
                &subjects::log("alice", "t1")?,
                &Envelope::new("alice", "t1", log),
                Expect::Any,
            )
            .await?;
        Ok(())
    }

    async fn follow(&self, query: &str, last_event_id: Option<u64>) -> anyhow::Result<Follower> {
        let mut request = self.http.get(format!(
            "{}/tasks/t1/logs/stream?user_id_query=alice{query}",
            self.base
        ));
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id.to_string());
        }
        let response = request.send().await?.error_for_status()?;
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Ok(Follower {
            frames: Box::pin(response.bytes_stream()),
            buffer: String::new(),
        })
    }
}

struct Follower {
    frames: std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buffer: String,
}

impl Follower {
    /// The next event: (name, id, data); `None` when the stream ended.
    async fn next(&mut self) -> anyhow::Result<Option<(String, Option<u64>, Value)>> {
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let frame: String = self.buffer.drain(..end + 2).collect();
                let field = |key: &str| frame.lines().find_map(|l| l.strip_prefix(key)).map(str::trim);
                if let Some(name) = field("event:") {
                    let data = serde_json::from_str(field("data:").unwrap_or("null"))?;
                    return Ok(Some((
                        name.to_string(),
                        field("id:").and_then(|i| i.parse().ok()),
                        data,
                    )));
                }
            }
            match tokio::time::timeout(Duration::from_secs(10), self.frames.next()).await? {
                Some(chunk) => self.buffer.push_str(&String::from_utf8_lossy(&chunk?)),
                None => return Ok(None),
            }
        }
    }

    /// The next `count` log lines: (id, text).
    async fn lines(&mut self, count: usize) -> anyhow::Result<Vec<(u64, String)>> {
        let mut lines = Vec::new();
        while lines.len() < count {
            let Some((name, id, data)) = self.next().await? else {
                anyhow::bail!("the stream ended after {lines:?}");
            };
            if name == "log" {
                lines.push((
                    id.unwrap_or_default(),
                    data["logs"].as_str().unwrap_or_default().to_string(),
                ));
            }
        }
        Ok(lines)
    }
}

fn texts(lines: &[(u64, String)]) -> Vec<&str> {
    lines.iter().map(|(_, t)| t.as_str()).collect()
}

#[tokio::test]
async fn a_log_is_followed_live_resumed_once_and_ends_with_the_task() -> anyhow::Result<()> {
    let world = start().await?;
    for n in 1..=3 {
        world.line("job-1", n).await?;
    }
    let mut follower = world.follow("", None).await?;
    let Some((name, _, first)) = follower.next().await? else {
        anyhow::bail!("nothing said");
    };
    assert_eq!(name, "status");
    assert_eq!(first["task_id"], "t1");
    assert!(first["status"].is_string(), "{first}");
    let replayed = follower.lines(3).await?;
    assert_eq!(
        texts(&replayed),
        [
            "[claude] job-1 line 1",
            "[claude] job-1 line 2",
            "[claude] job-1 line 3"
        ],
        "from the start"
    );
    world.line("job-1", 4).await?;
    let live = follower.lines(1).await?;
    assert_eq!(texts(&live), ["[claude] job-1 line 4"], "then live");
    drop(follower);

    // Lines written while nobody follows arrive once, in order, after Last-Event-ID.
    world.line("job-1", 5).await?;
    world.line("job-2", 1).await?;
    world.line("job-1", 6).await?;
    let mut resumed = world.follow("", Some(live[0].0)).await?;
    let again = resumed.lines(3).await?;
    assert_eq!(
        texts(&again),
        [
            "[claude] job-1 line 5",
            "[claude] job-2 line 1",
            "[claude] job-1 line 6"
        ]
    );
    assert!(again.windows(2).all(|w| w[0].0 < w[1].0), "ids grow: {again:?}");

    // One job's lines only.
    let mut one_job = world.follow("&job_id=job-2", None).await?;
    assert_eq!(texts(&one_job.lines(1).await?), ["[claude] job-2 line 1"]);

    // The task ends: the lines written before, its status, then the end of the stream.
    world.line("job-1", 7).await?;
    let cancelled = world
        .http
        .post(format!("{}/tasks/t1/cancel", world.base))
        .header("x-user-id", "alice")
        .send()
        .await?;
    assert!(cancelled.status().is_success(), "{}", cancelled.text().await?);
    let mut rest = Vec::new();
    while let Some((name, _, data)) = resumed.next().await? {
        rest.push(match name.as_str() {
            "log" => data["logs"].as_str().unwrap_or_default().to_string(),
            "status" => format!("status {}", data["status"].as_str().unwrap_or_default()),
            other => other.to_string(),
        });
    }
    assert_eq!(
        rest,
        ["[claude] job-1 line 7", "status cancelled", "end"],
        "every line once, then the end, and the stream closes"
    );

    // An ended task's stream: its status, every line, the end.
    let mut after = world.follow("&job_id=job-2", None).await?;
    let mut said = Vec::new();
    while let Some((name, _, data)) = after.next().await? {
        said.push(
            format!(
                "{name} {}",
                data["logs"]
                    .as_str()
                    .or(data["status"].as_str())
                    .unwrap_or_default()
            )
            .trim()
            .to_string(),
        );
    }
    assert_eq!(said, ["status cancelled", "log [claude] job-2 line 1", "end"]);
    world.shutdown.cancel();
    Ok(())
}
