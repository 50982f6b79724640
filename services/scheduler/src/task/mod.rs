//! The task aggregate, pure: no I/O, no clock, no randomness. [`evolve`] folds events into a
//! [`Task`]; [`decide`] turns a [`Command`] into new events or a [`Rejection`]; [`follow_ups`]
//! says what the scheduler must still request for the task to move on (jobs, GitHub effects,
//! questions to the person), derived from state alone, so a crash between two appends is
//! repaired by asking again.

mod command;
mod decide;
mod feedback;
mod follow_ups;
mod seed;
mod state;
mod steering;
mod text;

#[cfg(test)]
mod feedback_tests;
#[cfg(test)]
mod tests;

pub use command::{Backoff, Command, GitHubComment, PlanAction, Rejection};
pub use decide::{MAX_CI_FIXES, MAX_FEEDBACK_ROUNDS, MAX_JOB_ATTEMPTS, decide};
pub use follow_ups::follow_ups;
pub use seed::STATES as SEEDABLE;
pub use state::{Task, evolve};
pub use text::{branch_name, issue_title};

use mainloop_events::Payload;

/// Follow-up rounds before giving up on reaching a fixed point (each round answers the state the
/// previous one made; three are needed at most today).
const MAX_FOLLOW_UP_ROUNDS: usize = 8;

/// Decides `command`, then appends every follow-up the new state needs: everything the
/// scheduler should append for this command, in order. `task` is advanced past all of them.
pub fn handle(task: &mut Task, command: &Command) -> Result<Vec<Payload>, Rejection> {
    let mut events = decide(task, command)?;
    for event in &events {
        evolve(task, event);
    }
    for _ in 0..MAX_FOLLOW_UP_ROUNDS {
        let more = follow_ups(task);
        if more.is_empty() {
            break;
        }
        for event in &more {
            evolve(task, event);
        }
        events.extend(more);
    }
    Ok(events)
}
