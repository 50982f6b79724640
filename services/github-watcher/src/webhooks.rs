//! GitHub's webhook deliveries (verified by the gateway, on WORK as `work.webhooks.github`):
//! webhooks first, polling as the fallback. A delivery about a watched pull request (its number,
//! or its head commit for CI events) makes the poller look at it now, so a merge, a push or a CI
//! result reaches its task in about a second rather than at the next poll; what happened is then
//! read and reported by the one code path that polling uses too. Each delivery id is acted on
//! once (the idempotency ledger), whatever GitHub or the network repeats.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mainloop_bus::{Delivery, Handler, HandlerError};
use mainloop_events::Payload;
use serde_json::Value;
use sqlx::PgPool;
use tokio::sync::mpsc::UnboundedSender;

const CONSUMER: &str = "github-webhooks";

/// A repository whose deliveries arrived this recently counts as hooked.
const LIVE_FOR: Duration = Duration::from_secs(24 * 3600);

/// Which repositories' webhooks reach us: the poller then polls them only as a fallback.
/// Learned from deliveries (any event, `ping` included), so it starts empty after a restart.
#[derive(Clone, Default)]
pub struct Hooked {
    last: Arc<Mutex<HashMap<String, tokio::time::Instant>>>,
}

impl Hooked {
    pub fn delivered(&self, owner: &str, name: &str) {
        if let Ok(mut last) = self.last.lock() {
            last.insert(
                format!("{owner}/{name}").to_lowercase(),
                tokio::time::Instant::now(),
            );
        }
    }

    pub fn is_hooked(&self, owner: &str, name: &str) -> bool {
        self.last.lock().is_ok_and(|last| {
            last.get(&format!("{owner}/{name}").to_lowercase())
                .is_some_and(|at| at.elapsed() < LIVE_FOR)
        })
    }
}

pub struct Webhooks {
    pub db: PgPool,
    /// Task ids whose pull request the poller should look at now.
    pub nudge: Option<UnboundedSender<String>>,
    pub hooked: Hooked,
}

/// What a delivery is about: a repository, and pull request numbers or a head commit in it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct About {
    pub owner: String,
    pub name: String,
    pub pulls: Vec<i64>,
    pub head_sha: Option<String>,
}

/// Reads what a delivery of `event` is about; `None` for events mainloop does not follow.
pub fn about(event: &str, payload: &Value) -> Option<About> {
    let (owner, name) = payload["repository"]["full_name"].as_str()?.split_once('/')?;
    let number = |v: &Value| v.as_i64();
    let (pulls, head_sha): (Vec<i64>, Option<&str>) = match event {
        "pull_request" | "pull_request_review" | "pull_request_review_comment" => (
            number(&payload["pull_request"]["number"]).into_iter().collect(),
            None,
        ),
        // Comments on pull requests and issues alike (a PR is an issue).
        "issue_comment" => (number(&payload["issue"]["number"]).into_iter().collect(), None),
        "check_run" | "check_suite" => {
            let run = &payload[event];
            let pulls = run["pull_requests"]
                .as_array()
                .map(|prs| prs.iter().filter_map(|p| number(&p["number"])).collect())
                .unwrap_or_default();
            (pulls, run["head_sha"].as_str())
        }
        "status" => (Vec::new(), payload["sha"].as_str()),
        _ => return None,
    };
    Some(About {
        owner: owner.to_string(),
        name: name.to_string(),
        pulls,
        head_sha: head_sha.map(str::to_string),
    })
}

impl Handler for Webhooks {
    async fn handle(&self, delivery: Delivery) -> Result<(), HandlerError> {
        let Some(Payload::GithubWebhookReceived(received)) = &delivery.event.payload else {
            return Ok(());
        };
        let transient = |e: sqlx::Error| HandlerError::Transient(e.to_string());
        let mut tx = self.db.begin().await.map_err(transient)?;
        let first = mainloop_runtime::idempotency::claim(
            &mut tx,
            CONSUMER,
            &received.delivery_id,
            delivery.stream_sequence,
        )
        .await
        .map_err(transient)?;
        if !first {
            tracing::info!(delivery = %received.delivery_id, "webhook delivery seen before; ignored");
            return Ok(());
        }
        let payload: Value = serde_json::from_str(&received.payload_json)
            .map_err(|e| HandlerError::Permanent(format!("delivery {}: {e}", received.delivery_id)))?;
        if let Some((owner, name)) = payload["repository"]["full_name"]
            .as_str()
            .and_then(|full| full.split_once('/'))
        {
            self.hooked.delivered(owner, name);
        }
        let watched = match about(&received.event, &payload) {
            Some(about) => watched(&mut tx, &about).await.map_err(transient)?,
            None => Vec::new(),
        };
        tx.commit().await.map_err(transient)?;
        tracing::info!(
            delivery = %received.delivery_id,
            event = %received.event,
            tasks = watched.len(),
            "webhook delivery"
        );
        if let Some(nudge) = &self.nudge {
            for task in watched {
                let _ = nudge.send(task);
            }
        }
        Ok(())
    }
}

/// The tasks whose watched pull request, or whose issue, the delivery is about.
async fn watched(tx: &mut sqlx::PgConnection, about: &About) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT task_id FROM watches WHERE active AND lower(owner) = lower($1) AND lower(name) = lower($2) \
         AND (pr_number = ANY($3) OR ($4::text IS NOT NULL AND head_sha = $4)) \
         UNION SELECT task_id FROM threads WHERE active AND lower(owner) = lower($1) \
         AND lower(name) = lower($2) AND number = ANY($3)",
    )
    .bind(&about.owner)
    .bind(&about.name)
    .bind(&about.pulls)
    .bind(&about.head_sha)
    .fetch_all(tx)
    .await
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{About, about};

    #[test]
    fn each_followed_event_names_its_pull_request_or_head() {
        let repo = json!({"full_name": "acme/widgets"});
        let of = |pulls: Vec<i64>, head: Option<&str>| {
            Some(About {
                owner: "acme".into(),
                name: "widgets".into(),
                pulls,
                head_sha: head.map(str::to_string),
            })
        };
        let merged =
            json!({"action": "closed", "repository": repo, "pull_request": {"number": 2, "merged": true}});
        assert_eq!(about("pull_request", &merged), of(vec![2], None));
        let comment = json!({"action": "created", "repository": repo, "issue": {"number": 1}});
        assert_eq!(about("issue_comment", &comment), of(vec![1], None));
        let run =
            json!({"repository": repo, "check_run": {"head_sha": "abc", "pull_requests": [{"number": 2}]}});
        assert_eq!(about("check_run", &run), of(vec![2], Some("abc")));
        let status = json!({"repository": repo, "sha": "abc", "state": "success"});
        assert_eq!(about("status", &status), of(vec![], Some("abc")));
        assert_eq!(about("star", &json!({"repository": repo})), None);
        assert_eq!(about("pull_request", &json!({})), None, "no repository");
    }
}
