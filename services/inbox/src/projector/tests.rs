//! Which way batches go, against real Postgres: a batch of tasks this process wrote last, or one
//! that opens a task of a known project, is one statement; anything else — a project not seen
//! yet, a redelivery, a task someone else moved on, a remembered project that is gone — is a
//! transaction that reads first, and its rows are what the events make of the stored ones.

use mainloop_bus::{Delivery, KeyedHandler};
use mainloop_events::v1::{IssueLinked, PlanningStarted, RepoRef, TaskSpawned};
use mainloop_events::{Envelope, Payload, subjects};
use mainloop_runtime::service::Foundation;
use mainloop_testkit::Infra;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::Projector;
use crate::outbox::Outbox;

fn delivery(task: &str, sequence: u64, payload: Payload) -> anyhow::Result<Delivery> {
    Ok(Delivery {
        event: Envelope::new("u1", task, payload),
        subject: subjects::task("u1", task)?,
        stream_sequence: sequence,
        delivered: 1,
        traceparent: None,
    })
}

fn spawned(task: &str) -> Payload {
    Payload::TaskSpawned(TaskSpawned {
        task_id: task.into(),
        repo: Some(RepoRef {
            owner: "acme".into(),
            name: "widgets".into(),
            html_url: "https://github.com/acme/widgets".into(),
        }),
        description: format!("the work of {task}"),
        ..Default::default()
    })
}

/// Applies `batch`; then how many batches went each way so far (one statement, transaction).
async fn apply(projector: &Projector, batch: Vec<Delivery>) -> anyhow::Result<(u64, u64)> {
    projector
        .apply(&batch)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let ways = &projector.ways;
    Ok((
        ways.one_statement.load(std::sync::atomic::Ordering::Relaxed),
        ways.transaction.load(std::sync::atomic::Ordering::Relaxed),
    ))
}

async fn row(db: &PgPool, task: &str) -> anyhow::Result<(String, String, Option<String>, String)> {
    Ok(sqlx::query_as(
        "SELECT t.status, t.description, t.issue_url, p.full_name FROM tasks t JOIN projects p ON p.id = t.project_id \
         WHERE t.id = $1",
    )
    .bind(task)
    .fetch_one(db)
    .await?)
}

async fn checkpoint(db: &PgPool, task: &str) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT stream_sequence FROM task_checkpoints WHERE subject = $1")
            .bind(subjects::task("u1", task)?)
            .fetch_one(db)
            .await?,
    )
}

#[tokio::test]
async fn what_this_process_follows_is_one_statement_and_anything_else_reads_first() -> anyhow::Result<()> {
    let infra = Infra::start()?;
    let shutdown = CancellationToken::new();
    let foundation = Foundation::start(
        crate::NAME,
        crate::SCHEMA,
        &crate::MIGRATOR,
        &infra.common(),
        &shutdown,
    )
    .await?;
    let db = foundation.db.clone();
    let (outbox, _publisher) = Outbox::new(db.clone(), foundation.bus.clone());
    let projector = Projector::new(db.clone(), outbox);
    projector
        .resume_after()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;

    // The first task of a project nobody has seen: the project is made in a transaction.
    assert_eq!(
        apply(&projector, vec![delivery("t1", 1, spawned("t1"))?]).await?,
        (0, 1)
    );
    // A second task of that project, and the first task planning: one statement each.
    assert_eq!(
        apply(&projector, vec![delivery("t2", 2, spawned("t2"))?]).await?,
        (1, 1)
    );
    let planning = Payload::PlanningStarted(PlanningStarted::default());
    assert_eq!(
        apply(&projector, vec![delivery("t1", 3, planning.clone())?]).await?,
        (2, 1)
    );
    assert_eq!(row(&db, "t1").await?.0, "planning");
    assert_eq!(row(&db, "t2").await?.3, "acme/widgets");
    let last_used: (chrono::DateTime<chrono::Utc>,) = sqlx::query_as("SELECT last_used_at FROM projects")
        .fetch_one(&db)
        .await?;
    let (first, second): (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>) =
        sqlx::query_as("SELECT min(created_at), max(created_at) FROM tasks")
            .fetch_one(&db)
            .await?;
    assert!(first <= second);
    assert_eq!(last_used.0, second, "the project's last use is the second spawn");

    // The same event again (a redelivery): the long way, and nothing applied twice.
    assert_eq!(
        apply(&projector, vec![delivery("t1", 3, planning)?]).await?,
        (2, 2)
    );
    assert_eq!(checkpoint(&db, "t1").await?, 3);

    // Another replica moved t1 on behind this process's back: the expectation fails, nothing
    // of it is written, and the event is applied to the stored row.
    sqlx::query("UPDATE tasks SET description = 'changed elsewhere' WHERE id = 't1'")
        .execute(&db)
        .await?;
    sqlx::query("UPDATE task_checkpoints SET stream_sequence = 5 WHERE subject = $1")
        .bind(subjects::task("u1", "t1")?)
        .execute(&db)
        .await?;
    let linked = Payload::IssueLinked(IssueLinked {
        issue_url: "https://github.com/acme/widgets/issues/7".into(),
        issue_number: 7,
    });
    assert_eq!(apply(&projector, vec![delivery("t1", 6, linked)?]).await?, (2, 3));
    let (status, description, issue, _) = row(&db, "t1").await?;
    assert_eq!(
        (status.as_str(), description.as_str(), issue.as_deref()),
        (
            "planning",
            "changed elsewhere",
            Some("https://github.com/acme/widgets/issues/7")
        )
    );
    assert_eq!(checkpoint(&db, "t1").await?, 6);
    // Written by the long way, kept, and followed again in one statement.
    let again = Payload::PlanningStarted(PlanningStarted::default());
    assert_eq!(apply(&projector, vec![delivery("t1", 7, again)?]).await?, (3, 3));
    assert_eq!(row(&db, "t1").await?.1, "changed elsewhere");
    assert_eq!(checkpoint(&db, "t1").await?, 7);

    // The tables emptied behind its back (a reset whose hook did not run): the project it
    // remembers is gone, the statement that names it fails whole, and the long way makes it anew.
    sqlx::query("TRUNCATE task_history, queue_items, tasks, projects, task_checkpoints")
        .execute(&db)
        .await?;
    assert_eq!(
        apply(&projector, vec![delivery("t3", 8, spawned("t3"))?]).await?,
        (3, 4)
    );
    assert_eq!(row(&db, "t3").await?.3, "acme/widgets");
    assert_eq!(checkpoint(&db, "t3").await?, 8);
    shutdown.cancel();
    Ok(())
}
