use mainloop_events::Payload;
use mainloop_events::v1::{
    ApprovalKind, ApprovalReminded, AuthorPermission, CiFixStarted, CodePushed, CodeReadyForReview,
    CompletionReason, ContextAdded, FailureReason, FeedbackAddressed, FeedbackAddressingStarted,
    ImplementationStarted, IssueLinked, JobMode, JobRequested, JobRetryScheduled, PlanApproved, PlanProposed,
    PlanRevisionRequested, PullRequestLinked, Question, QuestionsAnswered, QuestionsAsked, ReopenedOnGitHub,
    RoutingSuggested, TaskCancelled, TaskCompleted, TaskFailed, TaskRetried, TaskStatus, TaskWaiting,
    job_succeeded,
};

use super::command::GitHubComment;
use super::feedback;
use super::state::status_name;
use super::steering::{self, Steer};
use super::text::{self, branch_name};
use super::{Backoff, Command, PlanAction, Rejection, Task};
use crate::task::follow_ups::{CREATE_ISSUE, MARK_READY, OPEN_PULL_REQUEST, REOPEN, effect_id};

/// Attempts of one job before the task fails.
pub const MAX_JOB_ATTEMPTS: u32 = 5;
/// Fix rounds for red CI before the task fails.
pub const MAX_CI_FIXES: u32 = 5;

/// The event `command` causes on `task` (at most one, so a decision is stored whole or not at
/// all; what follows from it is a follow-up), or why it cannot happen.
pub fn decide(task: &Task, command: &Command) -> Result<Vec<Payload>, Rejection> {
    if let Command::Spawn(spawn) = command {
        if let Some(seed) = &spawn.seed {
            super::seed::check(seed)?;
        }
        return spawn_task(task, spawn);
    }
    if !task.exists() {
        return Err(Rejection::NotFound);
    }
    match command {
        Command::Spawn(_) | Command::Reconcile => Ok(vec![]),
        Command::AnswerQuestions { answers, cancel, by } => answer_questions(task, answers, *cancel, by),
        Command::ReviewPlan {
            action,
            revision,
            feedback,
            by,
        } => review_plan(task, *action, *revision, feedback, by),
        Command::StartImplementation => {
            require(task, TaskStatus::ReadyToImplement, "start implementation")?;
            Ok(vec![Payload::ImplementationStarted(ImplementationStarted {
                branch_name: task.branch_name.clone(),
                ..Default::default()
            })])
        }
        Command::Cancel { by } => {
            if task.is_terminal() {
                return Err(Rejection::Conflict(format!(
                    "task is already {}",
                    task.status_name()
                )));
            }
            Ok(vec![cancelled("cancelled by the person", by)])
        }
        Command::Retry => retry(task),
        Command::AddContext { text, source } => add_context(task, text, source),
        Command::SuggestRouting { message, source } => suggest_routing(task, message, source),
        Command::GitHubComment(comment) => Ok(steer_from_github(task, comment)),
        Command::ReviewFeedback { review, max_rounds } => Ok(feedback::from_review(task, review)
            .map(|round| feedback::take_up(task, round, *max_rounds))
            .unwrap_or_default()),
        Command::GitHubReaction {
            author,
            permission,
            content,
        } => Ok(approve_by_reaction(task, author, *permission, content)),
        Command::JobSucceeded(result) => Ok(job_succeeded(task, result)),
        Command::JobFailed { result, backoff } => Ok(job_failed(task, result, *backoff)),
        Command::RetryDue { job_id, attempt } => Ok(retry_due(task, job_id, *attempt)),
        Command::Remind {
            kind,
            revision,
            nth,
            waited_secs,
        } => Ok(if still_asks(task, *kind, *revision) {
            vec![Payload::ApprovalReminded(ApprovalReminded {
                kind: *kind as i32,
                plan_revision: *revision,
                nth: *nth,
                waited_secs: *waited_secs,
            })]
        } else {
            vec![]
        }),
        Command::Expire {
            kind,
            revision,
            waited_secs,
        } => Ok(if still_asks(task, *kind, *revision) {
            vec![cancelled(
                &format!("nobody answered within {}", text::duration(*waited_secs)),
                "expired",
            )]
        } else {
            vec![]
        }),
        // Each redelivery of the waiting effect says "until" anew; a minute's difference is the
        // same wait, said once.
        Command::Wait { reason, until_ms } => Ok(
            if task.is_terminal() || task.waiting_until.abs_diff(*until_ms) < 60_000 {
                vec![]
            } else {
                vec![Payload::TaskWaiting(TaskWaiting {
                    reason: reason.clone(),
                    until_ms: *until_ms,
                })]
            },
        ),
        Command::IssueCreated(created)
            if created.effect_id == effect_id(task, CREATE_ISSUE) && task.issue_number == 0 =>
        {
            Ok(vec![Payload::IssueLinked(IssueLinked {
                issue_number: created.issue_number,
                issue_url: created.issue_url.clone(),
            })])
        }
        Command::PullRequestOpened(opened)
            if opened.effect_id == effect_id(task, OPEN_PULL_REQUEST) && task.pr_number == 0 =>
        {
            Ok(vec![Payload::PullRequestLinked(PullRequestLinked {
                pr_number: opened.pr_number,
                pr_url: opened.pr_url.clone(),
                head_branch: opened.head_branch.clone(),
            })])
        }
        Command::GitHubEffectFailed(failed) => Ok(effect_failed(task, &failed.effect_id, &failed.error)),
        Command::CiFailed(ci) => {
            too_early(task, &ci.head_sha, ci.pr_number)?;
            Ok(ci_failed(task, &ci.head_sha, ci.pr_number, &failure_report(ci)))
        }
        Command::CiPassed(ci) => {
            too_early(task, &ci.head_sha, ci.pr_number)?;
            let current = task.status == TaskStatus::Implementing
                && task.job.is_none()
                && ci.head_sha == task.head_sha
                && ci.pr_number == task.pr_number;
            Ok(if current {
                vec![Payload::CodeReadyForReview(CodeReadyForReview {
                    pr_number: task.pr_number,
                    pr_url: task.pr_url.clone(),
                    head_sha: task.head_sha.clone(),
                    note: if ci.no_ci {
                        "No CI ran on this repository: nothing reported checks or statuses for the change. Review it yourself.".into()
                    } else {
                        String::new()
                    },
                    files: ci.files.clone(),
                })]
            } else {
                vec![]
            })
        }
        Command::CiTimedOut(ci) => {
            let current = task.status == TaskStatus::Implementing
                && task.job.is_none()
                && ci.head_sha == task.head_sha
                && ci.pr_number == task.pr_number;
            Ok(if current {
                let minutes = ci.waited_seconds / 60;
                vec![failed(
                    task,
                    FailureReason::CiTimeout,
                    format!(
                        "CI did not finish within {minutes} min on {} (still pending: {}). Retry to wait again.",
                        short_sha(&ci.head_sha),
                        if ci.pending.is_empty() {
                            "nothing named".to_string()
                        } else {
                            ci.pending.join(", ")
                        }
                    ),
                )]
            } else {
                vec![]
            })
        }
        Command::PullRequestMerged(merged) if merged.pr_number == task.pr_number && !task.is_terminal() => {
            Ok(vec![Payload::TaskCompleted(TaskCompleted {
                reason: CompletionReason::PrMerged as i32,
            })])
        }
        Command::Reopened(reopened)
            if reopened.effect_id == effect_id(task, REOPEN) && task.reopen_needed =>
        {
            Ok(vec![Payload::ReopenedOnGithub(ReopenedOnGitHub {
                issue_number: reopened.issue_number,
                pr_number: reopened.pr_number,
                pr_replaced: reopened.pr_number > 0 && !reopened.pr_reopened,
                note: reopened.error.clone(),
            })])
        }
        // A pull request we are about to reopen was closed when the task was cancelled.
        Command::PullRequestClosed(closed)
            if closed.pr_number == task.pr_number && !task.is_terminal() && !task.reopen_needed =>
        {
            Ok(vec![cancelled(
                "pull request closed without merging",
                "pr_closed",
            )])
        }
        Command::IssueCreated(_)
        | Command::Reopened(_)
        | Command::PullRequestOpened(_)
        | Command::PullRequestMerged(_)
        | Command::PullRequestClosed(_) => Ok(vec![]),
    }
}

/// The task still waits on the person for exactly this question round or plan revision.
fn still_asks(task: &Task, kind: ApprovalKind, revision: u32) -> bool {
    let waiting = match kind {
        ApprovalKind::AnswerQuestions => TaskStatus::WaitingQuestions,
        ApprovalKind::PlanReview => TaskStatus::WaitingPlanReview,
        _ => return false,
    };
    task.status == waiting && task.asked == Some((kind, revision))
}

fn short_sha(sha: &str) -> &str {
    sha.get(..7).unwrap_or(sha)
}

fn require(task: &Task, status: TaskStatus, what: &str) -> Result<(), Rejection> {
    if task.status == status {
        Ok(())
    } else {
        Err(Rejection::Conflict(format!(
            "cannot {what}: the task is {}, not {}",
            task.status_name(),
            status_name(status)
        )))
    }
}

fn cancelled(reason: &str, by: &str) -> Payload {
    Payload::TaskCancelled(TaskCancelled {
        reason: reason.to_string(),
        cancelled_by: by.to_string(),
        ..Default::default()
    })
}

fn failed(task: &Task, reason: FailureReason, error: impl Into<String>) -> Payload {
    Payload::TaskFailed(TaskFailed {
        reason: reason as i32,
        error: error.into(),
        failed_in: task.status as i32,
    })
}

fn spawn_task(task: &Task, spawn: &mainloop_events::v1::TaskSpawned) -> Result<Vec<Payload>, Rejection> {
    if task.exists() {
        // The caller chose the id; a retried spawn of the same task is a no-op.
        return Ok(vec![]);
    }
    if spawn.description.trim().is_empty() {
        return Err(Rejection::Invalid("the task needs a description".into()));
    }
    let repo = spawn.repo.clone().unwrap_or_default();
    if repo.owner.is_empty() || repo.name.is_empty() {
        return Err(Rejection::Invalid(
            "the task needs a repository (owner/name)".into(),
        ));
    }
    if !mainloop_events::repo_names::valid_owner(&repo.owner)
        || !mainloop_events::repo_names::valid_name(&repo.name)
    {
        return Err(Rejection::Invalid(format!(
            "{}/{} is not a valid GitHub repository name",
            repo.owner, repo.name
        )));
    }
    Ok(vec![Payload::TaskSpawned(spawn.clone())])
}

fn answer_questions(
    task: &Task,
    answers: &[mainloop_events::v1::Answer],
    cancel: bool,
    by: &str,
) -> Result<Vec<Payload>, Rejection> {
    require(task, TaskStatus::WaitingQuestions, "answer questions")?;
    if cancel {
        return Ok(vec![cancelled("cancelled while answering questions", by)]);
    }
    let mut named = Vec::with_capacity(answers.len());
    for answer in answers {
        let Some(question) = task.questions.iter().find(|q| q.id == answer.question_id) else {
            return Err(Rejection::Invalid(format!(
                "there is no question {:?}",
                answer.question_id
            )));
        };
        if answer.values.iter().all(|v| v.trim().is_empty()) {
            return Err(Rejection::Invalid(format!(
                "the answer to {:?} is empty",
                question.header
            )));
        }
        named.push(mainloop_events::v1::Answer {
            header: question_label(question),
            ..answer.clone()
        });
    }
    if let Some(open) = task
        .questions
        .iter()
        .find(|q| !answers.iter().any(|a| a.question_id == q.id))
    {
        return Err(Rejection::Invalid(format!(
            "question {:?} is not answered",
            question_label(open)
        )));
    }
    Ok(vec![Payload::QuestionsAnswered(QuestionsAnswered {
        round: task.plan_round,
        answers: named,
        answered_by: by.to_string(),
        ..Default::default()
    })])
}

/// The agent gets answers by question text, never by an opaque id.
fn question_label(question: &Question) -> String {
    if question.question.is_empty() {
        question.header.clone()
    } else {
        question.question.clone()
    }
}

fn review_plan(
    task: &Task,
    action: PlanAction,
    revision: u32,
    feedback: &str,
    by: &str,
) -> Result<Vec<Payload>, Rejection> {
    require(task, TaskStatus::WaitingPlanReview, "review the plan")?;
    if revision != 0 && revision != task.plan_revision {
        return Err(Rejection::Conflict(format!(
            "plan revision {revision} is no longer in review; revision {} is",
            task.plan_revision
        )));
    }
    Ok(match action {
        PlanAction::Approve => vec![Payload::PlanApproved(PlanApproved {
            plan_revision: task.plan_revision,
            branch_name: branch_name(&task.description, task.issue_number),
            approved_by: by.to_string(),
            ..Default::default()
        })],
        PlanAction::Revise => {
            if feedback.trim().is_empty() {
                return Err(Rejection::Invalid("a revision needs feedback".into()));
            }
            vec![Payload::PlanRevisionRequested(PlanRevisionRequested {
                plan_revision: task.plan_revision,
                feedback: feedback.trim().to_string(),
                requested_by: by.to_string(),
                ..Default::default()
            })]
        }
        PlanAction::Cancel => vec![cancelled("plan cancelled", by)],
    })
}

/// What a comment on GitHub decides: only people who may write to the repository steer, each
/// comment once, and a comment that asks for what the task cannot do now decides nothing (the
/// same rules as the inbox's buttons). The events it causes name the comment.
fn steer_from_github(task: &Task, comment: &GitHubComment) -> Vec<Payload> {
    let GitHubComment {
        comment_id,
        ref author,
        permission,
        ref body,
        max_feedback_rounds,
    } = *comment;
    if comment_id <= task.last_comment_id
        || !matches!(permission, AuthorPermission::Write | AuthorPermission::Admin)
    {
        return vec![];
    }
    let by = format!("github:{author}");
    let decided = match steering::read(body, task.status, &task.questions) {
        Steer::Approve => review_plan(task, PlanAction::Approve, 0, "", &by),
        // Once there is a pull request, "revise" is review feedback on it.
        Steer::Revise(feedback)
            if task.pr_number > 0
                && matches!(task.status, TaskStatus::UnderReview | TaskStatus::Implementing) =>
        {
            return feedback::from_comment(task, comment_id, author, &feedback)
                .map(|round| feedback::take_up(task, round, max_feedback_rounds))
                .unwrap_or_default();
        }
        Steer::Revise(feedback) => review_plan(task, PlanAction::Revise, 0, &feedback, &by),
        Steer::Answer(answers) => answer_questions(task, &answers, false, &by),
        Steer::Implement => decide(task, &Command::StartImplementation),
        Steer::Cancel => decide(task, &Command::Cancel { by }),
        Steer::Retry => retry(task),
        Steer::Nothing => return vec![],
    };
    decided
        .unwrap_or_default()
        .into_iter()
        .map(|event| from_comment(event, comment_id))
        .collect()
}

/// Rounds of review feedback a task takes up unless configured otherwise; later feedback is
/// left to the person.
pub const MAX_FEEDBACK_ROUNDS: u32 = 5;

/// Reactions that approve the plan in review: 👍 🚀 ❤️ 🎉, by someone with write access.
const APPROVING_REACTIONS: &[&str] = &["+1", "rocket", "heart", "hooray"];

fn approve_by_reaction(
    task: &Task,
    author: &str,
    permission: AuthorPermission,
    content: &str,
) -> Vec<Payload> {
    if !APPROVING_REACTIONS.contains(&content)
        || !matches!(permission, AuthorPermission::Write | AuthorPermission::Admin)
    {
        return vec![];
    }
    review_plan(task, PlanAction::Approve, 0, "", &format!("github:{author}")).unwrap_or_default()
}

/// Names the comment an event came from.
fn from_comment(mut event: Payload, comment_id: u64) -> Payload {
    match &mut event {
        Payload::QuestionsAnswered(e) => e.github_comment_id = comment_id,
        Payload::PlanRevisionRequested(e) => e.github_comment_id = comment_id,
        Payload::PlanApproved(e) => e.github_comment_id = comment_id,
        Payload::ImplementationStarted(e) => e.github_comment_id = comment_id,
        Payload::TaskCancelled(e) => e.github_comment_id = comment_id,
        Payload::TaskRetried(e) => e.github_comment_id = comment_id,
        Payload::FeedbackAddressingStarted(e) => e.github_comment_id = comment_id,
        Payload::ReviewFeedbackQueued(e) => {
            if let Some(feedback) = &mut e.feedback {
                feedback.github_comment_id = comment_id;
            }
        }
        _ => {}
    }
    event
}

/// Longest context one follow-up may add, in characters.
const MAX_CONTEXT_CHARS: usize = 8_000;

/// A follow-up from the person: read by every job from now on; a task in review takes it as a
/// round of review feedback at once.
fn add_context(task: &Task, text: &str, source: &str) -> Result<Vec<Payload>, Rejection> {
    let text = text.trim();
    if text.is_empty() {
        return Err(Rejection::Invalid("the context is empty".into()));
    }
    if text.chars().count() > MAX_CONTEXT_CHARS {
        return Err(Rejection::Invalid(format!(
            "the context is longer than {MAX_CONTEXT_CHARS} characters"
        )));
    }
    if task.is_terminal() {
        return Err(Rejection::Conflict(format!(
            "the task is already {}: retry it or start a new one",
            task.status_name()
        )));
    }
    let added = Payload::ContextAdded(ContextAdded {
        context: text.to_string(),
        source: source.to_string(),
    });
    if task.status == TaskStatus::UnderReview {
        let round = FeedbackAddressingStarted {
            comment_ids: vec![format!("context-{}", task.added_context.len() + 1)],
            report: format!("The person, in mainloop:\n{text}\n\n"),
            ..Default::default()
        };
        let mut events = vec![added];
        events.extend(feedback::take_up(task, round, u32::MAX));
        return Ok(events);
    }
    Ok(vec![added])
}

/// Asks the person whether a message belongs to this task (each suggestion has its own id).
fn suggest_routing(task: &Task, message: &str, source: &str) -> Result<Vec<Payload>, Rejection> {
    let message = message.trim();
    if message.is_empty() || message.chars().count() > MAX_CONTEXT_CHARS {
        return Err(Rejection::Invalid(format!(
            "the message must be 1 to {MAX_CONTEXT_CHARS} characters"
        )));
    }
    if task.is_terminal() {
        return Err(Rejection::Conflict(format!(
            "the task is already {}: start a new one",
            task.status_name()
        )));
    }
    Ok(vec![Payload::RoutingSuggested(RoutingSuggested {
        suggestion_id: format!("{}-route-{}", task.task_id, task.routing_suggestions + 1),
        message: message.to_string(),
        source: source.to_string(),
    })])
}

fn retry(task: &Task) -> Result<Vec<Payload>, Rejection> {
    if !matches!(task.status, TaskStatus::Failed | TaskStatus::Cancelled) {
        return Err(Rejection::Conflict(format!(
            "only a failed or cancelled task can be retried; this one is {}",
            task.status_name()
        )));
    }
    Ok(vec![Payload::TaskRetried(TaskRetried {
        attempt: task.retries + 1,
        reopens_on_github: task.reopen_needed,
        ..Default::default()
    })])
}

fn is_current<'a>(task: &'a Task, job_id: &str, attempt: u32) -> Option<&'a JobRequested> {
    task.job
        .as_ref()
        .filter(|job| job.job_id == job_id && job.attempt == attempt)
}

fn job_succeeded(task: &Task, result: &mainloop_events::v1::JobSucceeded) -> Vec<Payload> {
    let Some(job) = is_current(task, &result.job_id, result.attempt) else {
        return vec![];
    };
    match (job.mode(), &result.outcome) {
        (JobMode::Plan, Some(job_succeeded::Outcome::Plan(plan))) => {
            if !plan.questions.is_empty() {
                let questions = plan
                    .questions
                    .iter()
                    .enumerate()
                    .map(|(i, q)| Question {
                        id: format!("q{}", i + 1),
                        ..q.clone()
                    })
                    .collect();
                vec![Payload::QuestionsAsked(QuestionsAsked {
                    round: task.plan_round,
                    questions,
                    draft_plan: plan.plan_text.clone(),
                })]
            } else if plan.plan_text.trim().is_empty() {
                vec![failed(
                    task,
                    FailureReason::EmptyPlan,
                    "the plan job returned no plan",
                )]
            } else {
                vec![Payload::PlanProposed(PlanProposed {
                    revision: task.plan_revision + 1,
                    plan_text: plan.plan_text.clone(),
                    suggested_options: plan.suggested_options.clone(),
                })]
            }
        }
        (
            mode @ (JobMode::Implement | JobMode::Fix | JobMode::Feedback),
            Some(job_succeeded::Outcome::Code(code)),
        ) => {
            let pushed = Payload::CodePushed(CodePushed {
                job_id: job.job_id.clone(),
                branch_name: code.branch_name.clone(),
                head_sha: code.head_sha.clone(),
                commits: code.commits,
            });
            match (mode, code.commits) {
                (JobMode::Implement, 0) => {
                    vec![Payload::TaskCompleted(TaskCompleted {
                        reason: CompletionReason::NoChanges as i32,
                    })]
                }
                (JobMode::Fix, 0) => vec![failed(
                    task,
                    FailureReason::JobFailed,
                    "the fix job made no commits",
                )],
                (JobMode::Feedback, commits) => {
                    vec![Payload::FeedbackAddressed(FeedbackAddressed {
                        head_sha: code.head_sha.clone(),
                        commits,
                        summary: code.summary.clone(),
                        round: task.feedback_round.as_ref().map_or(0, |r| r.started.round),
                    })]
                }
                _ => vec![pushed],
            }
        }
        _ => vec![failed(
            task,
            FailureReason::JobFailed,
            "the job returned an outcome of the wrong kind",
        )],
    }
}

fn job_failed(task: &Task, result: &mainloop_events::v1::JobFailed, backoff: Backoff) -> Vec<Payload> {
    let Some(job) = is_current(task, &result.job_id, result.attempt) else {
        return vec![];
    };
    if task.retry_due.is_some() {
        // The same failure reported again: its retry is already scheduled.
        return vec![];
    }
    if result.retryable && job.attempt < MAX_JOB_ATTEMPTS {
        let delay = backoff.delay(&job.job_id, job.attempt);
        return vec![Payload::JobRetryScheduled(JobRetryScheduled {
            job_id: job.job_id.clone(),
            attempt: job.attempt + 1,
            delay_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            reason: result.error.clone(),
        })];
    }
    let reason = if result.retryable {
        FailureReason::JobRetriesExhausted
    } else {
        FailureReason::JobFailed
    };
    vec![failed(
        task,
        reason,
        format!("{} (job {}, attempt {})", result.error, job.job_id, job.attempt),
    )]
}

/// A retry's timer fired: the next attempt of the same job, if the task still wants it.
fn retry_due(task: &Task, job_id: &str, attempt: u32) -> Vec<Payload> {
    match (&task.job, &task.retry_due) {
        (Some(job), Some((due_job, due_attempt)))
            if !task.is_terminal()
                && job.job_id == job_id
                && due_job == job_id
                && *due_attempt == attempt =>
        {
            vec![Payload::JobRequested(JobRequested {
                attempt,
                ..job.clone()
            })]
        }
        _ => vec![],
    }
}

fn effect_failed(task: &Task, effect: &str, error: &str) -> Vec<Payload> {
    if task.is_terminal() {
        return vec![];
    }
    if effect == effect_id(task, CREATE_ISSUE) {
        vec![failed(
            task,
            FailureReason::IssueCreationFailed,
            format!("could not create the issue: {error}"),
        )]
    } else if effect == effect_id(task, OPEN_PULL_REQUEST) {
        vec![failed(
            task,
            FailureReason::GithubError,
            format!("could not open the pull request: {error}"),
        )]
    } else if effect == effect_id(task, REOPEN) {
        vec![failed(
            task,
            FailureReason::GithubError,
            format!("could not reopen the issue and pull request the cancellation closed: {error}"),
        )]
    } else if effect == effect_id(task, MARK_READY) {
        // Never "ready for your review" on a PR that is still a draft.
        vec![failed(
            task,
            FailureReason::GithubError,
            format!("could not mark the pull request ready for review: {error}"),
        )]
    } else {
        vec![]
    }
}

/// CI on a commit of the task's pull request that the task does not know, while a job runs:
/// most likely the commit that job is pushing, whose result has not reached the task yet.
/// GitHub reports it once, so it waits to be offered again rather than be dropped.
fn too_early(task: &Task, head_sha: &str, pr_number: u64) -> Result<(), Rejection> {
    if task.job.is_some() && pr_number == task.pr_number && head_sha != task.head_sha && !task.is_terminal() {
        return Err(Rejection::TooEarly(format!(
            "CI on {} before the job that may have pushed it finished",
            short_sha(head_sha)
        )));
    }
    Ok(())
}

fn ci_failed(task: &Task, head_sha: &str, pr_number: u64, report: &str) -> Vec<Payload> {
    let current = task.status == TaskStatus::Implementing
        && task.job.is_none()
        && pr_number == task.pr_number
        && head_sha == task.head_sha
        && task.ci_fix_for != head_sha;
    if !current {
        return vec![];
    }
    if task.ci_fixes >= MAX_CI_FIXES {
        return vec![failed(
            task,
            FailureReason::CiFixLimit,
            format!("CI still fails after {MAX_CI_FIXES} fixes"),
        )];
    }
    vec![Payload::CiFixStarted(CiFixStarted {
        iteration: task.ci_fixes + 1,
        head_sha: head_sha.to_string(),
        failure_report: report.to_string(),
        max_fixes: MAX_CI_FIXES,
    })]
}

fn failure_report(ci: &mainloop_events::v1::CiFailed) -> String {
    ci.failures
        .iter()
        .map(|f| {
            format!(
                "## {} ({})\n{}\n{}\n{}",
                f.name,
                f.conclusion,
                f.title,
                f.summary.chars().take(2000).collect::<String>(),
                f.details_url
            )
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}
