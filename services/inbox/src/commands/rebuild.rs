//! `cmd.inbox.rebuild` (`mainloop rebuild inbox`): drops the read models derived from TASKS and
//! has every inbox replica apply TASKS again from the start (see `projector::generation`). What
//! the person did to queue items is kept and applied again; the feed does not announce again
//! what it announced before.

use mainloop_events::subjects;
use mainloop_events::v1::{CommandError, ErrorCode};
use serde::{Deserialize, Serialize};

use super::Context;
use crate::projector::generation;
use crate::queries::internal;

#[derive(Debug, Deserialize)]
pub struct Rebuild {}

#[derive(Debug, Serialize, Deserialize)]
pub struct Rebuilt {
    /// The new generation of the projection.
    pub generation: i64,
    /// The events in TASKS when it started: applied again, not announced again.
    pub replaying: u64,
}

pub async fn handle(context: Context, _: Rebuild) -> Result<Rebuilt, CommandError> {
    let stream = context
        .bus
        .jetstream()
        .get_stream(subjects::TASKS)
        .await
        .map_err(|e| CommandError::new(ErrorCode::Unavailable, format!("TASKS cannot be read: {e}")))?;
    let replaying = stream.cached_info().state.last_sequence;
    let started = generation::start_new(&context.db, replaying)
        .await
        .map_err(internal)?;
    tracing::warn!(
        generation = started.number,
        replaying,
        "the read models were dropped; applying TASKS again"
    );
    Ok(Rebuilt {
        generation: started.number,
        replaying,
    })
}
