//! `mainloop up`: everything on one machine with nothing configured.

use crate::console::say;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use mainloop_local_servers::{NatsOptions, NatsServer, Postgres, PostgresOptions};
use mainloop_runtime::{CommonConfig, Health, Secret};
use tokio_util::sync::CancellationToken;

use crate::cli::{Fake, UpArgs};
use crate::services::{self, ServiceExit};

/// How long services get to drain after Ctrl-C before we stop the servers under them.
const DRAIN_LIMIT: Duration = Duration::from_secs(15);

pub async fn up(mut args: UpArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    // The port is ours before anything else starts (servers and fakes bind ports of their own),
    // and a taken one is said at once.
    args.http.bound = mainloop_gateway::Bound::bind(&args.http.http_addr)
        .with_context(|| format!("cannot listen on {}", args.http.http_addr))?;
    let mut data_dir = std::path::absolute(&args.data_dir).context("data dir")?;
    if args.demo {
        args.fake = vec![Fake::Github, Fake::Claude, Fake::Llm];
        data_dir = data_dir.join("demo");
        if data_dir.exists() {
            std::fs::remove_dir_all(&data_dir)
                .with_context(|| format!("cannot reset {}", data_dir.display()))?;
        }
    }
    let fakes = args.fake.clone();
    crate::demo::start(&mut args, &data_dir, &fakes).await?;
    crate::login::prepare(&mut args.http, &data_dir)?;
    // Test suites seed tasks in test mode (`POST /internal/test/seed-task`); nowhere else.
    args.scheduling.accept_test_seeds = args.http.auth_mode == mainloop_gateway::AuthMode::Test;
    let token_source = if fakes.contains(&Fake::Github) {
        Some("the fake")
    } else {
        crate::credentials::github_token(&mut args)
    };
    if !fakes.contains(&Fake::Llm) {
        crate::local_model::find(&mut args).await;
    }
    crate::setup_check::report(&args, token_source).await;
    let logs = data_dir.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;

    // An empty variable means "not set", as it does in most shells' eyes.
    let nats_given = args.nats_url.filter(|url| !url.trim().is_empty());
    let database_given = args.database_url.filter(|url| !url.expose().trim().is_empty());
    let (nats_url, nats) = match nats_given {
        Some(url) => {
            say!("NATS:      using {url}");
            (url, None)
        }
        None => {
            let options = NatsOptions {
                data_dir: data_dir.join("nats"),
                log_file: logs.join("nats.log"),
                port: 0,
                monitor_port: None,
            };
            let server = NatsServer::start(&options)?;
            say!(
                "NATS:      started nats-server at {} (pid {}), data in {}",
                server.url(),
                server.pid(),
                shown(&data_dir.join("nats"))
            );
            (server.url(), Some((server, options)))
        }
    };
    let (database_url, postgres) = match database_given {
        Some(url) => {
            say!("Postgres:  using DATABASE_URL");
            (url, None)
        }
        None => {
            // As root, Postgres runs as `postgres`, which may not reach a dir under a 0700 home.
            let pg_data = mainloop_local_servers::postgres_dir(&data_dir.join("postgres"))?;
            let options = PostgresOptions {
                data_dir: pg_data.clone(),
                socket_dir: mainloop_local_servers::postgres_dir(&data_dir.join("run"))?,
                log_file: logs.join("postgres.log"),
                port: 0,
                durable: true,
            };
            let server = Postgres::start(&options)?;
            say!(
                "Postgres:  started postgres on port {} (pid {}), data in {}",
                server.port(),
                server.pid(),
                shown(&pg_data)
            );
            (Secret::new(server.url()), Some((server, options)))
        }
    };

    // Declared once here so six services starting together find the streams in place.
    mainloop_bus::Bus::connect(&nats_url, "mainloop-up", Duration::from_secs(30), &shutdown)
        .await?
        .ensure_streams(1)
        .await?;
    let mut agent = args.agent.clone();
    if agent.work_dir == std::path::Path::new(".mainloop/work") {
        agent.work_dir = data_dir.join("work");
    }
    let health = Health::default();
    let mut servers = crate::keeper::Servers::new(nats, postgres);
    let common = CommonConfig {
        nats_url,
        database_url,
        stream_replicas: 1,
        health: health.clone(),
        test_mode: args.http.auth_mode == mainloop_gateway::AuthMode::Test,
    };
    let mut running = services::spawn_all(
        &common,
        &args.http,
        &agent,
        &args.github,
        &args.llm,
        &args.scheduling,
        &shutdown,
    );

    let mut failure = None;
    tokio::select! {
        ready = wait_until_ready(&health) => match ready {
            Ok(()) => {
                servers.report_to(&health);
                say!("{}", webhook_hint(&args.http));
                if args.http.auth_mode == mainloop_gateway::AuthMode::Test {
                    say!("\n!!! TEST MODE: every request is whoever its X-User-ID header says; for test suites only, never for real work !!!");
                }
                if let Some(url) = crate::login::url(&args.http) {
                    say!("\nLog in from your phone or another computer (keep this link to yourself):\n  {url}");
                }
                let at = browsable(&args.http.http_addr);
                say!("\nHealth: http://{at}/health  Metrics (Prometheus): http://{at}/metrics");
                say!("\nmainloop is running: open http://{at}\nPress Ctrl-C to stop.");
            }
            Err(err) => failure = Some(err),
        },
        Some(exit) = running.join_next() => failure = early_exit(exit, &shutdown),
        () = shutdown.cancelled() => {}
    }
    // Running: watch the services and keep the servers under them alive.
    let mut watch = tokio::time::interval(Duration::from_millis(100));
    while failure.is_none() && !shutdown.is_cancelled() {
        tokio::select! {
            Some(exit) = running.join_next() => failure = early_exit(exit, &shutdown),
            () = shutdown.cancelled() => {}
            _ = watch.tick() => servers.keep_alive(),
        }
    }

    shutdown.cancel();
    let drained = tokio::time::timeout(DRAIN_LIMIT, async {
        while let Some(exit) = running.join_next().await {
            if let Ok((name, Err(err))) = exit {
                tracing::warn!(service = name, error = %err, "service stopped with an error");
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!("services did not drain in time; stopping anyway");
        running.abort_all();
    }
    // Servers stop last, after every service let go of them.
    servers.stop();
    say!("mainloop stopped.");
    failure.map_or(Ok(()), Err)
}

/// The six services, each registered and ready (a service that has not registered yet would
/// otherwise count as nothing missing).
async fn wait_until_ready(health: &Health) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let all_six = || {
        let report = health.report();
        report.status == "healthy"
            && services::NAMES
                .iter()
                .all(|name| report.components.contains_key(*name))
    };
    while !all_six() {
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!("services not ready after 90s: {:?}", health.report().components);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// A service that ends before shutdown was asked for is a failure of the whole; one that ends
/// cleanly because of Ctrl-C is not.
fn early_exit(
    exit: Result<ServiceExit, tokio::task::JoinError>,
    shutdown: &CancellationToken,
) -> Option<anyhow::Error> {
    match exit {
        Ok((_, Ok(()))) if shutdown.is_cancelled() => None,
        Ok((name, Ok(()))) => Some(anyhow::anyhow!("{name} stopped unexpectedly")),
        Ok((name, Err(err))) => Some(err.context(format!("{name} failed"))),
        Err(err) => Some(anyhow::anyhow!("a service panicked: {err}")),
    }
}

/// A wildcard listen address is reached through loopback.
fn browsable(addr: &str) -> String {
    addr.replace("0.0.0.0", "127.0.0.1")
}

fn shown(path: &Path) -> String {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    path.strip_prefix(&cwd)
        .map_or_else(|_| path.display().to_string(), |p| format!("./{}", p.display()))
}

/// How to point GitHub's webhooks here, or that polling alone is used.
fn webhook_hint(http: &mainloop_gateway::HttpConfig) -> String {
    if http.github_webhook_secret.is_none() {
        return "Webhooks:  off, GitHub is polled (set GITHUB_WEBHOOK_SECRET to receive webhooks)".into();
    }
    let host = http.public_hosts.first().map_or_else(
        || format!("http://{}", browsable(&http.http_addr)),
        |h| format!("https://{h}"),
    );
    format!(
        "Webhooks:  on. In each repository's Settings → Webhooks, add {host}/webhooks/github with\n           \
         content type application/json, the secret in GITHUB_WEBHOOK_SECRET, and the events Issue\n           \
         comments, Pull requests, Pull request reviews, Pull request review comments, Check runs,\n           \
         Check suites and Statuses (GitHub must reach that address: a public host in PUBLIC_HOSTS)."
    )
}
