//! What the bus counts for every consumer, whichever service runs it: events handled (by
//! outcome) and how long their handlers took, how far behind the stream the consumer is, and
//! dead letters; and for every command or query served, how it ended and how long it took. Recorded through the `metrics` facade; the process's recorder renders them
//! (`mainloop_runtime::metrics`).

use std::time::Duration;

/// How a handler's turn with one delivery ended.
#[derive(Debug, Clone, Copy)]
pub enum Outcome {
    Done,
    Retried,
    DeadLettered,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Done => "done",
            Outcome::Retried => "retried",
            Outcome::DeadLettered => "dead_lettered",
        }
    }
}

/// One delivery handled by `consumer` of `stream`, in `took`.
pub fn handled(stream: &str, consumer: &str, outcome: Outcome, took: Duration) {
    let (stream, consumer) = (stream.to_string(), consumer.to_string());
    metrics::counter!("mainloop_events_handled_total",
        "stream" => stream.clone(), "consumer" => consumer.clone(), "outcome" => outcome.label())
    .increment(1);
    metrics::histogram!("mainloop_handler_duration_seconds", "stream" => stream, "consumer" => consumer)
        .record(took.as_secs_f64());
}

/// Messages in the stream the consumer has not been given yet (JetStream's `pending`, sent with
/// every message).
pub fn lag(stream: &str, consumer: &str, pending: u64) {
    metrics::gauge!("mainloop_consumer_lag", "stream" => stream.to_string(), "consumer" => consumer.to_string())
        .set(pending as f64);
}

/// A message stored in DEADLETTER by `consumer`.
pub fn dead_lettered(stream: &str, consumer: &str) {
    metrics::counter!("mainloop_dead_letters_total", "stream" => stream.to_string(), "consumer" => consumer.to_string())
        .increment(1);
}

/// One command or query answered on `subject`: done, or refused; in `took`.
pub fn command(subject: &str, done: bool, took: Duration) {
    let outcome = if done { "done" } else { "refused" };
    metrics::counter!("mainloop_commands_handled_total", "subject" => subject.to_string(), "outcome" => outcome)
        .increment(1);
    metrics::histogram!("mainloop_command_duration_seconds", "subject" => subject.to_string())
        .record(took.as_secs_f64());
}
