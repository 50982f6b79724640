//! The scheduler's commands, one file each, served over NATS request/reply on
//! `cmd.scheduler.<name>`. Each checks its input, turns it into a task [`Command`] and executes
//! it; the reply is the task's new status or a typed refusal.

mod add_context;
mod answer_questions;
mod cancel_task;
mod retry_task;
mod review_plan;
mod seed_task;
mod spawn_task;
mod start_implementation;
mod suggest_routing;

use std::future::Future;

use mainloop_bus::request;
use mainloop_events::subjects;
use mainloop_events::v1::{CommandError, ErrorCode, TaskAccepted};
use prost::Message;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::store::{ExecuteError, TaskStore};
use crate::task::{Command, Rejection};

pub const SERVICE: &str = "scheduler";

/// Subscribes to every command subject, then answers on them until `shutdown`; `seed-task`
/// only when test seeds are accepted.
pub async fn serve_all(
    store: &TaskStore,
    shutdown: &CancellationToken,
    tasks: &mut JoinSet<Result<(), String>>,
    accept_test_seeds: bool,
) -> Result<(), async_nats::SubscribeError> {
    if accept_test_seeds {
        serve(tasks, store, shutdown, "seed-task", seed_task::handle).await?;
    }
    serve(tasks, store, shutdown, "spawn-task", spawn_task::handle).await?;
    serve(
        tasks,
        store,
        shutdown,
        "answer-questions",
        answer_questions::handle,
    )
    .await?;
    serve(tasks, store, shutdown, "review-plan", review_plan::handle).await?;
    serve(
        tasks,
        store,
        shutdown,
        "start-implementation",
        start_implementation::handle,
    )
    .await?;
    serve(tasks, store, shutdown, "cancel-task", cancel_task::handle).await?;
    serve(tasks, store, shutdown, "retry-task", retry_task::handle).await?;
    serve(tasks, store, shutdown, "add-context", add_context::handle).await?;
    serve(tasks, store, shutdown, "suggest-routing", suggest_routing::handle).await?;
    Ok(())
}

async fn serve<Req, Fut>(
    tasks: &mut JoinSet<Result<(), String>>,
    store: &TaskStore,
    shutdown: &CancellationToken,
    name: &'static str,
    handler: fn(TaskStore, Req) -> Fut,
) -> Result<(), async_nats::SubscribeError>
where
    Req: Message + Default + 'static,
    Fut: Future<Output = Result<TaskAccepted, CommandError>> + Send + 'static,
{
    let subject = format!("cmd.{SERVICE}.{name}");
    let server = request::Server::bind(store.bus(), &subject, SERVICE).await?;
    let (store, shutdown) = (store.clone(), shutdown.clone());
    tasks.spawn(async move {
        server
            .run(shutdown, move |command: Req| handler(store.clone(), command))
            .await;
        Ok(())
    });
    Ok(())
}

/// Checks the ids every command carries.
pub(crate) fn ids<'a>(user_id: &'a str, task_id: &'a str) -> Result<(&'a str, &'a str), CommandError> {
    let user = subjects::token("user id", user_id).map_err(|e| CommandError::invalid(e.to_string()))?;
    let task = subjects::token("task id", task_id).map_err(|e| CommandError::invalid(e.to_string()))?;
    Ok((user, task))
}

/// Executes and shapes the reply. A person's command carries no event, so it causes itself.
pub(crate) async fn run(
    store: &TaskStore,
    user_id: &str,
    task_id: &str,
    command: Command,
) -> Result<TaskAccepted, CommandError> {
    let (user_id, task_id) = ids(user_id, task_id)?;
    match store.execute(user_id, task_id, command, "").await {
        Ok(executed) => Ok(TaskAccepted {
            task_id: task_id.to_string(),
            status: executed.task.status as i32,
        }),
        Err(err) => Err(refusal(err)),
    }
}

pub(crate) fn refusal(err: ExecuteError) -> CommandError {
    match err {
        ExecuteError::Rejected(Rejection::NotFound) => CommandError::not_found("no such task"),
        ExecuteError::Rejected(Rejection::Conflict(message)) => CommandError::conflict(message),
        ExecuteError::Rejected(Rejection::Invalid(message)) => CommandError::invalid(message),
        ExecuteError::Rejected(Rejection::TooEarly(message)) => CommandError::conflict(message),
        ExecuteError::Subject(err) => CommandError::invalid(err.to_string()),
        ExecuteError::Contended(_) => CommandError::new(ErrorCode::Unavailable, err.to_string()),
        ExecuteError::Bus(err) => {
            tracing::error!(error = %err, "command failed");
            CommandError::new(
                ErrorCode::Unavailable,
                "the event store is unavailable; try again",
            )
        }
    }
}
