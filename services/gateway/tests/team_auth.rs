//! Authentication for teams, over a real scheduler and inbox on real NATS and Postgres: behind
//! an identity-aware proxy the gateway believes the user header only from the proxy's addresses;
//! per-person API tokens (stored hashed, made and revoked as `mainloop tokens` does) sign in as
//! their person until revoked; and each person sees only their own tasks.

use std::time::Duration;

use mainloop_bus::request;
use mainloop_events::v1::{RepoRef, SpawnTask, TaskAccepted};
use mainloop_gateway::{AuthMode, HttpConfig, ProxySettings, api_tokens};
use mainloop_testkit::Infra;
use reqwest::StatusCode;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// alice@example.com and bob@example.com as user ids (`auth::person_id`).
const ALICE: &str = "alice_40example_2ecom";
const BOB: &str = "bob_40example_2ecom";

struct World {
    infra: Infra,
    base: String,
    http: reqwest::Client,
    db: sqlx::PgPool,
    shutdown: CancellationToken,
}

impl Drop for World {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A gateway in proxy mode trusting `proxies`, with the scheduler and the inbox behind it.
async fn start(proxies: &[&str]) -> anyhow::Result<World> {
    mainloop_runtime::tls::install();
    let infra = Infra::start()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let http = HttpConfig {
        auth_mode: AuthMode::Proxy,
        proxy: ProxySettings {
            auth_proxy_header: "X-Auth-Request-Email".into(),
            auth_trusted_proxies: proxies
                .iter()
                .map(|p| mainloop_gateway::auth::proxy::parse_net(p).map_err(anyhow::Error::msg))
                .collect::<anyhow::Result<_>>()?,
        },
        ..HttpConfig::test_mode(&format!("127.0.0.1:{port}"))
    };
    let shutdown = CancellationToken::new();
    tokio::spawn(mainloop_scheduler::run(
        mainloop_scheduler::Config {
            common: infra.common(),
            scheduling: Default::default(),
        },
        shutdown.clone(),
    ));
    tokio::spawn(mainloop_inbox::run(
        mainloop_inbox::Config::new(infra.common()),
        shutdown.clone(),
    ));
    tokio::spawn(mainloop_gateway::run(
        mainloop_gateway::Config {
            common: infra.common(),
            http,
        },
        shutdown.clone(),
    ));
    infra.ready(3).await?;
    let db = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .after_connect(|conn, _| {
            Box::pin(async move {
                sqlx::query("SET search_path TO gateway").execute(conn).await?;
                Ok(())
            })
        })
        .connect(&infra.pg.url())
        .await?;
    Ok(World {
        infra,
        base: format!("http://127.0.0.1:{port}"),
        http: reqwest::Client::new(),
        db,
        shutdown,
    })
}

impl World {
    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> anyhow::Result<(StatusCode, Value)> {
        let mut request = self.http.get(format!("{}{path}", self.base));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let answer = request.send().await?;
        let status = answer.status();
        Ok((status, answer.json().await.unwrap_or(Value::Null)))
    }

    async fn spawn(&self, user: &str, task: &str) -> anyhow::Result<()> {
        let bus = self.infra.bus().await?;
        let spawn = SpawnTask {
            user_id: user.into(),
            task_id: task.into(),
            repo: Some(RepoRef {
                owner: "acme".into(),
                name: "widgets".into(),
                html_url: "https://github.com/acme/widgets".into(),
            }),
            description: format!("{user}'s task"),
            ..Default::default()
        };
        let _: TaskAccepted =
            request::send(&bus, "cmd.scheduler.spawn-task", &spawn, Duration::from_secs(5)).await?;
        Ok(())
    }

    /// The ids of the tasks `/tasks` lists with these headers, once it lists `want` of them.
    async fn tasks(&self, headers: &[(&str, &str)], want: usize) -> anyhow::Result<Vec<String>> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let (status, body) = self.get("/tasks", headers).await?;
            anyhow::ensure!(status == StatusCode::OK, "/tasks: {status} {body}");
            let ids: Vec<String> = body
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t["id"].as_str().map(String::from))
                .collect();
            if ids.len() >= want || tokio::time::Instant::now() > deadline {
                return Ok(ids);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxys_header_is_believed_from_the_proxy_only() -> anyhow::Result<()> {
    // This test's requests come from 127.0.0.1: first as the proxy, then as anyone else.
    let world = start(&["127.0.0.1/32"]).await?;
    world.spawn(ALICE, "ta").await?;
    world.spawn(BOB, "tb").await?;
    let alice = [("X-Auth-Request-Email", "alice@example.com")];
    let bob = [("X-Auth-Request-Email", "bob@example.com")];
    assert_eq!(world.tasks(&alice, 1).await?, ["ta"]);
    assert_eq!(world.tasks(&bob, 1).await?, ["tb"]);
    // The proxy said nobody: refused, never a default person.
    let (status, body) = world.get("/tasks", &[]).await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");

    let elsewhere = start(&["10.0.0.5", "10.1.0.0/16"]).await?;
    let (status, body) = elsewhere.get("/tasks", &alice).await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["detail"], "only the sign-in proxy may name the user");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persons_api_token_signs_in_as_them_until_revoked() -> anyhow::Result<()> {
    // No proxy is trusted here: only API tokens get in.
    let world = start(&["10.0.0.5"]).await?;
    world.spawn(ALICE, "ta").await?;
    world.spawn(BOB, "tb").await?;
    let (alice_id, alice_token) = api_tokens::create(&world.db, "alice@example.com", "laptop").await?;
    let (_, bob_token) = api_tokens::create(&world.db, "bob@example.com", "ci").await?;
    assert!(alice_token.starts_with(api_tokens::PREFIX) && alice_token.len() > 40);

    // Kept hashed: the token itself is nowhere in the table.
    let stored: Vec<(Vec<u8>,)> = sqlx::query_as("SELECT token_hash FROM api_tokens")
        .fetch_all(&world.db)
        .await?;
    assert_eq!(stored.len(), 2);
    assert!(stored.iter().all(|(h,)| {
        h.len() == 32
            && !h
                .windows(8)
                .any(|w| alice_token.as_bytes().windows(8).any(|t| t == w))
    }));

    let as_alice = format!("Bearer {alice_token}");
    let as_bob = format!("Bearer {bob_token}");
    assert_eq!(world.tasks(&[("Authorization", &as_alice)], 1).await?, ["ta"]);
    assert_eq!(world.tasks(&[("Authorization", &as_bob)], 1).await?, ["tb"]);
    let (status, _) = world.get("/tasks/tb", &[("Authorization", &as_alice)]).await?;
    assert_eq!(status, StatusCode::NOT_FOUND, "alice reads bob's task");
    let (status, _) = world
        .get("/tasks", &[("Authorization", "Bearer mlt_made-up")])
        .await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let listed = api_tokens::list(&world.db, Some("alice@example.com")).await?;
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].id.as_str(), listed[0].label.as_str()),
        (alice_id.as_str(), "laptop")
    );
    assert!(api_tokens::revoke(&world.db, &alice_id).await?);
    assert!(!api_tokens::revoke(&world.db, &alice_id).await?, "revoked twice");
    let (status, body) = world.get("/tasks", &[("Authorization", &as_alice)]).await?;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a revoked token still works: {body}"
    );
    assert_eq!(world.tasks(&[("Authorization", &as_bob)], 1).await?, ["tb"]);
    Ok(())
}
