//! A property test over every JSON route and query parameter of the API: random and hostile
//! path ids, query strings, bodies (random bytes, NUL and other control characters, huge,
//! deeply nested, wrong types), content types and user headers, against the real gateway,
//! scheduler, inbox and conversation services on real NATS and Postgres.
//!
//! For every request: the answer is never a 5xx; an error answer has the API's `{"detail"}`
//! shape; a refusal (any 4xx) and every read change nothing: no stream gains a message and no row
//! in any service's schema changes. After the run the gateway still serves the seeded tasks.
//!
//! Two parts: a sweep tries every path id, query parameter and body field with each of a list
//! of nasty values; then proptest generates `MAINLOOP_FUZZ_CASES` random cases (default 400,
//! bounded for CI) and shrinks a failure to a minimal case.

use std::collections::BTreeMap;
use std::time::Duration;

use mainloop_bus::{Bus, Expect, request};
use mainloop_events::v1::{
    JobMode, JobSucceeded, PlanOutcome, RepoRef, SpawnTask, TaskAccepted, job_succeeded,
};
use mainloop_events::{Envelope, Payload, subjects};
use mainloop_fakes::anthropic::FakeAnthropic;
use mainloop_gateway::HttpConfig;
use mainloop_runtime::Secret;
use mainloop_testkit::Infra;
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestCaseError, TestRunner};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// Seeded people, each with a planned task, its plan-review queue item and its project.
const PEOPLE: usize = 8;

/// Which of the person's things a route's `{id}` names.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Names {
    Nothing,
    Task,
    QueueItem,
    Project,
    Conversation,
}

/// Which body a route reads.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Reads {
    Nothing,
    Chat,
    Answers,
    Response,
    Title,
}

/// The github-watcher's tables that its polls update by themselves, and its watch projection's
/// checkpoints, which follow TASKS (and store the low-water mark) on their own clock.
const POLL_BOOKKEEPING: &[&str] = &[
    "threads",
    "watches",
    "reaction_watches",
    "review_cursors",
    "permissions",
    "checkpoints",
    "task_checkpoints",
];

struct Route {
    method: Method,
    path: &'static str,
    names: Names,
    params: &'static [&'static str],
    body: Reads,
}

const fn route(
    method: Method,
    path: &'static str,
    names: Names,
    params: &'static [&'static str],
    body: Reads,
) -> Route {
    Route {
        method,
        path,
        names,
        params,
        body,
    }
}

/// Every API route, as `routes/*.rs` declares them.
const ROUTES: &[Route] = &[
    route(Method::GET, "/api", Names::Nothing, &[], Reads::Nothing),
    route(
        Method::GET,
        "/tasks",
        Names::Nothing,
        &["status", "project_id", "limit", "before"],
        Reads::Nothing,
    ),
    route(Method::GET, "/tasks/{id}", Names::Task, &[], Reads::Nothing),
    route(
        Method::GET,
        "/tasks/{id}/context",
        Names::Task,
        &[],
        Reads::Nothing,
    ),
    route(
        Method::GET,
        "/tasks/{id}/history",
        Names::Task,
        &[],
        Reads::Nothing,
    ),
    route(
        Method::GET,
        "/tasks/{id}/logs",
        Names::Task,
        &["tail"],
        Reads::Nothing,
    ),
    route(
        Method::GET,
        "/tasks/{id}/logs/stream",
        Names::Task,
        &["last_event_id", "job_id"],
        Reads::Nothing,
    ),
    route(
        Method::POST,
        "/tasks/{id}/cancel",
        Names::Task,
        &[],
        Reads::Nothing,
    ),
    route(
        Method::POST,
        "/tasks/{id}/retry",
        Names::Task,
        &[],
        Reads::Nothing,
    ),
    route(
        Method::POST,
        "/tasks/{id}/answer-questions",
        Names::Task,
        &[],
        Reads::Answers,
    ),
    route(
        Method::POST,
        "/tasks/{id}/approve-plan",
        Names::Task,
        &["action", "revision_text", "plan_revision"],
        Reads::Nothing,
    ),
    route(
        Method::POST,
        "/tasks/{id}/start-implementation",
        Names::Task,
        &[],
        Reads::Nothing,
    ),
    route(
        Method::GET,
        "/queue",
        Names::Nothing,
        &["status", "unread_only", "task_id", "limit", "before"],
        Reads::Nothing,
    ),
    route(
        Method::GET,
        "/queue/unread/count",
        Names::Nothing,
        &[],
        Reads::Nothing,
    ),
    route(
        Method::POST,
        "/queue/read-all",
        Names::Nothing,
        &[],
        Reads::Nothing,
    ),
    route(Method::GET, "/queue/{id}", Names::QueueItem, &[], Reads::Nothing),
    route(
        Method::POST,
        "/queue/{id}/read",
        Names::QueueItem,
        &[],
        Reads::Nothing,
    ),
    route(
        Method::POST,
        "/queue/{id}/respond",
        Names::QueueItem,
        &[],
        Reads::Response,
    ),
    route(Method::POST, "/chat", Names::Nothing, &[], Reads::Chat),
    route(Method::GET, "/conversations", Names::Nothing, &[], Reads::Nothing),
    route(Method::POST, "/conversations", Names::Nothing, &[], Reads::Title),
    route(
        Method::GET,
        "/conversations/search",
        Names::Nothing,
        &["q", "limit"],
        Reads::Nothing,
    ),
    route(
        Method::PATCH,
        "/conversations/{id}",
        Names::Conversation,
        &[],
        Reads::Title,
    ),
    route(
        Method::GET,
        "/conversations/{id}",
        Names::Conversation,
        &[],
        Reads::Nothing,
    ),
    route(
        Method::GET,
        "/projects",
        Names::Nothing,
        &["limit"],
        Reads::Nothing,
    ),
    route(Method::GET, "/projects/{id}", Names::Project, &[], Reads::Nothing),
    route(
        Method::GET,
        "/projects/{id}/detail",
        Names::Project,
        &[],
        Reads::Nothing,
    ),
    route(
        Method::POST,
        "/projects/{id}/refresh",
        Names::Project,
        &[],
        Reads::Nothing,
    ),
    route(
        Method::GET,
        "/events",
        Names::Nothing,
        &["last_event_id"],
        Reads::Nothing,
    ),
];

/// Who the request says it is.
#[derive(Debug, Clone)]
enum Who {
    Person(usize),
    /// Raw `X-User-ID` bytes (whatever HTTP allows in a header value).
    Header(Vec<u8>),
}

/// What the path's `{id}` is.
#[derive(Debug, Clone)]
enum Target {
    Own,
    Someone(usize),
    Text(String),
    /// Put into the path as written: percent escapes of invalid UTF-8, NUL, slashes.
    Raw(&'static str),
}

#[derive(Debug, Clone)]
enum Body {
    None,
    Bytes(Vec<u8>),
    Json(Value),
    /// `[[[…]]]`, this deep.
    Nested(usize),
}

#[derive(Debug, Clone)]
struct Case {
    route: usize,
    who: Who,
    target: Target,
    query: Vec<(String, String)>,
    raw_query: Option<&'static str>,
    body: Body,
    content_type: Option<&'static str>,
}

/// Text as an attacker or a broken client would send it.
fn hostile_text() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "\\PC{0,16}",
        4 => any::<String>(),
        2 => "[a-z0-9]{0,6}\\x00[a-z0-9]{0,6}",
        2 => "[a-z0-9]{0,6}[\\x01-\\x1f\\x7f][a-z0-9]{0,6}",
        1 => Just(String::new()),
        1 => Just("t1".to_string()),
        1 => Just("..".to_string()),
        1 => Just("-u".to_string()),
        1 => Just("a/b".to_string()),
        1 => Just("\u{feff}t1".to_string()),
        1 => Just("approve".to_string()),
        1 => Just("-1".to_string()),
        1 => Just("18446744073709551616".to_string()),
        1 => Just("x".repeat(70_000)),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("a JSON number", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
        hostile_text().prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(hostile_text(), inner, 0..5)
                .prop_map(|fields| Value::Object(fields.into_iter().collect())),
        ]
    })
}

/// A body shaped like what the route reads, with hostile values in its fields.
fn shaped_body(reads: Reads) -> BoxedStrategy<Value> {
    let value = || prop_oneof![3 => hostile_text().prop_map(Value::from), 1 => json_value()];
    match reads {
        Reads::Chat => (value(), prop::option::of(value()))
            .prop_map(|(message, conversation)| {
                let mut body = json!({"message": message});
                if let Some(conversation) = conversation {
                    body["conversation_id"] = conversation;
                }
                body
            })
            .boxed(),
        Reads::Answers => (
            prop::collection::btree_map(hostile_text(), value(), 0..4),
            prop::option::of(value()),
        )
            .prop_map(|(answers, action)| {
                let answers: serde_json::Map<String, Value> = answers.into_iter().collect();
                let mut body = json!({"answers": answers});
                if let Some(action) = action {
                    body["action"] = action;
                }
                body
            })
            .boxed(),
        Reads::Response => (value(), prop::option::of(json_value()))
            .prop_map(|(response, metadata)| json!({"response": response, "metadata": metadata}))
            .boxed(),
        Reads::Title => value().prop_map(|title| json!({"title": title})).boxed(),
        Reads::Nothing => json_value().boxed(),
    }
}

fn body_for(reads: Reads) -> impl Strategy<Value = Body> {
    prop_oneof![
        2 => Just(Body::None),
        2 => prop::collection::vec(any::<u8>(), 0..64).prop_map(Body::Bytes),
        2 => json_value().prop_map(Body::Json),
        5 => shaped_body(reads).prop_map(Body::Json),
        1 => (1usize..20_000).prop_map(Body::Nested),
    ]
}

fn query_for(params: &'static [&'static str]) -> impl Strategy<Value = Vec<(String, String)>> {
    let known = if params.is_empty() {
        Just("unknown").boxed()
    } else {
        prop::sample::select(params).boxed()
    };
    let name = prop_oneof![4 => known.prop_map(str::to_string), 1 => hostile_text()];
    let value = prop_oneof![
        3 => hostile_text(),
        1 => any::<i64>().prop_map(|n| n.to_string()),
        1 => prop::sample::select(&["true", "false", "1", "0", "1000", "1001", "approve", "revise"][..])
            .prop_map(str::to_string),
    ];
    prop::collection::vec((name, value), 0..4)
}

fn case() -> impl Strategy<Value = Case> {
    (0..ROUTES.len()).prop_flat_map(|index| {
        let route = &ROUTES[index];
        let who = prop_oneof![
            8 => (0..PEOPLE).prop_map(Who::Person),
            1 => prop::collection::vec(
                prop_oneof![Just(b'\t'), 0x20u8..0x7f, 0x80u8..=0xff],
                0..80,
            )
            .prop_map(Who::Header),
        ];
        let target = prop_oneof![
            4 => Just(Target::Own),
            1 => (0..PEOPLE).prop_map(Target::Someone),
            3 => hostile_text().prop_map(Target::Text),
            1 => prop::sample::select(&["%FF%FE", "%00", "a%2Fb", "%2E%2E", "t1%00", "%C0%AF", ""][..])
                .prop_map(Target::Raw),
        ];
        let raw_query = prop::option::weighted(
            0.1,
            prop::sample::select(&["%zz", "&&=&", "a=%FF", "status=%00", "tail", "=x"][..]),
        );
        let content_type = prop::option::weighted(
            0.9,
            prop::sample::select(
                &[
                    "application/json",
                    "application/json",
                    "application/json",
                    "text/plain",
                    "application/x-www-form-urlencoded",
                    "multipart/form-data; boundary=x",
                    "application/json; charset=utf-16",
                    "application/merge-patch+json",
                ][..],
            ),
        );
        (
            Just(index),
            who,
            target,
            query_for(route.params),
            raw_query,
            body_for(route.body),
            content_type,
        )
            .prop_map(
                |(route, who, target, query, raw_query, body, content_type)| Case {
                    route,
                    who,
                    target,
                    query,
                    raw_query,
                    body,
                    content_type,
                },
            )
    })
}

/// Text values every parameter and field is tried with, whatever the random cases find.
const NASTY: &[&str] = &[
    "\0",
    "planning\0",
    "\u{1}",
    "\u{7f}",
    "\u{1b}[2J",
    "",
    "..",
    "-1",
    "18446744073709551616",
    "é\u{feff}",
    "true",
];

/// The systematic part: every route's `{id}`, every query parameter and every body field with
/// each nasty value, and each body route with each nasty JSON value in each field.
fn sweep() -> Vec<Case> {
    // Spread over the people, so their rate limits leave every case to the handlers.
    let spread = std::cell::Cell::new(0usize);
    let plain = |route: usize| Case {
        route,
        who: Who::Person({
            spread.set(spread.get() + 1);
            spread.get() % PEOPLE
        }),
        target: Target::Own,
        query: vec![],
        raw_query: None,
        body: Body::None,
        content_type: Some("application/json"),
    };
    let mut cases = Vec::new();
    for (index, route) in ROUTES.iter().enumerate() {
        for nasty in NASTY {
            if route.names != Names::Nothing {
                cases.push(Case {
                    target: Target::Text((*nasty).to_string()),
                    ..plain(index)
                });
            }
            for param in route.params {
                cases.push(Case {
                    query: vec![((*param).to_string(), (*nasty).to_string())],
                    ..plain(index)
                });
            }
        }
        let fields: &[&str] = match route.body {
            Reads::Chat => &["message", "conversation_id"],
            Reads::Answers => &["answers", "action"],
            Reads::Response => &["response", "metadata"],
            Reads::Title => &["title"],
            Reads::Nothing => &[],
        };
        let mut values: Vec<Value> = NASTY.iter().map(|n| json!(n)).collect();
        values.extend([
            json!(null),
            json!(1),
            json!(-1.5e300),
            json!([]),
            json!({"\u{0}": "\u{0}"}),
            json!({"q1": ["a\u{0}"]}),
            json!({"q1": 7}),
            json!("x".repeat(70_000)),
        ]);
        for field in fields {
            for value in &values {
                let mut body = json!({"message": "hello", "answers": {}, "response": "yes"});
                body[*field] = value.clone();
                cases.push(Case {
                    body: Body::Json(body),
                    ..plain(index)
                });
            }
        }
    }
    cases
}

/// What one person owns, by kind.
#[derive(Debug, Clone, Default)]
struct Owned {
    task: String,
    queue_item: String,
    project: String,
    conversation: String,
}

struct World {
    infra: Infra,
    bus: Bus,
    db: PgPool,
    base: String,
    http: reqwest::Client,
    people: Vec<Owned>,
    /// How many answers had each status, printed at the end.
    statuses: std::sync::Mutex<BTreeMap<u16, usize>>,
    shutdown: CancellationToken,
    /// The fake GitHub's repositories, which the github-watcher asks about projects.
    _github: tempfile::TempDir,
}

fn person(index: usize) -> String {
    format!("person-{index}")
}

async fn start() -> anyhow::Result<World> {
    mainloop_runtime::tls::install();
    let fake = FakeAnthropic::new("sk-ant-test");
    let fake_url = fake
        .serve(tokio::net::TcpListener::bind("127.0.0.1:0").await?)
        .await?;
    let github_dir = tempfile::tempdir()?;
    let github = mainloop_fakes::github::FakeGitHub::new(github_dir.path().to_path_buf(), "gh-token");
    let github_url = github
        .serve(tokio::net::TcpListener::bind("127.0.0.1:0").await?)
        .await?;
    reqwest::Client::new()
        .post(format!("{github_url}/_control/repos"))
        .json(&json!({"owner": "acme", "name": "widgets"}))
        .send()
        .await?
        .error_for_status()?;
    let infra = Infra::start()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let shutdown = CancellationToken::new();
    tokio::spawn(mainloop_github_watcher::run(
        mainloop_github_watcher::Config {
            common: infra.common(),
            github: mainloop_github_watcher::GitHubSettings {
                github_api_url: github_url,
                github_token: Some(Secret::new("gh-token")),
                github_poll_interval_ms: 60_000,
                github_poll_max_interval_ms: 60_000,
                github_poll_with_webhooks_ms: 60_000,
                ci_grace_secs: 180,
                ci_timeout_secs: 3600,
                github_steerers: String::new(),
            },
        },
        shutdown.clone(),
    ));
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
    tokio::spawn(mainloop_conversation::run(
        mainloop_conversation::Config {
            common: infra.common(),
            llm: mainloop_conversation::LlmSettings::anthropic(
                &fake_url,
                Some(Secret::new("sk-ant-test")),
                "claude-test",
            ),
        },
        shutdown.clone(),
    ));
    tokio::spawn(mainloop_gateway::run(
        mainloop_gateway::Config {
            common: infra.common(),
            http: HttpConfig::test_mode(&format!("127.0.0.1:{port}")),
        },
        shutdown.clone(),
    ));
    infra.ready(5).await?;
    let bus = infra.bus().await?;
    let db = PgPool::connect(&infra.pg.url()).await?;
    let mut world = World {
        infra,
        bus,
        db,
        base: format!("http://127.0.0.1:{port}"),
        http: reqwest::Client::new(),
        people: Vec::new(),
        statuses: Default::default(),
        shutdown,
        _github: github_dir,
    };
    for index in 0..PEOPLE {
        let owned = world.seed(&person(index)).await?;
        world.people.push(owned);
    }
    Ok(world)
}

impl World {
    /// A task planned and waiting for review, its queue item, its project and a conversation.
    async fn seed(&self, user: &str) -> anyhow::Result<Owned> {
        // Task ids are unique across people (the conversation makes them UUIDs).
        let task = format!("{user}-task");
        let spawn = SpawnTask {
            user_id: user.into(),
            task_id: task.clone(),
            repo: Some(RepoRef {
                owner: "acme".into(),
                name: "widgets".into(),
                html_url: "https://github.com/acme/widgets".into(),
            }),
            description: "add a quick start section to the README".into(),
            ..Default::default()
        };
        let _: TaskAccepted = request::send(
            &self.bus,
            "cmd.scheduler.spawn-task",
            &spawn,
            Duration::from_secs(5),
        )
        .await?;
        let events = self
            .bus
            .read_subject(subjects::TASKS, &subjects::task(user, &task)?, 0)
            .await?;
        // The github-watcher may already have answered the task's effects after its job.
        let Some(job) = events.iter().rev().find_map(|s| match &s.event.payload {
            Some(Payload::JobRequested(job)) => Some(job.clone()),
            _ => None,
        }) else {
            anyhow::bail!("no job for {user}")
        };
        let result = Envelope::new(
            user,
            &task,
            Payload::JobSucceeded(JobSucceeded {
                job_id: job.job_id,
                attempt: job.attempt,
                mode: JobMode::Plan as i32,
                outcome: Some(job_succeeded::Outcome::Plan(PlanOutcome {
                    plan_text: "1. Write it".into(),
                    ..Default::default()
                })),
                ..Default::default()
            }),
        );
        self.bus
            .publish(&subjects::job(user, &task)?, &result, Expect::Any)
            .await?;
        let chat = self
            .send(Method::POST, "/chat", user)
            .json(&json!({"message": "hello"}))
            .send()
            .await?;
        anyhow::ensure!(chat.status().is_success(), "chat: {}", chat.status());
        let queue = self.until("/queue", user, |q| q[0]["id"].is_string()).await?;
        let projects = self.until("/projects", user, |p| p[0]["id"].is_string()).await?;
        let conversations = self
            .until("/conversations", user, |c| {
                c["conversations"][0]["id"].is_string()
            })
            .await?;
        let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
        Ok(Owned {
            task,
            queue_item: text(&queue[0]["id"]),
            project: text(&projects[0]["id"]),
            conversation: text(&conversations["conversations"][0]["id"]),
        })
    }

    fn send(&self, method: Method, path: &str, user: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .header("x-user-id", user)
    }

    async fn until(&self, path: &str, user: &str, check: impl Fn(&Value) -> bool) -> anyhow::Result<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let answer = self.send(Method::GET, path, user).send().await?;
            let status = answer.status();
            let body: Value = answer.json().await.unwrap_or(Value::Null);
            if status == StatusCode::OK && check(&body) {
                return Ok(body);
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "{path} for {user} never matched; last {status}: {body}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Every stream's last sequence and a digest of every table of every service.
    async fn state(&self) -> anyhow::Result<BTreeMap<String, String>> {
        let mut state = BTreeMap::new();
        for stream in [
            subjects::TASKS,
            subjects::JOBS,
            subjects::LOGS,
            subjects::GITHUB,
            subjects::CHAT,
            subjects::INBOX,
            subjects::WORK,
            subjects::DEADLETTER,
        ] {
            let info = self
                .bus
                .jetstream()
                .get_stream(stream)
                .await?
                .info()
                .await?
                .clone();
            state.insert(stream.to_string(), info.state.last_sequence.to_string());
        }
        let tables: Vec<(String, String)> = sqlx::query_as(
            "SELECT table_schema::text, table_name::text FROM information_schema.tables \
             WHERE table_schema NOT IN ('pg_catalog', 'information_schema', 'public') \
             AND table_type = 'BASE TABLE' AND table_name <> '_sqlx_migrations' ORDER BY 1, 2",
        )
        .fetch_all(&self.db)
        .await?;
        for (schema, table) in tables {
            // The github-watcher's polling bookkeeping moves on its own clock (what it has seen
            // of each watched thread and pull request, and when); no request writes it.
            if schema == "github_watcher" && POLL_BOOKKEEPING.contains(&table.as_str()) {
                continue;
            }
            // The names come from the catalogue, not from input.
            let digest: String = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT md5(coalesce(string_agg(r::text, '|' ORDER BY r::text), '')) FROM \"{schema}\".\"{table}\" r"
            )))
            .fetch_one(&self.db)
            .await?;
            state.insert(format!("{schema}.{table}"), digest);
        }
        Ok(state)
    }

    /// Waits until what an accepted command set going has settled: the inbox has applied every
    /// TASKS event and published its feed.
    async fn settled(&self) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let last = self
                .bus
                .jetstream()
                .get_stream(subjects::TASKS)
                .await?
                .info()
                .await?
                .state
                .last_sequence;
            let applied: Option<i64> = sqlx::query_scalar(
                "SELECT stream_sequence FROM inbox.checkpoints WHERE projection = 'tasks'",
            )
            .fetch_optional(&self.db)
            .await?;
            let unsent: i64 = sqlx::query_scalar("SELECT count(*) FROM inbox.feed_outbox")
                .fetch_one(&self.db)
                .await?;
            if applied.and_then(|a| u64::try_from(a).ok()) == Some(last) && unsent == 0 {
                return Ok(());
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "the inbox never caught up: {applied:?} of {last}, {unsent} unsent"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn path(&self, case: &Case) -> String {
        let route = &ROUTES[case.route];
        let owner = match case.who {
            Who::Person(index) => index,
            Who::Header(_) => 0,
        };
        let owned = |index: usize| {
            let things = &self.people[index];
            match route.names {
                Names::Task => things.task.clone(),
                Names::QueueItem => things.queue_item.clone(),
                Names::Project => things.project.clone(),
                Names::Conversation => things.conversation.clone(),
                Names::Nothing => String::new(),
            }
        };
        let id = match &case.target {
            Target::Own => escape(&owned(owner)),
            Target::Someone(index) => escape(&owned(*index)),
            Target::Text(text) => escape(text),
            Target::Raw(raw) => (*raw).to_string(),
        };
        let mut path = route.path.replace("{id}", &id);
        let mut query: Vec<String> = case
            .query
            .iter()
            .map(|(k, v)| format!("{}={}", escape(k), escape(v)))
            .collect();
        query.extend(case.raw_query.map(str::to_string));
        if !query.is_empty() {
            path = format!("{path}?{}", query.join("&"));
        }
        path
    }

    async fn check(&self, case: &Case) -> anyhow::Result<()> {
        let route = &ROUTES[case.route];
        let path = self.path(case);
        let before = self.state().await?;
        let mut request = self
            .http
            .request(route.method.clone(), format!("{}{path}", self.base));
        match &case.who {
            Who::Person(index) => request = request.header("x-user-id", person(*index)),
            Who::Header(bytes) => {
                if let Ok(value) = reqwest::header::HeaderValue::from_bytes(bytes) {
                    request = request.header("x-user-id", value);
                }
            }
        }
        if let Some(content_type) = case.content_type {
            request = request.header("content-type", content_type);
        }
        request = match &case.body {
            Body::None => request,
            Body::Bytes(bytes) => request.body(bytes.clone()),
            Body::Json(value) => request.body(serde_json::to_vec(value)?),
            Body::Nested(depth) => request.body(format!("{}{}", "[".repeat(*depth), "]".repeat(*depth))),
        };
        let answer = request.send().await?;
        let status = answer.status();
        if let Ok(mut statuses) = self.statuses.lock() {
            *statuses.entry(status.as_u16()).or_default() += 1;
        }
        let what = format!("{} {} -> {status}", route.method, shorten(&path));
        // Refusals must be the API's JSON; a success's shape is the contract tests' business (and
        // the SSE feed's body never ends: its head is the answer).
        let body: Value = if status.is_success() {
            Value::Null
        } else {
            let bytes = answer.bytes().await?;
            let text = String::from_utf8_lossy(&bytes);
            let body: Value = serde_json::from_slice(&bytes)
                .map_err(|e| anyhow::anyhow!("{what}: not JSON ({e}): {}", shorten(&text)))?;
            anyhow::ensure!(!status.is_server_error(), "{what}: {}", shorten(&text));
            anyhow::ensure!(
                body["detail"].is_string(),
                "{what}: no detail in {}",
                shorten(&text)
            );
            body
        };
        if status.is_client_error() || route.method == Method::GET {
            let after = self.state().await?;
            let changed: Vec<&String> = after
                .iter()
                .filter(|(key, value)| before.get(*key) != Some(value))
                .map(|(key, _)| key)
                .collect();
            anyhow::ensure!(
                changed.is_empty(),
                "{what} ({}) changed {changed:?}",
                shorten(&body.to_string())
            );
        } else {
            self.settled().await?;
        }
        Ok(())
    }
}

/// Percent-encodes everything but unreserved characters, so the case reaches the server as
/// generated (a `.` stays, so `..` does too). URLs carry at most 2,000 bytes of one text: longer
/// ones are the client library's refusal to test, not the server's.
fn escape(text: &str) -> String {
    text.bytes()
        .take(2000)
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// At most 300 characters of a text, for failure messages.
fn shorten(text: &str) -> String {
    match text.char_indices().nth(300) {
        Some((end, _)) => format!("{}… ({} bytes)", &text[..end], text.len()),
        None => text.to_string(),
    }
}

#[test]
fn no_input_gets_a_5xx_or_changes_anything_when_refused() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let world = runtime.block_on(start())?;
    runtime.block_on(world.settled())?;
    for case in sweep() {
        runtime
            .block_on(world.check(&case))
            .map_err(|e| anyhow::anyhow!("{e:#}\nin {}", shorten(&format!("{case:?}"))))?;
    }
    let cases = std::env::var("MAINLOOP_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(400);
    let mut runner = TestRunner::new(RunnerConfig {
        cases,
        max_shrink_iters: 64,
        failure_persistence: None,
        ..RunnerConfig::default()
    });
    let outcome = runner.run(&case(), |case| {
        runtime
            .block_on(world.check(&case))
            .map_err(|e| TestCaseError::fail(format!("{e:#}")))
    });
    if let Err(failure) = outcome {
        anyhow::bail!("{failure}");
    }
    eprintln!(
        "answers by status: {:?}",
        world.statuses.lock().map(|s| s.clone())
    );
    // The people's tasks are still there for them.
    for index in 0..PEOPLE {
        let tasks = runtime.block_on(world.until("/tasks", &person(index), |t| {
            t.as_array()
                .is_some_and(|tasks| tasks.iter().any(|task| task["id"] == world.people[index].task))
        }));
        tasks?;
    }
    world.shutdown.cancel();
    drop(world.infra);
    Ok(())
}
