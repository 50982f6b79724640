//! `mainloop health URL`, the containers' health check: exit 0 on 200, and on a 503 or a port
//! nobody listens on, a non-zero exit that says what was answered.

use std::process::Command;

use axum::http::StatusCode;
use axum::routing::get;

fn health(url: &str) -> anyhow::Result<(bool, String)> {
    let out = Command::new(env!("CARGO_BIN_EXE_mainloop"))
        .args(["health", url, "--timeout-secs", "5"])
        .output()?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    ))
}

#[tokio::test]
async fn ready_is_zero_and_anything_else_is_not() -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let app = axum::Router::new()
        .route("/readyz", get(|| async { "ok" }))
        .route(
            "/starting",
            get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "nats: not ready") }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await });

    let (ok, said) = tokio::task::spawn_blocking({
        let url = format!("{base}/readyz");
        move || health(&url)
    })
    .await??;
    assert!(ok, "{said}");

    let (ok, said) = tokio::task::spawn_blocking({
        let url = format!("{base}/starting");
        move || health(&url)
    })
    .await??;
    assert!(!ok);
    assert!(
        said.contains("503 Service Unavailable: nats: not ready"),
        "{said}"
    );

    let closed = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let (ok, said) =
        tokio::task::spawn_blocking(move || health(&format!("http://{closed}/readyz"))).await??;
    assert!(!ok);
    assert!(said.contains("did not answer"), "{said}");
    Ok(())
}
