//! Web Push from the inbox, against a push service as strict as the real ones (it checks VAPID
//! and decrypts what it receives): an item that needs the person reaches every browser of
//! theirs, decrypted to exactly what the service worker shows; notifications that need nothing
//! are not pushed; a push service's 5xx and 429 are retried, its 410 removes the subscription;
//! subscriptions with a plain-http or malformed endpoint or keys are refused.

use std::time::Duration;

use mainloop_bus::{Bus, Expect, request};
use mainloop_events::v1::{InboxItemAdded, InboxItemType};
use mainloop_events::{Envelope, Payload, subjects};
use mainloop_fakes::push_service::{FakePushService, Subscription};
use mainloop_testkit::Infra;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

struct World {
    _infra: Infra,
    bus: Bus,
    push: FakePushService,
    shutdown: CancellationToken,
}

async fn start() -> anyhow::Result<World> {
    mainloop_runtime::tls::install();
    let infra = Infra::start()?;
    let shutdown = CancellationToken::new();
    tokio::spawn(mainloop_inbox::run(
        mainloop_inbox::Config::new(infra.common()),
        shutdown.clone(),
    ));
    infra.ready(1).await?;
    let bus = infra.bus().await?;
    let push = FakePushService::default();
    push.clone()
        .serve(tokio::net::TcpListener::bind("127.0.0.1:0").await?)
        .await?;
    Ok(World {
        _infra: infra,
        bus,
        push,
        shutdown,
    })
}

async fn command(bus: &Bus, name: &str, body: Value) -> Result<Value, request::RequestError> {
    request::send_json(bus, &format!("cmd.inbox.{name}"), &body, Duration::from_secs(5)).await
}

async fn subscribe(world: &World, user: &str) -> anyhow::Result<Subscription> {
    let subscription = world.push.subscribe();
    command(
        &world.bus,
        "push-subscribe",
        json!({"user_id": user, "endpoint": subscription.endpoint,
            "p256dh": subscription.p256dh, "auth": subscription.auth}),
    )
    .await?;
    Ok(subscription)
}

async fn add_item(bus: &Bus, user: &str, item: &str, kind: InboxItemType) -> anyhow::Result<()> {
    let added = Envelope::new(
        user,
        "t1",
        Payload::InboxItemAdded(InboxItemAdded {
            item_id: item.into(),
            task_id: "t1".into(),
            item_type: kind as i32,
            title: "Review the plan: add rate limiting".into(),
            content: "1. Add a limiter".into(),
            context_json: r#"{"plan_revision": 3}"#.into(),
            ..Default::default()
        }),
    );
    bus.publish(&subjects::inbox(user)?, &added, Expect::Any).await?;
    Ok(())
}

/// Waits until the browser behind `endpoint` has received `count` pushes.
async fn received(push: &FakePushService, endpoint: &str, count: usize) -> anyhow::Result<Vec<Value>> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let got = push.received(endpoint);
        if got.len() >= count {
            return Ok(got);
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "{count} pushes never came; got {got:?}, refused {:?}",
            push.refusals()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_review_reaches_every_browser_of_the_person_decrypted() -> anyhow::Result<()> {
    let world = start().await?;
    let phone = subscribe(&world, "u1").await?;
    let laptop = subscribe(&world, "u1").await?;
    let someone_else = subscribe(&world, "u2").await?;

    add_item(&world.bus, "u1", "note", InboxItemType::Notification).await?;
    add_item(&world.bus, "u1", "i1", InboxItemType::PlanReview).await?;
    let expected = json!({
        "title": "mainloop: A plan to review",
        "body": "Review the plan: add rate limiting",
        "kind": "plan_review",
        "task_id": "t1",
        "item_id": "i1",
        "plan_revision": 3,
    });
    assert_eq!(
        received(&world.push, &phone.endpoint, 1).await?,
        std::slice::from_ref(&expected)
    );
    assert_eq!(received(&world.push, &laptop.endpoint, 1).await?, [expected]);
    // The notification before it needed nothing and was not pushed; nor was anyone else called.
    add_item(&world.bus, "u2", "i2", InboxItemType::Question).await?;
    let other = received(&world.push, &someone_else.endpoint, 1).await?;
    assert_eq!(other[0]["kind"], "question");
    assert_eq!(world.push.received(&phone.endpoint).len(), 1);
    assert_eq!(world.push.refusals(), Vec::<String>::new());
    world.shutdown.cancel();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_retried_and_a_gone_subscription_is_removed() -> anyhow::Result<()> {
    let world = start().await?;
    let browser = subscribe(&world, "u1").await?;

    world.push.fail_next(503, None);
    world.push.fail_next(429, Some(1));
    add_item(&world.bus, "u1", "i1", InboxItemType::CodeReady).await?;
    let got = received(&world.push, &browser.endpoint, 1).await?;
    assert_eq!(got[0]["item_id"], "i1");
    assert_eq!(world.push.refusals().len(), 2, "{:?}", world.push.refusals());

    world.push.expire(&browser.endpoint);
    add_item(&world.bus, "u1", "i2", InboxItemType::Error).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !world.push.refusals().iter().any(|r| r.starts_with("410")) {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "never pushed to the expired one"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // Removed: the next item is not even tried.
    add_item(&world.bus, "u1", "i3", InboxItemType::Error).await?;
    let fresh = subscribe(&world, "u1").await?;
    add_item(&world.bus, "u1", "i4", InboxItemType::Question).await?;
    assert_eq!(
        received(&world.push, &fresh.endpoint, 1).await?[0]["item_id"],
        "i4"
    );
    let gone = world
        .push
        .refusals()
        .iter()
        .filter(|r| r.starts_with("410"))
        .count();
    assert_eq!(gone, 1, "{:?}", world.push.refusals());
    world.shutdown.cancel();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_subscriptions_are_refused_and_the_key_is_stable() -> anyhow::Result<()> {
    let world = start().await?;
    let key = command(&world.bus, "push-key", json!({})).await?;
    let again = command(&world.bus, "push-key", json!({})).await?;
    assert_eq!(key, again);
    assert_eq!(key["public_key"].as_str().map(str::len), Some(87), "{key}");

    let good = world.push.subscribe();
    for (endpoint, p256dh, auth, says) in [
        (
            "http://10.1.2.3/push/x",
            good.p256dh.as_str(),
            good.auth.as_str(),
            "https://",
        ),
        (good.endpoint.as_str(), "AAAA", good.auth.as_str(), "P-256"),
        (good.endpoint.as_str(), good.p256dh.as_str(), "AAAA", "16 bytes"),
        (good.endpoint.as_str(), good.p256dh.as_str(), "!!", "base64url"),
    ] {
        let refused = command(
            &world.bus,
            "push-subscribe",
            json!({"user_id": "u1", "endpoint": endpoint, "p256dh": p256dh, "auth": auth}),
        )
        .await;
        let said = format!("{refused:?}");
        assert!(said.contains(says), "{endpoint} {p256dh} {auth}: {said}");
    }
    world.shutdown.cancel();
    Ok(())
}
