//! The scheduler as a service: commands over NATS, results from JOBS and GITHUB, requests on
//! WORK, all on a real nats-server and Postgres.

use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, pull};
use futures_util::StreamExt;
use mainloop_bus::{Bus, Expect, request};
use mainloop_events::v1::{
    ErrorCode, IssueCreated, JobMode, JobSucceeded, PlanOutcome, RepoRef, ReviewPlan, SpawnTask,
    TaskAccepted, TaskStatus, job_succeeded,
};
use mainloop_events::{Envelope, Payload, subjects};
use mainloop_testkit::Infra;
use tokio_util::sync::CancellationToken;

struct Running {
    _infra: Infra,
    bus: Bus,
    shutdown: CancellationToken,
    service: tokio::task::JoinHandle<Result<(), mainloop_scheduler::Error>>,
}

async fn start() -> anyhow::Result<Running> {
    let infra = Infra::start()?;
    let shutdown = CancellationToken::new();
    let config = mainloop_scheduler::Config {
        common: infra.common(),
        scheduling: Default::default(),
    };
    let service = tokio::spawn(mainloop_scheduler::run(config, shutdown.clone()));
    infra.ready(1).await?;
    let bus = infra.bus().await?;
    Ok(Running {
        _infra: infra,
        bus,
        shutdown,
        service,
    })
}

fn spawn_command() -> SpawnTask {
    SpawnTask {
        user_id: "u1".into(),
        task_id: "t1".into(),
        repo: Some(RepoRef {
            owner: "acme".into(),
            name: "widgets".into(),
            html_url: "https://github.com/acme/widgets".into(),
        }),
        description: "add a quick start section to the README".into(),
        skip_plan: false,
        conversation_id: "c1".into(),
    }
}

/// Event types on the task's subject, in order, once `count` are there.
async fn task_events(bus: &Bus, count: usize) -> anyhow::Result<Vec<Envelope>> {
    let subject = subjects::task("u1", "t1")?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let events: Vec<Envelope> = bus
            .read_subject(subjects::TASKS, &subject, 0)
            .await?
            .into_iter()
            .map(|s| s.event)
            .collect();
        if events.len() >= count {
            return Ok(events);
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "only {:?}",
            events.iter().map(|e| &e.r#type).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn types(events: &[Envelope]) -> Vec<&str> {
    events.iter().map(|e| e.r#type.as_str()).collect()
}

/// Takes the next work item on `filter` as a worker would.
async fn take_work(bus: &Bus, durable: &str, filter: &str) -> anyhow::Result<Envelope> {
    let stream = bus.jetstream().get_stream(subjects::WORK).await?;
    let consumer = stream
        .get_or_create_consumer(
            durable,
            pull::Config {
                durable_name: Some(durable.into()),
                filter_subject: filter.into(),
                ack_policy: AckPolicy::Explicit,
                ..Default::default()
            },
        )
        .await?;
    let mut messages = consumer
        .fetch()
        .max_messages(1)
        .expires(Duration::from_secs(5))
        .messages()
        .await?;
    let message = messages
        .next()
        .await
        .ok_or_else(|| anyhow::anyhow!("no work arrived"))?
        .map_err(|e| anyhow::anyhow!(e))?;
    message.ack().await.map_err(|e| anyhow::anyhow!(e))?;
    Ok(Envelope::from_bytes(&message.payload)?)
}

#[tokio::test]
async fn a_spawned_task_plans_proposes_and_waits_for_review() -> anyhow::Result<()> {
    let running = start().await?;
    let bus = &running.bus;
    let accepted: TaskAccepted = request::send(
        bus,
        "cmd.scheduler.spawn-task",
        &spawn_command(),
        Duration::from_secs(5),
    )
    .await?;
    assert_eq!(accepted.status(), TaskStatus::Planning);

    let job = take_work(bus, "test-jobs", "work.jobs.>").await?;
    let Some(Payload::JobRequested(requested)) = job.payload else {
        anyhow::bail!("not a job: {job:?}")
    };
    assert_eq!((requested.mode(), requested.attempt), (JobMode::Plan, 1));
    assert_eq!(
        types(&task_events(bus, 4).await?),
        [
            "TaskSpawned",
            "PlanningStarted",
            "GitHubEffectRequested",
            "JobRequested"
        ],
        "the issue is asked for as planning starts"
    );

    // Approving now is refused with the reason, and nothing is stored.
    let early = ReviewPlan {
        user_id: "u1".into(),
        task_id: "t1".into(),
        action: "approve".into(),
        ..Default::default()
    };
    let refused =
        request::send::<_, TaskAccepted>(bus, "cmd.scheduler.review-plan", &early, Duration::from_secs(5))
            .await;
    assert!(
        matches!(&refused, Err(request::RequestError::Rejected { code: ErrorCode::Conflict, message }) if message.contains("planning")),
        "{refused:?}"
    );
    // Another user's id does not find the task.
    let foreign = ReviewPlan {
        user_id: "u2".into(),
        ..early.clone()
    };
    let refused =
        request::send::<_, TaskAccepted>(bus, "cmd.scheduler.review-plan", &foreign, Duration::from_secs(5))
            .await;
    assert!(
        matches!(
            refused,
            Err(request::RequestError::Rejected {
                code: ErrorCode::NotFound,
                ..
            })
        ),
        "{refused:?}"
    );

    // The worker reports the plan; a stale attempt first, which changes nothing.
    for attempt in [7, requested.attempt] {
        let result = Envelope::new(
            "u1",
            "t1",
            Payload::JobSucceeded(JobSucceeded {
                job_id: requested.job_id.clone(),
                attempt,
                mode: JobMode::Plan as i32,
                outcome: Some(job_succeeded::Outcome::Plan(PlanOutcome {
                    plan_text: "1. Write it".into(),
                    ..Default::default()
                })),
                ..Default::default()
            }),
        );
        bus.publish(&subjects::job("u1", "t1")?, &result, Expect::Any)
            .await?;
    }
    let events = task_events(bus, 6).await?;
    assert_eq!(types(&events)[4..], ["PlanProposed", "NeedsApproval"]);
    let effect = take_work(bus, "test-github", "work.github.>").await?;
    assert_eq!(effect.id, events[2].id, "the work item is the task event itself");

    // The issue exists; approval of the current revision starts implementing.
    let created = Envelope::new(
        "u1",
        "t1",
        Payload::IssueCreated(IssueCreated {
            effect_id: "t1:create-issue".into(),
            issue_number: 7,
            issue_url: "u/7".into(),
        }),
    );
    bus.publish(&subjects::github("u1", "t1")?, &created, Expect::Any)
        .await?;
    task_events(bus, 9).await?;
    let approve = ReviewPlan {
        plan_revision: 1,
        ..early
    };
    let accepted: TaskAccepted =
        request::send(bus, "cmd.scheduler.review-plan", &approve, Duration::from_secs(5)).await?;
    assert_eq!(accepted.status(), TaskStatus::Implementing);
    let events = task_events(bus, 13).await?;
    assert_eq!(
        types(&events)[6..],
        [
            "IssueLinked",
            "GitHubEffectRequested",
            "GitHubEffectRequested",
            "PlanApproved",
            "GitHubEffectRequested",
            "ImplementationStarted",
            "JobRequested"
        ],
        "linked: the plan goes into the issue and a comment says how to steer"
    );
    let Some(Payload::IssueLinked(linked)) = &events[6].payload else {
        anyhow::bail!("not linked")
    };
    assert_eq!(linked.issue_number, 7);
    assert_eq!(events[6].causation_id, created.id, "caused by the GitHub event");

    running.shutdown.cancel();
    running.service.await??;
    Ok(())
}

#[tokio::test]
async fn malformed_and_invalid_commands_are_refused_without_storing_anything() -> anyhow::Result<()> {
    let running = start().await?;
    let bus = &running.bus;
    let bad_id = SpawnTask {
        task_id: "t.1".into(),
        ..spawn_command()
    };
    let refused =
        request::send::<_, TaskAccepted>(bus, "cmd.scheduler.spawn-task", &bad_id, Duration::from_secs(5))
            .await;
    assert!(
        matches!(
            refused,
            Err(request::RequestError::Rejected {
                code: ErrorCode::Invalid,
                ..
            })
        ),
        "{refused:?}"
    );
    let no_repo = SpawnTask {
        repo: None,
        ..spawn_command()
    };
    let refused =
        request::send::<_, TaskAccepted>(bus, "cmd.scheduler.spawn-task", &no_repo, Duration::from_secs(5))
            .await;
    assert!(
        matches!(&refused, Err(request::RequestError::Rejected { code: ErrorCode::Invalid, message }) if message.contains("repository")),
        "{refused:?}"
    );
    let mut stream = bus.jetstream().get_stream(subjects::TASKS).await?;
    assert_eq!(stream.info().await?.state.messages, 0);
    running.shutdown.cancel();
    running.service.await??;
    Ok(())
}

/// A retryable failure waits for its timer, which lives in Postgres: a scheduler stopped before
/// it is due fires it after its restart, once.
#[tokio::test]
async fn a_failed_job_is_retried_after_its_backoff_even_across_a_restart() -> anyhow::Result<()> {
    let infra = Infra::start()?;
    let scheduling = mainloop_scheduler::SchedulingSettings {
        job_retry_base_ms: 1500,
        job_retry_max_ms: 1500,
        ..Default::default()
    };
    let start = |shutdown: CancellationToken| {
        tokio::spawn(mainloop_scheduler::run(
            mainloop_scheduler::Config {
                common: infra.common(),
                scheduling: scheduling.clone(),
            },
            shutdown,
        ))
    };
    let first = CancellationToken::new();
    let service = start(first.clone());
    infra.ready(1).await?;
    let bus = infra.bus().await?;
    let _: TaskAccepted = request::send(
        &bus,
        "cmd.scheduler.spawn-task",
        &spawn_command(),
        Duration::from_secs(5),
    )
    .await?;
    let events = task_events(&bus, 4).await?;
    let Some(Payload::JobRequested(job)) = &events[3].payload else {
        anyhow::bail!("{:?}", types(&events))
    };
    let failed = Envelope::new(
        "u1",
        "t1",
        Payload::JobFailed(mainloop_events::v1::JobFailed {
            job_id: job.job_id.clone(),
            attempt: 1,
            mode: JobMode::Plan as i32,
            error: "Claude API error 529: Overloaded".into(),
            retryable: true,
        }),
    );
    let failed_at = tokio::time::Instant::now();
    bus.publish(&subjects::job("u1", "t1")?, &failed, Expect::Any)
        .await?;
    let events = task_events(&bus, 5).await?;
    let Some(Payload::JobRetryScheduled(retry)) = &events[4].payload else {
        anyhow::bail!("{:?}", types(&events))
    };
    assert_eq!(retry.attempt, 2);
    assert!((1200..=1800).contains(&retry.delay_ms), "{}", retry.delay_ms);

    // Stopped before the timer is due, started again.
    first.cancel();
    service.await??;
    let second = CancellationToken::new();
    let service = start(second.clone());
    let events = task_events(&bus, 6).await?;
    let Some(Payload::JobRequested(again)) = &events[5].payload else {
        anyhow::bail!("{:?}", types(&events))
    };
    assert_eq!((again.job_id.as_str(), again.attempt), (job.job_id.as_str(), 2));
    assert!(
        failed_at.elapsed() >= Duration::from_millis(1100),
        "requested only after the backoff ({:?})",
        failed_at.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    let events = task_events(&bus, 6).await?;
    assert_eq!(events.len(), 6, "the timer fired once: {:?}", types(&events));
    second.cancel();
    service.await??;
    Ok(())
}
