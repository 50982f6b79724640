//! What the model should know about the person's work before it answers: their active tasks
//! (id, status, repository, what they asked) and the five repositories they used most recently,
//! so "what is running?" needs no guess and "do the same on widgets" knows which widgets. Read
//! from the inbox's read model, and kept warm: read again only once the inbox says something of
//! the person's changed (its feed on `inbox.<user>`, published after its commit), or after
//! `KEPT` in case a change went by while NATS was away. When it cannot be read, the model is
//! told so.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use futures_util::{FutureExt, StreamExt};
use mainloop_bus::{Bus, request};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// Recent repositories the model is told about.
const RECENT_REPOSITORIES: usize = 5;
/// How long a person's context is used without a word from the inbox.
const KEPT: Duration = Duration::from_secs(60);

/// The people's contexts, kept warm.
#[derive(Clone)]
pub struct Context {
    bus: Bus,
    known: Arc<Mutex<HashMap<String, Known>>>,
}

/// One person's: how many changes were heard of, what was read (when) since the last, and a
/// read under way, which a turn arriving meanwhile waits for instead of reading again.
#[derive(Default)]
struct Known {
    changes: u64,
    read: Option<(Instant, String)>,
    reading: Option<(u64, Reading)>,
}

/// A read of the person's tasks that several may wait for.
type Reading = futures_util::future::Shared<futures_util::future::BoxFuture<'static, Result<String, String>>>;

impl Context {
    /// Listens to the inbox's feed (in `tasks`, until `shutdown`), forgetting a person's context
    /// at each word of theirs.
    pub async fn start(
        bus: Bus,
        tasks: &mut tokio::task::JoinSet<()>,
        shutdown: CancellationToken,
    ) -> Result<Context, async_nats::SubscribeError> {
        let mut feed = bus.client().subscribe("inbox.*").await?;
        let context = Context {
            bus,
            known: Arc::default(),
        };
        let forgetting = context.clone();
        tasks.spawn(async move {
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    heard = feed.next() => match heard {
                        Some(message) => forgetting.changed(message.subject.trim_start_matches("inbox.")),
                        None => return,
                    },
                }
            }
        });
        Ok(context)
    }

    fn known(&self) -> MutexGuard<'_, HashMap<String, Known>> {
        self.known.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Forgets every person's context (a test suite's reset).
    pub fn forget_all(&self) {
        self.known().clear();
    }

    fn changed(&self, user: &str) {
        let mut known = self.known();
        let person = known.entry(user.to_string()).or_default();
        person.changes += 1;
        person.read = None;
    }

    /// What the model is told about `user`'s work: what was read, while it is fresh; else the
    /// read under way (one started after the last change heard), else a new read.
    pub async fn about(&self, user: &str) -> String {
        let (changes, reading) = {
            let mut known = self.known();
            let person = known.entry(user.to_string()).or_default();
            match (&person.read, &person.reading) {
                (Some((at, said)), _) if at.elapsed() < KEPT => return said.clone(),
                (_, Some((since, reading))) if *since == person.changes => (*since, reading.clone()),
                _ => {
                    let reading = read_tasks(self.bus.clone(), user.to_string()).boxed().shared();
                    person.reading = Some((person.changes, reading.clone()));
                    (person.changes, reading)
                }
            }
        };
        let read = reading.await;
        let mut known = self.known();
        let person = known.entry(user.to_string()).or_default();
        if person
            .reading
            .as_ref()
            .is_some_and(|(since, _)| *since == changes)
        {
            person.reading = None;
        }
        match read {
            Ok(said) => {
                // A change heard while reading may not be in what was read: not kept.
                if person.changes == changes {
                    person.read = Some((Instant::now(), said.clone()));
                }
                said
            }
            // Not kept: the next turn reads again.
            Err(unread) => unread,
        }
    }
}

/// The person's tasks as the model is told them, read from the inbox; or, when they cannot be
/// read, what the model is told instead.
async fn read_tasks(bus: Bus, user: String) -> Result<String, String> {
    let tasks: Value = match request::send_json(
        &bus,
        "query.inbox.list-tasks",
        &json!({"user_id": user}),
        Duration::from_secs(5),
    )
    .await
    {
        Ok(tasks) => tasks,
        Err(err) => {
            tracing::warn!(error = %err, "the person's tasks could not be read for the model");
            return Err(
                "The person's tasks could not be read just now; use list_tasks if they ask about them."
                    .into(),
            );
        }
    };
    Ok(describe(&tasks))
}

fn describe(tasks: &Value) -> String {
    let all: Vec<&Value> = tasks.as_array().into_iter().flatten().collect();
    let active: Vec<String> = all
        .iter()
        .filter(|t| {
            !matches!(
                t["status"].as_str(),
                Some("completed" | "failed" | "cancelled") | None
            )
        })
        .map(|t| {
            format!(
                "- {} [{}] {} — {}",
                t["id"].as_str().unwrap_or_default(),
                t["status"].as_str().unwrap_or_default(),
                repo(t),
                t["description"]
                    .as_str()
                    .unwrap_or_default()
                    .chars()
                    .take(160)
                    .collect::<String>()
            )
        })
        .collect();
    let mut recent: Vec<String> = Vec::new();
    for task in &all {
        let url = task["repo_url"].as_str().unwrap_or_default();
        if !url.is_empty() && !recent.iter().any(|r| r == url) && recent.len() < RECENT_REPOSITORIES {
            recent.push(url.to_string());
        }
    }
    let active = if active.is_empty() {
        "The person has no active tasks.".to_string()
    } else {
        format!("The person's active tasks (newest first):\n{}", active.join("\n"))
    };
    let recent = if recent.is_empty() {
        String::new()
    } else {
        format!(
            "\n\nRepositories they used most recently:\n- {}",
            recent.join("\n- ")
        )
    };
    format!("{active}{recent}")
}

fn repo(task: &Value) -> &str {
    task["repo_url"]
        .as_str()
        .unwrap_or_default()
        .trim_start_matches("https://github.com/")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::describe;

    #[test]
    fn active_tasks_and_five_recent_repositories() {
        let task = |id: &str, status: &str, repo: &str| json!({"id": id, "status": status, "repo_url": format!("https://github.com/acme/{repo}"), "description": format!("work on {repo}")});
        let tasks = json!([
            task("t7", "implementing", "widgets"),
            task("t6", "completed", "gadgets"),
            task("t5", "waiting_plan_review", "widgets"),
            task("t4", "failed", "a"),
            task("t3", "completed", "b"),
            task("t2", "completed", "c"),
            task("t1", "completed", "d"),
        ]);
        assert_eq!(
            describe(&tasks),
            "The person's active tasks (newest first):\n\
             - t7 [implementing] acme/widgets — work on widgets\n\
             - t5 [waiting_plan_review] acme/widgets — work on widgets\n\n\
             Repositories they used most recently:\n\
             - https://github.com/acme/widgets\n- https://github.com/acme/gadgets\n- https://github.com/acme/a\n\
             - https://github.com/acme/b\n- https://github.com/acme/c"
        );
        assert_eq!(describe(&json!([])), "The person has no active tasks.");
    }
}
