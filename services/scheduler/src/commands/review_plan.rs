use mainloop_events::v1::{CommandError, ReviewPlan, TaskAccepted};

use crate::store::TaskStore;
use crate::task::{Command, PlanAction};

pub async fn handle(store: TaskStore, command: ReviewPlan) -> Result<TaskAccepted, CommandError> {
    let action = match command.action.as_str() {
        "approve" => PlanAction::Approve,
        "revise" => PlanAction::Revise,
        "cancel" => PlanAction::Cancel,
        other => {
            return Err(CommandError::invalid(format!(
                "action must be approve, revise or cancel, not {other:?}"
            )));
        }
    };
    let decided = Command::ReviewPlan {
        action,
        revision: command.plan_revision,
        feedback: command.feedback,
        by: "ui".into(),
    };
    super::run(&store, &command.user_id, &command.task_id, decided).await
}
