use mainloop_runtime::{Health, health};
use tokio_util::sync::CancellationToken;

use crate::cli::ServiceCommand;

/// `mainloop run <service>`: one service, its health endpoint, until a signal.
pub async fn run_one(
    service: ServiceCommand,
    health_addr: &str,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let health: Health = match &service {
        ServiceCommand::Gateway(c) => c.health(),
        ServiceCommand::Conversation(c) => c.health(),
        ServiceCommand::Scheduler(c) => c.health(),
        ServiceCommand::WorkerSupervisor(c) => c.health(),
        ServiceCommand::GithubWatcher(c) => c.health(),
        ServiceCommand::Inbox(c) => c.health(),
    };
    if !health_addr.is_empty() {
        let (addr, shutdown) = (health_addr.to_string(), shutdown.clone());
        tokio::spawn(async move {
            if let Err(err) = health::serve(&addr, health, shutdown).await {
                tracing::error!(error = %err, "health endpoint stopped");
            }
        });
    }
    match service {
        ServiceCommand::Gateway(c) => mainloop_gateway::run(c, shutdown).await?,
        ServiceCommand::Conversation(c) => mainloop_conversation::run(c, shutdown).await?,
        ServiceCommand::Scheduler(c) => mainloop_scheduler::run(c, shutdown).await?,
        ServiceCommand::WorkerSupervisor(c) => mainloop_worker_supervisor::run(*c, shutdown).await?,
        ServiceCommand::GithubWatcher(c) => mainloop_github_watcher::run(c, shutdown).await?,
        ServiceCommand::Inbox(c) => mainloop_inbox::run(c, shutdown).await?,
    }
    Ok(())
}
