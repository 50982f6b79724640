//! Two of everything: every service runs twice, as separate `mainloop run` processes on one NATS
//! and one Postgres (the production shape with replicas). Three tasks run from chat to merged at
//! once, each step through either gateway; the replicas share the work, and nothing happens
//! twice or goes missing: every task passes through every status once, GitHub holds one issue
//! and one merged pull request per task and no comment twice, the inbox no item twice.

mod common;

use std::time::Duration;

use common::Outside;
use common::fleet::{self, Fleet};
use mainloop_testkit::Infra;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_of_every_service_share_the_work_and_do_nothing_twice() -> anyhow::Result<()> {
    let outside = Outside::start("mainloop-replicas-", Some("fail_then_pass")).await?;
    let infra = Infra::start()?;
    let fleet = Fleet::start(&outside, &infra, 2)?;
    fleet.ready(&outside.http).await?;
    let gateways = fleet.gateways();

    let journeys = (0..3).map(|n| {
        let (http, gateways, github) = (outside.http.clone(), gateways.clone(), outside.github_url.clone());
        async move { fleet::journey(&http, &gateways, &github, n, Duration::from_secs(120)).await }
    });
    let done = futures_util::future::join_all(journeys).await;
    let mut task_ids = Vec::new();
    for (n, journey) in done.into_iter().enumerate() {
        match journey {
            Ok(task_id) => task_ids.push(task_id),
            Err(err) => anyhow::bail!("journey {n}: {err:#}; logs in {:?}", fleet.logs()),
        }
    }
    fleet::check(&outside.http, &gateways[0], &outside, &task_ids).await?;
    Ok(())
}
