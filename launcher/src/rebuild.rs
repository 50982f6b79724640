//! `mainloop rebuild inbox`: asks the running inbox to drop its read models and apply TASKS
//! again from the start (`cmd.inbox.rebuild`). Every inbox replica follows within a second; the
//! queue, task and project lists fill again as the replay goes, and what the person did to
//! queue items (read, answered) is kept.

use std::time::Duration;

use mainloop_bus::{Bus, request};
use tokio_util::sync::CancellationToken;

#[derive(Debug, clap::Args)]
pub struct RebuildArgs {
    /// The projection to rebuild.
    #[arg(value_enum)]
    pub projection: Projection,
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Projection {
    /// The inbox's queue, tasks, projects and status history.
    Inbox,
}

pub async fn rebuild(args: RebuildArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let bus = Bus::connect(
        &args.nats_url,
        "mainloop-rebuild",
        Duration::from_secs(10),
        &shutdown,
    )
    .await?;
    match args.projection {
        Projection::Inbox => {
            let rebuilt: mainloop_inbox::Rebuilt = request::send_json(
                &bus,
                "cmd.inbox.rebuild",
                &serde_json::json!({}),
                Duration::from_secs(30),
            )
            .await?;
            eprintln!(
                "inbox: generation {} applies TASKS again from the start ({} events so far); \
                 the lists fill again as it goes",
                rebuilt.generation, rebuilt.replaying
            );
        }
    }
    Ok(())
}
