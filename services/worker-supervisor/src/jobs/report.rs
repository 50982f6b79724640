//! Reports of a job: its JOBS events, and its log lines on LOGS (secrets redacted, NUL made
//! visible), each published however often it takes, under the same event id.

use mainloop_bus::{Bus, Expect};
use mainloop_events::v1::{LogSource, WorkerLog};
use mainloop_events::{Envelope, Payload, subjects};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::runner::Lines;

#[derive(Clone)]
pub struct Reporter {
    pub bus: Bus,
    pub user_id: String,
    pub task_id: String,
    pub causation: String,
}

impl Reporter {
    pub fn for_request(bus: &Bus, request: &Envelope) -> Self {
        Reporter {
            bus: bus.clone(),
            user_id: request.user_id.clone(),
            task_id: request.correlation_id.clone(),
            causation: request.id.clone(),
        }
    }

    /// Publishes once, however often it has to try: a lost report would strand the task (the
    /// work item was acked when the job was accepted). The event id stays the same across tries.
    pub async fn publish(
        &self,
        subject: Result<String, mainloop_events::EventError>,
        payload: Payload,
    ) -> bool {
        let event = Envelope::new(&self.user_id, &self.task_id, payload).caused_by(&self.causation);
        let subject = match subject {
            Ok(subject) => subject,
            Err(err) => {
                tracing::error!(error = %err, "job report has no valid subject");
                return false;
            }
        };
        let mut delay = std::time::Duration::from_millis(200);
        for attempt in 1..=50 {
            match self.bus.publish(&subject, &event, Expect::Any).await {
                Ok(_) => return true,
                Err(err) => {
                    tracing::warn!(error = %err, attempt, kind = %event.r#type, "job report not published yet");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(std::time::Duration::from_secs(10));
                }
            }
        }
        tracing::error!(kind = %event.r#type, "job report given up after 50 attempts");
        false
    }

    pub async fn job(&self, payload: Payload) -> bool {
        self.publish(subjects::job(&self.user_id, &self.task_id), payload)
            .await
    }

    /// How the job ended, when its outcome is on JOBS already (`succeeded`, `failed` or
    /// `cancelled`): a supervisor stopped between reporting it and recording it leaves the job
    /// looking unfinished, and its recovery must not report it a second time.
    pub async fn outcome_reported(&self, job_id: &str, attempt: u32) -> Option<&'static str> {
        let subject = subjects::job(&self.user_id, &self.task_id).ok()?;
        let reported = match self.bus.read_subject(subjects::JOBS, &subject, 0).await {
            Ok(reported) => reported,
            Err(err) => {
                tracing::warn!(error = %err, job = job_id, "whether the job was reported is unknown; it may be reported again");
                return None;
            }
        };
        reported.iter().rev().find_map(|stored| {
            let (id, at, state) = match stored.event.payload.as_ref()? {
                Payload::JobSucceeded(end) => (&end.job_id, end.attempt, "succeeded"),
                Payload::JobFailed(end) => (&end.job_id, end.attempt, "failed"),
                Payload::JobCancelled(end) => (&end.job_id, end.attempt, "cancelled"),
                _ => return None,
            };
            (id == job_id && at == attempt).then_some(state)
        })
    }

    /// The number of the job's last log line already published (0 if none): a recovered job
    /// that is followed again from its start skips that many, so each line is published once.
    pub async fn last_log_line(&self, job_id: &str, attempt: u32) -> u64 {
        let Ok(subject) = subjects::log(&self.user_id, &self.task_id) else {
            return 0;
        };
        match self.bus.last_event(subjects::LOGS, &subject).await {
            Ok(Some(stored)) => match stored.event.payload {
                Some(Payload::WorkerLog(log)) if log.job_id == job_id && log.attempt == attempt => {
                    log.line_no
                }
                _ => 0,
            },
            Ok(None) => 0,
            Err(err) => {
                tracing::warn!(error = %err, job = job_id, "the job's last log line is unknown; its log may repeat");
                0
            }
        }
    }

    /// A sender for the job's log lines; they are published in order, redacted, numbered from
    /// `after + 1`, until every sender is dropped and the returned handle is awaited.
    pub fn log_lines(
        &self,
        job_id: &str,
        attempt: u32,
        after: u64,
        redactor: crate::redact::Redactor,
    ) -> (Lines, JoinHandle<()>) {
        let (lines, mut to_publish) = mpsc::unbounded_channel::<(LogSource, String)>();
        let (reporter, job_id) = (self.clone(), job_id.to_string());
        let publisher = tokio::spawn(async move {
            let mut line_no = after;
            while let Some((source, line)) = to_publish.recv().await {
                line_no += 1;
                let log = WorkerLog {
                    job_id: job_id.clone(),
                    attempt,
                    source: source as i32,
                    line: redactor.clean(&line),
                    line_no,
                };
                reporter
                    .publish(
                        subjects::log(&reporter.user_id, &reporter.task_id),
                        Payload::WorkerLog(log),
                    )
                    .await;
            }
        });
        (Lines::new(lines, after), publisher)
    }
}
