//! Where events live. One subject per aggregate instance, so a writer can guard its append with
//! `Nats-Expected-Last-Subject-Sequence`, and a reader can filter one task or one user.
//!
//! | stream     | subjects                              | written by        |
//! |------------|---------------------------------------|-------------------|
//! | TASKS      | `task.<user>.<task>`                  | scheduler         |
//! | JOBS       | `job.<user>.<task>`                   | worker-supervisor |
//! | LOGS       | `log.<user>.<task>`                   | worker-supervisor |
//! | GITHUB     | `github.<user>.<task>`                | github-watcher    |
//! | CHAT       | `chat.<user>.<conversation>`          | conversation      |
//! | INBOX      | `inbox.<user>`                        | inbox             |
//! | WORK       | `work.jobs.<user>.<task>`, `work.github.<user>.<task>` (work queue) | scheduler |
//! |            | `work.webhooks.github` (work queue)   | gateway           |
//! | DEADLETTER | `dead.<stream>.<consumer>`            | the bus library   |
//!
//! Commands use request/reply on `cmd.<service>.<command>` and are never stored.

use crate::EventError;

pub const TASKS: &str = "TASKS";
pub const JOBS: &str = "JOBS";
pub const LOGS: &str = "LOGS";
pub const GITHUB: &str = "GITHUB";
pub const CHAT: &str = "CHAT";
pub const INBOX: &str = "INBOX";
pub const WORK: &str = "WORK";
pub const DEADLETTER: &str = "DEADLETTER";

/// Checks that an id can stand as one subject token: ids come from people and URLs, and a `.`,
/// `*`, `>` or space would silently widen or split a subject.
pub fn token<'a>(what: &'static str, value: &'a str) -> Result<&'a str, EventError> {
    let ok = !value.is_empty()
        && value.len() <= 128
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(value)
    } else {
        Err(EventError::BadToken {
            what,
            value: value.to_string(),
        })
    }
}

fn per_task(prefix: &str, user_id: &str, task_id: &str) -> Result<String, EventError> {
    Ok(format!(
        "{prefix}.{}.{}",
        token("user id", user_id)?,
        token("task id", task_id)?
    ))
}

pub fn task(user_id: &str, task_id: &str) -> Result<String, EventError> {
    per_task("task", user_id, task_id)
}

pub fn job(user_id: &str, task_id: &str) -> Result<String, EventError> {
    per_task("job", user_id, task_id)
}

pub fn log(user_id: &str, task_id: &str) -> Result<String, EventError> {
    per_task("log", user_id, task_id)
}

pub fn github(user_id: &str, task_id: &str) -> Result<String, EventError> {
    per_task("github", user_id, task_id)
}

pub fn job_work(user_id: &str, task_id: &str) -> Result<String, EventError> {
    per_task("work.jobs", user_id, task_id)
}

pub fn github_work(user_id: &str, task_id: &str) -> Result<String, EventError> {
    per_task("work.github", user_id, task_id)
}

/// Verified GitHub webhook deliveries, for the github-watcher.
pub const GITHUB_WEBHOOKS: &str = "work.webhooks.github";

pub fn chat(user_id: &str, conversation_id: &str) -> Result<String, EventError> {
    Ok(format!(
        "chat.{}.{}",
        token("user id", user_id)?,
        token("conversation id", conversation_id)?
    ))
}

/// Live, not stored (core NATS, no stream): the text of a chat reply as the model writes it,
/// then the stored message once. `live.chat.<user>.<conversation>`.
pub fn chat_live(user_id: &str, conversation_id: &str) -> Result<String, EventError> {
    Ok(format!(
        "live.chat.{}.{}",
        token("user id", user_id)?,
        token("conversation id", conversation_id)?
    ))
}

/// Every live chat subject of one person: `live.chat.<user>.>`.
pub fn chat_live_all(user_id: &str) -> Result<String, EventError> {
    Ok(format!("live.chat.{}.>", token("user id", user_id)?))
}

/// Live, not stored (core NATS, empty body): the person opened their feed (`GET /events`), so
/// a message from them is likely soon. `live.present.<user>`.
pub fn present(user_id: &str) -> Result<String, EventError> {
    Ok(format!("live.present.{}", token("user id", user_id)?))
}

/// Every person's presence subject.
pub const PRESENT_ALL: &str = "live.present.*";

pub fn inbox(user_id: &str) -> Result<String, EventError> {
    Ok(format!("inbox.{}", token("user id", user_id)?))
}

pub fn dead_letter(stream: &str, consumer: &str) -> Result<String, EventError> {
    Ok(format!(
        "dead.{}.{}",
        token("stream", stream)?,
        token("consumer", consumer)?
    ))
}

pub fn command(service: &str, command: &str) -> Result<String, EventError> {
    Ok(format!(
        "cmd.{}.{}",
        token("service", service)?,
        token("command", command)?
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_place_each_aggregate_on_its_own_subject() -> Result<(), EventError> {
        assert_eq!(task("u-1", "0192ab")?, "task.u-1.0192ab");
        assert_eq!(job_work("u", "t")?, "work.jobs.u.t");
        assert_eq!(inbox("u")?, "inbox.u");
        assert_eq!(
            dead_letter("TASKS", "inbox-projector")?,
            "dead.TASKS.inbox-projector"
        );
        Ok(())
    }

    #[test]
    fn ids_that_would_widen_or_split_a_subject_are_refused() {
        for bad in ["", "a.b", "*", ">", "a b", "ü", &"x".repeat(129)] {
            assert!(
                matches!(task(bad, "t"), Err(EventError::BadToken { what: "user id", .. })),
                "{bad:?} accepted"
            );
        }
    }
}
