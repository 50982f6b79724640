//! Given events, when a command, then events: the task's rules without any I/O.

use mainloop_events::Payload;
use mainloop_events::v1::{
    CheckFailure, CiFailed, CiPassed, CodeOutcome, IssueCreated, JobFailed, JobMode, JobSucceeded,
    PlanOutcome, PullRequestMerged, PullRequestOpened, Question, QuestionOption, RepoRef, TaskSpawned,
    TaskStatus, job_succeeded,
};

use super::*;

pub(super) fn spawn() -> Command {
    Command::Spawn(TaskSpawned {
        task_id: "t1".into(),
        repo: Some(RepoRef {
            owner: "acme".into(),
            name: "widgets".into(),
            html_url: "https://github.com/acme/widgets".into(),
        }),
        description: "add a quick start section to the README of https://github.com/acme/widgets".into(),
        ..Default::default()
    })
}

pub(super) fn types(events: &[Payload]) -> Vec<&'static str> {
    events.iter().map(Payload::type_name).collect()
}

/// Runs commands from a new task and returns the state and the events of the last command.
pub(super) fn given(commands: &[Command]) -> Task {
    let mut task = Task::default();
    for command in commands {
        if let Err(rejection) = handle(&mut task, command) {
            panic!("given {command:?} was rejected: {rejection}");
        }
    }
    task
}

pub(super) fn when(task: &mut Task, command: Command) -> Result<Vec<Payload>, Rejection> {
    handle(task, &command)
}

pub(super) fn current_job(task: &Task) -> (String, u32) {
    let job = task.job.clone().unwrap_or_default();
    (job.job_id, job.attempt)
}

fn plan_done(task: &Task, plan: &str) -> Command {
    let (job_id, attempt) = current_job(task);
    Command::JobSucceeded(JobSucceeded {
        job_id,
        attempt,
        mode: JobMode::Plan as i32,
        outcome: Some(job_succeeded::Outcome::Plan(PlanOutcome {
            plan_text: plan.into(),
            ..Default::default()
        })),
        ..Default::default()
    })
}

pub(super) fn code_done(task: &Task, mode: JobMode, sha: &str, commits: u32) -> Command {
    let (job_id, attempt) = current_job(task);
    Command::JobSucceeded(JobSucceeded {
        job_id,
        attempt,
        mode: mode as i32,
        outcome: Some(job_succeeded::Outcome::Code(CodeOutcome {
            branch_name: task.branch_name.clone(),
            head_sha: sha.into(),
            commits,
            summary: String::new(),
        })),
        ..Default::default()
    })
}

fn approve(revision: u32) -> Command {
    Command::ReviewPlan {
        action: PlanAction::Approve,
        revision,
        feedback: String::new(),
        by: "ui".into(),
    }
}

fn ci_failed(sha: &str) -> Command {
    Command::CiFailed(CiFailed {
        pr_number: 3,
        head_sha: sha.into(),
        failures: vec![CheckFailure {
            name: "test".into(),
            conclusion: "failure".into(),
            summary: "1 failed".into(),
            ..Default::default()
        }],
    })
}

fn in_review() -> Task {
    let mut task = given(&[spawn()]);
    let done = plan_done(&task, "1. Write the section");
    handle(&mut task, &done).ok();
    handle(
        &mut task,
        &Command::IssueCreated(IssueCreated {
            effect_id: "t1:create-issue".into(),
            issue_number: 7,
            issue_url: "u/7".into(),
        }),
    )
    .ok();
    task
}

pub(super) fn with_open_pr() -> Task {
    let mut task = in_review();
    handle(&mut task, &approve(1)).ok();
    let done = code_done(&task, JobMode::Implement, "sha1", 2);
    handle(&mut task, &done).ok();
    let opened = PullRequestOpened {
        effect_id: "t1:open-pull-request".into(),
        pr_number: 3,
        pr_url: "u/pull/3".into(),
        head_branch: task.branch_name.clone(),
        head_sha: "sha1".into(),
    };
    handle(&mut task, &Command::PullRequestOpened(opened)).ok();
    task
}

#[test]
fn spawning_starts_planning_and_requests_a_plan_job() {
    let mut task = Task::default();
    let events = when(&mut task, spawn()).unwrap_or_default();
    assert_eq!(
        types(&events),
        [
            "TaskSpawned",
            "PlanningStarted",
            "GitHubEffectRequested",
            "JobRequested"
        ],
        "the issue is asked for as planning starts"
    );
    assert_eq!(task.status, TaskStatus::Planning);
    let job = task.job.clone().unwrap_or_default();
    assert_eq!(
        (job.job_id.as_str(), job.attempt, job.mode()),
        ("t1-job-1", 1, JobMode::Plan)
    );
    assert!(job.prompt.contains("acme/widgets"));
}

#[test]
fn a_repeated_spawn_is_a_no_op_and_a_bad_one_is_refused() {
    let mut task = given(&[spawn()]);
    assert_eq!(when(&mut task, spawn()), Ok(vec![]));
    let mut fresh = Task::default();
    let empty = Command::Spawn(TaskSpawned {
        task_id: "t2".into(),
        description: " ".into(),
        ..Default::default()
    });
    assert!(matches!(when(&mut fresh, empty), Err(Rejection::Invalid(_))));
    assert!(!fresh.exists());
    for (owner, name) in [("..", "acme"), ("-u", "widgets"), ("acme", ".."), ("acme", "a/b")] {
        let hostile = Command::Spawn(TaskSpawned {
            task_id: "t3".into(),
            description: "d".into(),
            repo: Some(mainloop_events::v1::RepoRef {
                owner: owner.into(),
                name: name.into(),
                html_url: String::new(),
            }),
            ..Default::default()
        });
        assert!(
            matches!(when(&mut fresh, hostile), Err(Rejection::Invalid(reason)) if reason.contains("not a valid")),
            "{owner}/{name}"
        );
    }
    assert!(!fresh.exists());
}

#[test]
fn a_plan_goes_to_review_on_the_issue_made_when_planning_began_and_asks_once() {
    let mut task = given(&[spawn()]);
    assert!(
        task.effects.contains("t1:create-issue"),
        "the issue is asked for when planning starts"
    );
    let done = plan_done(&task, "**Option A**: one section\n**Option B**: a new page");
    let events = when(&mut task, done).unwrap_or_default();
    assert_eq!(types(&events), ["PlanProposed", "NeedsApproval"]);
    assert_eq!(task.status, TaskStatus::WaitingPlanReview);
    let Payload::NeedsApproval(asked) = &events[1] else {
        unreachable!()
    };
    assert_eq!(asked.options, ["Approve", "Use A", "Use B", "Request changes"]);
    assert_eq!(follow_ups(&task), vec![], "nothing more is due");
    let linked = when(
        &mut task,
        Command::IssueCreated(IssueCreated {
            effect_id: "t1:create-issue".into(),
            issue_number: 7,
            issue_url: "u/7".into(),
        }),
    )
    .unwrap_or_default();
    // The plan goes into the issue's body, and a comment says how to steer from there.
    assert_eq!(
        types(&linked),
        ["IssueLinked", "GitHubEffectRequested", "GitHubEffectRequested"]
    );
    let effects: Vec<String> = linked
        .iter()
        .filter_map(|e| match e {
            Payload::GithubEffectRequested(r) => Some(r.effect_id.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(effects, ["t1:plan-help", "t1:issue-body-r1"]);
    assert_eq!(follow_ups(&task), vec![], "each said once");
}

#[test]
fn approval_starts_implementing_at_once() {
    let mut task = in_review();
    let events = when(&mut task, approve(1)).unwrap_or_default();
    assert_eq!(
        types(&events),
        [
            "PlanApproved",
            "GitHubEffectRequested",
            "ImplementationStarted",
            "JobRequested"
        ]
    );
    assert_eq!(
        task.job
            .as_ref()
            .map(|j| (j.mode(), j.branch_name.clone(), j.issue_number)),
        Some((
            JobMode::Implement,
            "docs/7-add-quick-start-section-readme".to_string(),
            7
        ))
    );
}

#[test]
fn the_whole_journey_in_order() {
    let mut task = with_open_pr();
    assert_eq!(task.status, TaskStatus::Implementing);
    assert_eq!(task.branch_name, "docs/7-add-quick-start-section-readme");

    let fix = when(&mut task, ci_failed("sha1")).unwrap_or_default();
    assert_eq!(types(&fix), ["CiFixStarted", "JobRequested"]);
    assert_eq!(task.job.as_ref().map(|j| j.mode()), Some(JobMode::Fix));
    assert!(task.job.as_ref().is_some_and(|j| j.context.contains("1 failed")));

    let pushed = code_done(&task, JobMode::Fix, "sha2", 1);
    assert_eq!(when(&mut task, pushed).map(|e| types(&e)), Ok(vec!["CodePushed"]));
    // A late result for the old head changes nothing.
    assert_eq!(when(&mut task, ci_failed("sha1")), Ok(vec![]));

    let readme = mainloop_events::v1::ChangedFile {
        filename: "README.md".into(),
        additions: 6,
        deletions: 1,
        status: "modified".into(),
    };
    let green = when(
        &mut task,
        Command::CiPassed(CiPassed {
            pr_number: 3,
            head_sha: "sha2".into(),
            no_ci: false,
            files: vec![readme.clone()],
        }),
    )
    .unwrap_or_default();
    let ready = green.iter().find_map(|e| match e {
        Payload::CodeReadyForReview(ready) => Some(ready.files.clone()),
        _ => None,
    });
    assert_eq!(ready, Some(vec![readme]), "the files reach the person's review");
    assert_eq!(
        types(&green),
        [
            "CodeReadyForReview",
            "GitHubEffectRequested",
            "GitHubEffectRequested"
        ],
        "marked ready, with a note on the pull request"
    );
    let effects: Vec<&str> = green
        .iter()
        .filter_map(|e| match e {
            Payload::GithubEffectRequested(r) => Some(r.effect_id.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(effects, ["t1:ready-sha2", "t1:mark-ready"]);
    assert_eq!(task.status, TaskStatus::UnderReview);

    let merged = when(
        &mut task,
        Command::PullRequestMerged(PullRequestMerged {
            pr_number: 3,
            merge_sha: "m".into(),
        }),
    );
    let merged = merged.unwrap_or_default();
    assert_eq!(types(&merged), ["TaskCompleted", "GitHubEffectRequested"]);
    let Some(Payload::GithubEffectRequested(close)) = merged.last() else {
        panic!("no effect");
    };
    assert_eq!(
        close.effect_id, "t1:close-issue",
        "the plan's issue is closed once done"
    );
    assert_eq!(task.status, TaskStatus::Completed);
    assert!(matches!(
        when(&mut task, Command::Cancel { by: "ui".into() }),
        Err(Rejection::Conflict(_))
    ));
}

#[test]
fn a_stale_approval_can_never_approve_a_newer_plan() {
    let mut task = in_review();
    let revise = Command::ReviewPlan {
        action: PlanAction::Revise,
        revision: 1,
        feedback: "shorter".into(),
        by: "ui".into(),
    };
    assert_eq!(
        when(&mut task, revise).map(|e| types(&e)),
        Ok(vec!["PlanRevisionRequested", "JobRequested"])
    );
    assert!(
        task.job
            .as_ref()
            .is_some_and(|j| j.context.contains("shorter") && j.context.contains("Write the section"))
    );
    let done = plan_done(&task, "1. A shorter section");
    let events = when(&mut task, done).unwrap_or_default();
    assert_eq!(
        types(&events),
        ["PlanProposed", "GitHubEffectRequested", "NeedsApproval"],
        "revision 2 updates the issue body"
    );
    assert_eq!(task.plan_revision, 2);

    let stale = when(&mut task, approve(1));
    assert_eq!(
        stale,
        Err(Rejection::Conflict(
            "plan revision 1 is no longer in review; revision 2 is".into()
        ))
    );
    assert_eq!(task.status, TaskStatus::WaitingPlanReview);
    assert!(when(&mut task, approve(2)).is_ok());
}

#[test]
fn commands_are_checked_against_state() {
    let mut task = given(&[spawn()]);
    assert!(
        matches!(when(&mut task, approve(0)), Err(Rejection::Conflict(m)) if m.contains("the task is planning"))
    );
    assert!(matches!(
        when(&mut task, Command::StartImplementation),
        Err(Rejection::Conflict(_))
    ));
    assert!(matches!(
        when(&mut task, Command::Retry),
        Err(Rejection::Conflict(_))
    ));
    let mut nothing = Task::default();
    assert_eq!(
        when(&mut nothing, Command::Cancel { by: "ui".into() }),
        Err(Rejection::NotFound)
    );
}

#[test]
fn job_results_must_name_the_current_job_and_attempt() {
    let mut task = given(&[spawn()]);
    let (job_id, _) = current_job(&task);
    let failure = |attempt: u32, retryable: bool| Command::JobFailed {
        result: JobFailed {
            job_id: job_id.clone(),
            attempt,
            mode: JobMode::Plan as i32,
            error: "overloaded".into(),
            retryable,
        },
        backoff: Backoff::default(),
    };
    let due = |attempt: u32| Command::RetryDue {
        job_id: job_id.clone(),
        attempt,
    };
    assert_eq!(
        when(&mut task, failure(2, true)),
        Ok(vec![]),
        "an attempt that was never made"
    );
    assert_eq!(
        when(&mut task, failure(1, true)).map(|e| types(&e)),
        Ok(vec!["JobRetryScheduled"]),
        "a retry waits for its timer"
    );
    assert_eq!(when(&mut task, failure(1, true)), Ok(vec![]), "scheduled once");
    assert_eq!(when(&mut task, due(3)), Ok(vec![]), "a timer for another attempt");
    assert_eq!(
        when(&mut task, due(2)).map(|e| types(&e)),
        Ok(vec!["JobRequested"])
    );
    assert_eq!(when(&mut task, due(2)), Ok(vec![]), "a timer fires once");
    assert_eq!(current_job(&task), (job_id.clone(), 2));
    assert_eq!(
        when(&mut task, failure(1, true)),
        Ok(vec![]),
        "a late result of the old attempt is ignored"
    );
    for attempt in 2..MAX_JOB_ATTEMPTS {
        when(&mut task, failure(attempt, true)).ok();
        when(&mut task, due(attempt + 1)).ok();
    }
    let last = when(&mut task, failure(MAX_JOB_ATTEMPTS, true)).unwrap_or_default();
    assert_eq!(types(&last), ["TaskFailed"]);
    assert_eq!(task.failed_in, TaskStatus::Planning);
    let retried = when(&mut task, Command::Retry).unwrap_or_default();
    assert_eq!(
        types(&retried),
        [
            "TaskRetried",
            "PlanningStarted",
            "GitHubEffectRequested",
            "JobRequested"
        ],
        "the issue the failed attempt never got is asked for again"
    );
    assert!(task.error.is_empty());
}

#[test]
fn retries_back_off_exponentially_with_bounded_jitter() {
    let backoff = Backoff::default();
    let waits: Vec<u64> = (1..=6)
        .map(|attempt| backoff.delay("t1-job-1", attempt).as_secs())
        .collect();
    for (attempt, (wait, nominal)) in waits.iter().zip([30u64, 60, 120, 240, 480, 600]).enumerate() {
        assert!(
            (nominal * 8 / 10..=nominal * 12 / 10).contains(wait),
            "attempt {}: {wait}s not within 20% of {nominal}s",
            attempt + 1
        );
    }
    assert_ne!(
        backoff.delay("t1-job-1", 1),
        backoff.delay("t2-job-1", 1),
        "jobs that failed together do not come back together"
    );
}

#[test]
fn a_cancelled_task_drops_its_scheduled_retry() {
    let mut task = given(&[spawn()]);
    let (job_id, _) = current_job(&task);
    let failed = Command::JobFailed {
        result: JobFailed {
            job_id: job_id.clone(),
            attempt: 1,
            mode: JobMode::Plan as i32,
            error: "overloaded".into(),
            retryable: true,
        },
        backoff: Backoff::default(),
    };
    when(&mut task, failed).ok();
    when(&mut task, Command::Cancel { by: "person".into() }).ok();
    assert_eq!(
        when(&mut task, Command::RetryDue { job_id, attempt: 2 }),
        Ok(vec![])
    );
}

#[test]
fn questions_are_asked_then_answered_by_their_text() {
    let mut task = given(&[spawn()]);
    let (job_id, attempt) = current_job(&task);
    let asked = Command::JobSucceeded(JobSucceeded {
        job_id,
        attempt,
        mode: JobMode::Plan as i32,
        outcome: Some(job_succeeded::Outcome::Plan(PlanOutcome {
            plan_text: "draft".into(),
            questions: vec![Question {
                id: "3f2a-uuid".into(),
                header: "Placement".into(),
                question: "Where should it go?".into(),
                options: vec![QuestionOption {
                    label: "Top".into(),
                    description: String::new(),
                }],
                multi_select: false,
            }],
            suggested_options: vec![],
        })),
        ..Default::default()
    });
    assert_eq!(
        when(&mut task, asked).map(|e| types(&e)),
        Ok(vec!["QuestionsAsked", "NeedsApproval"])
    );
    assert_eq!(task.questions[0].id, "q1");

    let unknown = Command::AnswerQuestions {
        answers: vec![mainloop_events::v1::Answer {
            question_id: "q9".into(),
            header: String::new(),
            values: vec!["Top".into()],
        }],
        cancel: false,
        by: "ui".into(),
    };
    assert!(matches!(when(&mut task, unknown), Err(Rejection::Invalid(_))));
    let none = Command::AnswerQuestions {
        answers: vec![],
        cancel: false,
        by: "ui".into(),
    };
    assert!(matches!(when(&mut task, none), Err(Rejection::Invalid(m)) if m.contains("not answered")));

    let answered = Command::AnswerQuestions {
        answers: vec![mainloop_events::v1::Answer {
            question_id: "q1".into(),
            header: String::new(),
            values: vec!["Top".into()],
        }],
        cancel: false,
        by: "ui".into(),
    };
    let events = when(&mut task, answered).unwrap_or_default();
    assert_eq!(types(&events), ["QuestionsAnswered", "JobRequested"]);
    assert_eq!(task.plan_round, 2);
    let context = task.job.as_ref().map(|j| j.context.clone()).unwrap_or_default();
    assert!(
        context.contains("- Where should it go?: Top") && context.contains("draft"),
        "{context}"
    );
}

#[test]
fn cancelling_stops_the_job_and_closes_what_was_opened() {
    let mut task = with_open_pr();
    let events = when(&mut task, Command::Cancel { by: "ui".into() }).unwrap_or_default();
    let effects: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            Payload::GithubEffectRequested(r) => Some(r.effect_id.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(types(&events)[0], "TaskCancelled");
    assert_eq!(
        effects,
        [
            "t1:cancel-note-issue",
            "t1:cancel-note-pr",
            "t1:close-issue",
            "t1:close-pull-request"
        ],
        "who cancelled is said where people follow the task, then both are closed"
    );
    let Payload::GithubEffectRequested(note) = &events[1] else {
        unreachable!()
    };
    let Some(mainloop_events::v1::git_hub_effect_requested::Effect::PostComment(note)) = &note.effect else {
        panic!("{note:?}")
    };
    assert!(
        note.body.contains("by the person in the mainloop inbox"),
        "{}",
        note.body
    );
    let mut planning = given(&[spawn()]);
    let events = when(&mut planning, Command::Cancel { by: "ui".into() }).unwrap_or_default();
    assert_eq!(types(&events), ["TaskCancelled", "JobCancellationRequested"]);
    assert_eq!(follow_ups(&planning), vec![]);
}

#[test]
fn red_ci_fails_the_task_after_the_last_fix() {
    let mut task = with_open_pr();
    for round in 1..=MAX_CI_FIXES {
        let head = task.head_sha.clone();
        assert_eq!(
            when(&mut task, ci_failed(&head)).map(|e| types(&e)),
            Ok(vec!["CiFixStarted", "JobRequested"])
        );
        assert_eq!(
            when(&mut task, ci_failed(&head)),
            Ok(vec![]),
            "the same failure twice starts one fix"
        );
        let pushed = code_done(&task, JobMode::Fix, &format!("fix{round}"), 1);
        when(&mut task, pushed).ok();
    }
    let head = task.head_sha.clone();
    let events = when(&mut task, ci_failed(&head)).unwrap_or_default();
    assert_eq!(types(&events), ["TaskFailed"]);
    assert_eq!(task.status, TaskStatus::Failed);
}

#[test]
fn ci_on_the_fix_commit_seen_before_the_fix_job_finished_is_offered_again_not_dropped() {
    let mut task = with_open_pr();
    let head = task.head_sha.clone();
    when(&mut task, ci_failed(&head)).ok();
    let passed = |sha: &str| {
        Command::CiPassed(CiPassed {
            pr_number: 3,
            head_sha: sha.into(),
            ..Default::default()
        })
    };
    // GitHub already shows the fix's commit and its green CI; the fix job's result is on its way.
    assert!(matches!(
        when(&mut task, passed("fix1")),
        Err(Rejection::TooEarly(_))
    ));
    assert!(matches!(
        when(&mut task, ci_failed("fix1")),
        Err(Rejection::TooEarly(_))
    ));
    assert_eq!(task.status, TaskStatus::Implementing, "nothing was decided yet");
    let pushed = code_done(&task, JobMode::Fix, "fix1", 1);
    when(&mut task, pushed).ok();
    assert_eq!(
        when(&mut task, passed("fix1")).map(|e| types(&e).first().copied()),
        Ok(Some("CodeReadyForReview")),
        "offered again once the push is recorded, it moves the task on"
    );
    // With no job running, CI on a commit the task never pushed is stale: ignored, not held.
    let mut idle = with_open_pr();
    assert_eq!(when(&mut idle, passed("someone-elses")), Ok(vec![]));
}

#[test]
fn reconcile_repairs_a_crash_between_two_appends() {
    // The process stopped after TaskSpawned was stored and before anything that follows from it.
    let mut task = Task::default();
    let decided = decide(&task, &spawn()).unwrap_or_default();
    for event in &decided {
        evolve(&mut task, event);
    }
    assert!(task.job.is_none());
    assert_eq!(
        when(&mut task, Command::Reconcile).map(|e| types(&e)),
        Ok(vec!["PlanningStarted", "GitHubEffectRequested", "JobRequested"])
    );
    assert_eq!(when(&mut task, Command::Reconcile), Ok(vec![]));
}

#[test]
fn a_retry_after_the_ci_fix_limit_starts_counting_again() {
    let mut task = with_open_pr();
    for round in 1..=MAX_CI_FIXES {
        let head = task.head_sha.clone();
        when(&mut task, ci_failed(&head)).ok();
        let pushed = code_done(&task, JobMode::Fix, &format!("fix{round}"), 1);
        when(&mut task, pushed).ok();
    }
    let head = task.head_sha.clone();
    when(&mut task, ci_failed(&head)).ok();
    assert_eq!(task.status, TaskStatus::Failed);
    when(&mut task, Command::Retry).ok();
    let again = when(&mut task, ci_failed(&head)).unwrap_or_default();
    assert_eq!(types(&again), ["CiFixStarted", "JobRequested"]);
    assert_eq!(task.ci_fixes, 1);
}

#[test]
fn a_retry_asks_github_again_under_a_new_key() {
    let mut task = in_review();
    when(&mut task, approve(1)).ok();
    let done = code_done(&task, JobMode::Implement, "sha1", 1);
    when(&mut task, done).ok();
    let failed = mainloop_events::v1::GitHubEffectFailed {
        effect_id: "t1:open-pull-request".into(),
        error: "GITHUB_TOKEN is not set".into(),
        http_status: 401,
        retryable: false,
    };
    assert_eq!(
        when(&mut task, Command::GitHubEffectFailed(failed)).map(|e| types(&e)),
        Ok(vec!["TaskFailed"])
    );
    let events = when(&mut task, Command::Retry).unwrap_or_default();
    let requested: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            Payload::GithubEffectRequested(r) => Some(r.effect_id.clone()),
            _ => None,
        })
        .collect();
    // The branch was pushed and approved: implementing resumes and the PR is asked for again.
    assert_eq!(types(&events)[..2], ["TaskRetried", "ImplementationStarted"]);
    assert_eq!(requested, ["t1:open-pull-request:retry1"]);
}

#[test]
fn a_task_that_ends_while_a_job_runs_cancels_the_job() {
    let mut task = with_open_pr();
    let head = task.head_sha.clone();
    when(&mut task, ci_failed(&head)).ok();
    assert_eq!(task.job.as_ref().map(|j| j.mode()), Some(JobMode::Fix));
    let merged = when(
        &mut task,
        Command::PullRequestMerged(PullRequestMerged {
            pr_number: 3,
            merge_sha: "m".into(),
        }),
    );
    assert_eq!(
        merged.map(|e| types(&e)),
        Ok(vec![
            "TaskCompleted",
            "GitHubEffectRequested",
            "JobCancellationRequested"
        ])
    );
    assert!(task.job.is_none());
    assert_eq!(follow_ups(&task), vec![]);
}

#[test]
fn a_pull_request_github_will_not_mark_ready_fails_the_task_with_the_reason() {
    let mut task = with_open_pr();
    let head = task.head_sha.clone();
    when(
        &mut task,
        Command::CiPassed(CiPassed {
            pr_number: 3,
            head_sha: head,
            no_ci: false,
            ..Default::default()
        }),
    )
    .ok();
    assert_eq!(task.status, TaskStatus::UnderReview);
    let refused = mainloop_events::v1::GitHubEffectFailed {
        effect_id: "t1:mark-ready".into(),
        error: "GitHub answered 403: Resource not accessible by personal access token".into(),
        http_status: 403,
        retryable: false,
    };
    assert_eq!(
        when(&mut task, Command::GitHubEffectFailed(refused)).map(|e| types(&e)),
        Ok(vec!["TaskFailed"])
    );
    assert_eq!(task.status, TaskStatus::Failed);
    assert!(
        task.error
            .contains("could not mark the pull request ready for review"),
        "{}",
        task.error
    );
    assert!(task.error.contains("403"));
}

#[test]
fn a_repository_without_ci_goes_to_review_with_a_note() {
    let mut task = with_open_pr();
    let head = task.head_sha.clone();
    let ready = when(
        &mut task,
        Command::CiPassed(CiPassed {
            pr_number: 3,
            head_sha: head,
            no_ci: true,
            ..Default::default()
        }),
    )
    .unwrap_or_default();
    let Some(Payload::CodeReadyForReview(ready)) = ready.first() else {
        panic!("{ready:?}")
    };
    assert!(ready.note.starts_with("No CI ran"), "{}", ready.note);
    assert_eq!(task.status, TaskStatus::UnderReview);
}

#[test]
fn ci_pending_too_long_fails_the_task_with_retry_and_only_for_the_current_head() {
    let mut task = with_open_pr();
    let stale = mainloop_events::v1::CiTimedOut {
        pr_number: 3,
        head_sha: "old".into(),
        waited_seconds: 7200,
        pending: vec!["test".into()],
    };
    assert_eq!(when(&mut task, Command::CiTimedOut(stale.clone())), Ok(vec![]));
    let current = mainloop_events::v1::CiTimedOut {
        head_sha: task.head_sha.clone(),
        ..stale
    };
    assert_eq!(
        when(&mut task, Command::CiTimedOut(current)).map(|e| types(&e)),
        Ok(vec!["TaskFailed"])
    );
    assert!(
        task.error.starts_with("CI did not finish within 120 min"),
        "{}",
        task.error
    );
    assert!(task.error.contains("test"));
    when(&mut task, Command::Retry).ok();
    assert_eq!(
        task.status,
        TaskStatus::Implementing,
        "a retry waits for CI again"
    );
}

pub(super) fn comment(id: u64, permission: mainloop_events::v1::AuthorPermission, body: &str) -> Command {
    Command::GitHubComment(GitHubComment {
        comment_id: id,
        author: "maria".into(),
        permission,
        body: body.into(),
        max_feedback_rounds: MAX_FEEDBACK_ROUNDS,
    })
}

use mainloop_events::v1::AuthorPermission;

#[test]
fn a_writer_approves_on_github_once_and_others_change_nothing() {
    let mut task = in_review();
    assert_eq!(
        when(&mut task, comment(10, AuthorPermission::Read, "lgtm")),
        Ok(vec![]),
        "read access does not steer"
    );
    assert_eq!(
        when(&mut task, comment(11, AuthorPermission::None, "/approve")),
        Ok(vec![])
    );
    let events = when(&mut task, comment(12, AuthorPermission::Write, "LGTM!")).unwrap_or_default();
    assert_eq!(
        types(&events),
        [
            "PlanApproved",
            "GitHubEffectRequested",
            "ImplementationStarted",
            "JobRequested"
        ]
    );
    let Payload::PlanApproved(approved) = &events[0] else {
        unreachable!()
    };
    assert_eq!(
        (approved.approved_by.as_str(), approved.github_comment_id),
        ("github:maria", 12)
    );
    let Payload::GithubEffectRequested(noted) = &events[1] else {
        unreachable!()
    };
    let Some(mainloop_events::v1::git_hub_effect_requested::Effect::PostComment(note)) = &noted.effect else {
        panic!("{noted:?}")
    };
    assert_eq!(
        (noted.effect_id.as_str(), note.issue_number),
        ("t1:approved-r1", 7)
    );
    assert!(note.body.contains("approved by @maria"), "{}", note.body);
    assert_eq!(
        when(&mut task, comment(12, AuthorPermission::Write, "LGTM!")),
        Ok(vec![]),
        "the same comment read again steers no more"
    );
    assert_eq!(
        when(&mut task, comment(13, AuthorPermission::Admin, "lgtm")),
        Ok(vec![]),
        "nothing to approve any more: nothing happens"
    );
}

#[test]
fn any_other_comment_on_a_plan_in_review_asks_for_a_revision() {
    let mut task = in_review();
    let events = when(&mut task, comment(20, AuthorPermission::Write, "approve? no")).unwrap_or_default();
    assert_eq!(types(&events)[0], "PlanRevisionRequested");
    let Payload::PlanRevisionRequested(revise) = &events[0] else {
        unreachable!()
    };
    assert_eq!(
        (
            revise.feedback.as_str(),
            revise.requested_by.as_str(),
            revise.github_comment_id
        ),
        ("approve? no", "github:maria", 20)
    );
    assert_eq!(task.status, TaskStatus::Planning);
    assert_eq!(
        when(&mut task, comment(19, AuthorPermission::Write, "/cancel")),
        Ok(vec![]),
        "an older comment, read late, steers no more"
    );
}

#[test]
fn questions_are_answered_and_tasks_cancelled_from_github() {
    let mut task = given(&[spawn()]);
    let (job_id, attempt) = current_job(&task);
    let asked = Command::JobSucceeded(JobSucceeded {
        job_id,
        attempt,
        mode: JobMode::Plan as i32,
        outcome: Some(job_succeeded::Outcome::Plan(PlanOutcome {
            plan_text: "draft".into(),
            questions: vec![Question {
                id: "x".into(),
                header: "Placement".into(),
                question: "Where should it go?".into(),
                options: vec![
                    QuestionOption {
                        label: "Top".into(),
                        description: String::new(),
                    },
                    QuestionOption {
                        label: "Bottom".into(),
                        description: String::new(),
                    },
                ],
                multi_select: false,
            }],
            suggested_options: vec![],
        })),
        ..Default::default()
    });
    handle(&mut task, &asked).ok();
    let events = when(&mut task, comment(30, AuthorPermission::Write, "1. B")).unwrap_or_default();
    assert_eq!(types(&events)[0], "QuestionsAnswered");
    let Payload::QuestionsAnswered(answered) = &events[0] else {
        unreachable!()
    };
    assert_eq!(answered.answers[0].values, ["Bottom"]);
    assert_eq!(
        (answered.answered_by.as_str(), answered.github_comment_id),
        ("github:maria", 30)
    );
    let events = when(&mut task, comment(31, AuthorPermission::Write, "/cancel")).unwrap_or_default();
    assert_eq!(types(&events)[0], "TaskCancelled");
    assert_eq!(task.status, TaskStatus::Cancelled);
}

#[test]
fn a_writers_thumbs_up_on_the_plan_comment_approves() {
    let mut task = in_review();
    let reaction = |permission, content: &str| Command::GitHubReaction {
        author: "maria".into(),
        permission,
        content: content.into(),
    };
    assert_eq!(
        when(&mut task, reaction(AuthorPermission::Write, "eyes")),
        Ok(vec![])
    );
    assert_eq!(
        when(&mut task, reaction(AuthorPermission::Read, "+1")),
        Ok(vec![])
    );
    let events = when(&mut task, reaction(AuthorPermission::Write, "rocket")).unwrap_or_default();
    assert_eq!(types(&events)[0], "PlanApproved");
    assert_eq!(task.status, TaskStatus::Implementing);
    assert_eq!(
        when(&mut task, reaction(AuthorPermission::Admin, "+1")),
        Ok(vec![]),
        "nothing left to approve"
    );
}

fn reopened(task: &Task, pr_reopened: bool) -> Command {
    Command::Reopened(mainloop_events::v1::Reopened {
        effect_id: "t1:reopen:retry1".into(),
        issue_number: task.issue_number,
        pr_number: task.pr_number,
        pr_reopened,
        error: if pr_reopened {
            String::new()
        } else {
            "GitHub answered 422: the pull request cannot be reopened".into()
        },
    })
}

fn effect_ids(events: &[Payload]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Payload::GithubEffectRequested(r) => Some(r.effect_id.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_retry_reopens_what_the_cancellation_closed_before_watching_it_again() {
    let mut task = with_open_pr();
    let cancelled = when(&mut task, Command::Cancel { by: "ui".into() }).unwrap_or_default();
    assert!(effect_ids(&cancelled).contains(&"t1:close-pull-request".to_string()));
    let retried = when(&mut task, Command::Retry).unwrap_or_default();
    let Some(Payload::TaskRetried(first)) = retried.first() else {
        panic!("{:?}", types(&retried));
    };
    assert!(
        first.reopens_on_github,
        "the watcher must not watch the closed PR yet"
    );
    assert_eq!(effect_ids(&retried), ["t1:reopen:retry1"]);
    let Some(Payload::GithubEffectRequested(request)) = retried
        .iter()
        .find(|e| matches!(e, Payload::GithubEffectRequested(_)))
    else {
        panic!("no reopen requested");
    };
    assert_eq!(
        request.effect,
        Some(mainloop_events::v1::git_hub_effect_requested::Effect::Reopen(
            mainloop_events::v1::Reopen {
                issue_number: 7,
                pr_number: 3
            }
        ))
    );
    assert_eq!(
        when(
            &mut task,
            Command::PullRequestClosed(mainloop_events::v1::PullRequestClosed { pr_number: 3 })
        ),
        Ok(vec![]),
        "the closed PR seen before the reopen does not cancel the retried task"
    );
    let done = reopened(&task, true);
    let events = when(&mut task, done).unwrap_or_default();
    assert_eq!(types(&events), ["ReopenedOnGitHub"]);
    assert_eq!((task.pr_number, task.reopen_needed), (3, false));
    let head = task.head_sha.clone();
    when(
        &mut task,
        Command::CiPassed(CiPassed {
            pr_number: 3,
            head_sha: head,
            no_ci: false,
            ..Default::default()
        }),
    )
    .ok();
    assert_eq!(
        task.status,
        TaskStatus::UnderReview,
        "the same PR is back in review"
    );
    assert_eq!(
        when(
            &mut task,
            Command::PullRequestClosed(mainloop_events::v1::PullRequestClosed { pr_number: 3 })
        )
        .map(|e| types(&e).first().copied()),
        Ok(Some("TaskCancelled")),
        "once reopened, closing it cancels again"
    );
}

#[test]
fn a_pull_request_github_will_not_reopen_is_replaced_by_a_new_one() {
    let mut task = with_open_pr();
    when(&mut task, Command::Cancel { by: "ui".into() }).ok();
    when(&mut task, Command::Retry).ok();
    let done = reopened(&task, false);
    let events = when(&mut task, done).unwrap_or_default();
    let Some(Payload::ReopenedOnGithub(reopened)) = events.first() else {
        panic!("{:?}", types(&events));
    };
    assert!(
        reopened.pr_replaced && reopened.note.contains("422"),
        "{reopened:?}"
    );
    assert_eq!(task.pr_number, 0);
    assert_eq!(
        effect_ids(&events),
        ["t1:open-pull-request:retry1"],
        "a new draft PR for the same branch"
    );
}

#[test]
fn a_long_wait_is_reminded_while_it_lasts_and_may_expire() {
    use mainloop_events::v1::ApprovalKind;
    let mut task = in_review();
    let remind = |revision: u32, nth: u32| Command::Remind {
        kind: ApprovalKind::PlanReview,
        revision,
        nth,
        waited_secs: 86_400 * u64::from(nth),
    };
    let reminded = when(&mut task, remind(1, 1)).unwrap_or_default();
    let Some(Payload::ApprovalReminded(first)) = reminded.first() else {
        panic!("{:?}", types(&reminded));
    };
    assert_eq!(
        (first.plan_revision, first.nth, first.waited_secs),
        (1, 1, 86_400)
    );
    assert_eq!(
        task.status,
        TaskStatus::WaitingPlanReview,
        "a reminder changes nothing else"
    );
    assert_eq!(
        when(
            &mut task,
            Command::Remind {
                kind: ApprovalKind::AnswerQuestions,
                revision: 1,
                nth: 1,
                waited_secs: 60
            }
        ),
        Ok(vec![]),
        "no questions wait"
    );
    let expire = |revision: u32| Command::Expire {
        kind: ApprovalKind::PlanReview,
        revision,
        waited_secs: 3 * 86_400,
    };
    assert_eq!(
        when(&mut task, expire(2)),
        Ok(vec![]),
        "revision 2 is not the one waiting"
    );
    let events = when(&mut task, expire(1)).unwrap_or_default();
    let Some(Payload::TaskCancelled(cancelled)) = events.first() else {
        panic!("{:?}", types(&events));
    };
    assert_eq!(
        (cancelled.reason.as_str(), cancelled.cancelled_by.as_str()),
        ("nobody answered within 3 days", "expired")
    );
    let note = events.iter().find_map(|e| match e {
        Payload::GithubEffectRequested(r) => match &r.effect {
            Some(mainloop_events::v1::git_hub_effect_requested::Effect::PostComment(c)) => {
                Some(c.body.clone())
            }
            _ => None,
        },
        _ => None,
    });
    assert_eq!(
        note.as_deref(),
        Some(
            "This task was cancelled because nobody answered in time (nobody answered within 3 days). Retry it from the mainloop inbox to start again.\n"
        )
    );
    assert_eq!(
        when(&mut task, remind(1, 2)),
        Ok(vec![]),
        "an ended wait is not reminded"
    );
}

#[test]
fn a_wait_answered_meanwhile_is_neither_reminded_nor_expired() {
    use mainloop_events::v1::ApprovalKind;
    let mut task = in_review();
    when(&mut task, approve(1)).ok();
    assert_eq!(
        when(
            &mut task,
            Command::Remind {
                kind: ApprovalKind::PlanReview,
                revision: 1,
                nth: 1,
                waited_secs: 86_400
            }
        ),
        Ok(vec![])
    );
    assert_eq!(
        when(
            &mut task,
            Command::Expire {
                kind: ApprovalKind::PlanReview,
                revision: 1,
                waited_secs: 86_400
            }
        ),
        Ok(vec![])
    );
}

#[test]
fn context_added_reaches_every_later_job_and_only_a_running_task() {
    let mut task = given(&[spawn()]);
    let add = |text: &str| Command::AddContext {
        text: text.into(),
        source: "chat:c1".into(),
    };
    assert_eq!(
        when(&mut task, add("Use British spelling.")).map(|e| types(&e)),
        Ok(vec!["ContextAdded"])
    );
    assert!(matches!(when(&mut task, add("  ")), Err(Rejection::Invalid(_))));
    let done = plan_done(&task, "1. Write the section");
    when(&mut task, done).ok();
    when(&mut task, approve(1)).ok();
    let implement = task.job.clone().unwrap_or_default();
    assert_eq!(implement.mode(), JobMode::Implement);
    assert!(
        implement.prompt.ends_with(
            "The person added, after the task started (it comes after the request and overrides it where they differ):\n- Use British spelling."
        ),
        "{}",
        implement.prompt
    );
    when(&mut task, Command::Cancel { by: "ui".into() }).ok();
    assert!(matches!(
        when(&mut task, add("more")),
        Err(Rejection::Conflict(_))
    ));
}
