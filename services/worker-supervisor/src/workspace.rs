//! Workspaces: one bare cache clone per repository, and one git worktree per task that lives
//! across the task's jobs (its branch, its agent HOME). The supervisor, not the agent, fetches
//! and pushes.

use std::path::PathBuf;

use crate::git::{Git, GitError};

#[derive(Debug, Clone)]
pub struct Workspaces {
    root: PathBuf,
    git: Git,
    /// One lock per cached repository: clone, fetch and worktree changes of two jobs on the
    /// same repository must not interleave.
    caches: std::sync::Arc<
        std::sync::Mutex<std::collections::HashMap<PathBuf, std::sync::Arc<tokio::sync::Mutex<()>>>>,
    >,
}

/// A task's checkout, ready for a job.
#[derive(Debug, Clone)]
pub struct Workspace {
    pub dir: PathBuf,
    pub home: PathBuf,
    /// The commit the job starts from; commits after it are the job's.
    pub start: String,
}

impl Workspaces {
    pub fn new(root: PathBuf, git: Git) -> Self {
        Workspaces {
            root,
            git,
            caches: Default::default(),
        }
    }

    fn cache(&self, owner: &str, name: &str) -> PathBuf {
        self.root.join("repos").join(owner).join(format!("{name}.git"))
    }

    /// Fetches the repository into its cache and checks out the task's worktree: detached at
    /// the default branch for planning, on `branch` (created from the default branch, or from
    /// its pushed state) for code jobs. Workspaces are disposable (what matters is pushed): one
    /// that a crash left broken (stale locks, half a clone) is removed and made again.
    pub async fn prepare(
        &self,
        task_id: &str,
        owner: &str,
        name: &str,
        clone_url: &str,
        default_branch: &str,
        branch: Option<&str>,
    ) -> Result<Workspace, GitError> {
        let lock = self
            .caches
            .lock()
            .map(|mut caches| caches.entry(self.cache(owner, name)).or_default().clone())
            .unwrap_or_default();
        let _held = lock.lock().await;
        match self
            .try_prepare(task_id, owner, name, clone_url, default_branch, branch)
            .await
        {
            Ok(workspace) => Ok(workspace),
            Err(err) => {
                // Only this task's worktree is thrown away; other tasks' worktrees live in the cache.
                tracing::warn!(error = %err, task = task_id, "worktree broken; making it again");
                let _ = tokio::fs::remove_dir_all(self.root.join("tasks").join(task_id).join("repo")).await;
                let _ = self
                    .git
                    .run(&self.cache(owner, name), &["worktree", "prune"])
                    .await;
                self.try_prepare(task_id, owner, name, clone_url, default_branch, branch)
                    .await
            }
        }
    }

    async fn try_prepare(
        &self,
        task_id: &str,
        owner: &str,
        name: &str,
        clone_url: &str,
        default_branch: &str,
        branch: Option<&str>,
    ) -> Result<Workspace, GitError> {
        let cache = self.cache(owner, name);
        let io = |e: std::io::Error| GitError {
            args: "mkdir".into(),
            output: e.to_string(),
        };
        if !cache.join("HEAD").is_file() {
            // A clone a crash cut short is started over.
            let _ = tokio::fs::remove_dir_all(&cache).await;
            let parent = cache.parent().unwrap_or(&self.root).to_path_buf();
            tokio::fs::create_dir_all(&parent).await.map_err(io)?;
            self.git
                .run(
                    &parent,
                    &[
                        "clone",
                        "--bare",
                        "--quiet",
                        clone_url,
                        &cache.display().to_string(),
                    ],
                )
                .await?;
        }
        self.git
            .run(
                &cache,
                &[
                    "fetch",
                    "--quiet",
                    "--prune",
                    "origin",
                    "+refs/heads/*:refs/remotes/origin/*",
                ],
            )
            .await?;

        let task_dir = self.root.join("tasks").join(task_id);
        let (dir, home) = (task_dir.join("repo"), task_dir.join("home"));
        tokio::fs::create_dir_all(&home).await.map_err(io)?;
        let base = format!("origin/{default_branch}");
        if !dir.join(".git").exists() {
            self.git.run(&cache, &["worktree", "prune"]).await?;
            self.git
                .run(
                    &cache,
                    &[
                        "worktree",
                        "add",
                        "--quiet",
                        "--detach",
                        &dir.display().to_string(),
                        &base,
                    ],
                )
                .await?;
        }
        match branch {
            None => {
                self.git
                    .run(&dir, &["checkout", "--quiet", "--detach", &base])
                    .await?;
            }
            Some(branch) => {
                let pushed = format!("origin/{branch}");
                let from = if self
                    .git
                    .run(&dir, &["rev-parse", "--verify", "--quiet", &pushed])
                    .await
                    .is_ok()
                {
                    pushed
                } else {
                    base
                };
                self.git
                    .run(&dir, &["checkout", "--quiet", "-B", branch, &from])
                    .await?;
            }
        }
        self.git.run(&dir, &["reset", "--quiet", "--hard"]).await?;
        self.git.run(&dir, &["clean", "--quiet", "-fd"]).await?;
        let start = self.git.run(&dir, &["rev-parse", "HEAD"]).await?;
        Ok(Workspace { dir, home, start })
    }

    /// Removes a finished task's worktree and agent home; the cache clone stays (its stale
    /// worktree entry is pruned the next time a worktree is added to it).
    pub async fn remove(&self, task_id: &str) -> std::io::Result<()> {
        let task_dir = self.root.join("tasks").join(task_id);
        match tokio::fs::remove_dir_all(&task_dir).await {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(err),
            _ => Ok(()),
        }
    }

    /// Commits what the agent changed but did not commit (new files too, but not what
    /// `.gitignore` leaves out); returns how many files that was.
    pub async fn commit_leftovers(&self, workspace: &Workspace, summary: &str) -> Result<usize, GitError> {
        let status = self
            .git
            .run(
                &workspace.dir,
                &["status", "--porcelain", "--untracked-files=all"],
            )
            .await?;
        let files = status.lines().filter(|l| !l.trim().is_empty()).count();
        if files == 0 {
            return Ok(0);
        }
        let title = summary
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("Work of the agent");
        let title: String = title.chars().take(72).collect();
        let message = format!("{title}\n\nCommitted by mainloop: the agent left these changes uncommitted.");
        self.git.run(&workspace.dir, &["add", "-A"]).await?;
        let identity = ["-c", "user.name=mainloop", "-c", "user.email=mainloop@localhost"];
        let commit = ["commit", "--quiet", "--no-verify", "-m", &message];
        self.git
            .run(&workspace.dir, &[&identity[..], &commit[..]].concat())
            .await?;
        Ok(files)
    }

    /// Commits the job made, and the head they lead to.
    pub async fn commits_since(&self, workspace: &Workspace) -> Result<(u32, String), GitError> {
        let head = self.git.run(&workspace.dir, &["rev-parse", "HEAD"]).await?;
        let count = self
            .git
            .run(
                &workspace.dir,
                &["rev-list", "--count", &format!("{}..HEAD", workspace.start)],
            )
            .await?;
        Ok((count.parse().unwrap_or(0), head))
    }

    /// Pushes the branch to the repository (fast-forward only: a task's branch is its own).
    /// Pushing updates the cache's remote-tracking refs, so it takes the cache's lock.
    pub async fn push(
        &self,
        workspace: &Workspace,
        owner: &str,
        name: &str,
        branch: &str,
    ) -> Result<(), GitError> {
        let lock = self
            .caches
            .lock()
            .map(|mut caches| caches.entry(self.cache(owner, name)).or_default().clone())
            .unwrap_or_default();
        let _held = lock.lock().await;
        self.git
            .run(
                &workspace.dir,
                &["push", "--quiet", "origin", &format!("HEAD:refs/heads/{branch}")],
            )
            .await
            .map(drop)
    }
}
