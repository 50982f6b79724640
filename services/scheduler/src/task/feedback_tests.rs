//! The review loop, given events → when a command → then events: rounds of feedback from
//! reviews and comments, 👀 and replies on GitHub, CI before review resumes, rounds bounded.

use mainloop_events::Payload;
use mainloop_events::v1::{
    AuthorPermission, CiPassed, JobMode, ReviewComment, ReviewFeedbackReceived, TaskStatus,
    git_hub_effect_requested::Effect,
};

use super::tests::{code_done, comment, types, when, with_open_pr};
use super::*;

fn in_review_on_github() -> Task {
    let mut task = with_open_pr();
    let head = task.head_sha.clone();
    when(&mut task, ci_passed(&head)).ok();
    assert_eq!(task.status, TaskStatus::UnderReview);
    task
}

fn ci_passed(head: &str) -> Command {
    Command::CiPassed(CiPassed {
        pr_number: 3,
        head_sha: head.into(),
        no_ci: false,
        ..Default::default()
    })
}

fn review_with(id: u64, state: &str, permission: AuthorPermission, max_rounds: u32) -> Command {
    let inline = |comment_id: u64, path: &str, body: &str| ReviewComment {
        comment_id,
        author: "maria".into(),
        body: body.into(),
        path: path.into(),
        line: 3,
        diff_hunk: "@@ -1,3 +1,3 @@\n-old\n+new".into(),
        permission: permission as i32,
    };
    Command::ReviewFeedback {
        review: ReviewFeedbackReceived {
            pr_number: 3,
            review_state: state.into(),
            comments: vec![
                inline(id + 1, "README.md", "Say why."),
                inline(id + 2, "docs/a.md", "Link it."),
            ],
            review_id: id,
            reviewer: "maria".into(),
            reviewer_permission: permission as i32,
            review_body: "Two things.".into(),
        },
        max_rounds,
    }
}

fn review(id: u64, state: &str, permission: AuthorPermission) -> Command {
    review_with(id, state, permission, MAX_FEEDBACK_ROUNDS)
}

/// The GitHub effects among `events`, by their kind (the effect id without the task's prefix).
fn effects(events: &[Payload]) -> Vec<(String, Effect)> {
    events
        .iter()
        .filter_map(|e| match e {
            Payload::GithubEffectRequested(r) => Some((
                r.effect_id.trim_start_matches("t1:").to_string(),
                r.effect.clone()?,
            )),
            _ => None,
        })
        .collect()
}

fn kinds(events: &[Payload]) -> Vec<String> {
    effects(events).into_iter().map(|(kind, _)| kind).collect()
}

#[test]
fn a_writers_review_starts_one_feedback_job_with_every_comment_once() {
    let mut task = in_review_on_github();
    assert_eq!(
        when(
            &mut task,
            review(100, "CHANGES_REQUESTED", AuthorPermission::Read)
        ),
        Ok(vec![]),
        "read access does not steer the agent"
    );
    assert_eq!(
        when(&mut task, review(110, "APPROVED", AuthorPermission::Write)),
        Ok(vec![]),
        "an approval asks nothing"
    );
    let events = when(
        &mut task,
        review(120, "CHANGES_REQUESTED", AuthorPermission::Write),
    )
    .unwrap_or_default();
    assert_eq!(
        types(&events),
        [
            "FeedbackAddressingStarted",
            "GitHubEffectRequested",
            "GitHubEffectRequested",
            "JobRequested"
        ]
    );
    assert_eq!(
        kinds(&events),
        ["eyes-rc-121", "eyes-rc-122"],
        "👀 on each inline comment"
    );
    let Some((_, Effect::AddReaction(eyes))) = effects(&events).into_iter().next() else {
        panic!("no reaction requested");
    };
    assert_eq!(
        (eyes.comment_id, eyes.content.as_str(), eyes.target()),
        (121, "eyes", mainloop_events::v1::ReactionTarget::ReviewComment)
    );
    assert_eq!(task.status, TaskStatus::Implementing);
    let job = task.job.clone().unwrap_or_default();
    assert_eq!(job.mode(), JobMode::Feedback);
    assert!(
        job.context
            .contains("Review by @maria (changes requested):\nTwo things.")
            && job
                .context
                .contains("@maria on README.md line 3:\n```diff\n@@ -1,3 +1,3 @@")
            && job.context.contains("Say why.")
            && job.context.contains("Link it."),
        "{}",
        job.context
    );
    assert_eq!(
        when(
            &mut task,
            review(120, "CHANGES_REQUESTED", AuthorPermission::Write)
        ),
        Ok(vec![]),
        "the same review read again is not taken up again"
    );
    let done = code_done(&task, JobMode::Feedback, "sha9abcdef", 1);
    let events = when(&mut task, done).unwrap_or_default();
    assert_eq!(types(&events)[0], "FeedbackAddressed");
    assert_eq!(
        kinds(&events),
        ["reply-rc-121", "reply-rc-122", "feedback-summary-r1"],
        "a reply on each thread, and one summary for the review's own text"
    );
    let Some((_, Effect::ReplyToReviewComment(reply))) = effects(&events).into_iter().next() else {
        panic!("no reply requested");
    };
    assert_eq!((reply.pr_number, reply.comment_id), (3, 121));
    assert!(
        reply.body.starts_with("Addressed in sha9abc (feedback round 1)"),
        "{}",
        reply.body
    );
    assert_eq!(
        task.status,
        TaskStatus::Implementing,
        "the push is checked by CI before review resumes"
    );
    let back = when(&mut task, ci_passed("sha9abcdef")).unwrap_or_default();
    assert_eq!(types(&back)[0], "CodeReadyForReview");
    assert_eq!(task.status, TaskStatus::UnderReview);
    assert_eq!(
        kinds(&back),
        ["ready-sha9abcdef"],
        "the ready note names the new head"
    );
}

#[test]
fn a_round_that_changes_nothing_is_back_in_review_at_once() {
    let mut task = in_review_on_github();
    when(&mut task, review(120, "COMMENTED", AuthorPermission::Write)).ok();
    let head = task.head_sha.clone();
    let done = code_done(&task, JobMode::Feedback, &head, 0);
    let events = when(&mut task, done).unwrap_or_default();
    assert_eq!(task.status, TaskStatus::UnderReview);
    let Some((_, Effect::ReplyToReviewComment(reply))) = effects(&events).into_iter().next() else {
        panic!("no reply requested");
    };
    assert!(
        reply
            .body
            .starts_with("Looked at this in feedback round 1 and changed nothing."),
        "{}",
        reply.body
    );
}

#[test]
fn feedback_during_a_round_waits_for_the_next_round() {
    let mut task = in_review_on_github();
    when(&mut task, review(120, "COMMENTED", AuthorPermission::Write)).ok();
    let queued = when(&mut task, review(130, "COMMENTED", AuthorPermission::Write)).unwrap_or_default();
    assert_eq!(
        types(&queued),
        ["ReviewFeedbackQueued"],
        "the job in hand is not disturbed"
    );
    let more = when(
        &mut task,
        comment(140, AuthorPermission::Write, "/revise also fix the typo"),
    )
    .unwrap_or_default();
    assert_eq!(types(&more), ["ReviewFeedbackQueued"]);
    let done = code_done(&task, JobMode::Feedback, "sha2", 1);
    when(&mut task, done).ok();
    assert_eq!(task.feedback_rounds, 1, "CI first");
    let events = when(&mut task, ci_passed("sha2")).unwrap_or_default();
    let started: Vec<&Payload> = events
        .iter()
        .filter(|e| matches!(e, Payload::FeedbackAddressingStarted(_)))
        .collect();
    let [Payload::FeedbackAddressingStarted(round)] = started.as_slice() else {
        panic!("one round expected: {:?}", types(&events));
    };
    assert_eq!(round.round, 2);
    assert_eq!(
        round.comment_ids,
        ["review-130", "rc-131", "rc-132", "c-140"],
        "everything that came meanwhile, in one round"
    );
    assert!(round.report.contains("also fix the typo"), "{}", round.report);
    assert_eq!(task.status, TaskStatus::Implementing);
    assert_eq!(task.job.as_ref().map(|j| j.mode()), Some(JobMode::Feedback));
    assert!(
        kinds(&events).contains(&"eyes-c-140".to_string()),
        "{:?}",
        kinds(&events)
    );
}

#[test]
fn a_comment_on_the_pull_request_asks_only_with_revise_or_a_mention() {
    let mut task = in_review_on_github();
    assert_eq!(
        when(
            &mut task,
            comment(50, AuthorPermission::Write, "Nice work, thanks!")
        ),
        Ok(vec![]),
        "a remark between people is not feedback"
    );
    assert_eq!(
        when(
            &mut task,
            comment(51, AuthorPermission::Write, "cc @mainloop-bot please")
        ),
        Ok(vec![]),
        "another account's mention is not ours"
    );
    assert_eq!(
        when(
            &mut task,
            comment(52, AuthorPermission::Read, "@mainloop rename it")
        ),
        Ok(vec![]),
        "read access does not steer"
    );
    let events = when(
        &mut task,
        comment(
            53,
            AuthorPermission::Write,
            "@mainloop please rename `run` to `start`",
        ),
    )
    .unwrap_or_default();
    assert_eq!(types(&events)[0], "FeedbackAddressingStarted");
    assert_eq!(kinds(&events), ["eyes-c-53"]);
    assert!(
        task.job
            .as_ref()
            .is_some_and(|j| j.context.contains("rename `run` to `start`"))
    );
    assert_eq!(
        when(
            &mut task,
            comment(53, AuthorPermission::Write, "@mainloop please rename")
        ),
        Ok(vec![]),
        "a comment steers once"
    );
    let done = code_done(&task, JobMode::Feedback, "sha5", 1);
    let events = when(&mut task, done).unwrap_or_default();
    assert_eq!(
        kinds(&events),
        ["feedback-summary-r1"],
        "no thread to reply on: one summary"
    );
    let Some((_, Effect::PostComment(summary))) = effects(&events).into_iter().next() else {
        panic!("no summary requested");
    };
    assert_eq!(summary.issue_number, 3, "on the pull request");
    assert!(
        summary
            .body
            .starts_with("**Feedback round 1:** addressed in 1 commit, up to sha5."),
        "{}",
        summary.body
    );
}

#[test]
fn review_rounds_are_bounded_by_the_configured_limit() {
    let mut task = in_review_on_github();
    for round in 0..2_u32 {
        let id = 200 + u64::from(round) * 10;
        let started = when(
            &mut task,
            review_with(id, "COMMENTED", AuthorPermission::Admin, 2),
        )
        .unwrap_or_default();
        assert_eq!(types(&started)[0], "FeedbackAddressingStarted", "round {round}");
        let sha = format!("sha-r{round}");
        let done = code_done(&task, JobMode::Feedback, &sha, 1);
        when(&mut task, done).ok();
        when(&mut task, ci_passed(&sha)).ok();
    }
    assert_eq!(
        when(
            &mut task,
            review_with(900, "COMMENTED", AuthorPermission::Admin, 2)
        ),
        Ok(vec![]),
        "past the limit the person takes over"
    );
    assert_eq!(task.status, TaskStatus::UnderReview);
}

#[test]
fn context_added_in_review_is_a_round_of_feedback() {
    let mut task = in_review_on_github();
    let events = when(
        &mut task,
        Command::AddContext {
            text: "Also mention Windows.".into(),
            source: "chat:c1".into(),
        },
    )
    .unwrap_or_default();
    assert_eq!(types(&events)[..2], ["ContextAdded", "FeedbackAddressingStarted"]);
    let job = task.job.clone().unwrap_or_default();
    assert_eq!(job.mode(), JobMode::Feedback);
    assert!(
        job.context
            .contains("The person, in mainloop:\nAlso mention Windows."),
        "{}",
        job.context
    );
    assert!(job.prompt.contains("- Also mention Windows."), "{}", job.prompt);
}
