//! The task rows this process wrote last, so a batch need not read them back. Each is kept with
//! the generation and the checkpoint its transaction moved the task's subject to; when the next
//! batch claims that subject and finds the checkpoint still there, nobody (no replica, no
//! rebuild) has written the row since, and the kept row is the stored one. Bounded: the least
//! recently written are forgotten and read from Postgres when they come back.

use std::num::NonZeroUsize;
use std::sync::Mutex;

use lru::LruCache;

use super::tasks::Task;

/// Task rows kept at most.
const KEPT: NonZeroUsize = match NonZeroUsize::new(1024) {
    Some(n) => n,
    None => NonZeroUsize::MIN,
};

struct Kept {
    generation: i64,
    sequence: i64,
    task: Task,
}

pub(super) struct Rows {
    kept: Mutex<LruCache<String, Kept>>,
}

impl Default for Rows {
    fn default() -> Self {
        Rows {
            kept: Mutex::new(LruCache::new(KEPT)),
        }
    }
}

impl Rows {
    /// The row of task `task_id` on `subject`, if this process wrote it in `generation` when it
    /// moved the subject's checkpoint to `claimed`, where the checkpoint still is.
    pub(super) fn current(
        &self,
        subject: &str,
        task_id: &str,
        generation: i64,
        claimed: i64,
    ) -> Option<Task> {
        let mut kept = self.kept.lock().ok()?;
        let found = kept.get(subject)?;
        let current = found.generation == generation && found.sequence == claimed && found.task.id == task_id;
        current.then(|| found.task.clone())
    }

    /// Keeps rows just committed: each task's subject, the checkpoint it was moved to, its row.
    pub(super) fn keep(&self, generation: i64, written: Vec<(String, i64, Task)>) {
        let Ok(mut kept) = self.kept.lock() else {
            return;
        };
        for (subject, sequence, task) in written {
            kept.put(
                subject,
                Kept {
                    generation,
                    sequence,
                    task,
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Rows, Task};

    fn task(id: &str, status: &str) -> Task {
        Task {
            id: id.into(),
            status: status.into(),
            ..Task::default()
        }
    }

    #[test]
    fn a_kept_row_is_current_only_where_its_checkpoint_and_generation_still_are() {
        let rows = Rows::default();
        rows.keep(1, vec![("task.u.t1".into(), 7, task("t1", "planning"))]);
        assert_eq!(
            rows.current("task.u.t1", "t1", 1, 7).map(|t| t.status),
            Some("planning".into())
        );
        assert!(
            rows.current("task.u.t1", "t1", 1, 9).is_none(),
            "someone else moved it"
        );
        assert!(
            rows.current("task.u.t1", "t1", 2, 7).is_none(),
            "a rebuild came between"
        );
        assert!(rows.current("task.u.t1", "t2", 1, 7).is_none(), "another task");
        assert!(rows.current("task.u.t9", "t9", 1, 7).is_none(), "never kept");
    }
}
