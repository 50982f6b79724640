//! What the scheduler does when other services report: agent results (JOBS), GitHub effects
//! and observations (GITHUB), and its own task events (TASKS), which it hands to the work queue
//! and reconciles.

mod dispatch;
mod observe;

pub use dispatch::Dispatch;
pub use observe::Observe;

use mainloop_bus::HandlerError;

use crate::store::ExecuteError;
use crate::task::Rejection;

/// A rejected observation is not worth retrying (the task is gone or moved on); a store that
/// cannot be reached is.
/// How soon an observation that came too early is offered again.
const TOO_EARLY_RETRY: std::time::Duration = std::time::Duration::from_secs(2);

fn handler_error(err: ExecuteError) -> Result<(), HandlerError> {
    match err {
        ExecuteError::Rejected(Rejection::NotFound) => {
            tracing::warn!("observation for a task that does not exist; ignored");
            Ok(())
        }
        ExecuteError::Rejected(Rejection::TooEarly(reason)) => Err(HandlerError::RetryAfter {
            reason,
            after: TOO_EARLY_RETRY,
        }),
        ExecuteError::Rejected(rejection) => {
            tracing::info!(%rejection, "observation does not apply; ignored");
            Ok(())
        }
        ExecuteError::Subject(err) => Err(HandlerError::Permanent(err.to_string())),
        ExecuteError::Bus(mainloop_bus::BusError::Event(err)) => {
            Err(HandlerError::Permanent(err.to_string()))
        }
        ExecuteError::Bus(err) => Err(HandlerError::Transient(err.to_string())),
        ExecuteError::Contended(task) => Err(HandlerError::Transient(format!("task {task} contended"))),
    }
}
