//! The supervisor's git, in two kinds. In its own repositories (the caches) it talks to GitHub:
//! the token reaches git through a credential helper set for those commands only (`GIT_CONFIG_*`
//! variables), which reads it from an environment variable of that one git process; the token is
//! never in a URL, an argument, a config file or a log line. In a task's clone, which the agent
//! controls, git runs as the agent's user with a clean environment, no helper, no hooks and no
//! fsmonitor, so whatever the agent wrote into `.git` runs with no more rights than the agent's.
//! The agent's own git has no helper either, so no `git push` of the agent's can succeed.
//! Nothing waits on git for ever: a transfer from GitHub that stalls (under 1 kB/s for a minute)
//! is given up as network trouble, to be tried again, and any git command is stopped after
//! [`LONGEST`].

use std::path::Path;
use std::time::Duration;

use mainloop_runtime::Secret;
use tokio::process::Command;

#[derive(Debug, thiserror::Error)]
#[error("git {args}: {output}")]
pub struct GitError {
    pub args: String,
    pub output: String,
}

impl GitError {
    /// The remote refused who we are or what we asked: retrying the same thing cannot help.
    pub fn is_permanent(&self) -> bool {
        self.fix().is_some()
    }

    /// What a person must do, for the refusals no retry can get past.
    fn fix(&self) -> Option<&'static str> {
        let output = self.output.to_lowercase();
        let said = |needles: &[&str]| needles.iter().any(|n| output.contains(n));
        if said(&[
            "could not read username",
            "authentication failed",
            "invalid username or token",
            "error: 401",
        ]) {
            Some("GitHub did not accept the token: set a valid GITHUB_TOKEN")
        } else if said(&[
            "permission to",
            "error: 403",
            "write access to repository not granted",
        ]) {
            Some("the token may not push here: it needs write access to the repository's contents")
        } else if said(&["repository not found", "error: 404"])
            // git's own words for a 404 whose body it did not show: "repository '<url>' not found".
            || (output.contains("fatal: repository '") && output.contains("' not found"))
        {
            Some("the repository does not exist, or the token cannot see it")
        } else if said(&["workflow` scope", "workflow scope"]) {
            Some("the change touches .github/workflows: the token needs the `workflow` scope")
        } else if said(&[
            "protected branch",
            "gh006",
            "gh013",
            "push protection",
            "repository rule",
        ]) {
            Some("GitHub's branch protection or push rules refused the push")
        } else if said(&["[rejected]", "[remote rejected]"]) {
            Some("GitHub refused the push (the branch there has other commits, or a rule refused it)")
        } else {
            None
        }
    }

    /// The error, with what a person can do about it when we know.
    pub fn explained(&self) -> String {
        match self.fix() {
            Some(fix) => format!("{self} ({fix})"),
            None => self.to_string(),
        }
    }
}

/// Where the token lives while git runs; only the helper below reads it.
const TOKEN_VARIABLE: &str = "MAINLOOP_GIT_TOKEN";
/// Answers git's `get` with the token as the password (GitHub takes any user name).
const HELPER: &str = "!f() { test \"$1\" = get || exit 0; echo username=x-access-token; echo \"password=${MAINLOOP_GIT_TOKEN}\"; }; f";

/// Who runs a git command in a task's clone: the agent's user (uid, gid) and its HOME.
#[derive(Debug, Clone, Copy)]
pub struct AsAgent<'a> {
    pub user: Option<(u32, u32)>,
    pub home: &'a Path,
}

/// How long a transfer may stay under [`SLOWEST_BYTES_PER_SECOND`] before git gives it up.
const STALL_AFTER: Duration = Duration::from_secs(60);
const SLOWEST_BYTES_PER_SECOND: &str = "1000";
/// How long any git command may run before it is stopped (a clone of a large repository fits).
pub const LONGEST: Duration = Duration::from_secs(30 * 60);

#[derive(Debug, Clone)]
pub struct Git {
    token: Option<Secret>,
    /// How long a transfer with GitHub may stall.
    stall_after: Duration,
    /// Our "global" git config (`GIT_CONFIG_GLOBAL`): git drops per-command config when it
    /// starts git in another repository (a local clone or fetch), so settings that must reach
    /// those processes, such as trusting a repository another user owns, live in this file.
    global: Option<std::path::PathBuf>,
}

/// What [`Git::global`] holds: the caches are root's and the clones the agent's; each side reads
/// the other's.
const GLOBAL_CONFIG: &str = "[safe]\n\tdirectory = *\n[core]\n\thooksPath = /dev/null\n\tfsmonitor = false\n";

impl Git {
    pub fn new(token: Option<Secret>) -> Self {
        Git {
            token,
            stall_after: STALL_AFTER,
            global: None,
        }
    }

    /// Gives up a transfer that stalls for `stall_after` (a minute unless said).
    pub fn with_stall_after(self, stall_after: Duration) -> Self {
        Git { stall_after, ..self }
    }

    /// Writes our global config into `dir` (readable by all, writable by us) and uses it.
    pub fn with_global_config(self, dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("gitconfig");
        std::fs::write(&path, GLOBAL_CONFIG)?;
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
        Ok(Git {
            global: Some(path),
            ..self
        })
    }

    fn base(&self, dir: &Path, args: &[&str]) -> Command {
        let mut command = Command::new("git");
        command
            .args(args)
            .current_dir(dir)
            .env("GIT_TERMINAL_PROMPT", "0");
        if let Some(global) = &self.global {
            command
                .env("GIT_CONFIG_GLOBAL", global)
                .env("GIT_CONFIG_NOSYSTEM", "1");
        }
        command
    }

    /// git in a repository of ours (the cache), talking to GitHub with the token.
    pub async fn remote(&self, dir: &Path, args: &[&str]) -> Result<String, GitError> {
        let mut command = self.base(dir, args);
        let mut config = vec![("credential.helper", "")];
        if let Some(token) = &self.token {
            config.push(("credential.helper", HELPER));
            command.env(TOKEN_VARIABLE, token.expose());
        }
        // Reads a task's clone (the agent's) as a source when the branch is taken from it.
        config.push(("safe.directory", "*"));
        let stall = self.stall_after.as_secs().max(1).to_string();
        config.push(("http.lowSpeedLimit", SLOWEST_BYTES_PER_SECOND));
        config.push(("http.lowSpeedTime", &stall));
        output(configured(command, &config), args).await
    }

    /// git in a task's clone, which the agent controls: run as the agent's user, with a clean
    /// environment (no token), no credential helper, no hooks and no fsmonitor, so nothing the
    /// agent put in `.git/config` or `.git/hooks` runs with more rights than the agent has.
    pub async fn in_clone(
        &self,
        dir: &Path,
        as_agent: AsAgent<'_>,
        args: &[&str],
    ) -> Result<String, GitError> {
        let mut command = self.base(dir, args);
        command
            .env_clear()
            .env(
                "PATH",
                std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()),
            )
            .env("HOME", as_agent.home)
            .env("LANG", "C.UTF-8")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_CONFIG_NOSYSTEM", "1");
        if let Some(global) = &self.global {
            command.env("GIT_CONFIG_GLOBAL", global);
        }
        if let Some((uid, gid)) = as_agent.user {
            command.uid(uid).gid(gid);
        }
        let config = [
            ("credential.helper", ""),
            ("core.hooksPath", "/dev/null"),
            ("core.fsmonitor", "false"),
            ("safe.directory", "*"),
        ];
        output(configured(command, &config), args).await
    }
}

/// Config given through the environment applies to this process only and leaves no file behind.
/// An empty `credential.helper` first drops any helper the machine configured (a logged-in `gh`).
fn configured(mut command: Command, config: &[(&str, &str)]) -> Command {
    command.env("GIT_CONFIG_COUNT", config.len().to_string());
    for (i, (key, value)) in config.iter().enumerate() {
        command
            .env(format!("GIT_CONFIG_KEY_{i}"), key)
            .env(format!("GIT_CONFIG_VALUE_{i}"), value);
    }
    command
}

/// Runs the command; its trimmed stdout, or what it said on failure.
async fn output(mut command: Command, args: &[&str]) -> Result<String, GitError> {
    let failed = |output: String| GitError {
        args: args.join(" "),
        output,
    };
    command.kill_on_drop(true);
    let out = tokio::time::timeout(LONGEST, command.output())
        .await
        .map_err(|_| failed(format!("stopped after {} minutes", LONGEST.as_secs() / 60)))?
        .map_err(|e| failed(e.to_string()))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Err(failed(said.trim().to_string()))
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::{Git, GitError};

    /// A server that takes connections and never answers: git would wait for it for ever.
    #[tokio::test]
    async fn a_remote_that_stops_answering_is_given_up_as_network_trouble() -> anyhow::Result<()> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/acme/widgets.git", listener.local_addr()?);
        let held = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                open.push(stream);
            }
        });
        let dir = tempfile::tempdir()?;
        let git = Git::new(None).with_stall_after(Duration::from_secs(1));
        let started = Instant::now();
        let answered = tokio::time::timeout(
            Duration::from_secs(60),
            git.remote(dir.path(), &["ls-remote", &url]),
        )
        .await?;
        held.abort();
        let err = answered
            .err()
            .ok_or_else(|| anyhow::anyhow!("a silent remote answered"))?;
        assert!(!err.is_permanent(), "tried again later: {err}");
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "given up after {:?}",
            started.elapsed()
        );
        Ok(())
    }

    fn error(output: &str) -> GitError {
        GitError {
            args: "push".into(),
            output: output.into(),
        }
    }

    #[test]
    fn refusals_are_permanent_and_network_trouble_is_not() {
        assert!(
            error("fatal: could not read Username for 'https://github.com': terminal prompts disabled")
                .is_permanent()
        );
        assert!(error("remote: Permission to acme/widgets.git denied to bot.\nfatal: unable to access: The requested URL returned error: 403").is_permanent());
        assert!(error(" ! [remote rejected] HEAD -> main (protected branch hook declined)").is_permanent());
        assert!(error("! [remote rejected] x (refusing to allow a Personal Access Token to create or update workflow `.github/workflows/ci.yml` without `workflow` scope)").explained().contains("`workflow` scope"));
        assert!(
            !error(
                "fatal: unable to access: Failed to connect to github.com port 443 after 134030 ms: Timeout"
            )
            .is_permanent()
        );
        assert!(!error("fatal: unable to access: The requested URL returned error: 503").is_permanent());
        assert!(error("fatal: repository 'http://127.0.0.1:9/acme/gone.git/' not found").is_permanent());
    }
}
