//! A stateful, local GitHub: the REST endpoints mainloop's github-watcher calls (repositories,
//! issues, comments, pull requests, check runs, and the GraphQL mutation that marks a draft
//! ready), in GitHub's JSON shapes and error format (`{"message", "documentation_url"}`), with
//! bearer-token auth. Repositories are bare git repositories on disk served over authenticated
//! smart HTTP (`git http-backend`), so clones and pushes are real and need the token, as on
//! GitHub. Tests steer it through `/_control/…`: create repositories, set CI results, merge,
//! inject faults (server errors, rate limits, bad credentials).

mod api;
mod ci;
mod conditional;
mod control;
mod faults;
mod git_http;
mod model;
mod reviews;
mod webhooks;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::Router;

pub use faults::FaultSpec;
pub use model::{CiPolicy, Snapshot};

#[derive(Clone)]
pub struct FakeGitHub {
    pub(crate) state: Arc<Mutex<model::State>>,
    pub(crate) root: PathBuf,
    pub(crate) token: String,
    pub(crate) base_url: Arc<Mutex<String>>,
    /// REST calls counted against the hourly rate limit (`faults::rate_limit_headers`).
    pub(crate) calls: Arc<std::sync::atomic::AtomicU64>,
    /// Held while a repository is made, or a pull request merged or closed, across the git
    /// commands that do it (the state's lock is never held across them): such changes happen
    /// one at a time, as on GitHub.
    pub(crate) changing: Arc<tokio::sync::Mutex<()>>,
}

impl FakeGitHub {
    /// A fake whose repositories live under `root` and which accepts `token`.
    pub fn new(root: PathBuf, token: &str) -> Self {
        FakeGitHub {
            state: Arc::default(),
            root,
            token: token.to_string(),
            base_url: Arc::default(),
            calls: Arc::default(),
            changing: Arc::default(),
        }
    }

    pub fn router(&self) -> Router {
        api::router()
            .layer(axum::middleware::from_fn_with_state(
                self.clone(),
                conditional::etags,
            ))
            .merge(git_http::router())
            .merge(control::router())
            .layer(axum::middleware::from_fn_with_state(self.clone(), faults::inject))
            .with_state(self.clone())
    }

    /// Serves on `listener` until the task is dropped; returns the base URL.
    pub async fn serve(self, listener: tokio::net::TcpListener) -> std::io::Result<String> {
        let url = format!("http://{}", listener.local_addr()?);
        if let Ok(mut base) = self.base_url.lock() {
            *base = url.clone();
        }
        let app = self.router();
        crate::serving::serve(listener, app);
        Ok(url)
    }

    pub(crate) fn base(&self) -> String {
        self.base_url.lock().map(|b| b.clone()).unwrap_or_default()
    }

    /// Everything the fake knows, for assertions.
    pub fn snapshot(&self) -> Snapshot {
        self.state.lock().map(|s| s.snapshot()).unwrap_or_default()
    }
}
