//! Test fixtures. A seeded task (the original's `POST /internal/test/seed-task`, served only
//! with `ACCEPT_TEST_SEEDS`) goes straight to the state its seed names through the events a real
//! task passes — spawned, planning, then its questions or its plan, then approved and
//! implementing if the seed says so — each one a follow-up derived from state, so a crash
//! repeats nothing. There it asks the person what a real task would ask (the inbox item), so
//! the read models show it exactly as a real one; it starts no job and touches nothing on
//! GitHub. Answered questions leave it planning; an approved plan, ready to implement.

use mainloop_events::Payload;
use mainloop_events::v1::{
    ImplementationStarted, PlanApproved, PlanProposed, QuestionsAsked, Seed, TaskStatus,
};

use super::follow_ups::{ask_answers, ask_review};
use super::text::branch_name;
use super::{Rejection, Task};

/// The states a task may be seeded in.
pub const STATES: &[&str] = &[
    "waiting_questions",
    "waiting_plan_review",
    "ready_to_implement",
    "implementing",
];

/// Whether `seed` names a state a task can be seeded in, with what that state needs.
pub fn check(seed: &Seed) -> Result<(), Rejection> {
    if !STATES.contains(&seed.status.as_str()) {
        return Err(Rejection::Invalid(format!(
            "a task is seeded in one of {}, not {:?}",
            STATES.join(", "),
            seed.status
        )));
    }
    if seed.status == "waiting_questions" && seed.questions.is_empty() {
        return Err(Rejection::Invalid(
            "a task waiting for answers needs questions".into(),
        ));
    }
    Ok(())
}

/// What a seeded task still needs: the next step towards its seed's state, or the person's
/// answer once there.
pub fn follow_ups(task: &Task) -> Vec<Payload> {
    let Some(seed) = &task.seed else {
        return vec![];
    };
    let goes_past_review = matches!(seed.status.as_str(), "ready_to_implement" | "implementing");
    let next = match task.status {
        TaskStatus::Pending => Some(Payload::PlanningStarted(mainloop_events::v1::PlanningStarted {
            round: task.plan_round + 1,
        })),
        // Only the first round comes from the seed; after answers (or a revision asked for)
        // there is no agent to plan. A seed requests no jobs, so its rounds never advance: what
        // was answered tells, not the round.
        TaskStatus::Planning if task.answers.is_empty() && task.plan_revision == 0 => {
            Some(if seed.status == "waiting_questions" {
                Payload::QuestionsAsked(QuestionsAsked {
                    round: task.plan_round,
                    questions: seed.questions.clone(),
                    draft_plan: String::new(),
                })
            } else {
                Payload::PlanProposed(PlanProposed {
                    revision: task.plan_revision + 1,
                    plan_text: seed.plan.clone(),
                    suggested_options: vec![],
                })
            })
        }
        TaskStatus::WaitingQuestions => ask_answers(task),
        TaskStatus::WaitingPlanReview if goes_past_review && task.approved.is_none() => {
            Some(Payload::PlanApproved(PlanApproved {
                plan_revision: task.plan_revision,
                branch_name: branch_name(&task.description, 0),
                approved_by: "the seed".into(),
                github_comment_id: 0,
            }))
        }
        TaskStatus::WaitingPlanReview => ask_review(task),
        TaskStatus::ReadyToImplement if seed.status == "implementing" => {
            Some(Payload::ImplementationStarted(ImplementationStarted {
                branch_name: task.branch_name.clone(),
                ..Default::default()
            }))
        }
        _ => None,
    };
    next.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use mainloop_events::v1::{Question, QuestionOption, RepoRef, TaskSpawned};

    use super::super::tests::{types, when};
    use super::*;
    use crate::task::{Command, PlanAction};

    fn seeded(status: &str, plan: &str, questions: Vec<Question>) -> Command {
        Command::Spawn(TaskSpawned {
            task_id: "s1".into(),
            repo: Some(RepoRef {
                owner: "test".into(),
                name: "repo".into(),
                html_url: "https://github.com/test/repo".into(),
            }),
            description: "Add authentication".into(),
            seed: Some(Seed {
                status: status.into(),
                plan: plan.into(),
                questions,
            }),
            ..Default::default()
        })
    }

    fn question() -> Question {
        Question {
            id: "q1".into(),
            header: "Authentication Method".into(),
            question: "Which authentication method should we use?".into(),
            options: vec![QuestionOption {
                label: "JWT tokens".into(),
                description: String::new(),
            }],
            multi_select: false,
        }
    }

    #[test]
    fn a_seeded_plan_waits_for_review_with_no_job_and_no_github() {
        let mut task = Task::default();
        let events = when(&mut task, seeded("waiting_plan_review", "1. Add login", vec![]));
        assert_eq!(
            events.as_deref().map(types),
            Ok(vec![
                "TaskSpawned",
                "PlanningStarted",
                "PlanProposed",
                "NeedsApproval"
            ])
        );
        assert_eq!(
            (task.status, task.plan_text.as_str()),
            (TaskStatus::WaitingPlanReview, "1. Add login")
        );
        // Approved, it is ready and stays so: no agent runs for a fixture.
        let approve = Command::ReviewPlan {
            action: PlanAction::Approve,
            revision: task.plan_revision,
            feedback: String::new(),
            by: "alice".into(),
        };
        let approved = when(&mut task, approve);
        assert_eq!(approved.as_deref().map(types), Ok(vec!["PlanApproved"]));
        assert_eq!(task.status, TaskStatus::ReadyToImplement);
    }

    #[test]
    fn seeded_questions_are_asked_and_answers_leave_it_planning() {
        let mut task = Task::default();
        let events = when(&mut task, seeded("waiting_questions", "", vec![question()]));
        assert_eq!(
            events.as_deref().map(types),
            Ok(vec![
                "TaskSpawned",
                "PlanningStarted",
                "QuestionsAsked",
                "NeedsApproval"
            ])
        );
        assert_eq!(
            (task.status, task.questions.len()),
            (TaskStatus::WaitingQuestions, 1)
        );

        let answered = when(
            &mut task,
            Command::AnswerQuestions {
                answers: vec![mainloop_events::v1::Answer {
                    question_id: "q1".into(),
                    header: String::new(),
                    values: vec!["Top".into()],
                }],
                cancel: false,
                by: "ui".into(),
            },
        );
        assert_eq!(answered.as_deref().map(types), Ok(vec!["QuestionsAnswered"]));
        assert_eq!((task.status, task.questions.len()), (TaskStatus::Planning, 0));
    }

    #[test]
    fn a_seed_can_go_past_the_review_and_nowhere_else() {
        let mut task = Task::default();
        let events = when(&mut task, seeded("implementing", "1. Add login", vec![]));
        assert_eq!(
            events.as_deref().map(types),
            Ok(vec![
                "TaskSpawned",
                "PlanningStarted",
                "PlanProposed",
                "PlanApproved",
                "ImplementationStarted"
            ])
        );
        assert_eq!(
            (task.status, task.job.is_none()),
            (TaskStatus::Implementing, true)
        );
        let mut ready = Task::default();
        let _ = when(&mut ready, seeded("ready_to_implement", "1. Add login", vec![]));
        assert_eq!(ready.status, TaskStatus::ReadyToImplement);

        for (status, questions) in [
            ("completed", vec![]),
            ("planning", vec![]),
            ("waiting_questions", vec![]),
        ] {
            let mut refused = Task::default();
            assert!(
                matches!(
                    when(&mut refused, seeded(status, "", questions)),
                    Err(Rejection::Invalid(_))
                ),
                "{status}"
            );
            assert!(!refused.exists(), "{status}: nothing spawned");
        }
    }
}
