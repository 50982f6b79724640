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
    StreamSpec {
        name: subjects::TASKS,
        subjects: &["task.>"],
        work_queue: false,
        max_age: Duration::ZERO,
    },
    StreamSpec {
        name: subjects::JOBS,
        subjects: &["job.>"],
        work_queue: false,
        max_age: Duration::ZERO,
    },
    StreamSpec {
        name: subjects::LOGS,
        subjects: &["log.>"],
        work_queue: false,
        max_age: Duration::from_secs(14 * 24 * 3600),
    },
    StreamSpec {
        name: subjects::GITHUB,
        subjects: &["github.>"],
        work_queue: false,
        max_age: Duration::ZERO,
    },
    StreamSpec {
        name: subjects::CHAT,
        subjects: &["chat.>"],
        work_queue: false,
        max_age: Duration::ZERO,
    },
    StreamSpec {
        name: subjects::INBOX,
        subjects: &["inbox.>"],
        work_queue: false,
        max_age: Duration::from_secs(30 * 24 * 3600),
    },
    StreamSpec {
        name: subjects::WORK,
        subjects: &["work.>"],
        work_queue: true,
        max_age: Duration::ZERO,
    },
    StreamSpec {
        name: subjects::DEADLETTER,
        subjects: &["dead.>"],
        work_queue: false,
        max_age: Duration::from_secs(90 * 24 * 3600),
    },
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

/// Creates missing streams and updates ones whose settings drifted; leaves matching ones alone,
/// so the many services starting together mostly only read. A slow server (JetStream syncs its
/// metadata to disk, which can stall behind other I/O) gets a few retries.
pub(crate) async fn ensure_all(js: &jetstream::Context, replicas: usize) -> Result<(), BusError> {
    for spec in STREAMS {
        let wanted = config(spec, replicas);
        let mut delay = Duration::from_millis(200);
        for attempt in 1.. {
            match ensure_one(js, &wanted).await {
                Ok(()) => break,
                Err(reason) if attempt < 6 => {
                    tracing::warn!(stream = spec.name, %reason, retry_in = ?delay, "declaring stream failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Err(reason) => {
                    return Err(BusError::Stream {
                        stream: spec.name.to_string(),
                        reason,
                    });
                }
            }
        }
    }
    Ok(())
}

async fn ensure_one(js: &jetstream::Context, wanted: &stream::Config) -> Result<(), String> {
    use async_nats::jetstream::ErrorCode;
    use async_nats::jetstream::context::GetStreamErrorKind;
    match js.get_stream(&wanted.name).await {
        Ok(stream) if same_settings(&stream.cached_info().config, wanted) => Ok(()),
        Ok(_) => js
            .update_stream(wanted)
            .await
            .map(drop)
            .map_err(|e| e.to_string()),
        Err(err) => match err.kind() {
            GetStreamErrorKind::JetStream(inner) if inner.error_code() == ErrorCode::STREAM_NOT_FOUND => js
                .create_stream(wanted.clone())
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
            _ => Err(err.to_string()),
        },
    }
}

fn same_settings(current: &stream::Config, wanted: &stream::Config) -> bool {
    current.subjects == wanted.subjects
        && current.retention == wanted.retention
        && current.storage == wanted.storage
        && current.max_age == wanted.max_age
        && current.duplicate_window == wanted.duplicate_window
        && current.num_replicas == wanted.num_replicas
        && current.discard == wanted.discard
}
