//! Workspaces: one bare cache clone per repository, ours, which alone talks to GitHub; and one
//! clone per task that lives across the task's jobs (its branch, its agent HOME), the agent's.
//! The task's clone borrows the cache's objects (`git clone --shared`; the cache never collects
//! garbage, so what it lends stays) and belongs to the agent's user: every git command in it runs
//! as that user, without the token and with hooks off, so nothing the agent writes into it runs
//! with more rights than the agent has. To push, the cache fetches the task's branch from the
//! clone and pushes it to GitHub's own clone URL, never to a URL the agent could have changed.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::git::{AsAgent, Git, GitError};

/// Where the workspaces live. Locally the task clones borrow the cache's objects and the
/// directories are made walkable for the agent's user; in a Kubernetes Job the cache and the
/// task's clone are separate volumes (the agent never mounts the cache), so the clone holds
/// its own copy of the objects and the volumes' own permissions stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Local,
    Pod,
}

#[derive(Debug, Clone)]
pub struct Workspaces {
    root: PathBuf,
    git: Git,
    layout: Layout,
    /// The agent's user (uid, gid): task directories are given to it. `None`: ours.
    owner: Option<(u32, u32)>,
    /// One lock per cached repository: its fetches and pushes must not interleave.
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
    task_id: String,
    cache: PathBuf,
    clone_url: String,
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
            layout: Layout::Local,
            owner,
            caches: Default::default(),
        }
    }

    /// Workspaces inside a Kubernetes Job's pod (see [`Layout::Pod`]).
    pub fn in_pod(root: PathBuf, git: Git) -> Self {
        Workspaces {
            layout: Layout::Pod,
            ..Workspaces::new(root, git, None)
        }
    }

    /// The task's workspace as `prepare` left it, for a later step that knows where the job
    /// started (in a pod, the deliver step).
    pub fn reopen(&self, task_id: &str, owner: &str, name: &str, clone_url: &str, start: &str) -> Workspace {
        Workspace {
            dir: self.task_dir(task_id).join("repo"),
            home: self.task_dir(task_id).join("home"),
            start: start.to_string(),
            task_id: task_id.to_string(),
            cache: self.cache(owner, name),
            clone_url: clone_url.to_string(),
        }
    }

    /// Makes `dir` (and, locally, its ancestors up to the root) walkable by every task's agent.
    async fn shared_dir(&self, dir: &Path) -> Result<(), GitError> {
        match self.layout {
            Layout::Local => shared_dirs(&self.root, dir).await,
            Layout::Pod => tokio::fs::create_dir_all(dir).await.map_err(io_error("mkdir")),
        }
    }

    fn cache(&self, owner: &str, name: &str) -> PathBuf {
        self.root.join("repos").join(owner).join(format!("{name}.git"))
    }

    fn task_dir(&self, task_id: &str) -> PathBuf {
        self.root.join("tasks").join(task_id)
    }

    fn as_agent<'a>(&self, home: &'a Path) -> AsAgent<'a> {
        AsAgent {
            user: self.owner,
            home,
        }
    }

    async fn lock(&self, cache: &Path) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = self
            .caches
            .lock()
            .map(|mut caches| caches.entry(cache.to_path_buf()).or_default().clone())
            .unwrap_or_default();
        lock.lock_owned().await
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
        let cache = self.cache(owner, name);
        let held = self.lock(&cache).await;
        self.refresh_cache(&cache, clone_url).await?;
        drop(held);
        let workspace = Workspace {
            dir: self.task_dir(task_id).join("repo"),
            home: self.task_dir(task_id).join("home"),
            start: String::new(),
            task_id: task_id.to_string(),
            cache,
            clone_url: clone_url.to_string(),
        };
        match self.checkout(&workspace, default_branch, branch).await {
            Ok(start) => Ok(Workspace { start, ..workspace }),
            Err(err) if err.is_permanent() => Err(err),
            Err(err) => {
                tracing::warn!(error = %err, task = task_id, "task checkout broken; making it again");
                let _ = tokio::fs::remove_dir_all(&workspace.dir).await;
                let start = self.checkout(&workspace, default_branch, branch).await?;
                Ok(Workspace { start, ..workspace })
            }
        }
    }

    /// The cache: a bare clone, fetched from GitHub before each job. It lends its objects to
    /// the task clones, so it must never drop one (no gc, no background maintenance).
    async fn refresh_cache(&self, cache: &Path, clone_url: &str) -> Result<(), GitError> {
        if !cache.join("HEAD").is_file() {
            // A clone a crash cut short is started over.
            let _ = tokio::fs::remove_dir_all(cache).await;
            let parent = cache.parent().unwrap_or(&self.root).to_path_buf();
            self.shared_dir(&parent).await?;
            let target = cache.display().to_string();
            self.git
                .remote(
                    &parent,
                    &[
                        "clone",
                        "--bare",
                        "--quiet",
                        "--config",
                        "core.sharedRepository=world",
                        clone_url,
                        &target,
                    ],
                )
                .await?;
        }
        // Readable by every task's agent, whatever the umask (their clones borrow its objects).
        self.git
            .remote(cache, &["config", "core.sharedRepository", "world"])
            .await?;
        self.git.remote(cache, &["config", "gc.auto", "0"]).await?;
        self.git
            .remote(cache, &["config", "maintenance.auto", "false"])
            .await?;
        self.git
            .remote(
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

    /// The task's directory (the agent's), its clone, and the commit the job starts from.
    async fn checkout(
        &self,
        workspace: &Workspace,
        default_branch: &str,
        branch: Option<&str>,
    ) -> Result<String, GitError> {
        let task_dir = self.task_dir(&workspace.task_id);
        self.shared_dir(&self.root.join("tasks")).await?;
        self.owned_dir(&task_dir).await?;
        self.owned_dir(&workspace.home).await?;
        let (dir, agent) = (&workspace.dir, self.as_agent(&workspace.home));
        if !dir.join(".git").is_dir() {
            let _ = tokio::fs::remove_dir_all(dir).await;
            let (from, to) = (workspace.cache.display().to_string(), dir.display().to_string());
            let objects = match self.layout {
                Layout::Local => "--shared",
                Layout::Pod => "--no-hardlinks",
            };
            self.git
                .in_clone(
                    &task_dir,
                    agent,
                    &["clone", objects, "--no-checkout", "--quiet", &from, &to],
                )
                .await?;
            // `origin` is GitHub, as in any clone: an agent's `git push origin` goes there, and
            // fails, having no credentials. Objects come from the cache.
            self.git
                .in_clone(dir, agent, &["remote", "set-url", "origin", &workspace.clone_url])
                .await?;
        }
        let cache = workspace.cache.display().to_string();
        self.git
            .in_clone(
                dir,
                agent,
                &[
                    "fetch",
                    "--quiet",
                    "--prune",
                    &cache,
                    "+refs/remotes/origin/*:refs/remotes/origin/*",
                ],
            )
            .await?;
        let base = format!("origin/{default_branch}");
        match branch {
            None => {
                self.git
                    .in_clone(dir, agent, &["checkout", "--quiet", "--force", "--detach", &base])
                    .await?;
            }
            Some(branch) => {
                let pushed = format!("origin/{branch}");
                let exists = self
                    .git
                    .in_clone(dir, agent, &["rev-parse", "--verify", "--quiet", &pushed])
                    .await
                    .is_ok();
                let from = if exists { pushed } else { base };
                self.git
                    .in_clone(
                        dir,
                        agent,
                        &["checkout", "--quiet", "--force", "-B", branch, &from],
                    )
                    .await?;
            }
        }
        self.git
            .in_clone(dir, agent, &["reset", "--quiet", "--hard"])
            .await?;
        self.git
            .in_clone(dir, agent, &["clean", "--quiet", "-fd"])
            .await?;
        self.git.in_clone(dir, agent, &["rev-parse", "HEAD"]).await
    }

    /// A directory of the task's, made by us and given to the agent's user (only this one
    /// directory: nothing the agent made is followed or changed).
    async fn owned_dir(&self, dir: &Path) -> Result<(), GitError> {
        tokio::fs::create_dir_all(dir).await.map_err(io_error("mkdir"))?;
        tokio::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .await
            .map_err(io_error("chmod"))?;
        if let Some((uid, gid)) = self.owner {
            std::os::unix::fs::lchown(dir, Some(uid), Some(gid)).map_err(io_error("chown"))?;
        }
        Ok(())
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
        let (dir, agent) = (&workspace.dir, self.as_agent(&workspace.home));
        let status = self
            .git
            .in_clone(dir, agent, &["status", "--porcelain", "--untracked-files=all"])
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
        self.git.in_clone(dir, agent, &["add", "-A"]).await?;
        let identity = ["-c", "user.name=mainloop", "-c", "user.email=mainloop@localhost"];
        let commit = ["commit", "--quiet", "--no-verify", "-m", &message];
        self.git
            .in_clone(dir, agent, &[&identity[..], &commit[..]].concat())
            .await?;
        Ok(files)
    }

    /// Commits the job made, and the head they lead to.
    pub async fn commits_since(&self, workspace: &Workspace) -> Result<(u32, String), GitError> {
        let (dir, agent) = (&workspace.dir, self.as_agent(&workspace.home));
        let head = self.git.in_clone(dir, agent, &["rev-parse", "HEAD"]).await?;
        let range = format!("{}..HEAD", workspace.start);
        let count = self
            .git
            .in_clone(dir, agent, &["rev-list", "--count", &range])
            .await?;
        Ok((count.parse().unwrap_or(0), head))
    }

    /// Everything the job's commits say: each message and its patch (text files; binary files
    /// show only that they changed), for the secret check before a push.
    pub async fn commits_text(&self, workspace: &Workspace) -> Result<String, GitError> {
        let (dir, agent) = (&workspace.dir, self.as_agent(&workspace.home));
        let range = format!("{}..HEAD", workspace.start);
        self.git
            .in_clone(
                dir,
                agent,
                &["log", "--patch", "--no-color", "--format=%H%n%B", &range],
            )
            .await
    }

    /// Pushes the task's branch to GitHub (fast-forward only: a task's branch is its own): the
    /// cache takes the commits from the task's clone, then pushes them to GitHub's clone URL.
    pub async fn push(&self, workspace: &Workspace, branch: &str) -> Result<(), GitError> {
        let _held = self.lock(&workspace.cache).await;
        let taken = format!("refs/mainloop/tasks/{}", workspace.task_id);
        let from = workspace.dir.display().to_string();
        self.git
            .remote(
                &workspace.cache,
                &["fetch", "--quiet", &from, &format!("+HEAD:{taken}")],
            )
            .await?;
        let refspec = format!("{taken}:refs/heads/{branch}");
        self.git
            .remote(
                &workspace.cache,
                &["push", "--quiet", &workspace.clone_url, &refspec],
            )
            .await
            .map(drop)
    }
}

/// Directories every task's agent must be able to walk through (0755 whatever the umask).
async fn shared_dirs(root: &Path, dir: &Path) -> Result<(), GitError> {
    tokio::fs::create_dir_all(dir).await.map_err(io_error("mkdir"))?;
    for ancestor in dir.ancestors().take_while(|a| a.starts_with(root)) {
        tokio::fs::set_permissions(ancestor, std::fs::Permissions::from_mode(0o755))
            .await
            .map_err(io_error("chmod"))?;
    }
    Ok(())
}
