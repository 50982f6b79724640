use std::future::Future;

use mainloop_runtime::CommonConfig;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub type ServiceExit = (&'static str, anyhow::Result<()>);

/// Every service `up` runs, by the name each registers its health under.
pub const NAMES: [&str; 6] = [
    mainloop_gateway::NAME,
    mainloop_conversation::NAME,
    mainloop_scheduler::NAME,
    mainloop_worker_supervisor::NAME,
    mainloop_github_watcher::NAME,
    mainloop_inbox::NAME,
];

async fn named<E>(name: &'static str, run: impl Future<Output = Result<(), E>>) -> ServiceExit
where
    E: std::error::Error + Send + Sync + 'static,
{
    (name, run.await.map_err(anyhow::Error::from))
}

/// Starts all six services as tasks of this process; each still talks to the others only over
/// NATS, with its own connection and its own schema.
pub fn spawn_all(
    common: &CommonConfig,
    http: &mainloop_gateway::HttpConfig,
    agent: &mainloop_worker_supervisor::AgentSettings,
    github: &mainloop_github_watcher::GitHubSettings,
    llm: &mainloop_conversation::LlmSettings,
    scheduling: &mainloop_scheduler::SchedulingSettings,
    shutdown: &CancellationToken,
) -> JoinSet<ServiceExit> {
    let mut services = JoinSet::new();
    let gateway = mainloop_gateway::Config {
        common: common.clone(),
        http: http.clone(),
    };
    services.spawn(named(
        mainloop_gateway::NAME,
        mainloop_gateway::run(gateway, shutdown.clone()),
    ));
    let conversation = mainloop_conversation::Config {
        common: common.clone(),
        llm: llm.clone(),
    };
    services.spawn(named(
        mainloop_conversation::NAME,
        mainloop_conversation::run(conversation, shutdown.clone()),
    ));
    let scheduler = mainloop_scheduler::Config {
        common: common.clone(),
        scheduling: scheduling.clone(),
    };
    services.spawn(named(
        mainloop_scheduler::NAME,
        mainloop_scheduler::run(scheduler, shutdown.clone()),
    ));
    let supervisor = mainloop_worker_supervisor::Config::new(common.clone(), agent.clone());
    services.spawn(named(
        mainloop_worker_supervisor::NAME,
        mainloop_worker_supervisor::run(supervisor, shutdown.clone()),
    ));
    let watcher = mainloop_github_watcher::Config {
        common: common.clone(),
        github: github.clone(),
    };
    services.spawn(named(
        mainloop_github_watcher::NAME,
        mainloop_github_watcher::run(watcher, shutdown.clone()),
    ));
    let inbox = mainloop_inbox::Config::new(common.clone());
    services.spawn(named(
        mainloop_inbox::NAME,
        mainloop_inbox::run(inbox, shutdown.clone()),
    ));
    services
}
