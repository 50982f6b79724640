//! The streams, as code. Event streams keep history (they are the source of truth, and any
//! projection can be rebuilt from them); LOGS and INBOX age out; WORK is a work queue, so a
//! job or GitHub effect request is removed once one worker acked it.

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use mainloop_events::subjects;

use crate::BusError;

#[derive(Debug, Clone, Copy)]
pub struct StreamSpec {
    pub name: &'static str,
    pub subjects: &'static [&'static str],
    pub work_queue: bool,
    /// Zero keeps messages until deleted.
    pub max_age: Duration,
}


/// Every stream mainloop uses. docs/EVENTS.md lists the same table.
pub const STREAMS: &[StreamSpec] = &[
    StreamSpec { name: subjects::TASKS, subjects: &["task.>"], work_queue: false, max_age: Duration::ZERO },
    StreamSpec { name: subjects::JOBS, subjects: &["job.>"], work_queue: false, max_age: Duration::ZERO },
    StreamSpec { name: subjects::LOGS, subjects: &["log.>"], work_queue: false, max_age: Duration::from_secs(14 * 24 * 3600) },
    StreamSpec { name: subjects::GITHUB, subjects: &["github.>"], work_queue: false, max_age: Duration::ZERO },
    StreamSpec { name: subjects::CHAT, subjects: &["chat.>"], work_queue: false, max_age: Duration::ZERO },
    StreamSpec { name: subjects::INBOX, subjects: &["inbox.>"], work_queue: false, max_age: Duration::from_secs(30 * 24 * 3600) },
    StreamSpec { name: subjects::WORK, subjects: &["work.>"], work_queue: true, max_age: Duration::ZERO },
    StreamSpec { name: subjects::DEADLETTER, subjects: &["dead.>"], work_queue: false, max_age: Duration::from_secs(90 * 24 * 3600) },
];

/// How long JetStream remembers a `Nats-Msg-Id` to drop a repeated publish.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

pub fn config(spec: &StreamSpec, replicas: usize) -> stream::Config {
    stream::Config {
        name: spec.name.to_string(),
        subjects: spec.subjects.iter().map(|s| (*s).to_string()).collect(),
        retention: if spec.work_queue {
            stream::RetentionPolicy::WorkQueue
        } else {
            stream::RetentionPolicy::Limits
        },
        storage: stream::StorageType::File,
        max_age: spec.max_age,
        duplicate_window: DUPLICATE_WINDOW,
        num_replicas: replicas.max(1),
        discard: stream::DiscardPolicy::Old,
        ..Default::default()
    }
}

pub(crate) async fn ensure_all(js: &jetstream::Context, replicas: usize) -> Result<(), BusError> {
    for spec in STREAMS {
        js.create_or_update_stream(config(spec, replicas))
            .await
            .map_err(|err| BusError::Stream {
                stream: spec.name.to_string(),
                reason: err.to_string(),
            })?;
    }
    Ok(())
}
