//! The start every service shares, and the `main` of every service binary.

use std::future::Future;
use std::time::Duration;

use clap::Parser;
use mainloop_bus::Bus;
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use tokio_util::sync::CancellationToken;

use crate::{CommonConfig, Readiness, RuntimeError, TelemetryConfig, db, health, shutdown, telemetry};

/// How long a starting service waits for NATS or Postgres before it gives up.
pub const DEPENDENCY_PATIENCE: Duration = Duration::from_secs(60);

/// What every service stands on: the bus with its streams declared, and a pool confined to the
/// service's schema with its migrations applied.
pub struct Foundation {
    pub bus: Bus,
    pub db: PgPool,
    pub readiness: Readiness,
    /// What the service forgets when a test suite resets it (test mode only).
    pub reset_hooks: crate::test_reset::ResetHooks,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Bus(#[from] mainloop_bus::BusError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("cannot serve the test reset: {0}")]
    TestReset(#[from] async_nats::SubscribeError),
}

impl Foundation {
    /// Connects, declares, migrates. Readiness stays "starting" until the service calls
    /// `readiness.ready()` once its own consumers run.
    pub async fn start(
        name: &str,
        schema: &str,
        migrator: &Migrator,
        common: &CommonConfig,
        shutdown: &CancellationToken,
    ) -> Result<Self, StartError> {
        // Every service may make HTTPS clients, however it was started (a binary, `up`, a test).
        crate::tls::install();
        // Counted from the start, whoever serves the page.
        crate::metrics::install();
        let readiness = common.health.register(name);
        let bus = Bus::connect(
            &common.nats_url,
            &format!("mainloop-{name}"),
            DEPENDENCY_PATIENCE,
            shutdown,
        )
        .await?;
        bus.ensure_streams(common.stream_replicas).await?;
        let db = db::connect(&common.database_url, schema, 5, DEPENDENCY_PATIENCE, shutdown).await?;
        db::migrate(&db, schema, migrator).await?;
        tracing::info!(
            service = name,
            "connected to NATS and Postgres; migrations applied"
        );
        let reset_hooks = crate::test_reset::ResetHooks::default();
        if common.test_mode {
            crate::test_reset::serve(&bus, db.clone(), name, reset_hooks.clone(), shutdown.clone()).await?;
        }
        Ok(Foundation {
            bus,
            db,
            readiness,
            reset_hooks,
        })
    }

    /// Drains the bus (flushing acks and publishes) and closes the pool.
    pub async fn stop(self) {
        self.readiness.not_ready();
        self.bus.drain().await;
        self.db.close().await;
    }
}

#[derive(Debug, Parser)]
struct Cli<C: clap::Args> {
    #[command(flatten)]
    config: C,
    #[command(flatten)]
    telemetry: TelemetryConfig,
    /// Serves /health, /readyz and /healthz; empty turns it off.
    #[arg(long, env = "HEALTH_ADDR", default_value = "0.0.0.0:9090")]
    health_addr: String,
}

/// The whole `main` of a service binary: flags and environment, telemetry, signals, a health
/// endpoint, then `run` until a signal.
pub fn main<C, F, Fut, E>(
    name: &'static str,
    health_of: fn(&C) -> crate::Health,
    run: F,
) -> anyhow::Result<()>
where
    C: clap::Args + Send + 'static,
    F: FnOnce(C, CancellationToken) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::error::Error + Send + Sync + 'static,
{
    let cli = Cli::<C>::parse();
    crate::tls::install();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async move {
            let _telemetry = telemetry::init(name, &cli.telemetry)?;
            let shutdown = shutdown::on_signals()?;
            if !cli.health_addr.is_empty() {
                let (addr, health, shutdown) =
                    (cli.health_addr.clone(), health_of(&cli.config), shutdown.clone());
                tokio::spawn(async move {
                    if let Err(err) = health::serve(&addr, health, shutdown).await {
                        tracing::error!(error = %err, "health endpoint stopped");
                    }
                });
            }
            run(cli.config, shutdown).await?;
            tracing::info!(service = name, "stopped");
            Ok(())
        })
}
