use std::sync::{Arc, Mutex};
use std::time::Duration;

use mainloop_bus::dead_letter;
use mainloop_bus::{ConsumerSpec, Delivery, Expect, Handler, HandlerError, consumer};
use mainloop_events::subjects;
use mainloop_testkit::TestNats;
use tokio_util::sync::CancellationToken;

use crate::helpers::{connect, eventually, metric, metrics_page, spawned};

/// Fails the first `failures` deliveries of each message, then succeeds; remembers every call.
struct Flaky {
    failures: u32,
    calls: Mutex<Vec<(u64, u32)>>,
}

impl Flaky {
    fn new(failures: u32) -> Arc<Self> {
        Arc::new(Flaky {
            failures,
            calls: Mutex::new(Vec::new()),
        })
    }

    fn calls(&self) -> Vec<(u64, u32)> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

impl Handler for Flaky {
    async fn handle(&self, delivery: Delivery) -> Result<(), HandlerError> {
        if let Ok(mut calls) = self.calls.lock() {
            calls.push((delivery.stream_sequence, delivery.delivered));
        }
        if delivery.delivered <= self.failures {
            Err(HandlerError::Transient("database is down".into()))
        } else {
            Ok(())
        }
    }
}

fn fast_spec(max_deliver: u32) -> ConsumerSpec {
    ConsumerSpec {
        max_deliver,
        backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(50),
        ..ConsumerSpec::new(subjects::TASKS, "test-consumer", "task.>")
    }
}

async fn consumer_state(bus: &mainloop_bus::Bus) -> anyhow::Result<(u64, usize)> {
    let stream = bus.jetstream().get_stream(subjects::TASKS).await?;
    let mut consumer: async_nats::jetstream::consumer::PullConsumer = stream
        .get_consumer("test-consumer")
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    let info = consumer.info().await?;
    Ok((info.num_pending, info.num_ack_pending))
}

#[tokio::test]
async fn a_failed_handler_sees_the_message_again_until_it_succeeds() -> anyhow::Result<()> {
    let nats = TestNats::start()?;
    let bus = connect(&nats).await?;
    let published = bus
        .publish(&subjects::task("u1", "t1")?, &spawned("t1"), Expect::Any)
        .await?;
    let handler = Flaky::new(2);
    let shutdown = CancellationToken::new();
    let running = tokio::spawn({
        let (bus, handler, shutdown) = (bus.clone(), handler.clone(), shutdown.clone());
        async move { consumer::run(&bus, fast_spec(5), handler, shutdown).await }
    });

    eventually("three deliveries", || async { Ok(handler.calls().len() >= 3) }).await?;
    eventually("the ack", || async { Ok(consumer_state(&bus).await? == (0, 0)) }).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let seq = published.stream_sequence;
    assert_eq!(
        handler.calls(),
        vec![(seq, 1), (seq, 2), (seq, 3)],
        "acked after the third, never again"
    );
    assert!(dead_letter::list(&bus, "dead.>").await?.is_empty());

    shutdown.cancel();
    running.await??;
    Ok(())
}

#[tokio::test]
async fn a_message_that_always_fails_is_dead_lettered_with_its_reason() -> anyhow::Result<()> {
    let nats = TestNats::start()?;
    let bus = connect(&nats).await?;
    let subject = subjects::task("u1", "t1")?;
    let event = spawned("t1");
    let published = bus.publish(&subject, &event, Expect::Any).await?;
    let handler = Flaky::new(u32::MAX);
    let shutdown = CancellationToken::new();
    metrics_page();
    let running = tokio::spawn({
        let (bus, handler, shutdown) = (bus.clone(), handler.clone(), shutdown.clone());
        async move { consumer::run(&bus, fast_spec(3), handler, shutdown).await }
    });

    eventually("a dead letter", || async {
        Ok(!dead_letter::list(&bus, "dead.>").await?.is_empty())
    })
    .await?;
    let letters = dead_letter::list(&bus, "dead.TASKS.test-consumer").await?;
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!(letter.subject, subject);
    assert_eq!(letter.stream_sequence, published.stream_sequence);
    assert_eq!(letter.deliveries, 3);
    assert_eq!(letter.reason, "transient: database is down");
    assert_eq!(
        letter.payload,
        event.to_bytes(),
        "the dead letter keeps the original bytes"
    );

    // Terminated: no fourth delivery, nothing left pending.
    eventually("the term", || async { Ok(consumer_state(&bus).await? == (0, 0)) }).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(handler.calls().len(), 3);

    // Counted: two retries, then the dead letter.
    let page = metrics_page();
    let consumer = "consumer=\"test-consumer\"";
    assert!(
        metric(
            &page,
            "mainloop_events_handled_total",
            &[consumer, "outcome=\"retried\""]
        ) >= 2.0,
        "{page}"
    );
    assert!(
        metric(
            &page,
            "mainloop_events_handled_total",
            &[consumer, "outcome=\"dead_lettered\""]
        ) >= 1.0
    );
    assert!(
        metric(
            &page,
            "mainloop_dead_letters_total",
            &[consumer, "stream=\"TASKS\""]
        ) >= 1.0
    );
    assert!(metric(&page, "mainloop_handler_duration_seconds_count", &[consumer]) >= 3.0);

    shutdown.cancel();
    running.await??;
    Ok(())
}

#[tokio::test]
async fn a_message_that_is_not_an_envelope_is_dead_lettered_at_once() -> anyhow::Result<()> {
    let nats = TestNats::start()?;
    let bus = connect(&nats).await?;
    bus.jetstream()
        .publish("task.u1.t1", bytes::Bytes::from_static(b"\xff\xff not protobuf"))
        .await?
        .await?;
    let handler = Flaky::new(0);
    let shutdown = CancellationToken::new();
    let running = tokio::spawn({
        let (bus, handler, shutdown) = (bus.clone(), handler.clone(), shutdown.clone());
        async move { consumer::run(&bus, fast_spec(5), handler, shutdown).await }
    });

    eventually("a dead letter", || async {
        Ok(!dead_letter::list(&bus, "dead.>").await?.is_empty())
    })
    .await?;
    let letters = dead_letter::list(&bus, "dead.>").await?;
    assert_eq!(letters[0].deliveries, 1);
    assert!(
        letters[0].reason.starts_with("permanent: malformed envelope"),
        "{}",
        letters[0].reason
    );
    assert_eq!(letters[0].payload, b"\xff\xff not protobuf");
    assert!(
        handler.calls().is_empty(),
        "the handler never sees a malformed message"
    );

    shutdown.cancel();
    running.await??;
    Ok(())
}

#[tokio::test]
async fn shutdown_lets_the_running_handler_finish_and_ack() -> anyhow::Result<()> {
    struct Slow(Arc<tokio::sync::Notify>);
    impl Handler for Slow {
        async fn handle(&self, _: Delivery) -> Result<(), HandlerError> {
            self.0.notify_one();
            tokio::time::sleep(Duration::from_millis(300)).await;
            Ok(())
        }
    }
    let nats = TestNats::start()?;
    let bus = connect(&nats).await?;
    bus.publish(&subjects::task("u1", "t1")?, &spawned("t1"), Expect::Any)
        .await?;
    let started = Arc::new(tokio::sync::Notify::new());
    let shutdown = CancellationToken::new();
    let running = tokio::spawn({
        let (bus, handler, shutdown) = (bus.clone(), Arc::new(Slow(started.clone())), shutdown.clone());
        async move { consumer::run(&bus, fast_spec(5), handler, shutdown).await }
    });
    started.notified().await;
    shutdown.cancel();
    running.await??;
    eventually("the ack", || async { Ok(consumer_state(&bus).await? == (0, 0)) }).await?;
    Ok(())
}

#[tokio::test]
async fn a_slow_handler_keeps_its_message_with_progress_acks() -> anyhow::Result<()> {
    struct Slow(Mutex<u32>);
    impl Handler for Slow {
        async fn handle(&self, _: Delivery) -> Result<(), HandlerError> {
            if let Ok(mut calls) = self.0.lock() {
                *calls += 1;
            }
            tokio::time::sleep(Duration::from_millis(1200)).await;
            Ok(())
        }
    }
    let nats = TestNats::start()?;
    let bus = connect(&nats).await?;
    bus.publish(&subjects::task("u1", "t1")?, &spawned("t1"), Expect::Any)
        .await?;
    let handler = Arc::new(Slow(Mutex::new(0)));
    let shutdown = CancellationToken::new();
    let spec = ConsumerSpec {
        ack_wait: Duration::from_millis(400),
        ..fast_spec(5)
    };
    let running = tokio::spawn({
        let (bus, handler, shutdown) = (bus.clone(), handler.clone(), shutdown.clone());
        async move { consumer::run(&bus, spec, handler, shutdown).await }
    });
    eventually("the ack", || async {
        Ok(handler.0.lock().map(|c| *c).unwrap_or(0) == 1 && consumer_state(&bus).await? == (0, 0))
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        handler.0.lock().map(|c| *c).unwrap_or(0),
        1,
        "never handed to anyone else while it was being worked on"
    );
    shutdown.cancel();
    running.await??;
    Ok(())
}
