//! Token mode from a browser: the login page, the token traded once for a session cookie
//! (HttpOnly, SameSite=Strict, Secure behind HTTPS), the cookie as good as the token, a forged
//! or foreign one refused, logout clearing it; and no login at all outside token mode. Over a
//! real inbox on real NATS and Postgres.

use mainloop_gateway::{AuthMode, HttpConfig};
use mainloop_testkit::Infra;
use reqwest::StatusCode;
use serde_json::json;
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "a-long-random-token-for-this-test-only-0123456789";

struct World {
    _infra: Infra,
    base: String,
    http: reqwest::Client,
    shutdown: CancellationToken,
}

async fn start(mode: AuthMode) -> anyhow::Result<World> {
    mainloop_runtime::tls::install();
    let infra = Infra::start()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let http = HttpConfig {
        auth_mode: mode.clone(),
        api_token: (mode == AuthMode::Token).then(|| mainloop_runtime::Secret::new(TOKEN)),
        ..HttpConfig::test_mode(&format!("127.0.0.1:{port}"))
    };
    let shutdown = CancellationToken::new();
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
    infra.ready(2).await?;
    Ok(World {
        _infra: infra,
        base: format!("http://127.0.0.1:{port}"),
        http: reqwest::Client::new(),
        shutdown,
    })
}

impl World {
    /// `GET /queue/unread/count` with these headers: its status.
    async fn count(&self, headers: &[(&str, &str)]) -> anyhow::Result<StatusCode> {
        let mut request = self.http.get(format!("{}/queue/unread/count", self.base));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        Ok(request.send().await?.status())
    }

    async fn login(
        &self,
        token: &str,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<(StatusCode, Option<String>)> {
        let mut request = self
            .http
            .post(format!("{}/login", self.base))
            .json(&json!({"token": token}));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let answer = request.send().await?;
        let cookie = answer
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        Ok((answer.status(), cookie))
    }
}

/// `name=value` of a `Set-Cookie` value.
fn pair(set_cookie: &str) -> &str {
    set_cookie.split(';').next().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_trades_the_token_for_a_session_cookie() -> anyhow::Result<()> {
    let world = start(AuthMode::Token).await?;
    assert_eq!(world.count(&[]).await?, StatusCode::UNAUTHORIZED);
    let bearer = format!("Bearer {TOKEN}");
    assert_eq!(world.count(&[("authorization", &bearer)]).await?, StatusCode::OK);

    let page = world.http.get(format!("{}/login", world.base)).send().await?;
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await?.contains("<script src=\"/login.js\"></script>"));
    let script = world.http.get(format!("{}/login.js", world.base)).send().await?;
    assert_eq!(script.headers()["content-type"], "text/javascript; charset=utf-8");
    assert!(
        script.text().await?.contains("location.hash"),
        "the token is read from the fragment"
    );

    let (status, cookie) = world.login("not-the-token", &[]).await?;
    assert_eq!((status, cookie), (StatusCode::UNAUTHORIZED, None));

    let (status, cookie) = world.login(TOKEN, &[]).await?;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let cookie = cookie.unwrap_or_default();
    assert!(cookie.starts_with("mainloop_session=v1."), "{cookie}");
    assert!(
        cookie.ends_with("; Path=/; HttpOnly; SameSite=Strict; Max-Age=2592000"),
        "{cookie}"
    );
    assert!(!cookie.contains(TOKEN), "the cookie is not the token");
    assert_eq!(world.count(&[("cookie", pair(&cookie))]).await?, StatusCode::OK);
    let among = format!("theme=nord; {}", pair(&cookie));
    assert_eq!(world.count(&[("cookie", &among)]).await?, StatusCode::OK);

    // A cookie made under another token, or changed, is nobody's.
    let foreign = mainloop_gateway::session::issue(b"another-token").unwrap_or_default();
    let foreign = format!("mainloop_session={foreign}");
    assert_eq!(
        world.count(&[("cookie", &foreign)]).await?,
        StatusCode::UNAUTHORIZED
    );
    let changed = format!("{}x", pair(&cookie));
    assert_eq!(
        world.count(&[("cookie", &changed)]).await?,
        StatusCode::UNAUTHORIZED
    );

    // Behind an HTTPS proxy the cookie is Secure.
    let (_, secure) = world.login(TOKEN, &[("x-forwarded-proto", "https")]).await?;
    assert!(secure.unwrap_or_default().ends_with("; Secure"));

    // The test endpoints are for test mode only.
    let seed = world
        .http
        .post(format!("{}/internal/test/seed-task", world.base))
        .header("authorization", &bearer)
        .json(&json!({"status": "waiting_plan_review", "description": "x", "repo_url": "https://github.com/test/repo"}))
        .send()
        .await?;
    assert_eq!(seed.status(), StatusCode::FORBIDDEN);
    let reset = world
        .http
        .post(format!("{}/internal/test/reset", world.base))
        .header("authorization", &bearer)
        .send()
        .await?;
    assert_eq!(reset.status(), StatusCode::FORBIDDEN);

    let out = world.http.post(format!("{}/logout", world.base)).send().await?;
    assert_eq!(out.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        out.headers()["set-cookie"],
        "mainloop_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"
    );
    world.shutdown.cancel();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_token_mode_there_is_no_login() -> anyhow::Result<()> {
    let world = start(AuthMode::Test).await?;
    let (status, cookie) = world.login(TOKEN, &[]).await?;
    assert_eq!((status, cookie), (StatusCode::NOT_FOUND, None));
    world.shutdown.cancel();
    Ok(())
}
