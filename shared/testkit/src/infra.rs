//! What a service test stands on: a NATS server, a Postgres cluster, the readiness registry the
//! services under test report to, and a bus connection for the test itself.

use std::time::Duration;

use mainloop_bus::Bus;
use mainloop_runtime::{CommonConfig, Health, Secret};
use tokio_util::sync::CancellationToken;

use crate::{TestNats, TestPostgres, TestkitError};

pub struct Infra {
    pub nats: TestNats,
    pub pg: TestPostgres,
    pub health: Health,
}

impl Infra {
    pub fn start() -> Result<Self, TestkitError> {
        Ok(Infra {
            nats: TestNats::start()?,
            pg: TestPostgres::start()?,
            health: Health::default(),
        })
    }

    /// The settings every service takes, pointing at these servers and this registry.
    pub fn common(&self) -> CommonConfig {
        CommonConfig {
            nats_url: self.nats.url(),
            database_url: Secret::new(self.pg.url()),
            stream_replicas: 1,
            health: self.health.clone(),
            // Tests may reset services as the original client's suites do.
            test_mode: true,
        }
    }

    /// Waits until `services` components registered and all are ready.
    pub async fn ready(&self, services: usize) -> Result<(), TestkitError> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let report = self.health.report();
            if report.status == "healthy" && report.components.len() >= services {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(TestkitError::NotReady(format!("{report:?}")));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A connection of the test's own, with the streams declared.
    pub async fn bus(&self) -> Result<Bus, TestkitError> {
        let bus = Bus::connect(
            &self.nats.url(),
            "test",
            Duration::from_secs(5),
            &CancellationToken::new(),
        )
        .await?;
        bus.ensure_streams(1).await?;
        Ok(bus)
    }
}
