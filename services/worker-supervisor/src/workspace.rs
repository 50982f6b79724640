//! Workspaces: one bare cache clone per repository, and one clone per task that lives across the
//! task's jobs (its branch, its agent HOME). The task's clone borrows the cache's objects
//! (`git clone --shared`; the cache never collects garbage, so what it lends stays) and belongs
//! to the agent's user, so an agent running as its own unprivileged user can commit in it and
//! touch nothing else. The supervisor, not the agent, fetches and pushes.

use std::path::{Path, PathBuf};

use crate::git::{Git, GitError};

#[derive(Debug, Clone)]
pub struct Workspaces {
    root: PathBuf,
    git: Git,
    /// The agent's user (uid, gid): task directories are handed to it. `None`: ours.
    owner: Option<(u32, u32)>,
    /// One lock per cached repository: a clone or fetch of two jobs on the same repository must
    /// not interleave.
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

fn io_error(action: &str) -> impl Fn(std::io::Error) -> GitError + '_ {
    move |e| GitError {
        args: action.to_string(),
        output: e.to_string(),
    }
}

impl Workspaces {
    pub fn new(root: PathBuf, git: Git, owner: Option<(u32, u32)>) -> Self {
        Workspaces {
            root,
            git,
            owner,
            caches: Default::default(),
        }
    }

    fn cache(&self, owner: &str, name: &str) -> PathBuf {
        self.root.join("repos").join(owner).join(format!("{name}.git"))
    }

    fn task_dir(&self, task_id: &str) -> PathBuf {
        self.root.join("tasks").join(task_id)
    }

    /// Fetches the repository into its cache and checks out the task's clone: detached at the
    /// default branch for planning, on `branch` (created from the default branch, or from its
    /// pushed state) for code jobs. Workspaces are disposable (what matters is pushed): one that
    /// a crash left broken (stale locks, half a clone) is removed and made again.
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
        let held = lock.lock().await;
        let cache = self.cache(owner, name);
        self.refresh_cache(&cache, clone_url).await?;
        drop(held);
        let prepared = match self
            .checkout(task_id, &cache, clone_url, default_branch, branch)
            .await
        {
            Ok(workspace) => Ok(workspace),
            Err(err) if err.is_permanent() => Err(err),
            Err(err) => {
                tracing::warn!(error = %err, task = task_id, "task checkout broken; making it again");
                let _ = tokio::fs::remove_dir_all(self.task_dir(task_id).join("repo")).await;
                self.checkout(task_id, &cache, clone_url, default_branch, branch)
                    .await
            }
        }?;
        self.hand_over(&self.task_dir(task_id)).await?;
        Ok(prepared)
    }

    /// The cache: a bare clone, fetched from GitHub before each job. It lends its objects to
    /// the task clones, so it must never drop one (`gc.auto 0`).
    async fn refresh_cache(&self, cache: &Path, clone_url: &str) -> Result<(), GitError> {
        if !cache.join("HEAD").is_file() {
            // A clone a crash cut short is started over.
            let _ = tokio::fs::remove_dir_all(cache).await;
            let parent = cache.parent().unwrap_or(&self.root).to_path_buf();
            tokio::fs::create_dir_all(&parent)
                .await
                .map_err(io_error("mkdir"))?;
            let target = cache.display().to_string();
            self.git
                .run(&parent, &["clone", "--bare", "--quiet", clone_url, &target])
                .await?;
            self.git.run(cache, &["config", "gc.auto", "0"]).await?;
        }
        self.git
            .run(
                cache,
                &[
                    "fetch",
                    "--quiet",
                    "--prune",
                    "origin",
                    "+refs/heads/*:refs/remotes/origin/*",
                ],
            )
            .await
            .map(drop)
    }

    async fn checkout(
        &self,
        task_id: &str,
        cache: &Path,
        clone_url: &str,
        default_branch: &str,
        branch: Option<&str>,
    ) -> Result<Workspace, GitError> {
        let task_dir = self.task_dir(task_id);
        let (dir, home) = (task_dir.join("repo"), task_dir.join("home"));
        tokio::fs::create_dir_all(&home)
            .await
            .map_err(io_error("mkdir"))?;
        if !dir.join(".git").is_dir() {
            let _ = tokio::fs::remove_dir_all(&dir).await;
            let (from, to) = (cache.display().to_string(), dir.display().to_string());
            self.git
                .run(
                    &task_dir,
                    &["clone", "--shared", "--no-checkout", "--quiet", &from, &to],
                )
                .await?;
            // `origin` is GitHub, as in any clone: an agent's `git push origin` goes there, and
            // fails, having no credentials. Objects come from the cache.
            self.git
                .run(&dir, &["remote", "set-url", "origin", clone_url])
                .await?;
        }
        let cache_path = cache.display().to_string();
        self.git
            .run(
                &dir,
                &[
                    "fetch",
                    "--quiet",
                    "--prune",
                    &cache_path,
                    "+refs/remotes/origin/*:refs/remotes/origin/*",
                ],
            )
            .await?;
        let base = format!("origin/{default_branch}");
        match branch {
            None => {
                self.git
                    .run(&dir, &["checkout", "--quiet", "--force", "--detach", &base])
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
                    .run(&dir, &["checkout", "--quiet", "--force", "-B", branch, &from])
                    .await?;
            }
        }
        self.git.run(&dir, &["reset", "--quiet", "--hard"]).await?;
        self.git.run(&dir, &["clean", "--quiet", "-fd"]).await?;
        let start = self.git.run(&dir, &["rev-parse", "HEAD"]).await?;
        Ok(Workspace { dir, home, start })
    }

    /// Gives a task's directory to the agent's user (what the supervisor's git wrote in it
    /// included), so the agent can work in it; no-op when agents run as us.
    async fn hand_over(&self, dir: &Path) -> Result<(), GitError> {
        let Some((uid, gid)) = self.owner else {
            return Ok(());
        };
        let dir = dir.to_path_buf();
        tokio::task::spawn_blocking(move || chown_tree(&dir, uid, gid))
            .await
            .map_err(|e| GitError {
                args: "chown".into(),
                output: e.to_string(),
            })?
            .map_err(io_error("chown"))
    }

    /// Removes a finished task's clone and agent home; the cache clone stays.
    pub async fn remove(&self, task_id: &str) -> std::io::Result<()> {
        match tokio::fs::remove_dir_all(self.task_dir(task_id)).await {
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
        self.hand_over(&workspace.dir).await?;
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

    /// Pushes the branch to GitHub (fast-forward only: a task's branch is its own).
    pub async fn push(&self, workspace: &Workspace, branch: &str) -> Result<(), GitError> {
        let refspec = format!("HEAD:refs/heads/{branch}");
        self.git
            .run(&workspace.dir, &["push", "--quiet", "origin", &refspec])
            .await?;
        self.hand_over(&workspace.dir).await
    }
}

/// `chown -R` without following symlinks.
fn chown_tree(dir: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    std::os::unix::fs::lchown(dir, Some(uid), Some(gid))?;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let path = entry.path();
            std::os::unix::fs::lchown(&path, Some(uid), Some(gid))?;
            if entry.file_type()?.is_dir() {
                stack.push(path);
            }
        }
    }
    Ok(())
}
