use mainloop_bus::{BusError, Expect};
use mainloop_events::subjects;
use mainloop_testkit::TestNats;

use crate::helpers::{connect, spawned, stream_messages};

#[tokio::test]
async fn publishing_the_same_event_twice_stores_it_once() -> anyhow::Result<()> {
    let nats = TestNats::start()?;
    let bus = connect(&nats).await?;
    let event = spawned("t1");
    let subject = subjects::task("u1", "t1")?;

    let first = bus.publish(&subject, &event, Expect::Any).await?;
    let second = bus.publish(&subject, &event, Expect::Any).await?;

    assert!(!first.duplicate);
    assert!(second.duplicate, "the retry must be recognised as a duplicate");
    assert_eq!(second.stream_sequence, first.stream_sequence);
    assert_eq!(stream_messages(&bus, subjects::TASKS).await?, 1);
    Ok(())
}

#[tokio::test]
async fn a_stale_expected_sequence_is_a_conflict_and_stores_nothing() -> anyhow::Result<()> {
    let nats = TestNats::start()?;
    let bus = connect(&nats).await?;
    let subject = subjects::task("u1", "t1")?;

    let created = bus
        .publish(&subject, &spawned("t1"), Expect::LastSubjectSequence(0))
        .await?;
    // A second writer that also believed the task was new loses.
    let stale = bus
        .publish(&subject, &spawned("t1"), Expect::LastSubjectSequence(0))
        .await;
    match stale {
        Err(BusError::Conflict {
            subject: s,
            expected: 0,
        }) => assert_eq!(s, subject),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(stream_messages(&bus, subjects::TASKS).await?, 1);

    // Writing on top of what is really there works, and another aggregate is independent.
    let next = bus
        .publish(
            &subject,
            &spawned("t1"),
            Expect::LastSubjectSequence(created.stream_sequence),
        )
        .await?;
    assert_eq!(next.stream_sequence, created.stream_sequence + 1);
    let other = subjects::task("u1", "t2")?;
    bus.publish(&other, &spawned("t2"), Expect::LastSubjectSequence(0))
        .await?;
    assert_eq!(stream_messages(&bus, subjects::TASKS).await?, 3);
    Ok(())
}

#[tokio::test]
async fn an_invalid_envelope_is_refused_before_it_is_sent() -> anyhow::Result<()> {
    let nats = TestNats::start()?;
    let bus = connect(&nats).await?;
    let mut event = spawned("t1");
    event.r#type = "TaskCancelled".into();
    let result = bus
        .publish(&subjects::task("u1", "t1")?, &event, Expect::Any)
        .await;
    assert!(matches!(result, Err(BusError::Event(_))), "{result:?}");
    assert_eq!(stream_messages(&bus, subjects::TASKS).await?, 0);
    Ok(())
}

#[tokio::test]
async fn declaring_streams_again_is_harmless_and_keeps_events() -> anyhow::Result<()> {
    let nats = TestNats::start()?;
    let bus = connect(&nats).await?;
    bus.publish(&subjects::task("u1", "t1")?, &spawned("t1"), Expect::Any)
        .await?;
    bus.ensure_streams(1).await?;
    assert_eq!(stream_messages(&bus, subjects::TASKS).await?, 1);
    let work = bus.jetstream().get_stream(subjects::WORK).await?;
    assert_eq!(
        work.cached_info().config.retention,
        async_nats::jetstream::stream::RetentionPolicy::WorkQueue
    );
    Ok(())
}

#[tokio::test]
async fn an_aggregate_reads_back_only_its_own_subject_in_order() -> anyhow::Result<()> {
    let nats = TestNats::start()?;
    let bus = connect(&nats).await?;
    let (mine, other) = (subjects::task("u1", "t1")?, subjects::task("u1", "t2")?);
    assert_eq!(bus.last_sequence(subjects::TASKS, &mine).await?, 0);
    let (a, b, c) = (spawned("t1"), spawned("t2"), spawned("t1"));
    bus.publish(&mine, &a, Expect::Any).await?;
    bus.publish(&other, &b, Expect::Any).await?;
    let last = bus.publish(&mine, &c, Expect::Any).await?;

    let all = bus.read_subject(subjects::TASKS, &mine, 0).await?;
    assert_eq!(
        all.iter()
            .map(|s| (s.stream_sequence, s.event.id.clone()))
            .collect::<Vec<_>>(),
        [(1, a.id), (3, c.id.clone())]
    );
    let after_first = bus.read_subject(subjects::TASKS, &mine, 1).await?;
    assert_eq!(after_first.len(), 1);
    assert_eq!(after_first[0].event.id, c.id);
    assert!(bus.read_subject(subjects::TASKS, &mine, 3).await?.is_empty());
    assert_eq!(
        bus.last_sequence(subjects::TASKS, &mine).await?,
        last.stream_sequence
    );
    Ok(())
}
