//! The inbox with a real scheduler on real NATS and Postgres: the read models follow the task,
//! items appear and resolve themselves, responses reach the scheduler, the feed reaches INBOX.

use std::time::Duration;

use mainloop_bus::{Bus, Expect, request};
use mainloop_events::v1::{
    JobMode, JobSucceeded, PlanOutcome, RepoRef, SpawnTask, TaskAccepted, job_succeeded,
};
use mainloop_events::{Envelope, Payload, subjects};
use mainloop_testkit::Infra;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

struct World {
    infra: Infra,
    bus: Bus,
    shutdown: CancellationToken,
}

async fn start() -> anyhow::Result<World> {
    let infra = Infra::start()?;
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
    infra.ready(2).await?;
    let bus = infra.bus().await?;
    Ok(World { infra, bus, shutdown })
}

async fn query(bus: &Bus, name: &str, body: Value) -> Result<Value, request::RequestError> {
    request::send_json(bus, &format!("query.inbox.{name}"), &body, Duration::from_secs(5)).await
}

/// Polls a query until `check` holds.
async fn until(bus: &Bus, name: &str, body: Value, check: impl Fn(&Value) -> bool) -> anyhow::Result<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let answer = query(bus, name, body.clone()).await?;
        if check(&answer) {
            return Ok(answer);
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "{name} never matched; last: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn spawn(bus: &Bus) -> anyhow::Result<()> {
    spawn_as(bus, "t1").await
}

async fn spawn_as(bus: &Bus, task: &str) -> anyhow::Result<()> {
    let spawn = SpawnTask {
        user_id: "u1".into(),
        task_id: task.into(),
        repo: Some(RepoRef {
            owner: "acme".into(),
            name: "widgets".into(),
            html_url: "https://github.com/acme/widgets".into(),
        }),
        description: "add a quick start section to the README".into(),
        ..Default::default()
    };
    let _: TaskAccepted =
        request::send(bus, "cmd.scheduler.spawn-task", &spawn, Duration::from_secs(5)).await?;
    Ok(())
}

async fn report_plan(bus: &Bus, plan: &str) -> anyhow::Result<()> {
    report_plan_for(bus, "t1", plan).await
}

async fn report_plan_for(bus: &Bus, task: &str, plan: &str) -> anyhow::Result<()> {
    let events = bus
        .read_subject(subjects::TASKS, &subjects::task("u1", task)?, 0)
        .await?;
    let job = events
        .iter()
        .rev()
        .find_map(|s| match &s.event.payload {
            Some(Payload::JobRequested(job)) => Some(job.clone()),
            _ => None,
        })
        .ok_or_else(|| anyhow::anyhow!("no job requested"))?;
    let result = Envelope::new(
        "u1",
        task,
        Payload::JobSucceeded(JobSucceeded {
            job_id: job.job_id,
            attempt: job.attempt,
            mode: JobMode::Plan as i32,
            outcome: Some(job_succeeded::Outcome::Plan(PlanOutcome {
                plan_text: plan.into(),
                ..Default::default()
            })),
            ..Default::default()
        }),
    );
    bus.publish(&subjects::job("u1", task)?, &result, Expect::Any)
        .await?;
    Ok(())
}

/// Every page of `name`, `size` at a time, following `before` from the last of each page.
async fn pages(bus: &Bus, name: &str, size: usize) -> anyhow::Result<Vec<Vec<String>>> {
    let mut pages = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let page = query(
            bus,
            name,
            json!({"user_id": "u1", "limit": size, "before": before}),
        )
        .await?;
        let ids: Vec<String> = page
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v["id"].as_str().map(str::to_string))
            .collect();
        if ids.is_empty() {
            return Ok(pages);
        }
        before = ids.last().cloned();
        pages.push(ids);
        anyhow::ensure!(pages.len() <= 10, "{name} pages without end: {pages:?}");
    }
}

#[tokio::test]
async fn lists_come_a_page_at_a_time_and_nothing_vanishes_past_fifty() -> anyhow::Result<()> {
    let world = start().await?;
    let bus = &world.bus;
    let tasks: Vec<String> = (1..=7).map(|n| format!("p{n}")).collect();
    for task in &tasks {
        spawn_as(bus, task).await?;
    }
    until(bus, "list-tasks", json!({"user_id": "u1"}), |t| {
        t.as_array()
            .is_some_and(|a| a.len() == 7 && a.iter().all(|t| t["status"] == "planning"))
    })
    .await?;
    for task in &tasks {
        report_plan_for(bus, task, "1. Do it").await?;
    }
    let queue = until(bus, "list-queue", json!({"user_id": "u1"}), |q| {
        q.as_array().map(Vec::len) == Some(7)
    })
    .await?;
    let listed = query(bus, "list-tasks", json!({"user_id": "u1"})).await?;

    for (name, whole) in [("list-tasks", &listed), ("list-queue", &queue)] {
        let all: Vec<String> = whole
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v["id"].as_str().map(str::to_string))
            .collect();
        let paged = pages(bus, name, 3).await?;
        assert_eq!(
            paged.iter().map(Vec::len).collect::<Vec<_>>(),
            [3, 3, 1],
            "{name}"
        );
        assert_eq!(paged.concat(), all, "{name}: every one once, in the list's order");
        let lost = query(bus, name, json!({"user_id": "u1", "before": "nobody-knows"})).await;
        assert!(
            matches!(
                lost,
                Err(request::RequestError::Rejected {
                    code: mainloop_events::v1::ErrorCode::NotFound,
                    ..
                })
            ),
            "{name}: {lost:?}"
        );
        let other = query(bus, name, json!({"user_id": "u2", "before": all[0]})).await;
        assert!(other.is_err(), "{name}: another person's id is no anchor");
        for size in [0, 201] {
            let refused = query(bus, name, json!({"user_id": "u1", "limit": size})).await;
            assert!(
                matches!(
                    refused,
                    Err(request::RequestError::Rejected {
                        code: mainloop_events::v1::ErrorCode::Invalid,
                        ..
                    })
                ),
                "{name} {size}: {refused:?}"
            );
        }
    }
    world.shutdown.cancel();
    Ok(())
}

#[tokio::test]
async fn the_inbox_follows_a_task_from_spawn_to_plan_approval() -> anyhow::Result<()> {
    let world = start().await?;
    let bus = &world.bus;
    spawn(bus).await?;

    let tasks = until(bus, "list-tasks", json!({"user_id": "u1"}), |t| {
        t[0]["status"] == "planning"
    })
    .await?;
    let task = &tasks[0];
    assert_eq!(task["description"], "add a quick start section to the README");
    assert_eq!(task["repo_url"], "https://github.com/acme/widgets");
    assert!(
        task["pr_url"].is_null() && task.as_object().is_some_and(|o| o.contains_key("pr_url")),
        "keys present, null"
    );
    assert!(task["created_at"].as_str().is_some_and(|t| t.ends_with('Z')));
    let projects = query(bus, "list-projects", json!({"user_id": "u1"})).await?;
    assert_eq!(projects[0]["full_name"], "acme/widgets");
    assert_eq!(task["project_id"], projects[0]["id"]);
    assert_eq!(
        query(bus, "list-tasks", json!({"user_id": "u2"})).await?,
        json!([]),
        "scoped to the user"
    );

    report_plan(bus, "1. Write the section\n2. Link it").await?;
    let items = until(bus, "list-queue", json!({"user_id": "u1"}), |q| {
        q.as_array().is_some_and(|a| !a.is_empty())
    })
    .await?;
    let item = &items[0];
    assert_eq!(item["item_type"], "plan_review");
    assert_eq!(item["priority"], "high");
    assert_eq!(item["options"], json!(["Approve", "Request changes"]));
    assert_eq!(item["content"], "1. Write the section\n2. Link it");
    assert_eq!(
        query(bus, "unread-count", json!({"user_id": "u1"})).await?,
        json!({"count": 1})
    );
    let task = query(bus, "get-task", json!({"user_id": "u1", "task_id": "t1"})).await?;
    assert_eq!(task["status"], "waiting_plan_review");
    assert_eq!(task["plan_text"], "1. Write the section\n2. Link it");

    // Bad responses change nothing.
    let item_id = item["id"].as_str().unwrap_or_default().to_string();
    let respond = |response: &str| json!({"user_id": "u1", "item_id": item_id, "response": response});
    let empty: Result<Value, _> =
        request::send_json(bus, "cmd.inbox.respond", &respond(" "), Duration::from_secs(5)).await;
    assert!(matches!(
        empty,
        Err(request::RequestError::Rejected {
            code: mainloop_events::v1::ErrorCode::Invalid,
            ..
        })
    ));
    let foreign: Result<Value, _> = request::send_json(
        bus,
        "cmd.inbox.respond",
        &json!({"user_id": "u2", "item_id": item_id, "response": "Approve"}),
        Duration::from_secs(5),
    )
    .await;
    assert!(matches!(
        foreign,
        Err(request::RequestError::Rejected {
            code: mainloop_events::v1::ErrorCode::NotFound,
            ..
        })
    ));

    let approved: Value = request::send_json(
        bus,
        "cmd.inbox.respond",
        &respond("Approve"),
        Duration::from_secs(5),
    )
    .await?;
    assert_eq!(approved, json!({"status": "ok"}));
    until(bus, "get-task", json!({"user_id": "u1", "task_id": "t1"}), |t| {
        t["status"] == "implementing"
    })
    .await?;
    let queue = query(bus, "list-queue", json!({"user_id": "u1"})).await?;
    let types: Vec<&str> = queue
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["item_type"].as_str())
        .collect();
    assert_eq!(
        types,
        ["notification"],
        "the plan review resolved itself; the approval is told: {queue}"
    );
    assert_eq!(queue[0]["priority"], "low");
    assert_eq!(
        query(bus, "unread-count", json!({"user_id": "u1"})).await?["count"],
        0,
        "a notification needs nothing"
    );
    let responded = query(
        bus,
        "get-queue-item",
        json!({"user_id": "u1", "item_id": item_id}),
    )
    .await?;
    assert_eq!(
        (responded["status"].as_str(), responded["response"].as_str()),
        (Some("responded"), Some("Approve"))
    );
    let again: Result<Value, _> = request::send_json(
        bus,
        "cmd.inbox.respond",
        &respond("Approve"),
        Duration::from_secs(5),
    )
    .await;
    assert!(matches!(
        again,
        Err(request::RequestError::Rejected {
            code: mainloop_events::v1::ErrorCode::Conflict,
            ..
        })
    ));

    let history = query(bus, "task-history", json!({"user_id": "u1", "task_id": "t1"})).await?;
    let statuses: Vec<&str> = history
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|h| h["status"].as_str())
        .collect();
    assert_eq!(
        statuses,
        [
            "pending",
            "planning",
            "waiting_plan_review",
            "ready_to_implement",
            "implementing"
        ]
    );

    // The feed carries the card changes and the item's life.
    let feed = bus
        .read_subject(subjects::INBOX, &subjects::inbox("u1")?, 0)
        .await?;
    let types: Vec<&str> = feed.iter().map(|s| s.event.r#type.as_str()).collect();
    assert!(
        types.contains(&"InboxItemAdded") && types.contains(&"InboxItemResolved"),
        "{types:?}"
    );
    let cards: Vec<String> = feed
        .iter()
        .filter_map(|s| match &s.event.payload {
            Some(Payload::TaskCardUpdated(card)) => Some(card.status().api_name().to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(cards.first().map(String::as_str), Some("pending"));
    assert_eq!(cards.last().map(String::as_str), Some("implementing"));
    world.shutdown.cancel();
    Ok(())
}

/// A task that fails while its plan waits for review leaves no "Review plan" with Approve
/// behind: only the failure, with retry.
#[tokio::test]
async fn a_failed_task_resolves_what_it_asked_before() -> anyhow::Result<()> {
    let world = start().await?;
    let bus = &world.bus;
    spawn(bus).await?;
    until(bus, "list-tasks", json!({"user_id": "u1"}), |t| {
        t[0]["status"] == "planning"
    })
    .await?;
    report_plan(bus, "# Plan\nAdd it.").await?;
    until(bus, "list-queue", json!({"user_id": "u1"}), |q| {
        q.as_array()
            .is_some_and(|a| a.iter().any(|i| i["item_type"] == "plan_review"))
    })
    .await?;
    let refused = Envelope::new(
        "u1",
        "t1",
        Payload::GithubEffectFailed(mainloop_events::v1::GitHubEffectFailed {
            effect_id: "t1:create-issue".into(),
            error: "GitHub answered 404: Not Found".into(),
            http_status: 404,
            retryable: false,
        }),
    );
    bus.publish(&subjects::github("u1", "t1")?, &refused, Expect::Any)
        .await?;
    let queue = until(bus, "list-queue", json!({"user_id": "u1"}), |q| {
        q.as_array()
            .is_some_and(|a| a.iter().any(|i| i["item_type"] == "error"))
    })
    .await?;
    let types: Vec<&str> = queue
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["item_type"].as_str())
        .collect();
    assert_eq!(types, ["error"], "only the failure is left: {queue}");
    world.shutdown.cancel();
    Ok(())
}

/// The task card says what the task waits for: a job's next attempt, a GitHub rate limit.
#[tokio::test]
async fn the_card_says_what_the_task_waits_for() -> anyhow::Result<()> {
    let world = start().await?;
    let bus = &world.bus;
    spawn(bus).await?;
    until(bus, "list-tasks", json!({"user_id": "u1"}), |t| {
        t[0]["status"] == "planning"
    })
    .await?;
    let events = bus
        .read_subject(subjects::TASKS, &subjects::task("u1", "t1")?, 0)
        .await?;
    let job = events
        .iter()
        .find_map(|s| match &s.event.payload {
            Some(Payload::JobRequested(job)) => Some(job.clone()),
            _ => None,
        })
        .ok_or_else(|| anyhow::anyhow!("no job"))?;
    let failed = Payload::JobFailed(mainloop_events::v1::JobFailed {
        job_id: job.job_id,
        attempt: 1,
        mode: JobMode::Plan as i32,
        error: "Claude API error 529: Overloaded".into(),
        retryable: true,
    });
    bus.publish(
        &subjects::job("u1", "t1")?,
        &Envelope::new("u1", "t1", failed),
        Expect::Any,
    )
    .await?;
    let tasks = until(bus, "list-tasks", json!({"user_id": "u1"}), |t| {
        !t[0]["waiting_for"].is_null()
    })
    .await?;
    let waiting = tasks[0]["waiting_for"].as_str().unwrap_or_default();
    assert!(
        waiting.starts_with("The agent failed (Claude API error 529: Overloaded); attempt 2 at ")
            && waiting.ends_with(" UTC"),
        "{waiting}"
    );

    let limited = Payload::GithubRateLimited(mainloop_events::v1::GitHubRateLimited {
        effect_id: "t1:create-issue".into(),
        message: "API rate limit exceeded".into(),
        retry_at_ms: 1_800_000_000_000,
    });
    bus.publish(
        &subjects::github("u1", "t1")?,
        &Envelope::new("u1", "t1", limited),
        Expect::Any,
    )
    .await?;
    let tasks = until(bus, "list-tasks", json!({"user_id": "u1"}), |t| {
        t[0]["waiting_for"]
            .as_str()
            .is_some_and(|w| w.starts_with("GitHub rate limit"))
    })
    .await?;
    assert_eq!(
        tasks[0]["waiting_for"],
        "GitHub rate limit, retrying at 08:00:00 UTC"
    );
    world.shutdown.cancel();
    Ok(())
}

/// A plan with a NUL (which Postgres refuses) reaches TASKS: that one event is dead-lettered and
/// noted on its task, and another user's task spawned afterwards still reaches the inbox.
#[tokio::test]
async fn one_poison_event_stops_one_task_never_everyone() -> anyhow::Result<()> {
    let world = start().await?;
    let bus = &world.bus;
    spawn(bus).await?;
    until(bus, "list-tasks", json!({"user_id": "u1"}), |t| {
        t[0]["status"] == "planning"
    })
    .await?;
    report_plan(bus, "# Plan\nAdd it.\u{0} Then more.").await?;
    let other = SpawnTask {
        user_id: "u2".into(),
        task_id: "t2".into(),
        repo: Some(RepoRef {
            owner: "acme".into(),
            name: "gadgets".into(),
            html_url: "https://github.com/acme/gadgets".into(),
        }),
        description: "another person's task".into(),
        ..Default::default()
    };
    let _: TaskAccepted =
        request::send(bus, "cmd.scheduler.spawn-task", &other, Duration::from_secs(5)).await?;
    let started = tokio::time::Instant::now();
    until(bus, "list-tasks", json!({"user_id": "u2"}), |t| {
        t[0]["status"] == "planning"
    })
    .await?;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let tasks = until(bus, "list-tasks", json!({"user_id": "u1"}), |t| {
        !t[0]["history_error"].is_null()
    })
    .await?;
    let note = tasks[0]["history_error"].as_str().unwrap_or_default();
    assert!(
        note.starts_with("this task's history could not be applied: ")
            && note.contains("invalid byte sequence"),
        "{note}"
    );
    // The events carrying the plan (PlanProposed, NeedsApproval): dead-lettered, all of task t1
    // (stored just after the note is written).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let dead = loop {
        let dead = mainloop_bus::dead_letter::list(bus, "dead.>").await?;
        if !dead.is_empty() || tokio::time::Instant::now() > deadline {
            break dead;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert!(!dead.is_empty() && dead.len() <= 2, "{dead:?}");
    assert!(
        dead.iter().all(|d| d.subject == "task.u1.t1"),
        "only the poisoned task's events"
    );
    world.shutdown.cancel();
    Ok(())
}

/// Order is kept per task, not for everyone: while one task's rows are held (a lock on its
/// checkpoint, as a slow transaction or a stuck event would), its next event waits, and another
/// person's task spawned afterwards still reaches the inbox at once. Released, the held task
/// catches up.
#[tokio::test]
async fn a_task_held_back_holds_back_only_itself() -> anyhow::Result<()> {
    let world = start().await?;
    let bus = &world.bus;
    spawn(bus).await?;
    until(bus, "list-tasks", json!({"user_id": "u1"}), |t| {
        t[0]["status"] == "planning"
    })
    .await?;
    let db = sqlx::PgPool::connect(&world.infra.pg.url()).await?;
    let mut hold = db.begin().await?;
    let held: i64 = sqlx::query_scalar(
        "SELECT stream_sequence FROM inbox.task_checkpoints WHERE subject = 'task.u1.t1' FOR UPDATE",
    )
    .fetch_one(&mut *hold)
    .await?;
    assert!(held > 0, "t1's events were applied");
    report_plan(bus, "# Plan\nAdd it.").await?;

    let other = SpawnTask {
        user_id: "u2".into(),
        task_id: "t2".into(),
        repo: Some(RepoRef {
            owner: "acme".into(),
            name: "gadgets".into(),
            html_url: "https://github.com/acme/gadgets".into(),
        }),
        description: "another person's task".into(),
        ..Default::default()
    };
    let _: TaskAccepted =
        request::send(bus, "cmd.scheduler.spawn-task", &other, Duration::from_secs(5)).await?;
    until(bus, "list-tasks", json!({"user_id": "u2"}), |t| {
        t[0]["status"] == "planning"
    })
    .await?;
    let waiting = query(bus, "list-tasks", json!({"user_id": "u1"})).await?;
    assert_eq!(waiting[0]["status"], "planning", "t1's plan waits for its lock");

    hold.rollback().await?;
    until(bus, "list-tasks", json!({"user_id": "u1"}), |t| {
        t[0]["status"] == "waiting_plan_review"
    })
    .await?;
    world.shutdown.cancel();
    Ok(())
}

/// The read models as rows: every table a rebuild drops, each in key order.
async fn read_models(db: &mut sqlx::PgConnection) -> anyhow::Result<Value> {
    let mut tables = serde_json::Map::new();
    for (table, key) in [
        ("inbox.projects", "id"),
        ("inbox.tasks", "id"),
        ("inbox.task_history", "task_id, stream_sequence"),
        ("inbox.queue_items", "id"),
    ] {
        // The table and key come from the list above, never from input.
        let sql = format!("SELECT COALESCE(jsonb_agg(to_jsonb(r) ORDER BY {key}), '[]') FROM {table} r");
        let rows: Value = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_one(&mut *db)
            .await?;
        tables.insert(table.to_string(), rows);
    }
    Ok(Value::Object(tables))
}

/// The types of the feed events after `after`.
async fn feed_after(bus: &Bus, after: u64) -> anyhow::Result<Vec<String>> {
    let feed = bus
        .read_subject(subjects::INBOX, &subjects::inbox("u1")?, after)
        .await?;
    Ok(feed.into_iter().map(|s| s.event.r#type).collect())
}

/// A rebuild drops the read models and applies TASKS again: the same rows come back, with what
/// the person did to the items (one answered, one read, one untouched), and the feed announces
/// nothing a second time; what happens next is applied and announced as before.
#[tokio::test]
async fn a_rebuild_gives_the_same_rows_and_announces_nothing_again() -> anyhow::Result<()> {
    use sqlx::Connection;
    let world = start().await?;
    let bus = &world.bus;
    for task in ["t1", "t2", "t3"] {
        spawn_as(bus, task).await?;
        until(bus, "list-tasks", json!({"user_id": "u1"}), |t| {
            t.as_array()
                .is_some_and(|a| a.iter().any(|t| t["id"] == task && t["status"] == "planning"))
        })
        .await?;
        report_plan_for(bus, task, &format!("1. Write the section of {task}")).await?;
    }
    let queue = until(bus, "list-queue", json!({"user_id": "u1"}), |q| {
        q.as_array().is_some_and(|a| a.len() == 3)
    })
    .await?;
    let item_of = |task: &str| {
        queue
            .as_array()
            .into_iter()
            .flatten()
            .find(|i| i["task_id"] == task)
            .and_then(|i| i["id"].as_str())
            .unwrap_or_default()
            .to_string()
    };
    let answer = json!({"user_id": "u1", "item_id": item_of("t1"), "response": "Approve"});
    let _: Value = request::send_json(bus, "cmd.inbox.respond", &answer, Duration::from_secs(5)).await?;
    let read = json!({"user_id": "u1", "item_id": item_of("t2")});
    let _: Value = request::send_json(bus, "cmd.inbox.mark-read", &read, Duration::from_secs(5)).await?;
    until(bus, "get-task", json!({"user_id": "u1", "task_id": "t1"}), |t| {
        t["status"] == "implementing"
    })
    .await?;
    let mut db = sqlx::PgConnection::connect(&world.infra.pg.url()).await?;
    let before = read_models(&mut db).await?;
    let feed_end = bus.last_sequence(subjects::INBOX, "inbox.>").await?;

    let rebuilt: Value =
        request::send_json(bus, "cmd.inbox.rebuild", &json!({}), Duration::from_secs(10)).await?;
    let tasks_end = bus.last_sequence(subjects::TASKS, "task.>").await?;
    assert_eq!(rebuilt, json!({"generation": 1, "replaying": tasks_end}));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut after = read_models(&mut db).await?;
    while after != before {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the rebuilt rows differ:\nbefore {before:#}\nafter {after:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        after = read_models(&mut db).await?;
    }
    let items = after["inbox.queue_items"].as_array().cloned().unwrap_or_default();
    let state = |task: &str| {
        items
            .iter()
            .find(|i| i["task_id"] == task && i["item_type"] == "plan_review")
            .map(|i| {
                (
                    i["status"].clone(),
                    i["response"].clone(),
                    i["read_at"].is_string(),
                )
            })
    };
    assert_eq!(state("t1"), Some((json!("responded"), json!("Approve"), true)));
    assert_eq!(state("t2"), Some((json!("pending"), Value::Null, true)));
    assert_eq!(state("t3"), Some((json!("pending"), Value::Null, false)));

    // Something new after the rebuild: applied, and the only thing the feed announces.
    spawn_as(bus, "t4").await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut announced = feed_after(bus, feed_end).await?;
    while announced.is_empty() {
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "t4 never announced");
        tokio::time::sleep(Duration::from_millis(25)).await;
        announced = feed_after(bus, feed_end).await?;
    }
    let feed = bus
        .read_subject(subjects::INBOX, &subjects::inbox("u1")?, feed_end)
        .await?;
    assert!(
        feed.iter().all(|s| s.event.correlation_id == "t4"),
        "only t4 is new on the feed: {:?}",
        feed.iter()
            .map(|s| (&s.event.correlation_id, &s.event.r#type))
            .collect::<Vec<_>>()
    );
    world.shutdown.cancel();
    Ok(())
}

/// Writes a feed row as a replica that committed and then died before publishing would leave it.
async fn leave_in_outbox(db: &sqlx::PgPool, user: &str, task: &str) -> anyhow::Result<()> {
    let card = Envelope::new(
        user,
        task,
        Payload::TaskCardUpdated(mainloop_events::v1::TaskCardUpdated {
            task_id: task.into(),
            description: "left behind".into(),
            ..Default::default()
        }),
    );
    sqlx::query("INSERT INTO inbox.feed_outbox (subject, envelope) VALUES ($1, $2)")
        .bind(subjects::inbox(user)?)
        .bind(card.to_bytes())
        .execute(db)
        .await?;
    Ok(())
}

/// A feed row another replica left unpublished goes out before the person's next feed events,
/// not after them (their transaction reads it back and it is published first); one whose person
/// has nothing new is swept within seconds; either way once, and the outbox ends empty.
#[tokio::test]
async fn rows_left_in_the_outbox_go_out_first_and_once() -> anyhow::Result<()> {
    let world = start().await?;
    let bus = &world.bus;
    spawn(bus).await?;
    until(bus, "list-tasks", json!({"user_id": "u1"}), |t| {
        t[0]["status"] == "planning"
    })
    .await?;
    let db = sqlx::PgPool::connect(&world.infra.pg.url()).await?;
    let feed_end = bus.last_sequence(subjects::INBOX, "inbox.>").await?;
    leave_in_outbox(&db, "u1", "left").await?;
    leave_in_outbox(&db, "u9", "alone").await?;
    report_plan(bus, "# Plan\nAdd it.").await?;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let feed = bus.read_subject(subjects::INBOX, "inbox.>", feed_end).await?;
        let tasks: Vec<(&str, &str)> = feed
            .iter()
            .map(|s| (s.event.user_id.as_str(), s.event.correlation_id.as_str()))
            .collect();
        let t1_announced = tasks.iter().any(|(_, task)| *task == "t1");
        let alone_swept = tasks.contains(&("u9", "alone"));
        if t1_announced && alone_swept {
            let u1: Vec<&str> = tasks
                .iter()
                .filter(|(user, _)| *user == "u1")
                .map(|(_, t)| *t)
                .collect();
            assert_eq!(
                u1.first(),
                Some(&"left"),
                "the row left behind comes first: {u1:?}"
            );
            assert_eq!(u1.iter().filter(|t| **t == "left").count(), 1, "and once: {u1:?}");
            assert_eq!(
                tasks.iter().filter(|t| t.1 == "alone").count(),
                1,
                "once: {tasks:?}"
            );
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "not all announced: {tasks:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let waiting: i64 = sqlx::query_scalar("SELECT count(*) FROM inbox.feed_outbox")
            .fetch_one(&db)
            .await?;
        if waiting == 0 {
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "{waiting} rows stay in the outbox"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    world.shutdown.cancel();
    Ok(())
}

/// More rows left behind than a transaction reads back: the publisher drains the table in order,
/// page by page, before the person's next events; each once.
#[tokio::test]
async fn many_rows_left_behind_are_drained_in_order_before_the_persons_next() -> anyhow::Result<()> {
    let world = start().await?;
    let bus = &world.bus;
    let db = sqlx::PgPool::connect(&world.infra.pg.url()).await?;
    let feed_end = bus.last_sequence(subjects::INBOX, "inbox.>").await?;
    let left: Vec<String> = (0..1200).map(|n| format!("left{n}")).collect();
    let cards: Vec<Vec<u8>> = left
        .iter()
        .map(|task| {
            let card = mainloop_events::v1::TaskCardUpdated {
                task_id: task.clone(),
                ..Default::default()
            };
            Envelope::new("u1", task, Payload::TaskCardUpdated(card)).to_bytes()
        })
        .collect();
    // In one statement, so no sweep comes between.
    sqlx::query(
        "INSERT INTO inbox.feed_outbox (subject, envelope) \
         SELECT 'inbox.u1', e FROM UNNEST($1::bytea[]) WITH ORDINALITY AS r(e, n) ORDER BY n",
    )
    .bind(cards)
    .execute(&db)
    .await?;
    spawn(bus).await?;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let feed = bus.read_subject(subjects::INBOX, "inbox.>", feed_end).await?;
        let tasks: Vec<&str> = feed.iter().map(|s| s.event.correlation_id.as_str()).collect();
        if tasks.contains(&"t1") {
            let first_t1 = tasks.iter().position(|t| *t == "t1").unwrap_or_default();
            assert_eq!(
                &tasks[..first_t1],
                left.as_slice(),
                "every row left, in order, once, first"
            );
            assert!(tasks[first_t1..].iter().all(|t| *t == "t1"), "then only t1");
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "t1 never announced; {} events",
            tasks.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    world.shutdown.cancel();
    Ok(())
}
