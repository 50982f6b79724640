//! Credentials `mainloop up` finds on its own: the GitHub token of a logged-in `gh` CLI when
//! `GITHUB_TOKEN` is not set. The token is read from `gh auth token`'s output, never passed on
//! a command line.

use std::process::{Command, Stdio};

use mainloop_runtime::Secret;

use crate::cli::UpArgs;

/// Fills in the GitHub token from `gh` when none was given; says where it came from.
pub fn github_token(args: &mut UpArgs) -> Option<&'static str> {
    let token = match (&args.github.github_token, &args.agent.git_token) {
        (Some(token), _) | (None, Some(token)) => Some((token.clone(), "GITHUB_TOKEN")),
        (None, None) => from_gh_cli().map(|token| (token, "the gh CLI's login")),
    };
    let (token, source) = token?;
    args.github.github_token = Some(token.clone());
    args.agent.git_token = Some(token);
    Some(source)
}

fn from_gh_cli() -> Option<Secret> {
    let out = Command::new("gh")
        .args(["auth", "token"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let token = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !token.is_empty()).then(|| Secret::new(token))
}
