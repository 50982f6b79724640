//! Waiting out GitHub: a job that cannot reach GitHub (an outage, a rate limit on a lookup or a
//! clone) tries again for a while before the failure counts as an attempt; the scheduler's
//! durable backoff takes over after that. Each wait is said in the job's log.

use std::time::Duration;

use mainloop_events::v1::LogSource;
use tokio_util::sync::CancellationToken;

use crate::runner::Lines;

/// How long a job waits out GitHub being unreachable before the failure counts as an attempt.
pub const GITHUB_PATIENCE: Duration = Duration::from_secs(300);

/// The wait a `retry after N s` in the github-watcher's answer asks for (its rate limits).
fn retry_after(message: &str) -> Option<Duration> {
    let rest = &message[message.find("retry after ")? + "retry after ".len()..];
    let seconds: u64 = rest.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_secs(seconds))
}

/// Runs `attempt` until it succeeds, fails for good (`(error, false)`), or GitHub stayed
/// unreachable for [`GITHUB_PATIENCE`].
pub async fn patiently<T, F, Fut>(
    cancel: &CancellationToken,
    lines: &Lines,
    mut attempt: F,
) -> Result<T, (String, bool)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, (String, bool)>>,
{
    let mut deadline = tokio::time::Instant::now() + GITHUB_PATIENCE;
    let mut delay = Duration::from_secs(1);
    loop {
        match attempt().await {
            // A rate limit says how long; that wait does not use up the patience (up to an hour).
            Err((error, true)) if retry_after(&error).is_some() => {
                let wait = retry_after(&error)
                    .unwrap_or_default()
                    .min(Duration::from_secs(3600));
                lines.send(LogSource::System, format!("{error}; waiting {}s", wait.as_secs()));
                tokio::select! {
                    () = cancel.cancelled() => return Err((error, true)),
                    () = tokio::time::sleep(wait) => {}
                }
                deadline += wait;
            }
            Err((error, true)) if tokio::time::Instant::now() + delay < deadline => {
                lines.send(
                    LogSource::System,
                    format!(
                        "GitHub unavailable ({error}); trying again in {}s",
                        delay.as_secs()
                    ),
                );
                tokio::select! {
                    () = cancel.cancelled() => return Err((error, true)),
                    () = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(30));
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_limit_says_how_long_to_wait() {
        assert_eq!(
            retry_after("GitHub rate limit; retry after 42 s"),
            Some(Duration::from_secs(42))
        );
        assert_eq!(retry_after("connection refused"), None);
    }
}
