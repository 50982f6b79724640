use mainloop_events::Payload;
use mainloop_events::v1::{
    ApprovalKind, CloseIssue, ClosePullRequest, CreateIssue, GitHubEffectRequested, ImplementationStarted,
    JobCancellationRequested, JobMode, JobRequested, MarkPullRequestReady, NeedsApproval, OpenPullRequest,
    PlanningStarted, PostComment, Reopen, TaskStatus, UpdateIssueBody, git_hub_effect_requested::Effect,
};

use super::Task;
use super::text::{
    answers_comment, approval_comment, branch_name, cancel_comment, feedback_prompt, fix_prompt,
    implement_prompt, issue_body, issue_title, plan_context, plan_prompt, pull_request_body,
    questions_comment, ready_comment, steering_help,
};

pub const CREATE_ISSUE: &str = "create-issue";
pub const OPEN_PULL_REQUEST: &str = "open-pull-request";
pub const MARK_READY: &str = "mark-ready";
pub const REOPEN: &str = "reopen";
const CLOSE_ISSUE: &str = "close-issue";
const CLOSE_PULL_REQUEST: &str = "close-pull-request";

/// The idempotency key of one effect of one task: the same effect always gets the same key;
/// a retried task asks again under a new key, since the first answer was a failure.
pub fn effect_id(task: &Task, kind: &str) -> String {
    if task.retries == 0 {
        format!("{}:{kind}", task.task_id)
    } else {
        format!("{}:{kind}:retry{}", task.task_id, task.retries)
    }
}

/// The requests the task still needs, given only its state: each is asked once, and asked
/// again after a crash because the state still shows it missing.
pub fn follow_ups(task: &Task) -> Vec<Payload> {
    if task.seed.is_some() {
        return super::seed::follow_ups(task);
    }
    let mut requests = Vec::new();
    // The issue is where people follow and steer the plan: it exists from the start of planning.
    if matches!(
        task.status,
        TaskStatus::Planning | TaskStatus::WaitingQuestions | TaskStatus::WaitingPlanReview
    ) && task.issue_number == 0
        && !requested(task, CREATE_ISSUE)
    {
        requests.push(effect(
            task,
            CREATE_ISSUE,
            Effect::CreateIssue(CreateIssue {
                title: issue_title(&task.description),
                body: issue_body(task),
                labels: vec!["mainloop-plan".into(), "planning".into()],
            }),
        ));
    }
    // A retried task first reopens what its cancellation closed.
    if task.reopen_needed && !task.is_terminal() && !requested(task, REOPEN) {
        requests.push(effect(
            task,
            REOPEN,
            Effect::Reopen(Reopen {
                issue_number: task.issue_number,
                pr_number: task.pr_number,
            }),
        ));
    }
    requests.extend(issue_comments(task));
    requests.extend(super::feedback::follow_ups(task));
    // Done: the plan's issue is closed even where "Closes #n" does not close it (a base branch
    // other than the default, or no PR at all because nothing needed changing).
    if task.status == TaskStatus::Completed && task.issue_number > 0 && !requested(task, CLOSE_ISSUE) {
        requests.push(effect(
            task,
            CLOSE_ISSUE,
            Effect::CloseIssue(CloseIssue {
                issue_number: task.issue_number,
            }),
        ));
    }
    match task.status {
        TaskStatus::Pending => {
            // A new or retried task starts; a retry after an approved plan resumes implementing.
            requests.push(if task.plan_revision > 0 && !task.branch_name.is_empty() {
                Payload::ImplementationStarted(ImplementationStarted {
                    branch_name: task.branch_name.clone(),
                    ..Default::default()
                })
            } else if task.skip_plan {
                Payload::ImplementationStarted(ImplementationStarted {
                    branch_name: branch_name(&task.description, 0),
                    ..Default::default()
                })
            } else {
                Payload::PlanningStarted(PlanningStarted {
                    round: task.plan_round + 1,
                })
            });
        }
        // Approval means "go": the original's separate start step stays available as a command,
        // but nothing waits for it.
        TaskStatus::ReadyToImplement => {
            requests.push(Payload::ImplementationStarted(ImplementationStarted {
                branch_name: task.branch_name.clone(),
                ..Default::default()
            }));
        }
        TaskStatus::Planning if task.job.is_none() => {
            requests.push(job(task, JobMode::Plan, plan_prompt(task), plan_context(task)));
        }
        TaskStatus::WaitingQuestions => requests.extend(ask_answers(task)),
        TaskStatus::WaitingPlanReview => {
            let body_effect = format!("issue-body-r{}", task.plan_revision);
            if task.issue_number > 0 && !requested(task, &body_effect) {
                requests.push(effect(
                    task,
                    &body_effect,
                    Effect::UpdateIssueBody(UpdateIssueBody {
                        issue_number: task.issue_number,
                        body: issue_body(task),
                        labels: vec![],
                    }),
                ));
            }
            requests.extend(ask_review(task));
        }
        TaskStatus::Implementing if task.job.is_none() => {
            if let Some(round) = task.feedback_round.as_ref().filter(|r| r.addressed.is_none()) {
                requests.push(job(
                    task,
                    JobMode::Feedback,
                    feedback_prompt(task),
                    round.started.report.clone(),
                ));
            } else if !task.head_sha.is_empty() && task.ci_fix_for == task.head_sha {
                requests.push(job(
                    task,
                    JobMode::Fix,
                    fix_prompt(task),
                    task.ci_failure_report.clone(),
                ));
            } else if task.head_sha.is_empty() {
                requests.push(job(
                    task,
                    JobMode::Implement,
                    implement_prompt(task),
                    String::new(),
                ));
            } else if task.pr_number == 0 && !requested(task, OPEN_PULL_REQUEST) {
                requests.push(effect(
                    task,
                    OPEN_PULL_REQUEST,
                    Effect::OpenPullRequest(OpenPullRequest {
                        head: task.branch_name.clone(),
                        base: String::new(),
                        title: issue_title(&task.description),
                        body: pull_request_body(task),
                        draft: true,
                    }),
                ));
            }
        }
        TaskStatus::UnderReview if task.pr_number > 0 && !requested(task, MARK_READY) => {
            requests.push(effect(
                task,
                MARK_READY,
                Effect::MarkPullRequestReady(MarkPullRequestReady {
                    pr_number: task.pr_number,
                }),
            ));
        }
        TaskStatus::Completed | TaskStatus::Failed if task.job.is_some() => {
            if let Some(job) = &task.job {
                requests.push(Payload::JobCancellationRequested(JobCancellationRequested {
                    job_id: job.job_id.clone(),
                }));
            }
        }
        TaskStatus::Cancelled => {
            if let Some(job) = &task.job {
                requests.push(Payload::JobCancellationRequested(JobCancellationRequested {
                    job_id: job.job_id.clone(),
                }));
            }
            // Where people follow the task, say who stopped it before closing it.
            if let Some((by, reason)) = &task.cancelled {
                for (kind, number) in [
                    ("cancel-note-issue", task.issue_number),
                    ("cancel-note-pr", task.pr_number),
                ] {
                    if number > 0 && !requested(task, kind) {
                        requests.push(effect(
                            task,
                            kind,
                            Effect::PostComment(PostComment {
                                issue_number: number,
                                body: cancel_comment(by, reason),
                                watch_reactions: false,
                            }),
                        ));
                    }
                }
            }
            if task.issue_number > 0 && !requested(task, CLOSE_ISSUE) {
                requests.push(effect(
                    task,
                    CLOSE_ISSUE,
                    Effect::CloseIssue(CloseIssue {
                        issue_number: task.issue_number,
                    }),
                ));
            }
            if task.pr_number > 0 && !requested(task, CLOSE_PULL_REQUEST) {
                requests.push(effect(
                    task,
                    CLOSE_PULL_REQUEST,
                    Effect::ClosePullRequest(ClosePullRequest {
                        pr_number: task.pr_number,
                    }),
                ));
            }
        }
        _ => {}
    }
    requests
}

/// What mainloop says on the issue: the questions (one comment per round), the acknowledgement
/// of answers however they were given, and, once, how to steer the plan from there.
fn issue_comments(task: &Task) -> Vec<Payload> {
    if task.issue_number == 0 {
        return vec![];
    }
    let comment = |kind: String, body: String| {
        (!requested(task, &kind)).then(|| {
            effect(
                task,
                &kind,
                Effect::PostComment(PostComment {
                    issue_number: task.issue_number,
                    // Reactions on the comment that says how to steer the plan approve it.
                    watch_reactions: kind == "plan-help",
                    body,
                }),
            )
        })
    };
    let mut comments = Vec::new();
    match task.status {
        TaskStatus::WaitingQuestions => {
            comments.extend(comment(
                format!("questions-r{}", task.plan_round),
                questions_comment(task),
            ));
        }
        TaskStatus::Planning if task.answered_round > 0 => {
            comments.extend(comment(
                format!("answers-r{}", task.answered_round),
                answers_comment(task),
            ));
        }
        TaskStatus::WaitingPlanReview => {
            comments.extend(comment("plan-help".into(), steering_help()));
        }
        _ => {}
    }
    if let Some((revision, by)) = &task.approved
        && matches!(
            task.status,
            TaskStatus::ReadyToImplement | TaskStatus::Implementing
        )
    {
        comments.extend(comment(
            format!("approved-r{revision}"),
            approval_comment(*revision, by),
        ));
    }
    if task.status == TaskStatus::UnderReview && task.pr_number > 0 && !task.ready_head.is_empty() {
        let kind = format!("ready-{}", task.ready_head.get(..12).unwrap_or(&task.ready_head));
        if !requested(task, &kind) {
            comments.push(effect(
                task,
                &kind,
                Effect::PostComment(PostComment {
                    issue_number: task.pr_number,
                    body: ready_comment(task),
                    watch_reactions: false,
                }),
            ));
        }
    }
    comments
}

/// The person is asked the questions of this round, once.
pub(super) fn ask_answers(task: &Task) -> Option<Payload> {
    (task.asked != Some((ApprovalKind::AnswerQuestions, task.plan_round))).then(|| {
        Payload::NeedsApproval(NeedsApproval {
            kind: ApprovalKind::AnswerQuestions as i32,
            plan_revision: task.plan_round,
            title: format!("Questions about: {}", issue_title(&task.description)),
            summary: task
                .questions
                .iter()
                .map(|q| q.question.clone())
                .collect::<Vec<_>>()
                .join("\n"),
            options: vec![],
        })
    })
}

/// The person is asked to review this revision of the plan, once.
pub(super) fn ask_review(task: &Task) -> Option<Payload> {
    (task.asked != Some((ApprovalKind::PlanReview, task.plan_revision))).then(|| {
        Payload::NeedsApproval(NeedsApproval {
            kind: ApprovalKind::PlanReview as i32,
            plan_revision: task.plan_revision,
            title: format!("Review plan: {}", issue_title(&task.description)),
            summary: task.plan_text.clone(),
            options: plan_options(task),
        })
    })
}

pub(super) fn requested(task: &Task, kind: &str) -> bool {
    task.effects.contains(&effect_id(task, kind))
}

pub(super) fn effect(task: &Task, kind: &str, effect: Effect) -> Payload {
    Payload::GithubEffectRequested(GitHubEffectRequested {
        effect_id: effect_id(task, kind),
        repo: Some(task.repo.clone()),
        effect: Some(effect),
    })
}

fn job(task: &Task, mode: JobMode, prompt: String, context: String) -> Payload {
    let prompt = if task.added_context.is_empty() {
        prompt
    } else {
        format!("{prompt}\n\n{}", super::text::added_context(task))
    };
    Payload::JobRequested(JobRequested {
        job_id: format!("{}-job-{}", task.task_id, task.jobs_requested + 1),
        attempt: 1,
        mode: mode as i32,
        repo: Some(task.repo.clone()),
        clone_url: String::new(),
        branch_name: task.branch_name.clone(),
        issue_number: task.issue_number,
        pr_number: task.pr_number,
        prompt,
        context,
        model: task.model.clone(),
    })
}

/// "Approve" first, then what the plan offered ("Use Option A"), then "Request changes".
fn plan_options(task: &Task) -> Vec<String> {
    let mut options = vec!["Approve".to_string()];
    options.extend(task.plan_text.lines().filter_map(|line| {
        let rest = line
            .trim()
            .strip_prefix("**Option ")
            .or_else(|| line.trim().strip_prefix("**Approach "))?;
        let label = rest.split(['*', ':']).next()?.trim();
        (!label.is_empty()).then(|| format!("Use {label}"))
    }));
    options.push("Request changes".to_string());
    options
}
