use mainloop_events::v1::{CancelTask, CommandError, TaskAccepted};

use crate::store::TaskStore;
use crate::task::Command;

pub async fn handle(store: TaskStore, command: CancelTask) -> Result<TaskAccepted, CommandError> {
    super::run(
        &store,
        &command.user_id,
        &command.task_id,
        Command::Cancel { by: "ui".into() },
    )
    .await
}
