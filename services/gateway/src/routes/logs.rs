//! A task's worker logs: `GET /tasks/{id}/logs` (the last lines, as the original's log viewer
//! reads them) and `GET /tasks/{id}/logs/stream`, the original's SSE contract made to work: a
//! `status` event first, then every line from the start (or after `Last-Event-ID`) and then live
//! as `log` events whose `id` is the line's LOGS stream sequence, a `status` event whenever the task
//! moves, and `end` once it has ended. `?job_id=` keeps one job's lines.

use std::convert::Infallible;
use std::time::Duration;

use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use std::collections::VecDeque;

use futures_util::stream::BoxStream;
use futures_util::{StreamExt, stream};
use mainloop_events::v1::{LogSource, TaskStatus, WorkerLog};
use mainloop_events::{Envelope, Payload, subjects};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api_error::ApiError;
use crate::auth::User;
use crate::extract::Params;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/tasks/{id}/logs", get(logs))
        .route("/tasks/{id}/logs/stream", get(stream_logs))
}

#[derive(Debug, Deserialize)]
struct LogParams {
    tail: Option<usize>,
}

fn unavailable(err: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %err, "logs unreadable");
    ApiError::new(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        "logs are unavailable",
    )
}

/// A line as the original log viewer shows it: tagged by where it came from.
fn tagged(log: &WorkerLog) -> String {
    match log.source() {
        LogSource::Agent => format!("[claude] {}", log.line),
        LogSource::Stderr => format!("[stderr] {}", log.line),
        _ => format!("[job_runner] {}", log.line),
    }
}

/// The last `tail` lines (default 100, at most 1000) the task's workers printed.
async fn logs(
    State(state): State<AppState>,
    User(user): User,
    Path(task): Path<String>,
    Params(p): Params<LogParams>,
) -> Result<Json<Value>, ApiError> {
    let tail = p.tail.unwrap_or(100);
    if !(1..=1000).contains(&tail) {
        return Err(ApiError::bad_request("tail must be between 1 and 1000"));
    }
    let task_row = super::tasks::by_id(&state, "get-task", &user, &task).await?;
    let subject = subjects::log(&user, &task).map_err(|e| ApiError::bad_request(e.to_string()))?;
    // Only the last lines are read, however long the log (`Bus::read_last`).
    let stored = state
        .bus
        .read_last(subjects::LOGS, &subject, tail as u64)
        .await
        .map_err(unavailable)?;
    let lines: Vec<String> = stored
        .iter()
        .filter_map(|s| match &s.event.payload {
            Some(Payload::WorkerLog(log)) => Some(tagged(log)),
            _ => None,
        })
        .collect();
    let source = if lines.is_empty() { "none" } else { "k8s" };
    Ok(Json(
        json!({"logs": lines.join("\n"), "source": source, "task_status": task_row["status"]}),
    ))
}

#[derive(Debug, Deserialize)]
struct StreamParams {
    last_event_id: Option<u64>,
    job_id: Option<String>,
}

async fn stream_logs(
    State(state): State<AppState>,
    User(user): User,
    Path(task): Path<String>,
    headers: HeaderMap,
    Params(params): Params<StreamParams>,
) -> Result<Response, ApiError> {
    let last_seen = match headers.get("last-event-id").and_then(|v| v.to_str().ok()) {
        Some(text) if !text.is_empty() => Some(
            text.parse::<u64>()
                .map_err(|_| ApiError::bad_request("Last-Event-ID must be a number"))?,
        ),
        _ => params.last_event_id,
    };
    let subject = subjects::log(&user, &task).map_err(|e| ApiError::bad_request(e.to_string()))?;
    // The status as TASKS has it now (the read model may lag), then each move after it.
    let (status, seen) = current_status(&state, &user, &task).await?;
    let moves = status_changes(&state, &user, &task, seen).await?;
    let status = status.api_name();
    let mut follow = Follow {
        state: state.clone(),
        subject: subject.clone(),
        task: task.clone(),
        job: params.job_id,
        lines: lines_after(&state, &subject, last_seen).await?,
        moves,
        pending: VecDeque::new(),
        last: last_seen.unwrap_or(0),
        finished: false,
    };
    follow.pending.push_back(status_event(&task, status));
    if TaskStatus::from_api_name(status).is_some_and(TaskStatus::is_terminal) {
        // Ended: the whole log stored, then the end.
        follow.finish().await;
    }
    let open = crate::metrics::OpenFeed::new("logs");
    let events = stream::unfold((follow, open), |(mut follow, open)| async move {
        let event = follow.next().await?;
        Some((Ok::<_, Infallible>(event), (follow, open)))
    });
    let mut response = Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response();
    response
        .headers_mut()
        .insert("x-accel-buffering", axum::http::HeaderValue::from_static("no"));
    Ok(response)
}

fn status_event(task: &str, status: &str) -> Event {
    Event::default()
        .event("status")
        .json_data(json!({"status": status, "task_id": task}))
        .unwrap_or_default()
}

/// One task's log being followed.
struct Follow {
    state: AppState,
    subject: String,
    task: String,
    job: Option<String>,
    lines: BoxStream<'static, (u64, WorkerLog)>,
    moves: BoxStream<'static, TaskStatus>,
    pending: VecDeque<Event>,
    /// The LOGS sequence of the last line read.
    last: u64,
    finished: bool,
}

impl Follow {
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(event);
            }
            if self.finished {
                return None;
            }
            tokio::select! {
                Some((sequence, log)) = self.lines.next() => self.line(sequence, log),
                Some(status) = self.moves.next() => {
                    self.pending.push_back(status_event(&self.task, status.api_name()));
                    if status.is_terminal() {
                        self.finish().await;
                    }
                }
                else => self.finished = true,
            }
        }
    }

    fn line(&mut self, sequence: u64, log: WorkerLog) {
        if sequence <= self.last {
            return;
        }
        self.last = sequence;
        if self.job.as_deref().is_some_and(|job| job != log.job_id) {
            return;
        }
        let event = Event::default()
            .id(sequence.to_string())
            .event("log")
            .json_data(
                json!({"logs": tagged(&log), "task_id": self.task, "job_id": log.job_id,
                "attempt": log.attempt, "line_no": log.line_no}),
            )
            .unwrap_or_default();
        self.pending.push_back(event);
    }

    /// The task ended: every line stored so far, then `end`.
    async fn finish(&mut self) {
        match self
            .state
            .bus
            .read_subject(subjects::LOGS, &self.subject, self.last)
            .await
        {
            Ok(stored) => {
                for line in stored {
                    if let Some(Payload::WorkerLog(log)) = line.event.payload {
                        self.line(line.stream_sequence, log);
                    }
                }
            }
            Err(err) => tracing::warn!(error = %err, "the end of a log could not be read"),
        }
        self.pending.push_back(
            Event::default()
                .event("end")
                .json_data(json!({"task_id": self.task}))
                .unwrap_or_default(),
        );
        self.finished = true;
    }
}

/// The task's lines after `after` (all when `None`), then each new one as it is written.
async fn lines_after(
    state: &AppState,
    subject: &str,
    after: Option<u64>,
) -> Result<BoxStream<'static, (u64, WorkerLog)>, ApiError> {
    let consumer = state
        .bus
        .jetstream()
        .get_stream_no_info(subjects::LOGS)
        .await
        .map_err(unavailable)?
        .create_consumer(pull::OrderedConfig {
            filter_subject: subject.to_string(),
            deliver_policy: match after {
                Some(sequence) => DeliverPolicy::ByStartSequence {
                    start_sequence: sequence.saturating_add(1),
                },
                None => DeliverPolicy::All,
            },
            ..Default::default()
        })
        .await
        .map_err(unavailable)?;
    let messages = consumer.messages().await.map_err(unavailable)?;
    Ok(messages
        .take_while(|m| std::future::ready(m.is_ok()))
        .filter_map(|message| async move {
            let message = message.ok()?;
            let sequence = message.info().ok()?.stream_sequence;
            match Envelope::from_bytes(&message.payload).ok()?.payload? {
                Payload::WorkerLog(log) => Some((sequence, log)),
                _ => None,
            }
        })
        .boxed())
}

/// The task's status and the TASKS sequence it was read at; 404 when the person has no such task.
async fn current_status(state: &AppState, user: &str, task: &str) -> Result<(TaskStatus, u64), ApiError> {
    let subject = subjects::task(user, task).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let history = state
        .bus
        .read_subject(subjects::TASKS, &subject, 0)
        .await
        .map_err(unavailable)?;
    let seen = history.last().map(|s| s.stream_sequence);
    let status = history
        .iter()
        .filter_map(|s| s.event.payload.as_ref()?.task_status_after())
        .next_back();
    match (status, seen) {
        (Some(status), Some(seen)) => Ok((status, seen)),
        _ => Err(ApiError::not_found("no such task")),
    }
}

/// The task's status each time it moves after TASKS sequence `seen`.
async fn status_changes(
    state: &AppState,
    user: &str,
    task: &str,
    seen: u64,
) -> Result<BoxStream<'static, TaskStatus>, ApiError> {
    let subject = subjects::task(user, task).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let consumer = state
        .bus
        .jetstream()
        .get_stream_no_info(subjects::TASKS)
        .await
        .map_err(unavailable)?
        .create_consumer(pull::OrderedConfig {
            filter_subject: subject,
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: seen + 1,
            },
            ..Default::default()
        })
        .await
        .map_err(unavailable)?;
    let messages = consumer.messages().await.map_err(unavailable)?;
    Ok(messages
        .take_while(|m| std::future::ready(m.is_ok()))
        .filter_map(|message| async move {
            let message = message.ok()?;
            Envelope::from_bytes(&message.payload)
                .ok()?
                .payload?
                .task_status_after()
        })
        .boxed())
}
