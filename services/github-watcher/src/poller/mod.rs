//! Polls the watched pull requests: merges, closes, and the CI state of the current head (see
//! `ci`). Each change is reported once (the last report is stored with the watch), and the time a
//! head was first seen is stored with it too, so "no CI" and "CI timed out" survive restarts.
//!
//! Polling is cheap when nothing happens: every `GET` is conditional (an unchanged pull request
//! is a 304, free of the rate limit), a head whose CI result is final is not asked about again,
//! and each pull request has its own pace (`pace`): the base interval after a change or while CI
//! runs, doubling up to the maximum while it waits quietly for its reviewers.

mod pace;
mod reactions;
mod reviews;
mod threads;

use std::collections::HashMap;
use std::time::Duration;

use mainloop_bus::{Bus, Expect};
use mainloop_events::v1::{ChangedFile, PullRequestClosed, PullRequestMerged};
use mainloop_events::{Envelope, Payload, subjects};
use sqlx::PgPool;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;

use crate::ci::{self, Limits, Observed};
use crate::client::{GitHub, GitHubError};

use pace::Due;
pub use pace::Pace;

#[derive(sqlx::FromRow)]
pub(crate) struct Watch {
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
    pub pace: Pace,
    pub limits: Limits,
    /// Repositories whose webhooks reach us.
    pub hooked: crate::webhooks::Hooked,
    /// Who may steer tasks from GitHub.
    pub steerers: crate::permissions::Steerers,
}

/// Polls until `shutdown`. New watches are picked up within the base interval; a task id sent
/// on `nudged` (a webhook said its pull request changed) is polled at once.
pub async fn run(poller: Poller, mut nudged: UnboundedReceiver<String>, shutdown: CancellationToken) {
    let mut schedule: HashMap<String, Due> = HashMap::new();
    loop {
        let pause = match poll_due(&poller, &mut schedule).await {
            Ok(pause) => pause,
            Err(err) => {
                tracing::warn!(error = %err, "polling GitHub failed; will try again");
                poller.pace.base
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(pause) => {}
            Some(task) = nudged.recv() => {
                let now = tokio::time::Instant::now();
                schedule.insert(task, poller.pace.first(now));
                while let Ok(task) = nudged.try_recv() {
                    schedule.insert(task, poller.pace.first(now));
                }
            }
        }
    }
}

/// Polls every task that is due (its pull request, and the comments on its issue and pull
/// request); returns how long to sleep: until the next one is due (at most the base interval),
/// or as long as GitHub asked to wait.
async fn poll_due(poller: &Poller, schedule: &mut HashMap<String, Due>) -> Result<Duration, String> {
    let failed = |e: sqlx::Error| e.to_string();
    // Threads first: a pull request linked meanwhile then has its watch too, and its thread is
    // never read as a bare issue.
    let threads: Vec<threads::Thread> = sqlx::query_as(threads::ACTIVE)
        .fetch_all(&poller.db)
        .await
        .map_err(failed)?;
    let watches: Vec<Watch> =
        sqlx::query_as("SELECT task_id, user_id, owner, name, pr_number, reported FROM watches WHERE active")
            .fetch_all(&poller.db)
            .await
            .map_err(failed)?;
    let reacted: Vec<reactions::ReactionWatch> = sqlx::query_as(reactions::ACTIVE)
        .fetch_all(&poller.db)
        .await
        .map_err(failed)?;
    let mut tasks: Vec<(&str, &str, &str)> = watches
        .iter()
        .map(|w| (w.task_id.as_str(), w.owner.as_str(), w.name.as_str()))
        .chain(
            threads
                .iter()
                .map(|t| (t.task_id.as_str(), t.owner.as_str(), t.name.as_str())),
        )
        .collect();
    tasks.sort_unstable();
    tasks.dedup_by_key(|(task, _, _)| *task);
    schedule.retain(|task, _| tasks.iter().any(|(t, _, _)| t == task));
    for (task, owner, name) in tasks {
        let now = tokio::time::Instant::now();
        let due = *schedule
            .entry(task.to_string())
            .or_insert_with(|| poller.pace.first(now));
        if due.at > now {
            continue;
        }
        let pull = watches.iter().find(|w| w.task_id == task);
        let on_task = (
            pull,
            threads.iter().filter(|t| t.task_id == task),
            reacted.iter().filter(|r| r.task_id == task),
        );
        let busy = match poll_task(poller, on_task).await {
            Ok(busy) => busy,
            Err(PollError::RateLimited(wait)) => {
                tracing::warn!(?wait, "GitHub rate limit; polling pauses");
                return Ok(wait.max(poller.pace.base));
            }
            // One task GitHub will not show (gone, no access) must not stop the others from
            // being watched; a rate limit stops all polling until its reset.
            Err(PollError::Failed(err)) => {
                tracing::warn!(%task, error = %err, "polling this task's pull request or comments failed");
                false
            }
        };
        let hooked = poller.hooked.is_hooked(owner, name);
        schedule.insert(task.to_string(), poller.pace.after(due, now, busy, hooked));
    }
    let now = tokio::time::Instant::now();
    let next = schedule
        .values()
        .map(|d| d.at)
        .min()
        .unwrap_or(now + poller.pace.base);
    Ok(next.saturating_duration_since(now).min(poller.pace.base))
}

/// Polls one task's pull request, comment threads and watched reactions; `Ok(true)` when
/// anything changed.
async fn poll_task<'a>(
    poller: &Poller,
    (pull, threads, reacted): (
        Option<&Watch>,
        impl Iterator<Item = &'a threads::Thread>,
        impl Iterator<Item = &'a reactions::ReactionWatch>,
    ),
) -> Result<bool, PollError> {
    let (mut busy, pull) = match pull {
        Some(watch) => {
            let polled = poll_watch(poller, watch).await?;
            // A review or review comment changes the pull request's answer.
            let reviewed = polled.changed && reviews::poll(poller, watch, polled.review_comments > 0).await?;
            (
                polled.busy || reviewed,
                Some((watch.pr_number, (polled.changed, polled.comments))),
            )
        }
        None => (false, None),
    };
    for thread in threads {
        // The pull request's own answer says whether its conversation changed (it counts its
        // comments), so its thread costs no call of its own.
        let known = pull
            .filter(|(number, _)| *number == thread.number)
            .map(|(_, changed)| changed);
        busy |= threads::poll(poller, thread, known).await?;
    }
    for watch in reacted {
        busy |= reactions::poll(poller, watch).await?;
    }
    Ok(busy)
}

/// A CI outcome that will not change on the same head: not asked about again.
fn final_outcome(outcome: &str) -> bool {
    matches!(outcome, "passed" | "failed" | "no-ci" | "timed-out")
}

/// What polling a pull request found.
struct Polled {
    /// It changed, or CI still runs on its head: poll again at the base interval.
    busy: bool,
    /// GitHub's answer differed from the last one (not a 304).
    changed: bool,
    /// How many conversation and inline review comments it says it has (none: nothing to read).
    comments: u64,
    review_comments: u64,
}

/// Polls one pull request and reports what changed.
async fn poll_watch(poller: &Poller, watch: &Watch) -> Result<Polled, PollError> {
    let Poller {
        bus,
        db,
        github,
        limits,
        ..
    } = poller;
    let number = u64::try_from(watch.pr_number).unwrap_or_default();
    let fetched = github.pull_fetched(&watch.owner, &watch.name, number).await?;
    let pull = fetched.value;
    let changed = fetched.changed;
    let mut busy = changed;
    let comments = pull["comments"].as_u64().unwrap_or(u64::MAX);
    let review_comments = pull["review_comments"].as_u64().unwrap_or(u64::MAX);
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
            return Ok(Polled {
                busy,
                changed,
                comments,
                review_comments,
            });
        }
        let settled = watch
            .reported
            .as_deref()
            .and_then(|r| r.split_once(':'))
            .is_some_and(|(seen, outcome)| seen == head && final_outcome(outcome));
        if settled {
            return Ok(Polled {
                busy,
                changed,
                comments,
                review_comments,
            });
        }
        let age = head_age(db, &watch.task_id, &head)
            .await
            .map_err(PollError::Failed)?;
        let observed = observe(github, &watch.owner, &watch.name, &head).await?;
        let (outcome, mut payload) = ci::state(number, &head, &observed, age, *limits);
        if let Payload::CiPassed(passed) = &mut payload {
            passed.files = changed_files(github, &watch.owner, &watch.name, number).await?;
        }
        busy |= !final_outcome(outcome);
        (format!("{head}:{outcome}"), payload, true)
    };
    if watch.reported.as_deref() == Some(report.as_str()) {
        return Ok(Polled {
            busy,
            changed,
            comments,
            review_comments,
        });
    }
    let failed = |e: &dyn std::fmt::Display| PollError::Failed(e.to_string());
    let subject = subjects::github(&watch.user_id, &watch.task_id).map_err(|e| failed(&e))?;
    let event = Envelope::new(&watch.user_id, &watch.task_id, payload);
    bus.publish(&subject, &event, Expect::Any)
        .await
        .map_err(|e| failed(&e))?;
    // Only ever switches a watch off: a task that ended meanwhile stays unwatched.
    sqlx::query("UPDATE watches SET reported = $2, active = active AND $3 WHERE task_id = $1")
        .bind(&watch.task_id)
        .bind(&report)
        .bind(keep_watching)
        .execute(db)
        .await
        .map_err(|e| failed(&e))?;
    Ok(Polled {
        busy: true,
        changed,
        comments,
        review_comments,
    })
}

/// Why one task could not be polled: GitHub asked us to wait (then every poll waits),
/// or anything else (then only this one is skipped this round).
#[derive(Debug)]
pub(crate) enum PollError {
    RateLimited(Duration),
    Failed(String),
}

impl From<GitHubError> for PollError {
    fn from(err: GitHubError) -> Self {
        match err {
            GitHubError::RateLimited { wait, .. } => PollError::RateLimited(wait),
            other => PollError::Failed(other.to_string()),
        }
    }
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

/// What GitHub reports on `head`; check suites are asked for only when nothing else reported
/// (they only tell "CI about to start" from "no CI"), to spend fewer calls of the rate limit.
/// What the pull request changes, for the person's review. A rate limit waits like any call;
/// any other failure costs only the list, never the news that CI passed.
async fn changed_files(
    github: &GitHub,
    owner: &str,
    name: &str,
    number: u64,
) -> Result<Vec<ChangedFile>, PollError> {
    match github.pull_files(owner, name, number).await {
        Ok(files) => Ok(ci::changed_files(&files)),
        Err(err) => match PollError::from(err) {
            PollError::RateLimited(wait) => Err(PollError::RateLimited(wait)),
            PollError::Failed(reason) => {
                tracing::warn!(%reason, pr = number, "the pull request's files could not be read");
                Ok(vec![])
            }
        },
    }
}

async fn observe(github: &GitHub, owner: &str, name: &str, head: &str) -> crate::client::Result<Observed> {
    let runs = github.check_runs(owner, name, head).await?;
    let status = github.combined_status(owner, name, head).await?;
    let nothing = runs["check_runs"].as_array().is_none_or(Vec::is_empty)
        && status["statuses"].as_array().is_none_or(Vec::is_empty);
    let suites = if nothing {
        github.check_suites(owner, name, head).await?
    } else {
        serde_json::Value::Null
    };
    Ok(Observed { runs, suites, status })
}
