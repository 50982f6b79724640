//! The github-watcher is mainloop's only contact with GitHub: it carries out the effect requests
//! on the WORK queue (`work.github.>`) exactly once, polls the pull requests of running tasks for
//! CI results and merges, and reports both on GITHUB (`github.<user>.<task>`). Verified webhook
//! deliveries (`work.webhooks.github`, from the gateway) make it look at once instead of at the
//! next poll. It also answers `query.github.repo` (clone URL and default branch) for the
//! worker-supervisor, and `query.github.project` (open pull requests and recent commits, cached)
//! for the project page.

mod ci;
pub mod client;
mod config;
mod effects;
mod error;
mod etags;
mod metrics;
mod permissions;
mod poller;
mod project_query;
mod repo_query;
mod watch;
mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use mainloop_bus::{ConsumerSpec, KeyedSpec, consumer, keyed, request};
use mainloop_events::subjects;
use mainloop_runtime::service::Foundation;
use sqlx::migrate::Migrator;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use config::{Config, GitHubSettings};
pub use error::Error;

use crate::client::GitHub;

pub const NAME: &str = "github-watcher";
/// The Postgres schema this service owns; no other service touches it.
pub const SCHEMA: &str = "github_watcher";
pub static MIGRATOR: Migrator = sqlx::migrate!();

/// Runs until `shutdown` is cancelled, then drains and returns.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), Error> {
    let foundation = Foundation::start(NAME, SCHEMA, &MIGRATOR, &config.common, &shutdown).await?;
    let (bus, db) = (foundation.bus.clone(), foundation.db.clone());
    let settings = &config.github;
    let github = match &settings.github_token {
        Some(token) => Some(GitHub::new(&settings.github_api_url, token.expose()).map_err(Error::Setup)?),
        None => {
            tracing::warn!("GITHUB_TOKEN is not set: GitHub effects will fail with that reason");
            None
        }
    };
    let shutdown = shutdown.child_token();
    let mut tasks: JoinSet<Result<(), String>> = JoinSet::new();

    let lookup = request::Server::bind(&bus, "query.github.repo", NAME)
        .await
        .map_err(|e| Error::Setup(e.to_string()))?;
    let (query_github, query_shutdown) = (github.clone(), shutdown.clone());
    tasks.spawn(async move {
        lookup
            .run_json(query_shutdown, move |query| {
                repo_query::answer(query_github.clone(), query)
            })
            .await;
        Ok(())
    });

    let project = request::Server::bind(&bus, "query.github.project", NAME)
        .await
        .map_err(|e| Error::Setup(e.to_string()))?;
    let (project_github, project_shutdown) = (github.clone(), shutdown.clone());
    let cache = project_query::ProjectCache::default();
    tasks.spawn(async move {
        project
            .run_json(project_shutdown, move |query| {
                project_query::answer(project_github.clone(), cache.clone(), query)
            })
            .await;
        Ok(())
    });

    let effects = Arc::new(effects::Effects {
        bus: bus.clone(),
        db: db.clone(),
        github: github.clone(),
    });
    // A task waits for its effects: an outage or a rate limit is waited out (backoff up to a
    // minute, for as long as it takes), never dead-lettered. Final refusals are reported.
    let spec = ConsumerSpec {
        concurrency: 4,
        max_deliver: u32::MAX,
        ..ConsumerSpec::new(subjects::WORK, "github-effects", "work.github.>")
    };
    let (effects_bus, effects_shutdown) = (bus.clone(), shutdown.clone());
    tasks.spawn(async move {
        consumer::run(&effects_bus, spec, effects, effects_shutdown)
            .await
            .map_err(|e| e.to_string())
    });

    // Webhooks and our own pushes tell the poller which pull request to look at now.
    let (nudge, nudged) = tokio::sync::mpsc::unbounded_channel();
    let nudge = github.is_some().then_some(nudge);
    let watches = Arc::new(watch::Watches {
        db: db.clone(),
        nudge: nudge.clone(),
    });
    watch::take_over_from_stream_wide_consumer(&bus, &watches).await;
    let spec = KeyedSpec::new(subjects::TASKS, "github-watch", "task.>");
    let (watch_bus, watch_shutdown) = (bus.clone(), shutdown.clone());
    tasks.spawn(async move {
        keyed::run(&watch_bus, spec, watches, watch_shutdown)
            .await
            .map_err(|e| e.to_string())
    });

    let hooked = webhooks::Hooked::default();
    let webhooks = Arc::new(webhooks::Webhooks {
        db: db.clone(),
        nudge,
        hooked: hooked.clone(),
    });
    let spec = ConsumerSpec {
        concurrency: 4,
        ..ConsumerSpec::new(subjects::WORK, "github-webhooks", "work.webhooks.>")
    };
    let (hooks_bus, hooks_shutdown) = (bus.clone(), shutdown.clone());
    tasks.spawn(async move {
        consumer::run(&hooks_bus, spec, webhooks, hooks_shutdown)
            .await
            .map_err(|e| e.to_string())
    });

    if let Some(github) = github {
        let pace = poller::Pace {
            base: Duration::from_millis(settings.github_poll_interval_ms.max(100)),
            max: Duration::from_millis(settings.github_poll_max_interval_ms),
            hooked: Duration::from_millis(settings.github_poll_with_webhooks_ms),
        };
        let (poll_bus, poll_db, poll_shutdown) = (bus.clone(), db.clone(), shutdown.clone());
        let (ci_grace_secs, ci_timeout_secs) = (settings.ci_grace_secs, settings.ci_timeout_secs);
        let steerers = permissions::Steerers::from_list(&settings.github_steerers);
        tasks.spawn(async move {
            let limits = ci::Limits {
                grace: Duration::from_secs(ci_grace_secs),
                timeout: Duration::from_secs(ci_timeout_secs),
            };
            let poller = poller::Poller {
                bus: poll_bus,
                db: poll_db,
                github,
                pace,
                limits,
                hooked,
                steerers,
            };
            poller::run(poller, nudged, poll_shutdown).await;
            Ok(())
        });
    }

    foundation.readiness.ready();
    let mut failure = None;
    while let Some(done) = tasks.join_next().await {
        if let Err(reason) = done.map_err(|e| e.to_string()).and_then(|r| r) {
            if !shutdown.is_cancelled() {
                tracing::error!(%reason, "github-watcher part stopped; stopping the github-watcher");
                shutdown.cancel();
            }
            failure.get_or_insert(reason);
        }
    }
    foundation.stop().await;
    failure.map_or(Ok(()), |reason| Err(Error::Setup(reason)))
}
