//! `mainloop health [URL]`: asks a service's health endpoint and exits 0 only on 200, for
//! container health checks in images that carry no curl or wget (docker-compose.yml). The
//! default asks this container's own readiness (`HEALTH_ADDR`'s `/readyz`).

use std::time::Duration;

use anyhow::Context;

/// Readiness of the service in this container, at the default `HEALTH_ADDR` port.
pub const DEFAULT_URL: &str = "http://127.0.0.1:9090/readyz";

/// Ok when `url` answers 200 within `timeout`; otherwise an error saying what it answered.
pub async fn probe(url: &str, timeout: Duration) -> anyhow::Result<()> {
    let client = reqwest::Client::builder().timeout(timeout).build()?;
    let response = client
        .get(url)
        .send()
        .await
        .with_context(|| format!("{url} did not answer"))?;
    let status = response.status();
    if status == reqwest::StatusCode::OK {
        return Ok(());
    }
    let body = response.text().await.unwrap_or_default();
    anyhow::bail!("{url} answered {status}: {}", body.trim())
}
