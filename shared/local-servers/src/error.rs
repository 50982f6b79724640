use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("{program} is not installed. {hint}")]
    Missing {
        program: &'static str,
        hint: &'static str,
    },
    #[error("could not start {program}: {source}")]
    Spawn { program: String, source: std::io::Error },
    #[error("{program} failed ({status}); its output is in {log}:\n{tail}")]
    Failed {
        program: String,
        status: String,
        log: PathBuf,
        tail: String,
    },
    #[error("{program} was not ready after {seconds}s; its log is {log}:\n{tail}")]
    NotReady {
        program: &'static str,
        seconds: u64,
        log: PathBuf,
        tail: String,
    },
    #[error("running as root needs a `postgres` system user for the database (Postgres refuses root)")]
    NoPostgresUser,
    #[error(transparent)]
    Io(std::io::Error),
}

/// The last lines of a log file, for error messages that say what went wrong.
pub(crate) fn log_tail(path: &std::path::Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}
