use std::time::Duration;

use mainloop_events::v1::{
    Answer, ApprovalKind, AuthorPermission, CiFailed, CiPassed, CiTimedOut, GitHubEffectFailed, IssueCreated,
    JobFailed, JobSucceeded, PullRequestClosed, PullRequestMerged, PullRequestOpened, TaskSpawned,
};

/// What the person decided about a plan in review.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanAction {
    Approve,
    Revise,
    Cancel,
}

/// Everything that can ask the task to change: a person's command or an observation from
/// another service. Observations that do not match the task's state (a stale job result, CI for
/// an old commit) decide no events.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Spawn(TaskSpawned),
    AnswerQuestions {
        answers: Vec<Answer>,
        cancel: bool,
        by: String,
    },
    ReviewPlan {
        action: PlanAction,
        revision: u32,
        feedback: String,
        by: String,
    },
    StartImplementation,
    Cancel {
        by: String,
    },
    Retry,
    /// Something the person added about the task (`source`: where they said it).
    AddContext {
        text: String,
        source: String,
    },
    /// The main thread is unsure whether `message` is about this task: ask the person.
    SuggestRouting {
        message: String,
        source: String,
    },
    JobSucceeded(JobSucceeded),
    JobFailed {
        result: JobFailed,
        /// How long a retryable failure waits before the next attempt.
        backoff: Backoff,
    },
    /// Something outside (GitHub) asked the task to wait until `until_ms`.
    Wait {
        reason: String,
        until_ms: u64,
    },
    /// A question or plan review has waited `waited_secs`: remind the person (the `nth` time).
    Remind {
        kind: ApprovalKind,
        revision: u32,
        nth: u32,
        waited_secs: u64,
    },
    /// A question or plan review has waited `waited_secs`, the most it may: cancel the task.
    Expire {
        kind: ApprovalKind,
        revision: u32,
        waited_secs: u64,
    },
    /// A scheduled retry's timer fired.
    RetryDue {
        job_id: String,
        attempt: u32,
    },
    IssueCreated(IssueCreated),
    PullRequestOpened(PullRequestOpened),
    /// What a cancellation closed was reopened (or the pull request could not be).
    Reopened(mainloop_events::v1::Reopened),
    GitHubEffectFailed(GitHubEffectFailed),
    CiPassed(CiPassed),
    CiFailed(CiFailed),
    CiTimedOut(CiTimedOut),
    PullRequestMerged(PullRequestMerged),
    PullRequestClosed(PullRequestClosed),
    /// A review, or review comments, on the task's pull request; rounds beyond `max_rounds`
    /// are left to the person.
    ReviewFeedback {
        review: mainloop_events::v1::ReviewFeedbackReceived,
        max_rounds: u32,
    },
    /// A reaction on the comment of ours that says how to steer the plan.
    GitHubReaction {
        author: String,
        permission: AuthorPermission,
        content: String,
    },
    /// A comment on the task's issue or pull request that mainloop did not write.
    GitHubComment(GitHubComment),
    /// Decides nothing; the caller appends whatever follow-ups are due.
    Reconcile,
}

/// A comment on the task's issue or pull request that mainloop did not write.
#[derive(Debug, Clone, PartialEq)]
pub struct GitHubComment {
    pub comment_id: u64,
    pub author: String,
    pub permission: AuthorPermission,
    pub body: String,
    /// Review feedback rounds the task takes up (a comment on the pull request may ask one).
    pub max_feedback_rounds: u32,
}

/// Exponential backoff between a job's attempts, with jitter so that many tasks failing at
/// once (an outage) do not come back at once. The jitter is derived from the job, so deciding
/// stays a pure function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_secs(30),
            max: Duration::from_secs(600),
        }
    }
}

impl Backoff {
    /// The wait after `attempt` failed: base × 2^(attempt−1), at most `max`, ±20 %.
    pub fn delay(&self, job_id: &str, attempt: u32) -> Duration {
        let doubled = self.base.saturating_mul(1 << attempt.saturating_sub(1).min(16));
        let capped = doubled.min(self.max);
        let hash = format!("{job_id}:{attempt}")
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            });
        // 0.8 ..= 1.2
        let factor = 0.8 + (hash % 401) as f64 / 1000.0;
        capped.mul_f64(factor)
    }
}

/// Why a command was refused. Maps to HTTP 404 / 409 / 400 at the gateway.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("no such task")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    /// An observation that may matter once the task has recorded what it waits for: CI on a
    /// commit the running job may be pushing (GitHub shows the push before the job's result
    /// reaches the task). Offered again later, never dropped.
    #[error("too early: {0}")]
    TooEarly(String),
}
