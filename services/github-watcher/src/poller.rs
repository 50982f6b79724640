//! Polls the watched pull requests: merges, closes, and the CI state of the current head. Each
//! change is reported once (the last report is stored with the watch). CI semantics: no checks
//! yet is pending (never a false green after a push); cancelled, timed out, action required and
//! stale count as failures.

use std::time::Duration;

use mainloop_bus::{Bus, Expect};
use mainloop_events::v1::{
    CheckFailure, CiFailed, CiPassed, CiPending, PullRequestClosed, PullRequestMerged,
};
use mainloop_events::{Envelope, Payload, subjects};
use serde_json::Value;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

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

pub async fn run(bus: Bus, db: PgPool, github: GitHub, interval: Duration, shutdown: CancellationToken) {
    loop {
        if let Err(err) = poll_once(&bus, &db, &github).await {
            tracing::warn!(error = %err, "polling GitHub failed; will try again");
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}

async fn poll_once(bus: &Bus, db: &PgPool, github: &GitHub) -> Result<(), String> {
    let watches: Vec<Watch> =
        sqlx::query_as("SELECT task_id, user_id, owner, name, pr_number, reported FROM watches WHERE active")
            .fetch_all(db)
            .await
            .map_err(|e| e.to_string())?;
    for watch in watches {
        // One pull request GitHub will not show (gone, no access, rate limit) must not stop
        // the others from being watched.
        if let Err(err) = poll_watch(bus, db, github, &watch).await {
            tracing::warn!(task = %watch.task_id, pr = watch.pr_number, error = %err, "polling this pull request failed");
        }
    }
    Ok(())
}

async fn poll_watch(bus: &Bus, db: &PgPool, github: &GitHub, watch: &Watch) -> Result<(), String> {
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
        let runs = github
            .check_runs(&watch.owner, &watch.name, &head)
            .await
            .map_err(|e| e.to_string())?;
        let (outcome, payload) = ci_state(number, &head, &runs);
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

/// The CI state of `head` from its check runs.
pub fn ci_state(pr_number: u64, head: &str, runs: &Value) -> (&'static str, Payload) {
    let runs = runs["check_runs"].as_array().cloned().unwrap_or_default();
    let pending = || {
        Payload::CiPending(CiPending {
            pr_number,
            head_sha: head.to_string(),
        })
    };
    if runs.is_empty() || runs.iter().any(|r| r["status"] != "completed") {
        return ("pending", pending());
    }
    let failures: Vec<CheckFailure> = runs
        .iter()
        .filter(|r| !matches!(r["conclusion"].as_str(), Some("success" | "neutral" | "skipped")))
        .map(|r| CheckFailure {
            name: r["name"].as_str().unwrap_or_default().to_string(),
            conclusion: r["conclusion"].as_str().unwrap_or("unknown").to_string(),
            title: r["output"]["title"].as_str().unwrap_or_default().to_string(),
            summary: r["output"]["summary"]
                .as_str()
                .unwrap_or_default()
                .chars()
                .take(4000)
                .collect(),
            details_url: r["details_url"].as_str().unwrap_or_default().to_string(),
        })
        .collect();
    if failures.is_empty() {
        (
            "passed",
            Payload::CiPassed(CiPassed {
                pr_number,
                head_sha: head.to_string(),
            }),
        )
    } else {
        (
            "failed",
            Payload::CiFailed(CiFailed {
                pr_number,
                head_sha: head.to_string(),
                failures,
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::ci_state;

    #[test]
    fn ci_is_green_only_when_every_check_finished_well() {
        assert_eq!(
            ci_state(1, "s", &json!({"check_runs": []})).0,
            "pending",
            "no checks yet is not green"
        );
        let running = json!({"check_runs": [{"status": "completed", "conclusion": "success"}, {"status": "in_progress", "conclusion": null}]});
        assert_eq!(ci_state(1, "s", &running).0, "pending");
        let cancelled =
            json!({"check_runs": [{"status": "completed", "conclusion": "cancelled", "name": "build"}]});
        assert_eq!(ci_state(1, "s", &cancelled).0, "failed", "cancelled is a failure");
        let green = json!({"check_runs": [{"status": "completed", "conclusion": "success"}, {"status": "completed", "conclusion": "skipped"}]});
        assert_eq!(ci_state(1, "s", &green).0, "passed");
    }
}
