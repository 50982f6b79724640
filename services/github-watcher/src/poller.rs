//! Polls the watched pull requests: merges, closes, and the CI state of the current head (see
//! `ci`). Each change is reported once (the last report is stored with the watch), and the time a
//! head was first seen is stored with it too, so "no CI" and "CI timed out" survive restarts.

use std::time::Duration;

use mainloop_bus::{Bus, Expect};
use mainloop_events::v1::{PullRequestClosed, PullRequestMerged};
use mainloop_events::{Envelope, Payload, subjects};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::ci::{self, Limits, Observed};
use crate::client::GitHub;

#[derive(sqlx::FromRow)]
struct Watch {
    task_id: String,
    user_id: String,
    owner: String,
    name: String,
    pr_number: i64,
    reported: Option<String>,
}

pub struct Poller {
    pub bus: Bus,
    pub db: PgPool,
    pub github: GitHub,
    pub interval: Duration,
    pub limits: Limits,
}

pub async fn run(poller: Poller, shutdown: CancellationToken) {
    let Poller {
        bus,
        db,
        github,
        interval,
        limits,
    } = &poller;
    loop {
        if let Err(err) = poll_once(bus, db, github, *limits).await {
            tracing::warn!(error = %err, "polling GitHub failed; will try again");
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(*interval) => {}
        }
    }
}

async fn poll_once(bus: &Bus, db: &PgPool, github: &GitHub, limits: Limits) -> Result<(), String> {
    let watches: Vec<Watch> =
        sqlx::query_as("SELECT task_id, user_id, owner, name, pr_number, reported FROM watches WHERE active")
            .fetch_all(db)
            .await
            .map_err(|e| e.to_string())?;
    for watch in watches {
        // One pull request GitHub will not show (gone, no access, rate limit) must not stop
        // the others from being watched.
        if let Err(err) = poll_watch(bus, db, github, &watch, limits).await {
            tracing::warn!(task = %watch.task_id, pr = watch.pr_number, error = %err, "polling this pull request failed");
        }
    }
    Ok(())
}

async fn poll_watch(
    bus: &Bus,
    db: &PgPool,
    github: &GitHub,
    watch: &Watch,
    limits: Limits,
) -> Result<(), String> {
    let number = u64::try_from(watch.pr_number).unwrap_or_default();
    let pull = github
        .pull(&watch.owner, &watch.name, number)
        .await
        .map_err(|e| e.to_string())?;
    let (report, payload, keep_watching) = if pull["merged"].as_bool().unwrap_or(false) {
        (
            "merged".to_string(),
            Payload::PullRequestMerged(PullRequestMerged {
                pr_number: number,
                merge_sha: String::new(),
            }),
            false,
        )
    } else if pull["state"] == "closed" {
        (
            "closed".to_string(),
            Payload::PullRequestClosed(PullRequestClosed { pr_number: number }),
            false,
        )
    } else {
        let head = pull["head"]["sha"].as_str().unwrap_or_default().to_string();
        if head.is_empty() {
            return Ok(());
        }
        let age = head_age(db, &watch.task_id, &head).await?;
        let observed = observe(github, &watch.owner, &watch.name, &head)
            .await
            .map_err(|e| e.to_string())?;
        let (outcome, payload) = ci::state(number, &head, &observed, age, limits);
        (format!("{head}:{outcome}"), payload, true)
    };
    if watch.reported.as_deref() == Some(report.as_str()) {
        return Ok(());
    }
    let subject = subjects::github(&watch.user_id, &watch.task_id).map_err(|e| e.to_string())?;
    let event = Envelope::new(&watch.user_id, &watch.task_id, payload);
    bus.publish(&subject, &event, Expect::Any)
        .await
        .map_err(|e| e.to_string())?;
    // Only ever switches a watch off: a task that ended meanwhile stays unwatched.
    sqlx::query("UPDATE watches SET reported = $2, active = active AND $3 WHERE task_id = $1")
        .bind(&watch.task_id)
        .bind(&report)
        .bind(keep_watching)
        .execute(db)
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// How long `head` has been the watched head; a new head starts the clock again.
async fn head_age(db: &PgPool, task_id: &str, head: &str) -> Result<Duration, String> {
    let seconds: f64 = sqlx::query_scalar(
        "UPDATE watches SET head_sha = $2, \
           head_seen_at = CASE WHEN head_sha IS DISTINCT FROM $2 OR head_seen_at IS NULL THEN now() ELSE head_seen_at END \
         WHERE task_id = $1 RETURNING EXTRACT(EPOCH FROM now() - head_seen_at)::float8",
    )
    .bind(task_id)
    .bind(head)
    .fetch_one(db)
    .await
    .map_err(|e| e.to_string())?;
    Ok(Duration::from_secs_f64(seconds.max(0.0)))
}

async fn observe(github: &GitHub, owner: &str, name: &str, head: &str) -> crate::client::Result<Observed> {
    Ok(Observed {
        runs: github.check_runs(owner, name, head).await?,
        suites: github.check_suites(owner, name, head).await?,
        status: github.combined_status(owner, name, head).await?,
    })
}
