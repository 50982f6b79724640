//! Tasks live on their own subjects in TASKS. Executing a command loads the task (from a cache
//! checked against the subject's last sequence, so another replica's writes are never missed),
//! decides, and appends with the expected last sequence; a conflict reloads and decides again.
//! The cache holds the `CACHED` tasks used most recently: one let go is read again from its
//! subject when next needed, so memory stays flat however many tasks wait.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use lru::LruCache;

use mainloop_bus::{Bus, BusError, Expect};
use mainloop_events::{Envelope, Payload, subjects};

use crate::task::{Command, Rejection, Task, evolve, handle};

/// Appends raced by another writer before we give up.
const MAX_CONFLICTS: usize = 8;

/// Tasks kept in memory at most.
const CACHED: NonZeroUsize = match NonZeroUsize::new(1024) {
    Some(n) => n,
    None => NonZeroUsize::MIN,
};

#[derive(Debug, thiserror::Error)]
pub enum ExecuteError {
    #[error(transparent)]
    Rejected(#[from] Rejection),
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error(transparent)]
    Subject(#[from] mainloop_events::EventError),
    #[error("task {0} kept changing under us; try again")]
    Contended(String),
}

/// What a command did: the task as it is now, and the events appended for it.
#[derive(Debug)]
pub struct Executed {
    pub task: Task,
    pub events: Vec<Envelope>,
}

#[derive(Clone)]
pub struct TaskStore {
    bus: Bus,
    cache: Arc<Mutex<LruCache<String, (Task, u64)>>>,
}

impl TaskStore {
    pub fn new(bus: Bus) -> Self {
        Self::keeping(bus, CACHED)
    }

    /// A store that keeps at most `cached` tasks in memory.
    fn keeping(bus: Bus, cached: NonZeroUsize) -> Self {
        TaskStore {
            bus,
            cache: Arc::new(Mutex::new(LruCache::new(cached))),
        }
    }

    /// The task and the stream sequence of its last event (0 for a task that does not exist).
    pub async fn load(&self, user_id: &str, task_id: &str) -> Result<(Task, u64), ExecuteError> {
        let subject = subjects::task(user_id, task_id)?;
        let last = self.bus.last_sequence(subjects::TASKS, &subject).await?;
        let (mut task, mut seen) = self.cached(&subject).unwrap_or_default();
        if seen > last {
            // The stream was reset under us (a test, or a restore); start over.
            (task, seen) = (Task::default(), 0);
        }
        if seen < last {
            for stored in self.bus.read_subject(subjects::TASKS, &subject, seen).await? {
                if let Some(payload) = &stored.event.payload {
                    evolve(&mut task, payload);
                }
                seen = stored.stream_sequence;
            }
            self.remember(&subject, &task, seen);
        }
        Ok((task, seen))
    }

    /// Decides `command` for the task and appends what it decided, with optimistic concurrency.
    /// `causation` names the event or command that led here.
    pub async fn execute(
        &self,
        user_id: &str,
        task_id: &str,
        command: Command,
        causation: &str,
    ) -> Result<Executed, ExecuteError> {
        let subject = subjects::task(user_id, task_id)?;
        let mut command = command;
        let mut appended = Vec::new();
        for _ in 0..MAX_CONFLICTS {
            let (mut task, mut last) = self.load(user_id, task_id).await?;
            let decided: Vec<Payload> = handle(&mut task, &command)?;
            let mut conflict = false;
            for payload in decided {
                let event = Envelope::new(user_id, task_id, payload).caused_by(causation);
                match self
                    .bus
                    .publish(&subject, &event, Expect::LastSubjectSequence(last))
                    .await
                {
                    Ok(published) => {
                        last = published.stream_sequence;
                        appended.push(event);
                    }
                    Err(BusError::Conflict { .. }) => {
                        conflict = true;
                        break;
                    }
                    Err(err) => return Err(err.into()),
                }
            }
            if !conflict {
                self.remember(&subject, &task, last);
                return Ok(Executed {
                    task,
                    events: appended,
                });
            }
            self.forget(&subject);
            if !appended.is_empty() {
                // The decision itself is stored; what is left are follow-ups, which the reloaded
                // state will ask for again.
                command = Command::Reconcile;
            }
        }
        Err(ExecuteError::Contended(task_id.to_string()))
    }

    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    /// Forgets every cached task (a test suite's reset emptied the streams).
    pub fn forget_all(&self) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.clear();
        }
    }

    fn cached(&self, subject: &str) -> Option<(Task, u64)> {
        self.cache.lock().ok()?.get(subject).cloned()
    }

    fn remember(&self, subject: &str, task: &Task, last: u64) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.put(subject.to_string(), (task.clone(), last));
        }
    }

    fn forget(&self, subject: &str) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.pop(subject);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroUsize;
    use std::time::Duration;

    use mainloop_bus::Bus;
    use mainloop_events::v1::{RepoRef, TaskSpawned, TaskStatus};
    use mainloop_events::{Payload, subjects};
    use mainloop_testkit::TestNats;
    use tokio_util::sync::CancellationToken;

    use super::TaskStore;
    use crate::task::Command;

    fn spawn(task: &str) -> Command {
        Command::Spawn(TaskSpawned {
            task_id: task.into(),
            repo: Some(RepoRef {
                owner: "acme".into(),
                name: "widgets".into(),
                html_url: "https://github.com/acme/widgets".into(),
            }),
            description: format!("work on {task}"),
            ..Default::default()
        })
    }

    #[tokio::test]
    async fn a_task_let_go_is_read_again_from_its_subject_and_decides_the_same() -> anyhow::Result<()> {
        let nats = TestNats::start()?;
        let bus = Bus::connect(
            &nats.url(),
            "test",
            Duration::from_secs(10),
            &CancellationToken::new(),
        )
        .await?;
        bus.ensure_streams(1).await?;
        let store = TaskStore::keeping(bus.clone(), NonZeroUsize::MIN.saturating_add(1));
        for task in ["t1", "t2", "t3"] {
            store.execute("u1", task, spawn(task), "test").await?;
        }
        // Two kept: t1, the least recently used, was let go.
        assert!(store.cached(&subjects::task("u1", "t1")?).is_none());
        assert!(store.cached(&subjects::task("u1", "t3")?).is_some());
        let (task, last) = store.load("u1", "t1").await?;
        assert_eq!(
            last,
            bus.last_sequence(subjects::TASKS, &subjects::task("u1", "t1")?)
                .await?
        );
        assert_eq!(task.description, "work on t1");
        assert_eq!(task.status, TaskStatus::Planning);
        // The same spawn again, decided on the task read back: nothing new is appended.
        let again = store.execute("u1", "t1", spawn("t1"), "test").await;
        assert!(
            again.as_ref().map_or(true, |done| done.events.is_empty()),
            "{again:?}"
        );
        let events = bus
            .read_subject(subjects::TASKS, &subjects::task("u1", "t1")?, 0)
            .await?;
        let spawned = events
            .iter()
            .filter(|s| matches!(s.event.payload, Some(Payload::TaskSpawned(_))))
            .count();
        assert_eq!(spawned, 1);
        Ok(())
    }
}
