//! The projection runs a round per generation: a round applies TASKS from where its generation
//! got to, and ends when a rebuild (`mainloop rebuild inbox`, any process) starts a new
//! generation; the next round then reads TASKS from the start. A round notices a rebuild
//! within [`WATCH_EVERY`] even when no event comes; until then its batches are refused.

use std::sync::Arc;
use std::time::Duration;

use mainloop_bus::{Bus, BusError, KeyedSpec, keyed};
use tokio_util::sync::CancellationToken;

use super::{Projector, generation};

/// How often a round asks whether a rebuild started a new generation.
pub const WATCH_EVERY: Duration = Duration::from_secs(1);

/// Runs rounds until `shutdown`.
pub async fn run(
    bus: &Bus,
    spec: KeyedSpec,
    projector: Arc<Projector>,
    shutdown: CancellationToken,
) -> Result<(), BusError> {
    while !shutdown.is_cancelled() {
        let round = shutdown.child_token();
        let watching = tokio::spawn(watch(projector.clone(), round.clone()));
        let ran = keyed::run(bus, spec.clone(), projector.clone(), round).await;
        watching.abort();
        ran?;
        if !shutdown.is_cancelled() {
            tracing::info!(
                projection = %spec.name,
                "the projection was rebuilt; applying TASKS again from the start"
            );
        }
    }
    Ok(())
}

/// Ends `round` once the generation in force is not the one it applies.
async fn watch(projector: Arc<Projector>, round: CancellationToken) {
    loop {
        tokio::select! {
            () = round.cancelled() => return,
            () = tokio::time::sleep(WATCH_EVERY) => {}
        }
        let ours = projector.generation();
        match generation::current(&projector.db).await {
            Ok((now, _)) if ours >= 0 && now.number != ours => {
                round.cancel();
                return;
            }
            Ok(_) => {}
            Err(err) => tracing::debug!(error = %err, "could not read the projection's generation"),
        }
    }
}
