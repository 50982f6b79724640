use mainloop_events::v1::{
    Answer, CiFailed, CiPassed, CiTimedOut, GitHubEffectFailed, IssueCreated, JobFailed, JobSucceeded,
    PullRequestClosed, PullRequestMerged, PullRequestOpened, TaskSpawned,
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
    JobSucceeded(JobSucceeded),
    JobFailed(JobFailed),
    IssueCreated(IssueCreated),
    PullRequestOpened(PullRequestOpened),
    GitHubEffectFailed(GitHubEffectFailed),
    CiPassed(CiPassed),
    CiFailed(CiFailed),
    CiTimedOut(CiTimedOut),
    PullRequestMerged(PullRequestMerged),
    PullRequestClosed(PullRequestClosed),
    /// Decides nothing; the caller appends whatever follow-ups are due.
    Reconcile,
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
}
