use mainloop_events::v1::{AnswerQuestions, CommandError, TaskAccepted};

use crate::store::TaskStore;
use crate::task::Command;

pub async fn handle(store: TaskStore, command: AnswerQuestions) -> Result<TaskAccepted, CommandError> {
    let cancel = match command.action.as_str() {
        "answer" | "" => false,
        "cancel" => true,
        other => {
            return Err(CommandError::invalid(format!(
                "action must be answer or cancel, not {other:?}"
            )));
        }
    };
    let answers = if cancel { Vec::new() } else { command.answers };
    let decided = Command::AnswerQuestions {
        answers,
        cancel,
        by: "ui".into(),
    };
    super::run(&store, &command.user_id, &command.task_id, decided).await
}
