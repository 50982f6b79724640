//! The status each task event leaves its task in: the "transition" column of the catalogue,
//! shared by every reader of TASKS so none of them keeps its own copy of the state machine's
//! edges.

use crate::Payload;
use crate::v1::TaskStatus;

impl Payload {
    /// `Some(status)` for task events that move the task, `None` for all others.
    pub fn task_status_after(&self) -> Option<TaskStatus> {
        Some(match self {
            Payload::TaskSpawned(_) | Payload::TaskRetried(_) => TaskStatus::Pending,
            Payload::PlanningStarted(_)
            | Payload::QuestionsAnswered(_)
            | Payload::PlanRevisionRequested(_) => TaskStatus::Planning,
            Payload::QuestionsAsked(_) => TaskStatus::WaitingQuestions,
            Payload::PlanProposed(_) => TaskStatus::WaitingPlanReview,
            Payload::PlanApproved(_) => TaskStatus::ReadyToImplement,
            Payload::ImplementationStarted(_) | Payload::FeedbackAddressingStarted(_) => {
                TaskStatus::Implementing
            }
            // Commits pushed for review feedback are checked by CI before the task is back in
            // review; a round that changed nothing is back at once.
            Payload::FeedbackAddressed(e) if e.commits > 0 => TaskStatus::Implementing,
            Payload::CodeReadyForReview(_) | Payload::FeedbackAddressed(_) | Payload::ReviewResumed(_) => {
                TaskStatus::UnderReview
            }
            Payload::TaskCompleted(_) => TaskStatus::Completed,
            Payload::TaskCancelled(_) => TaskStatus::Cancelled,
            Payload::TaskFailed(_) => TaskStatus::Failed,
            _ => return None,
        })
    }
}

impl TaskStatus {
    /// The name the original REST API uses ("waiting_plan_review").
    pub fn api_name(self) -> &'static str {
        match self {
            TaskStatus::Unspecified => "unknown",
            TaskStatus::Pending => "pending",
            TaskStatus::Planning => "planning",
            TaskStatus::WaitingQuestions => "waiting_questions",
            TaskStatus::WaitingPlanReview => "waiting_plan_review",
            TaskStatus::ReadyToImplement => "ready_to_implement",
            TaskStatus::Implementing => "implementing",
            TaskStatus::UnderReview => "under_review",
            TaskStatus::Completed => "completed",
            TaskStatus::Failed => "failed",
            TaskStatus::Cancelled => "cancelled",
        }
    }

    pub fn from_api_name(name: &str) -> Option<TaskStatus> {
        ALL.iter().copied().find(|s| s.api_name() == name)
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskStatus::Completed | TaskStatus::Failed | TaskStatus::Cancelled
        )
    }
}

const ALL: [TaskStatus; 10] = [
    TaskStatus::Pending,
    TaskStatus::Planning,
    TaskStatus::WaitingQuestions,
    TaskStatus::WaitingPlanReview,
    TaskStatus::ReadyToImplement,
    TaskStatus::Implementing,
    TaskStatus::UnderReview,
    TaskStatus::Completed,
    TaskStatus::Failed,
    TaskStatus::Cancelled,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_names_round_trip() {
        for status in ALL {
            assert_eq!(TaskStatus::from_api_name(status.api_name()), Some(status));
        }
        assert_eq!(TaskStatus::from_api_name("in_progress"), None);
    }
}
