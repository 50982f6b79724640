//! The main thread's tools, with a scripted model that calls them (streamed as the real API
//! streams) and the real scheduler and inbox: spawning needs a confirmation in the person's
//! latest message (the same message may carry it) and the same request spawns once;
//! `list_tasks` tells the truth; a follow-up passed on with `add_context_to_task` reaches the
//! task's next job; cancelling needs a confirmation; the model is told the person's active
//! tasks and recent repositories.

use std::time::Duration;

use mainloop_bus::{Bus, Expect, request};
use mainloop_events::v1::{JobMode, JobSucceeded, PlanOutcome, ReviewPlan, TaskAccepted, job_succeeded};
use mainloop_events::{Envelope, Payload, subjects};
use mainloop_fakes::scripted_model::{ScriptedModel, Turn};
use mainloop_runtime::Secret;
use mainloop_testkit::Infra;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const REQUEST: &str = "add a quick start section to the README of https://github.com/acme/widgets";

struct World {
    infra: Infra,
    bus: Bus,
    model: ScriptedModel,
    shutdown: CancellationToken,
}

async fn start() -> anyhow::Result<World> {
    let (world, scheduler) = start_without_scheduler().await?;
    scheduler.start();
    world.ready(3).await?;
    Ok(world)
}

/// The scheduler of a world started without one.
struct Scheduler {
    common: mainloop_runtime::CommonConfig,
    shutdown: CancellationToken,
}

impl Scheduler {
    fn start(self) {
        tokio::spawn(mainloop_scheduler::run(
            mainloop_scheduler::Config {
                common: self.common,
                scheduling: Default::default(),
            },
            self.shutdown,
        ));
    }
}

/// Everything but the scheduler, which starts when told.
async fn start_without_scheduler() -> anyhow::Result<(World, Scheduler)> {
    mainloop_runtime::tls::install();
    let model = ScriptedModel::new("sk-ant-test", vec![]);
    let url = model
        .clone()
        .serve(tokio::net::TcpListener::bind("127.0.0.1:0").await?)
        .await?;
    let infra = Infra::start()?;
    let shutdown = CancellationToken::new();
    let scheduler = Scheduler {
        common: infra.common(),
        shutdown: shutdown.clone(),
    };
    tokio::spawn(mainloop_inbox::run(
        mainloop_inbox::Config::new(infra.common()),
        shutdown.clone(),
    ));
    tokio::spawn(mainloop_conversation::run(
        mainloop_conversation::Config {
            common: infra.common(),
            llm: mainloop_conversation::LlmSettings::anthropic(
                &url,
                Some(Secret::new("sk-ant-test")),
                "claude-test",
            ),
        },
        shutdown.clone(),
    ));
    infra.ready(2).await?;
    let bus = infra.bus().await?;
    let world = World {
        infra,
        bus,
        model,
        shutdown,
    };
    Ok((world, scheduler))
}

fn call(name: &str, input: Value) -> Turn {
    Turn::Tool {
        name: name.into(),
        input,
    }
}

fn spawn_call() -> Turn {
    call(
        "spawn_task",
        json!({"repo_url": "https://github.com/acme/widgets", "task_description": "add a quick start section to the README"}),
    )
}

impl World {
    /// Waits until `services` are registered and ready.
    async fn ready(&self, services: usize) -> anyhow::Result<()> {
        Ok(self.infra.ready(services).await?)
    }

    /// The person says `message` in conversation `conversation`; the model plays `turns`.
    async fn say(
        &self,
        conversation: Option<&str>,
        message: &str,
        turns: Vec<Turn>,
    ) -> anyhow::Result<Value> {
        self.model.push(turns);
        let command = json!({"user_id": "alice", "conversation_id": conversation, "message": message});
        Ok(request::send_json(
            &self.bus,
            "cmd.conversation.post-message",
            &command,
            Duration::from_secs(30),
        )
        .await?)
    }

    /// What the last tool call returned to the model: (content, is_error).
    fn last_tool_result(&self) -> (String, bool) {
        let requests = self.model.agent_requests();
        let result = requests
            .iter()
            .rev()
            .find_map(|r| {
                r["messages"]
                    .as_array()?
                    .last()?
                    .get("content")?
                    .as_array()?
                    .iter()
                    .find(|b| b["type"] == "tool_result")
                    .cloned()
            })
            .unwrap_or_default();
        (
            result["content"].as_str().unwrap_or_default().to_string(),
            result["is_error"].as_bool().unwrap_or(false),
        )
    }

    async fn spawned(&self) -> anyhow::Result<Vec<String>> {
        let mut stream = self.bus.jetstream().get_stream(subjects::TASKS).await?;
        if stream.info().await?.state.messages == 0 {
            return Ok(vec![]);
        }
        Ok(self
            .bus
            .read_subject(subjects::TASKS, "task.alice.*", 0)
            .await?
            .into_iter()
            .filter_map(|s| match s.event.payload {
                Some(Payload::TaskSpawned(t)) => Some(t.task_id),
                _ => None,
            })
            .collect())
    }

    async fn events(&self, task: &str) -> anyhow::Result<Vec<Payload>> {
        Ok(self
            .bus
            .read_subject(subjects::TASKS, &subjects::task("alice", task)?, 0)
            .await?
            .into_iter()
            .filter_map(|s| s.event.payload)
            .collect())
    }

    /// Waits until the inbox lists task `task` in `status`.
    async fn listed(&self, task: &str, status: &str) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let tasks: Value = request::send_json(
                &self.bus,
                "query.inbox.list-tasks",
                &json!({"user_id": "alice"}),
                Duration::from_secs(5),
            )
            .await?;
            if tasks
                .as_array()
                .into_iter()
                .flatten()
                .any(|t| t["id"] == task && t["status"] == status)
            {
                return Ok(());
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "task {task} never {status}: {tasks}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test]
async fn spawning_needs_a_confirmation_and_the_same_request_spawns_once() -> anyhow::Result<()> {
    let world = start().await?;
    let asked = world
        .say(
            None,
            REQUEST,
            vec![spawn_call(), Turn::Text("Shall I go ahead?".into())],
        )
        .await?;
    let conversation = asked["conversation_id"].as_str().unwrap_or_default().to_string();
    let (said, refused) = world.last_tool_result();
    assert!(refused && said.contains("has not confirmed"), "{said}");
    assert!(world.spawned().await?.is_empty(), "no confirmation, no task");

    // The confirmation in the same message counts.
    world
        .say(
            Some(&conversation),
            &format!("{REQUEST}, I confirm, go ahead"),
            vec![spawn_call(), Turn::Text("Started.".into())],
        )
        .await?;
    let (said, refused) = world.last_tool_result();
    assert!(
        !refused && said.starts_with("Task ") && said.ends_with("spawned on acme/widgets."),
        "{said}"
    );
    assert_eq!(world.spawned().await?.len(), 1);

    // The same request again (a retried turn): still one task.
    world
        .say(
            Some(&conversation),
            "yes",
            vec![spawn_call(), Turn::Text("Started.".into())],
        )
        .await?;
    let spawned = world.spawned().await?;
    assert_eq!(spawned.len(), 1, "{spawned:?}");
    world.shutdown.cancel();
    Ok(())
}

/// A confirmed spawn while the scheduler restarts (nobody listens on its subject yet) waits
/// for it and spawns once, instead of telling the person it failed.
#[tokio::test]
async fn a_confirmed_spawn_waits_for_a_scheduler_that_is_restarting() -> anyhow::Result<()> {
    let (world, scheduler) = start_without_scheduler().await?;
    let world = std::sync::Arc::new(world);
    let saying = {
        let world = world.clone();
        tokio::spawn(async move {
            world
                .say(
                    None,
                    &format!("{REQUEST}, I confirm, go ahead"),
                    vec![spawn_call(), Turn::Text("Started.".into())],
                )
                .await
        })
    };
    // The model was asked and calls the tool, which finds no scheduler; then it comes back.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while world.model.agent_requests().is_empty() {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the model was never asked"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    scheduler.start();
    saying.await??;
    let (said, refused) = world.last_tool_result();
    assert!(!refused && said.ends_with("spawned on acme/widgets."), "{said}");
    assert_eq!(world.spawned().await?.len(), 1);
    world.shutdown.cancel();
    Ok(())
}

#[tokio::test]
async fn the_model_knows_the_tasks_passes_follow_ups_on_and_cancels_only_when_confirmed() -> anyhow::Result<()>
{
    let world = start().await?;
    let first = world
        .say(
            None,
            &format!("{REQUEST}. I confirm."),
            vec![spawn_call(), Turn::Text("Started.".into())],
        )
        .await?;
    let conversation = first["conversation_id"].as_str().unwrap_or_default().to_string();
    let task = world.spawned().await?.pop().unwrap_or_default();
    world.listed(&task, "planning").await?;

    // The model is told about the active task and the repository, and list_tasks tells the truth.
    world
        .say(
            Some(&conversation),
            "what is running?",
            vec![call("list_tasks", json!({})), Turn::Text("One task.".into())],
        )
        .await?;
    let requests = world.model.agent_requests();
    let system = requests
        .last()
        .map(|r| r["system"].to_string())
        .unwrap_or_default();
    assert!(
        system.contains(&format!(
            "- {task} [planning] acme/widgets — add a quick start section"
        )) && system.contains("Repositories they used most recently:\\n- https://github.com/acme/widgets"),
        "{system}"
    );
    let (listed, _) = world.last_tool_result();
    assert!(
        listed.contains(&format!("- {task} [planning] acme/widgets")),
        "{listed}"
    );

    // A follow-up reaches the task's next job.
    world
        .say(
            Some(&conversation),
            "oh, and use British spelling in it",
            vec![
                call(
                    "add_context_to_task",
                    json!({"task_id": task, "context": "Use British spelling."}),
                ),
                Turn::Text("Passed on.".into()),
            ],
        )
        .await?;
    let (passed, refused) = world.last_tool_result();
    assert!(!refused, "{passed}");
    let events = world.events(&task).await?;
    let Some(Payload::JobRequested(plan)) = events
        .iter()
        .rev()
        .find(|e| matches!(e, Payload::JobRequested(_)))
        .cloned()
    else {
        anyhow::bail!("no plan job");
    };
    let done = Payload::JobSucceeded(JobSucceeded {
        job_id: plan.job_id,
        attempt: plan.attempt,
        mode: JobMode::Plan as i32,
        outcome: Some(job_succeeded::Outcome::Plan(PlanOutcome {
            plan_text: "1. Write it".into(),
            ..Default::default()
        })),
        ..Default::default()
    });
    world
        .bus
        .publish(
            &subjects::job("alice", &task)?,
            &Envelope::new("alice", &task, done),
            Expect::Any,
        )
        .await?;
    world.listed(&task, "waiting_plan_review").await?;
    let approve = ReviewPlan {
        user_id: "alice".into(),
        task_id: task.clone(),
        action: "approve".into(),
        plan_revision: 1,
        feedback: String::new(),
    };
    let _: TaskAccepted = request::send(
        &world.bus,
        "cmd.scheduler.review-plan",
        &approve,
        Duration::from_secs(5),
    )
    .await?;
    let implement = world
        .events(&task)
        .await?
        .into_iter()
        .rev()
        .find_map(|e| match e {
            Payload::JobRequested(job) if job.mode() == JobMode::Implement => Some(job),
            _ => None,
        })
        .unwrap_or_default();
    assert!(
        implement
            .prompt
            .contains("The person added, after the task started")
            && implement.prompt.contains("- Use British spelling."),
        "{}",
        implement.prompt
    );

    // Cancelling: refused without a confirmation, done with one.
    world
        .say(
            Some(&conversation),
            "cancel it",
            vec![
                call("cancel_task", json!({"task_id": task})),
                Turn::Text("Confirm?".into()),
            ],
        )
        .await?;
    let (said, refused) = world.last_tool_result();
    assert!(refused && said.contains("has not confirmed"), "{said}");
    world
        .say(
            Some(&conversation),
            "yes",
            vec![
                call("cancel_task", json!({"task_id": task})),
                Turn::Text("Cancelled.".into()),
            ],
        )
        .await?;
    let (said, refused) = world.last_tool_result();
    assert_eq!(
        (said.as_str(), refused),
        (format!("Task {task} is cancelled.").as_str(), false)
    );
    world.listed(&task, "cancelled").await?;

    // A task that is not the person's: the model is told there is none.
    world
        .say(
            Some(&conversation),
            "yes",
            vec![
                call("retry_task", json!({"task_id": "someone-elses"})),
                Turn::Text("Hm.".into()),
            ],
        )
        .await?;
    let (said, refused) = world.last_tool_result();
    assert!(refused && said.contains("no such task"), "{said}");
    world.shutdown.cancel();
    Ok(())
}

impl World {
    /// Waits for the person's pending inbox item of `kind` about `task`; returns it.
    async fn item(&self, task: &str, kind: &str, nth: usize) -> anyhow::Result<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let queue: Value = request::send_json(
                &self.bus,
                "query.inbox.list-queue",
                &json!({"user_id": "alice"}),
                Duration::from_secs(5),
            )
            .await?;
            let found: Vec<Value> = queue
                .as_array()
                .into_iter()
                .flatten()
                .filter(|i| i["task_id"] == task && i["item_type"] == kind)
                .cloned()
                .collect();
            if found.len() > nth {
                let mut found = found;
                found.sort_by_key(|i| i["created_at"].as_str().unwrap_or_default().to_string());
                return Ok(found[nth].clone());
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "no {kind} item for {task}: {queue}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn respond(&self, item: &Value, response: &str) -> anyhow::Result<Value> {
        Ok(request::send_json(
            &self.bus,
            "cmd.inbox.respond",
            &json!({"user_id": "alice", "item_id": item["id"], "response": response}),
            Duration::from_secs(10),
        )
        .await?)
    }
}

#[tokio::test]
async fn an_unsure_route_asks_the_person_and_their_answer_is_applied() -> anyhow::Result<()> {
    let world = start().await?;
    let first = world
        .say(
            None,
            &format!("{REQUEST}. I confirm."),
            vec![spawn_call(), Turn::Text("Started.".into())],
        )
        .await?;
    let conversation = first["conversation_id"].as_str().unwrap_or_default().to_string();
    let task = world.spawned().await?.pop().unwrap_or_default();
    world.listed(&task, "planning").await?;

    let unsure = |message: &str| {
        vec![
            call("suggest_routing", json!({"task_id": task, "message": message})),
            Turn::Text("I asked you in the inbox.".into()),
        ]
    };
    world
        .say(Some(&conversation), "keep it short", unsure("keep it short"))
        .await?;
    let (said, refused) = world.last_tool_result();
    assert!(!refused && said.contains("asked in their inbox"), "{said}");
    let asked = world.item(&task, "routing_suggestion", 0).await?;
    assert_eq!(asked["options"], json!(["Route to this task", "Create new task"]));
    assert_eq!(asked["content"], "keep it short");
    assert_eq!(
        world.respond(&asked, "Route to this task").await?,
        json!({"status": "ok"})
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !world.events(&task).await?.iter().any(|e| {
        matches!(e, Payload::ContextAdded(added) if added.context == "keep it short"
            && added.source == format!("chat:{conversation}"))
    }) {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the message never reached the task"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    world
        .say(
            Some(&conversation),
            "and add a CHANGELOG",
            unsure("add a CHANGELOG"),
        )
        .await?;
    let asked = world.item(&task, "routing_suggestion", 0).await?;
    assert_eq!(asked["content"], "add a CHANGELOG", "the first one was answered");
    assert_eq!(
        world.respond(&asked, "Create new task").await?,
        json!({"status": "ok"})
    );
    let spawned = world.spawned().await?;
    assert_eq!(spawned.len(), 2, "{spawned:?}");
    let new_task = asked["id"].as_str().unwrap_or_default();
    let created = world
        .events(new_task)
        .await?
        .into_iter()
        .find_map(|e| match e {
            Payload::TaskSpawned(spawned) => Some(spawned),
            _ => None,
        })
        .unwrap_or_default();
    assert_eq!(created.description, "add a CHANGELOG");
    assert_eq!(
        created.repo.map(|r| format!("{}/{}", r.owner, r.name)).as_deref(),
        Some("acme/widgets")
    );
    assert_eq!(created.conversation_id, conversation);
    world.shutdown.cancel();
    Ok(())
}
