use std::collections::BTreeSet;

use mainloop_events::Payload;
use mainloop_events::v1::{
    Answer, ApprovalKind, CompletionReason, FailureReason, FeedbackAddressed, FeedbackAddressingStarted,
    JobMode, JobRequested, Question, RepoRef, TaskStatus,
};

/// A task as its events made it. `status == Unspecified` means it does not exist yet.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Task {
    pub task_id: String,
    pub status: TaskStatus,
    pub repo: RepoRef,
    pub description: String,
    pub skip_plan: bool,
    /// A test fixture's seed: where it goes without jobs or GitHub (see `seed`).
    pub seed: Option<mainloop_events::v1::Seed>,
    pub model: String,

    /// Plan jobs requested so far (a round is one plan job, with or without questions).
    pub plan_round: u32,
    /// The revision of the plan last proposed; approvals must name it.
    pub plan_revision: u32,
    pub plan_text: String,
    pub draft_plan: String,
    pub questions: Vec<Question>,
    pub answers: Vec<Answer>,
    pub feedback: String,
    /// Every change asked of a plan revision, with the revision, for the issue's requirements.
    pub revisions_asked: Vec<(u32, String)>,

    pub branch_name: String,
    pub issue_number: u64,
    pub issue_url: String,
    pub pr_number: u64,
    pub pr_url: String,
    /// The branch head the last job pushed; CI results for any other commit are stale.
    pub head_sha: String,
    pub ci_fixes: u32,
    /// The head a fix job was started for; equal to `head_sha` while that fix is outstanding.
    pub ci_fix_for: String,
    pub ci_failure_report: String,

    /// The agent run in flight, if any. Results naming another (job, attempt) are ignored.
    pub job: Option<JobRequested>,
    /// A failed job's next attempt, waiting for its timer: (job id, attempt).
    pub retry_due: Option<(String, u32)>,
    /// Until when the task was last said to wait for GitHub (Unix ms), so it is said once.
    pub waiting_until: u64,
    pub jobs_requested: u32,
    /// Idempotency keys of the GitHub effects already requested.
    pub effects: BTreeSet<String>,
    /// The last decision asked of the person, so it is asked once per plan revision or round.
    pub asked: Option<(ApprovalKind, u32)>,

    pub retries: u32,
    pub error: String,
    pub failed_in: TaskStatus,
    /// The newest GitHub comment that steered the task; older ones (a re-read) steer no more.
    pub last_comment_id: u64,
    /// The plan round whose questions were last answered, and the answers given then (for the
    /// acknowledgement on the issue).
    pub answered_round: u32,
    pub last_answers: Vec<Answer>,
    /// Who approved which plan revision ("ui", "github:<login>"), for the note on the issue.
    pub approved: Option<(u32, String)>,
    /// Who cancelled the task and why, for the note on the issue and pull request.
    pub cancelled: Option<(String, String)>,
    /// Review feedback rounds started, every review and comment ever taken up (each is taken up
    /// once), the round in hand, and feedback that came meanwhile, for the next round.
    pub feedback_rounds: u32,
    pub feedback_taken: BTreeSet<String>,
    pub feedback_round: Option<FeedbackRound>,
    pub feedback_queued: Option<FeedbackAddressingStarted>,
    /// The head CI passed on when the pull request was last said to be ready.
    pub ready_head: String,
    /// A cancellation closed the issue or pull request; a retry reopens them first.
    pub reopen_needed: bool,
    /// What the person added about the task since it started; every job reads it.
    pub added_context: Vec<String>,
    /// Messages the person was asked about ("is this about this task?").
    pub routing_suggestions: u32,
}

/// One round of review feedback: what it took up, and, once the job is done, what it did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FeedbackRound {
    pub started: FeedbackAddressingStarted,
    pub addressed: Option<FeedbackAddressed>,
}

impl Task {
    pub fn exists(&self) -> bool {
        self.status != TaskStatus::Unspecified
    }

    pub fn is_terminal(&self) -> bool {
        matches!(
            self.status,
            TaskStatus::Completed | TaskStatus::Failed | TaskStatus::Cancelled
        )
    }

    /// The status as the original API spells it ("waiting_plan_review").
    pub fn status_name(&self) -> &'static str {
        status_name(self.status)
    }
}

pub fn status_name(status: TaskStatus) -> &'static str {
    status.api_name()
}

/// The GitHub comment an event came from, if one did.
fn steered_by_comment(event: &Payload) -> Option<u64> {
    let id = match event {
        Payload::QuestionsAnswered(e) => e.github_comment_id,
        Payload::PlanRevisionRequested(e) => e.github_comment_id,
        Payload::PlanApproved(e) => e.github_comment_id,
        Payload::ImplementationStarted(e) => e.github_comment_id,
        Payload::TaskCancelled(e) => e.github_comment_id,
        Payload::TaskRetried(e) => e.github_comment_id,
        Payload::FeedbackAddressingStarted(e) => e.github_comment_id,
        Payload::ReviewFeedbackQueued(e) => e.feedback.as_ref().map_or(0, |f| f.github_comment_id),
        _ => 0,
    };
    (id > 0).then_some(id)
}

/// Applies one event. Events not about tasks are ignored.
pub fn evolve(task: &mut Task, event: &Payload) {
    let before = task.status;
    if let Some(comment) = steered_by_comment(event) {
        task.last_comment_id = task.last_comment_id.max(comment);
    }
    if let Some(status) = event.task_status_after() {
        task.status = status;
    }
    match event {
        Payload::TaskSpawned(e) => {
            task.task_id = e.task_id.clone();
            task.repo = e.repo.clone().unwrap_or_default();
            task.description = e.description.clone();
            task.skip_plan = e.skip_plan;
            task.model = e.model.clone();
            task.seed = e.seed.clone();
        }
        Payload::QuestionsAsked(e) => {
            task.questions = e.questions.clone();
            task.draft_plan = e.draft_plan.clone();
            task.job = None;
        }
        Payload::QuestionsAnswered(e) => {
            task.answers.extend(e.answers.iter().cloned());
            task.answered_round = e.round;
            task.last_answers = e.answers.clone();
            task.questions.clear();
        }
        Payload::PlanProposed(e) => {
            task.plan_revision = e.revision;
            task.plan_text = e.plan_text.clone();
            task.questions.clear();
            task.job = None;
        }
        Payload::NeedsApproval(e) => task.asked = Some((e.kind(), e.plan_revision)),
        Payload::PlanRevisionRequested(e) => {
            task.feedback = e.feedback.clone();
            task.revisions_asked.push((e.plan_revision, e.feedback.clone()));
        }
        Payload::PlanApproved(e) => {
            task.branch_name = e.branch_name.clone();
            task.approved = Some((e.plan_revision, e.approved_by.clone()));
        }
        Payload::ImplementationStarted(e) => {
            task.branch_name = e.branch_name.clone();
        }
        Payload::IssueLinked(e) => {
            task.issue_number = e.issue_number;
            task.issue_url = e.issue_url.clone();
        }
        Payload::PullRequestLinked(e) => {
            task.pr_number = e.pr_number;
            task.pr_url = e.pr_url.clone();
        }
        Payload::CodePushed(e) => {
            task.head_sha = e.head_sha.clone();
            task.branch_name = e.branch_name.clone();
            task.job = None;
        }
        Payload::CiFixStarted(e) => {
            task.ci_fixes = e.iteration;
            task.ci_fix_for = e.head_sha.clone();
            task.ci_failure_report = e.failure_report.clone();
        }
        Payload::CodeReadyForReview(e) => {
            task.ready_head = if e.head_sha.is_empty() {
                task.head_sha.clone()
            } else {
                e.head_sha.clone()
            };
        }
        Payload::FeedbackAddressingStarted(e) => {
            task.feedback_rounds += 1;
            task.feedback_taken.extend(e.comment_ids.iter().cloned());
            task.feedback_round = Some(FeedbackRound {
                started: e.clone(),
                addressed: None,
            });
            task.feedback_queued = None;
        }
        Payload::ReviewFeedbackQueued(e) => {
            let more = e.feedback.clone().unwrap_or_default();
            task.feedback_taken.extend(more.comment_ids.iter().cloned());
            task.feedback_queued = Some(match task.feedback_queued.take() {
                Some(queued) => super::feedback::merged(queued, more),
                None => more,
            });
        }
        Payload::FeedbackAddressed(e) => {
            if let Some(round) = &mut task.feedback_round {
                round.addressed = Some(e.clone());
            }
            if !e.head_sha.is_empty() {
                task.head_sha = e.head_sha.clone();
            }
            task.job = None;
        }
        // A job still running when the task ends is cancelled by a follow-up; only the end a
        // job itself reported means the job is over.
        Payload::TaskCompleted(e) if e.reason() == CompletionReason::NoChanges => task.job = None,
        Payload::TaskFailed(e) => {
            task.failed_in = before;
            task.error = e.error.clone();
            if matches!(
                e.reason(),
                FailureReason::JobFailed | FailureReason::JobRetriesExhausted | FailureReason::EmptyPlan
            ) {
                task.job = None;
            }
        }
        Payload::TaskCancelled(e) => {
            task.cancelled = Some((e.cancelled_by.clone(), e.reason.clone()));
            task.reopen_needed = task.issue_number > 0 || task.pr_number > 0;
        }
        Payload::ContextAdded(e) => task.added_context.push(e.context.clone()),
        Payload::RoutingSuggested(_) => task.routing_suggestions += 1,
        Payload::ReopenedOnGithub(e) => {
            task.reopen_needed = false;
            if e.pr_replaced {
                task.pr_number = 0;
                task.pr_url.clear();
            }
        }
        Payload::TaskRetried(e) => {
            task.retries = e.attempt;
            task.cancelled = None;
            // A retry resumes work already approved; it is not announced again.
            task.approved = None;
            task.error.clear();
            task.asked = None;
            task.ci_fixes = 0;
            task.ci_fix_for.clear();
        }
        Payload::JobRequested(e) => {
            if e.mode() == JobMode::Plan && e.attempt == 1 {
                task.plan_round += 1;
            }
            task.job = Some(e.clone());
            task.retry_due = None;
            task.jobs_requested += 1;
        }
        Payload::JobRetryScheduled(e) => task.retry_due = Some((e.job_id.clone(), e.attempt)),
        Payload::TaskWaiting(e) => task.waiting_until = e.until_ms,
        Payload::JobCancellationRequested(_) => {
            task.job = None;
            task.retry_due = None;
        }
        Payload::GithubEffectRequested(e) => {
            task.effects.insert(e.effect_id.clone());
        }
        _ => {}
    }
}
