//! The supervisor's own git. It alone talks to the remote: the token reaches git through a
//! credential helper set for these commands only (`GIT_CONFIG_*` variables), which reads it from
//! an environment variable of that one git process. The token is never in a URL, an argument, a
//! config file or a log line, and the agent's git has no helper at all, so no `git push` of the
//! agent's can succeed.

use std::path::Path;

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
        let output = self.output.to_lowercase();
        [
            "authentication failed",
            "could not read username",
            "invalid username or token",
            "repository not found",
            "permission to",
            "403",
            "[rejected]",
            "protected branch",
        ]
        .iter()
        .any(|needle| output.contains(needle))
    }
}

impl GitError {
    /// The error, with what a person can do about it when we know.
    pub fn explained(&self) -> String {
        let output = self.output.to_lowercase();
        let fix = if output.contains("could not read username")
            || output.contains("authentication failed")
            || output.contains("invalid username or token")
        {
            Some("GitHub did not accept the token: set a valid GITHUB_TOKEN")
        } else if output.contains("permission to") || output.contains("403") {
            Some("the token may not push here: it needs write access to the repository's contents")
        } else if output.contains("repository not found") {
            Some("the repository does not exist, or the token cannot see it")
        } else if output.contains("protected branch") {
            Some("the branch is protected on GitHub")
        } else if output.contains("[rejected]") {
            Some("the branch on GitHub has commits the task does not have")
        } else {
            None
        };
        match fix {
            Some(fix) => format!("{self} ({fix})"),
            None => self.to_string(),
        }
    }
}

/// Where the token lives while git runs; only the helper below reads it.
const TOKEN_VARIABLE: &str = "MAINLOOP_GIT_TOKEN";
/// Answers git's `get` with the token as the password (GitHub takes any user name).
const HELPER: &str = "!f() { test \"$1\" = get || exit 0; echo username=x-access-token; echo \"password=${MAINLOOP_GIT_TOKEN}\"; }; f";

#[derive(Debug, Clone, Default)]
pub struct Git {
    token: Option<Secret>,
}

impl Git {
    pub fn new(token: Option<Secret>) -> Self {
        Git { token }
    }

    /// Runs git in `dir` and returns its trimmed stdout.
    pub async fn run(&self, dir: &Path, args: &[&str]) -> Result<String, GitError> {
        let failed = |output: String| GitError {
            args: args.join(" "),
            output,
        };
        let out = self
            .command(dir, args)
            .output()
            .await
            .map_err(|e| failed(e.to_string()))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            let output = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            Err(failed(output.trim().to_string()))
        }
    }

    fn command(&self, dir: &Path, args: &[&str]) -> Command {
        let mut command = Command::new("git");
        command
            .args(args)
            .current_dir(dir)
            .env("GIT_TERMINAL_PROMPT", "0");
        // Config given this way applies to this process only and leaves no file behind. The
        // empty helper first drops any helper the machine configured (a logged-in `gh`, say).
        let mut config = vec![("credential.helper", ""), ("safe.directory", "*")];
        if let Some(token) = &self.token {
            config.push(("credential.helper", HELPER));
            command.env(TOKEN_VARIABLE, token.expose());
        }
        command.env("GIT_CONFIG_COUNT", config.len().to_string());
        for (i, (key, value)) in config.into_iter().enumerate() {
            command
                .env(format!("GIT_CONFIG_KEY_{i}"), key)
                .env(format!("GIT_CONFIG_VALUE_{i}"), value);
        }
        command
    }
}
