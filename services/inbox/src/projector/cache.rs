//! The task rows this process wrote last, so a batch need not read them back. Each is kept with
//! the generation and the checkpoint its transaction moved the task's subject to; when the next
//! batch claims that subject and finds the checkpoint still there, nobody (no replica, no
//! rebuild) has written the row since, and the kept row is the stored one. Bounded: the least
//! recently written are forgotten and read from Postgres when they come back.
//!
//! Beside them, the projects this process saw committed ([`Projects`]): a project's id never
//! changes once made, and only a rebuild (a new generation) or a test mode's reset removes it, so
//! a batch applied on what the process expects (`expected`) names a known project without an
//! upsert, only moving its last use; were it gone, the task's reference to it would fail that
//! statement and the batch would go the long way, which always asks Postgres.

use std::num::NonZeroUsize;
use std::sync::Mutex;

use lru::LruCache;

use super::tasks::{Project, ProjectKey, Task};

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
        let (sequence, task) = self.kept(subject, task_id, generation)?;
        (sequence == claimed).then_some(task)
    }

    /// The row of task `task_id` on `subject` this process wrote last in `generation`, and the
    /// checkpoint its transaction moved the subject to: where the checkpoint is, unless someone
    /// else moved it since (which the claim that relies on it checks).
    pub(super) fn kept(&self, subject: &str, task_id: &str, generation: i64) -> Option<(i64, Task)> {
        let mut kept = self.kept.lock().ok()?;
        let found = kept.get(subject)?;
        (found.generation == generation && found.task.id == task_id)
            .then(|| (found.sequence, found.task.clone()))
    }

    pub(super) fn forget(&self) {
        if let Ok(mut kept) = self.kept.lock() {
            kept.clear();
        }
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

/// The projects this process saw committed, by person and `owner/name`, each with its generation.
pub(super) struct Projects {
    kept: Mutex<LruCache<ProjectKey, (i64, Project)>>,
}

impl Default for Projects {
    fn default() -> Self {
        Projects {
            kept: Mutex::new(LruCache::new(KEPT)),
        }
    }
}

impl Projects {
    /// The project named `key`, if it was committed in `generation`.
    pub(super) fn known(&self, generation: i64, key: &ProjectKey) -> Option<Project> {
        let mut kept = self.kept.lock().ok()?;
        let (kept_in, project) = kept.get(key)?;
        (*kept_in == generation).then(|| project.clone())
    }

    pub(super) fn forget(&self) {
        if let Ok(mut kept) = self.kept.lock() {
            kept.clear();
        }
    }

    /// Keeps projects a committed batch named.
    pub(super) fn keep(&self, generation: i64, named: impl IntoIterator<Item = (ProjectKey, Project)>) {
        let Ok(mut kept) = self.kept.lock() else {
            return;
        };
        for (key, project) in named {
            kept.put(key, (generation, project));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Project, Projects, Rows, Task};

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

    #[test]
    fn a_kept_project_is_known_only_in_its_generation() {
        let projects = Projects::default();
        let key = ("u".to_string(), "acme/widgets".to_string());
        let project = Project {
            id: "p1".into(),
            full_name: "acme/widgets".into(),
        };
        projects.keep(3, [(key.clone(), project)]);
        assert_eq!(projects.known(3, &key).map(|p| p.id), Some("p1".into()));
        assert!(projects.known(4, &key).is_none(), "a rebuild came between");
        let other = ("v".to_string(), "acme/widgets".to_string());
        assert!(projects.known(3, &other).is_none(), "another person's");
    }
}
