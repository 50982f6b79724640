use std::path::PathBuf;

use clap::{Parser, Subcommand};
use mainloop_runtime::{Secret, TelemetryConfig};

#[derive(Debug, Parser)]
#[command(
    name = "mainloop",
    version,
    about = "Run a fleet of AI coding agents from one conversation."
)]
pub struct Cli {
    #[command(flatten)]
    pub telemetry: TelemetryConfig,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run all six services in this process. Without NATS_URL / DATABASE_URL, starts a private
    /// nats-server and Postgres with their data under --data-dir, and stops them on Ctrl-C.
    Up(Box<UpArgs>),
    /// Run one service in this process (the production shape: one service per process).
    Run {
        #[command(subcommand)]
        service: Box<ServiceCommand>,
        /// Serves /health, /readyz and /healthz; empty turns it off.
        #[arg(long, env = "HEALTH_ADDR", default_value = "0.0.0.0:9090", global = true)]
        health_addr: String,
    },
    /// Read mainloop's event streams.
    Events {
        #[command(subcommand)]
        command: EventsCommand,
    },
    /// Exit 0 when a health endpoint answers 200 (a container's health check).
    Health {
        /// The endpoint; by default this container's service's readiness.
        #[arg(default_value = crate::health_probe::DEFAULT_URL)]
        url: String,
        /// How long to wait for the answer, in seconds.
        #[arg(long, default_value_t = 3)]
        timeout_secs: u64,
    },
    /// Per-person API tokens for teams: create, list, revoke.
    Tokens(crate::tokens::TokensArgs),
    /// Drop a projection's read models and apply the event streams again from the start.
    Rebuild(crate::rebuild::RebuildArgs),
    /// A stand-in for the Claude Code CLI (tests and --demo).
    #[command(hide = true)]
    FakeClaude {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// A step of an agent's Kubernetes Job (checkout, agent, deliver), run inside its pod.
    #[command(hide = true)]
    PodStep {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// mainloop's tools for the Claude Code CLI as chat model: an MCP server over stdio,
    /// relayed to the conversation service (started by the CLI, not by people).
    #[command(hide = true)]
    McpRelay {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

#[derive(Debug, clap::Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub http: mainloop_gateway::HttpConfig,
    #[command(flatten)]
    pub agent: mainloop_worker_supervisor::AgentSettings,
    #[command(flatten)]
    pub github: mainloop_github_watcher::GitHubSettings,
    #[command(flatten)]
    pub llm: mainloop_conversation::LlmSettings,
    #[command(flatten)]
    pub scheduling: mainloop_scheduler::SchedulingSettings,
    /// Run against built-in fakes of GitHub, Claude Code and the Anthropic API, so the whole
    /// journey can be walked in a browser without accounts. Starts fresh every time.
    #[arg(long)]
    pub demo: bool,
    /// Use the built-in fake of some outside services and the real rest, e.g. `--fake github`
    /// to try the real agent and model on a fake repository first. `--demo` fakes all three.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub fake: Vec<Fake>,
    /// Data of the private servers; kept across restarts.
    #[arg(long, env = "MAINLOOP_DATA_DIR", default_value = ".mainloop")]
    pub data_dir: PathBuf,
    /// Use this NATS server instead of starting one.
    #[arg(long, env = "NATS_URL")]
    pub nats_url: Option<String>,
    /// Use this Postgres database instead of starting one.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<Secret>,
}

#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// HTTP API, SSE feeds, authentication and the web app.
    Gateway(mainloop_gateway::Config),
    /// The main thread: conversations and the chat model.
    Conversation(mainloop_conversation::Config),
    /// The task state machine, timers and agent concurrency.
    Scheduler(mainloop_scheduler::Config),
    /// Runs coding agents in workspaces (local processes or Kubernetes Jobs).
    WorkerSupervisor(Box<mainloop_worker_supervisor::Config>),
    /// GitHub effects, webhooks and polling.
    GithubWatcher(mainloop_github_watcher::Config),
    /// The attention queue and read models.
    Inbox(mainloop_inbox::Config),
}

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Print events as JSON lines: {"stream","seq","subject","event"}.
    Tail(TailArgs),
}

#[derive(Debug, clap::Args)]
pub struct TailArgs {
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
    /// Only events on this subject (wildcards allowed), e.g. `task.alice.>`.
    #[arg(long)]
    pub subject: Option<String>,
    /// Start with events published from now on, instead of from the beginning.
    #[arg(long)]
    pub new: bool,
    /// Print what is stored and exit, instead of following.
    #[arg(long, conflicts_with = "new")]
    pub once: bool,
}

/// An outside service `mainloop up` can replace with its built-in fake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Fake {
    /// GitHub: REST, GraphQL and git over authenticated HTTP, repository acme/widgets.
    Github,
    /// The Claude Code CLI (`mainloop fake-claude`), making real commits.
    Claude,
    /// The Anthropic Messages API for the chat.
    Llm,
}
