//! The conversation service owns the main thread: conversations and messages, and the calls to
//! the chat model (`models`: the Anthropic Messages API, any OpenAI-compatible server, or the
//! Claude Code CLI with only our tools, over MCP; streamed). It answers
//! `cmd.conversation.post-message` (one chat turn) and `query.conversation.*`, says the reply live as it is written (`live.chat.<user>.<conversation>`,
//! see `speech`), publishes CHAT (`chat.<user>.<conversation>`), and
//! turns a confirmed request into `cmd.scheduler.spawn-task`. A person opening their feed
//! (`live.present.<user>`) has what their first message needs read ahead (`warm`). The model has no shell, file or
//! network tool: only the tools in `tools` (spawn, list, add context, cancel, retry), and those
//! that change work need the person's confirmation, checked in code.

pub mod compaction;
mod config;
mod context;
mod conversations;
mod error;
mod held;
mod memory;
pub mod models;
pub mod pyramid;
mod queries;
pub mod repo_url;
mod speech;
mod tools;
mod turn;
mod warm;

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
    let compactor = compaction::Compactor {
        db: db.clone(),
        model: llm.clone(),
        after: config.llm.compact_after,
        keep: config.llm.compact_keep,
    };
    let pyramid = pyramid::Pyramid::new(db.clone(), llm.clone(), config.llm.memory_chars);
    let mut tasks = JoinSet::new();
    let context = context::Context::start(bus.clone(), &mut tasks, shutdown.clone())
        .await
        .map_err(|e| Error::Setup(format!("the inbox's feed could not be followed: {e}")))?;
    warm::start(
        &bus,
        context.clone(),
        pyramid.clone(),
        &mut tasks,
        shutdown.clone(),
    )
    .await
    .map_err(|e| Error::Setup(format!("presence could not be followed: {e}")))?;
    let memory = memory::Memory::default();
    foundation.reset_hooks.add({
        let (context, pyramid, memory) = (context.clone(), pyramid.clone(), memory.clone());
        move || {
            context.forget_all();
            pyramid.forget_all();
            memory.forget_all();
        }
    });
    let tools = tools::all();
    let turns = Arc::new(turn::Turns {
        bus: bus.clone(),
        db: db.clone(),
        compactor,
        pyramid,
        context,
        memory,
        llm,
        specs: tools.iter().map(|tool| tool.spec()).collect(),
        tools,
        github_web_url: config.llm.github_web_url.clone(),
    });
    let post = bind(&bus, "cmd.conversation.post-message").await?;
    let stop = shutdown.clone();
    tasks.spawn(async move {
        post.run_json(stop, move |command| {
            let turns = turns.clone();
            async move { turns.post(command).await }
        })
        .await
    });
    serve(
        &mut tasks,
        &bus,
        &db,
        &shutdown,
        "query.conversation.list",
        queries::list,
    )
    .await?;
    serve(
        &mut tasks,
        &bus,
        &db,
        &shutdown,
        "query.conversation.get",
        queries::get,
    )
    .await?;
    serve(
        &mut tasks,
        &bus,
        &db,
        &shutdown,
        "query.conversation.search",
        conversations::search,
    )
    .await?;
    serve(
        &mut tasks,
        &bus,
        &db,
        &shutdown,
        "cmd.conversation.create",
        conversations::create,
    )
    .await?;
    serve(
        &mut tasks,
        &bus,
        &db,
        &shutdown,
        "cmd.conversation.rename",
        conversations::rename,
    )
    .await?;
    foundation.readiness.ready();
    while tasks.join_next().await.is_some() {}
    foundation.stop().await;
    Ok(())
}

async fn bind(bus: &mainloop_bus::Bus, subject: &str) -> Result<request::Server, Error> {
    request::Server::bind(bus, subject, NAME)
        .await
        .map_err(|e| Error::Setup(e.to_string()))
}

/// Answers `subject` with `handler` on the conversation store until `shutdown`.
async fn serve<Req, Fut>(
    tasks: &mut JoinSet<()>,
    bus: &mainloop_bus::Bus,
    db: &sqlx::PgPool,
    shutdown: &CancellationToken,
    subject: &str,
    handler: fn(sqlx::PgPool, Req) -> Fut,
) -> Result<(), Error>
where
    Req: serde::de::DeserializeOwned + Send + 'static,
    Fut: std::future::Future<Output = Result<serde_json::Value, mainloop_events::v1::CommandError>>
        + Send
        + 'static,
{
    let server = bind(bus, subject).await?;
    let (db, stop) = (db.clone(), shutdown.clone());
    tasks.spawn(async move {
        server
            .run_json(stop, move |query: Req| handler(db.clone(), query))
            .await
    });
    Ok(())
}
