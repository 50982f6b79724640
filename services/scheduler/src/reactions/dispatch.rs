use mainloop_bus::{Bus, Delivery, Expect, Handler, HandlerError};
use mainloop_events::{Payload, subjects};

use crate::store::TaskStore;
use crate::task::Command;

/// Reads the scheduler's own TASKS events: hands job and GitHub requests to the WORK queue (the
/// same envelope, so a repeat is deduplicated by its id), stores the timers events ask for, and
/// reconciles the task, which repairs a crash between an event and its follow-ups.
pub struct Dispatch {
    pub bus: Bus,
    pub store: TaskStore,
    pub db: sqlx::PgPool,
    pub waits: crate::timers::Waits,
}

impl Handler for Dispatch {
    async fn handle(&self, delivery: Delivery) -> Result<(), HandlerError> {
        let event = &delivery.event;
        let (user, task) = (&event.user_id, &event.correlation_id);
        let work_subject = match &event.payload {
            Some(Payload::JobRequested(_) | Payload::JobCancellationRequested(_)) => {
                Some(subjects::job_work(user, task))
            }
            Some(Payload::GithubEffectRequested(_)) => Some(subjects::github_work(user, task)),
            _ => None,
        };
        if let Some(Payload::JobRetryScheduled(retry)) = &event.payload {
            crate::timers::schedule_retry(&self.db, event, retry)
                .await
                .map_err(|e| HandlerError::Transient(e.to_string()))?;
        }
        crate::timers::schedule_waits(&self.db, event, self.waits)
            .await
            .map_err(|e| HandlerError::Transient(e.to_string()))?;
        if let Some(subject) = work_subject {
            let subject = subject.map_err(|e| HandlerError::Permanent(e.to_string()))?;
            self.bus
                .publish(&subject, event, Expect::Any)
                .await
                .map_err(|e| HandlerError::Transient(e.to_string()))?;
        }
        match self
            .store
            .execute(user, task, Command::Reconcile, &event.id)
            .await
        {
            Ok(_) => Ok(()),
            Err(err) => super::handler_error(err),
        }
    }
}
