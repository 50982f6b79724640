//! The conversation service owns the main thread: conversations and messages, and the calls to
//! the chat model (`models`: the Anthropic Messages API or any OpenAI-compatible server,
//! streamed). It answers `cmd.conversation.post-message` (one chat turn) and
//! `query.conversation.*`, says the reply live as it is written (`live.chat.<user>.<conversation>`,
//! see `speech`), publishes CHAT (`chat.<user>.<conversation>`), and
//! turns a confirmed request into `cmd.scheduler.spawn-task`. The model has no shell, file or
//! network tool: only the tools in `tools` (spawn, list, add context, cancel, retry), and those
//! that change work need the person's confirmation, checked in code.

mod config;
mod context;
mod error;
pub mod models;
mod queries;
pub mod repo_url;
mod speech;
mod tools;
mod turn;

use std::sync::Arc;

use mainloop_bus::request;
use mainloop_runtime::service::Foundation;
use sqlx::migrate::Migrator;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use config::{Config, LlmSettings, Provider};
pub use error::Error;

pub const NAME: &str = "conversation";
/// The Postgres schema this service owns; no other service touches it.
pub const SCHEMA: &str = "conversation";
pub static MIGRATOR: Migrator = sqlx::migrate!();

/// Runs until `shutdown` is cancelled, then drains and returns.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), Error> {
    let foundation = Foundation::start(NAME, SCHEMA, &MIGRATOR, &config.common, &shutdown).await?;
    let (bus, db) = (foundation.bus.clone(), foundation.db.clone());
    let llm = config.llm.model();
    if config.llm.provider() == Provider::Anthropic && config.llm.chat_api_key.is_none() {
        tracing::warn!("ANTHROPIC_API_KEY is not set: chat turns will answer with that reason");
    }
    tracing::info!(model = %llm.describe(), "chat model");
    let turns = Arc::new(turn::Turns {
        bus: bus.clone(),
        db: db.clone(),
        llm,
        tools: tools::all(),
        github_web_url: config.llm.github_web_url.clone(),
    });
    let setup = |e: async_nats::SubscribeError| Error::Setup(e.to_string());
    let mut tasks = JoinSet::new();
    let post = request::Server::bind(&bus, "cmd.conversation.post-message", NAME)
        .await
        .map_err(setup)?;
    let list = request::Server::bind(&bus, "query.conversation.list", NAME)
        .await
        .map_err(setup)?;
    let get = request::Server::bind(&bus, "query.conversation.get", NAME)
        .await
        .map_err(setup)?;
    let (s1, s2, s3) = (shutdown.clone(), shutdown.clone(), shutdown.clone());
    tasks.spawn(async move {
        post.run_json(s1, move |command| {
            let turns = turns.clone();
            async move { turns.post(command).await }
        })
        .await
    });
    let list_db = db.clone();
    tasks.spawn(async move {
        list.run_json(s2, move |query| queries::list(list_db.clone(), query))
            .await
    });
    let get_db = db.clone();
    tasks.spawn(async move {
        get.run_json(s3, move |query| queries::get(get_db.clone(), query))
            .await
    });
    foundation.readiness.ready();
    while tasks.join_next().await.is_some() {}
    foundation.stop().await;
    Ok(())
}
