use mainloop_bus::Expect;
use mainloop_events::subjects;
use mainloop_testkit::TestNats;

use crate::helpers::{connect, spawned};

#[tokio::test]
async fn the_last_n_events_of_a_subject_are_exactly_the_newest_n() -> anyhow::Result<()> {
    let nats = TestNats::start()?;
    let bus = connect(&nats).await?;
    let (ours, theirs) = (subjects::log("u1", "a")?, subjects::log("u1", "b")?);
    // Ours come unevenly between theirs: runs of each, of different lengths.
    let mut sequences = Vec::new();
    for i in 0..300_u64 {
        let subject = if (i * 37) % 11 < 4 { &ours } else { &theirs };
        let published = bus.publish(subject, &spawned("t1"), Expect::Any).await?;
        if subject == &ours {
            sequences.push(published.stream_sequence);
        }
    }
    let all = sequences.len();
    for n in [1, 2, 17, 50, all - 1, all, all + 5] {
        let read = bus.read_last(subjects::LOGS, &ours, n as u64).await?;
        let read: Vec<u64> = read.iter().map(|s| s.stream_sequence).collect();
        assert_eq!(read, sequences[all.saturating_sub(n)..], "the last {n}");
    }
    assert!(bus.read_last(subjects::LOGS, &ours, 0).await?.is_empty());
    let nobody = subjects::log("u1", "nobody")?;
    assert!(bus.read_last(subjects::LOGS, &nobody, 10).await?.is_empty());
    Ok(())
}
