use std::time::Duration;

use mainloop_bus::Bus;
use mainloop_events::v1::TaskSpawned;
use mainloop_events::{Envelope, Payload};
use mainloop_testkit::TestNats;
use tokio_util::sync::CancellationToken;

pub async fn connect(nats: &TestNats) -> anyhow::Result<Bus> {
    let bus = Bus::connect(
        &nats.url(),
        "test",
        Duration::from_secs(10),
        &CancellationToken::new(),
    )
    .await?;
    bus.ensure_streams(1).await?;
    Ok(bus)
}

pub fn spawned(task_id: &str) -> Envelope {
    Envelope::new(
        "u1",
        task_id,
        Payload::TaskSpawned(TaskSpawned {
            task_id: task_id.into(),
            description: "add a quick start".into(),
            ..Default::default()
        }),
    )
}

pub async fn stream_messages(bus: &Bus, stream: &str) -> anyhow::Result<u64> {
    let mut stream = bus.jetstream().get_stream(stream).await?;
    Ok(stream.info().await?.state.messages)
}

/// Polls `check` until it holds or five seconds pass.
pub async fn eventually<F, Fut>(what: &str, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        if check().await? {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The process's metrics as Prometheus would read them (a recorder installed on first use).
pub fn metrics_page() -> String {
    static HANDLE: std::sync::OnceLock<Option<metrics_exporter_prometheus::PrometheusHandle>> =
        std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            metrics_exporter_prometheus::PrometheusBuilder::new()
                .install_recorder()
                .ok()
        })
        .as_ref()
        .map(|h| h.render())
        .unwrap_or_default()
}

/// The sum of `name`'s samples whose labels hold every one of `labels`.
pub fn metric(page: &str, name: &str, labels: &[&str]) -> f64 {
    page.lines()
        .filter(|line| line.starts_with(&format!("{name}{{")))
        .filter(|line| labels.iter().all(|label| line.contains(label)))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
