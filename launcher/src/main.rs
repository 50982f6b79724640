//! `mainloop`: run everything locally (`up`), one service per process (`run <service>`), read
//! the event streams (`events tail`) or rebuild a read model from them (`rebuild inbox`);
//! `health` is a container's health check.

mod cli;
mod console;
mod credentials;
mod demo;
mod events_tail;
mod health_probe;
mod keeper;
mod local_model;
mod login;
mod rebuild;
mod run_one;
mod services;
mod setup_check;
mod tokens;
mod up;

use clap::Parser;

use cli::{Cli, Command, EventsCommand};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Command::FakeClaude { args } = &cli.command {
        std::process::exit(mainloop_fakes::claude::main(args));
    }
    if let Command::McpRelay { args } = &cli.command {
        std::process::exit(mainloop_conversation::models::claude_code::relay::main(args));
    }
    if let Command::PodStep { args } = &cli.command {
        std::process::exit(mainloop_worker_supervisor::pod::main(args));
    }
    mainloop_runtime::tls::install();
    // The runtime's main thread starts the local servers, and they are bound to the thread that
    // started them (parent-death signal), so they must not be started from a pool thread.
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async move {
            let _telemetry = mainloop_runtime::telemetry::init(service_name(&cli.command), &cli.telemetry)?;
            let shutdown = mainloop_runtime::shutdown::on_signals()?;
            match cli.command {
                Command::Up(args) => up::up(*args, shutdown).await,
                Command::Run { service, health_addr } => {
                    run_one::run_one(*service, &health_addr, shutdown).await
                }
                Command::Events {
                    command: EventsCommand::Tail(args),
                } => events_tail::tail(args, shutdown).await,
                Command::Tokens(args) => tokens::tokens(args).await,
                Command::Rebuild(args) => rebuild::rebuild(args, shutdown).await,
                Command::Health { url, timeout_secs } => {
                    health_probe::probe(&url, std::time::Duration::from_secs(timeout_secs)).await
                }
                Command::FakeClaude { .. } | Command::McpRelay { .. } | Command::PodStep { .. } => Ok(()),
            }
        })
}

/// The name this process's spans carry: the service it runs, or `mainloop` for all of them.
fn service_name(command: &Command) -> &'static str {
    use cli::ServiceCommand as S;
    match command {
        Command::Run { service, .. } => match service.as_ref() {
            S::Gateway(_) => "mainloop-gateway",
            S::Conversation(_) => "mainloop-conversation",
            S::Scheduler(_) => "mainloop-scheduler",
            S::WorkerSupervisor(_) => "mainloop-worker-supervisor",
            S::GithubWatcher(_) => "mainloop-github-watcher",
            S::Inbox(_) => "mainloop-inbox",
        },
        _ => "mainloop",
    }
}
