//! The CI state of one head commit, from everything GitHub reports on it: check runs (GitHub
//! Actions and apps), check suites (an app was asked to check it) and commit statuses (the
//! older Status API). Green only when every run and status finished well; no CI at all is told
//! apart from CI that has not started yet by a grace period after the head appeared; CI pending
//! beyond a limit times out.

use std::time::Duration;

use mainloop_events::Payload;
use mainloop_events::v1::{ChangedFile, CheckFailure, CiFailed, CiPassed, CiPending, CiTimedOut};
use serde_json::Value;

/// The files of `GET /pulls/{n}/files`, as the person reviews them.
pub fn changed_files(files: &Value) -> Vec<ChangedFile> {
    let count = |file: &Value, key: &str| u32::try_from(file[key].as_u64().unwrap_or(0)).unwrap_or(u32::MAX);
    files
        .as_array()
        .map_or(&[][..], Vec::as_slice)
        .iter()
        .map(|file| ChangedFile {
            filename: text(file, "filename"),
            additions: count(file, "additions"),
            deletions: count(file, "deletions"),
            status: text(file, "status"),
        })
        .collect()
}

/// What GitHub said about one commit.
#[derive(Debug, Default)]
pub struct Observed {
    /// `GET /commits/{sha}/check-runs`
    pub runs: Value,
    /// `GET /commits/{sha}/check-suites`
    pub suites: Value,
    /// `GET /commits/{sha}/status`
    pub status: Value,
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub grace: Duration,
    pub timeout: Duration,
}

fn list<'a>(value: &'a Value, key: &str) -> &'a [Value] {
    value[key].as_array().map_or(&[], Vec::as_slice)
}

fn text(value: &Value, key: &str) -> String {
    value[key].as_str().unwrap_or_default().to_string()
}

/// The state (a short name, for reporting each change once) and the event that says it.
/// `age` is how long the head has been watched.
pub fn state(
    pr_number: u64,
    head: &str,
    observed: &Observed,
    age: Duration,
    limits: Limits,
) -> (&'static str, Payload) {
    let runs = list(&observed.runs, "check_runs");
    let statuses = list(&observed.status, "statuses");
    let suites = list(&observed.suites, "check_suites");
    let head_sha = head.to_string();
    let only_empty_suites = runs.is_empty() && statuses.is_empty() && age >= limits.grace;
    if (runs.is_empty() && statuses.is_empty() && suites.is_empty()) || only_empty_suites {
        return if age >= limits.grace {
            (
                "no-ci",
                Payload::CiPassed(CiPassed {
                    pr_number,
                    head_sha,
                    no_ci: true,
                    files: vec![],
                }),
            )
        } else {
            ("pending", Payload::CiPending(CiPending { pr_number, head_sha }))
        };
    }
    let mut failures: Vec<CheckFailure> = runs
        .iter()
        .filter(|r| r["status"] == "completed")
        .filter(|r| !matches!(r["conclusion"].as_str(), Some("success" | "neutral" | "skipped")))
        .map(|r| CheckFailure {
            name: text(r, "name"),
            conclusion: r["conclusion"].as_str().unwrap_or("unknown").to_string(),
            title: r["output"]["title"].as_str().unwrap_or_default().to_string(),
            summary: r["output"]["summary"]
                .as_str()
                .unwrap_or_default()
                .chars()
                .take(4000)
                .collect(),
            details_url: text(r, "details_url"),
        })
        .collect();
    failures.extend(
        statuses
            .iter()
            .filter(|s| matches!(s["state"].as_str(), Some("failure" | "error")))
            .map(|s| CheckFailure {
                name: text(s, "context"),
                conclusion: text(s, "state"),
                title: text(s, "description"),
                summary: String::new(),
                details_url: text(s, "target_url"),
            }),
    );
    let mut pending: Vec<String> = runs
        .iter()
        .filter(|r| r["status"] != "completed")
        .map(|r| text(r, "name"))
        .chain(
            statuses
                .iter()
                .filter(|s| s["state"] == "pending")
                .map(|s| text(s, "context")),
        )
        .collect();
    // A suite that was asked for but has no runs yet is CI about to start, during the grace;
    // after it, a suite that never made a run (an app that never reports, Actions with no
    // matching workflow) is not CI.
    if runs.is_empty() && age < limits.grace {
        pending.extend(
            suites
                .iter()
                .filter(|s| s["status"] != "completed")
                .map(|s| s["app"]["slug"].as_str().unwrap_or("check suite").to_string()),
        );
    }
    if !pending.is_empty() {
        return if age >= limits.timeout {
            let waited_seconds = age.as_secs();
            (
                "timed-out",
                Payload::CiTimedOut(CiTimedOut {
                    pr_number,
                    head_sha,
                    waited_seconds,
                    pending,
                }),
            )
        } else {
            ("pending", Payload::CiPending(CiPending { pr_number, head_sha }))
        };
    }
    if failures.is_empty() {
        (
            "passed",
            Payload::CiPassed(CiPassed {
                pr_number,
                head_sha,
                no_ci: false,
                files: vec![],
            }),
        )
    } else {
        (
            "failed",
            Payload::CiFailed(CiFailed {
                pr_number,
                head_sha,
                failures,
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::{Limits, Observed, state};

    const LIMITS: Limits = Limits {
        grace: Duration::from_secs(180),
        timeout: Duration::from_secs(3600),
    };

    fn observed(runs: serde_json::Value, statuses: serde_json::Value) -> Observed {
        Observed {
            runs: json!({"check_runs": runs}),
            suites: json!({"check_suites": []}),
            status: json!({"state": "pending", "statuses": statuses}),
        }
    }

    fn name(o: &Observed, age_secs: u64) -> &'static str {
        state(1, "s", o, Duration::from_secs(age_secs), LIMITS).0
    }

    #[test]
    fn green_only_when_every_run_and_status_finished_well() {
        let running = json!([{"status": "completed", "conclusion": "success"}, {"status": "in_progress", "name": "lint"}]);
        assert_eq!(name(&observed(running, json!([])), 10), "pending");
        let cancelled = json!([{"status": "completed", "conclusion": "cancelled", "name": "build"}]);
        assert_eq!(
            name(&observed(cancelled, json!([])), 10),
            "failed",
            "cancelled is a failure"
        );
        let green = json!([{"status": "completed", "conclusion": "success"}, {"status": "completed", "conclusion": "skipped"}]);
        assert_eq!(name(&observed(green.clone(), json!([])), 10), "passed");
        let red_status = json!([{"context": "ci/jenkins", "state": "error", "description": "boom"}]);
        assert_eq!(
            name(&observed(green, red_status), 10),
            "failed",
            "a red status spoils green runs"
        );
    }

    #[test]
    fn statuses_alone_are_ci() {
        let pending = json!([{"context": "ci/jenkins", "state": "pending"}]);
        assert_eq!(name(&observed(json!([]), pending), 10), "pending");
        let passed = json!([{"context": "ci/jenkins", "state": "success"}]);
        assert_eq!(name(&observed(json!([]), passed), 10), "passed");
    }

    #[test]
    fn nothing_at_all_is_pending_during_the_grace_then_no_ci() {
        let none = observed(json!([]), json!([]));
        assert_eq!(name(&none, 179), "pending", "CI may not have started yet");
        assert_eq!(name(&none, 180), "no-ci");
        let queued = Observed {
            suites: json!({"check_suites": [{"status": "queued", "app": {"slug": "github-actions"}}]}),
            ..observed(json!([]), json!([]))
        };
        assert_eq!(
            name(&queued, 60),
            "pending",
            "a requested suite is CI about to start"
        );
        assert_eq!(
            name(&queued, 600),
            "no-ci",
            "a suite that never made a run is not CI"
        );
    }

    #[test]
    fn pending_beyond_the_limit_times_out_naming_what_was_pending() {
        let stuck = observed(json!([{"status": "in_progress", "name": "test"}]), json!([]));
        let (outcome, payload) = state(1, "s", &stuck, Duration::from_secs(3600), LIMITS);
        assert_eq!(outcome, "timed-out");
        let mainloop_events::Payload::CiTimedOut(timed_out) = payload else {
            panic!("{payload:?}")
        };
        assert_eq!(timed_out.pending, ["test"]);
    }
}
