//! The person's actions on queue items, as JSON request/reply on `cmd.inbox.<name>`: read one,
//! read all, respond; and the operator's `rebuild` of the read models. A response that decides something for a task (approve a plan, retry) is
//! forwarded to the scheduler, which checks it against the task's state.

mod mark_all_read;
mod mark_read;
mod marks;
pub(crate) mod rebuild;
mod respond;
mod route;

use std::future::Future;

use mainloop_bus::{Bus, request};
use mainloop_events::v1::CommandError;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::PgPool;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::outbox::Outbox;

/// What every inbox command needs.
#[derive(Clone)]
pub struct Context {
    pub bus: Bus,
    pub db: PgPool,
    pub outbox: Outbox,
}

pub async fn serve_all(
    context: &Context,
    shutdown: &CancellationToken,
    tasks: &mut JoinSet<Result<(), String>>,
) -> Result<(), async_nats::SubscribeError> {
    serve(tasks, context, shutdown, "mark-read", mark_read::handle).await?;
    serve(tasks, context, shutdown, "mark-all-read", mark_all_read::handle).await?;
    serve(tasks, context, shutdown, "respond", respond::handle).await?;
    serve(tasks, context, shutdown, "rebuild", rebuild::handle).await?;
    Ok(())
}

async fn serve<Req, Resp, Fut>(
    tasks: &mut JoinSet<Result<(), String>>,
    context: &Context,
    shutdown: &CancellationToken,
    name: &'static str,
    handler: fn(Context, Req) -> Fut,
) -> Result<(), async_nats::SubscribeError>
where
    Req: DeserializeOwned + Send + 'static,
    Resp: Serialize + 'static,
    Fut: Future<Output = Result<Resp, CommandError>> + Send + 'static,
{
    let server = request::Server::bind(&context.bus, &format!("cmd.inbox.{name}"), "inbox").await?;
    let (context, shutdown) = (context.clone(), shutdown.clone());
    tasks.spawn(async move {
        server
            .run_json(shutdown, move |command: Req| handler(context.clone(), command))
            .await;
        Ok(())
    });
    Ok(())
}
