use mainloop_events::v1::{AddContext, CommandError, TaskAccepted};

use crate::store::TaskStore;
use crate::task::Command;

pub async fn handle(store: TaskStore, command: AddContext) -> Result<TaskAccepted, CommandError> {
    super::run(
        &store,
        &command.user_id,
        &command.task_id,
        Command::AddContext {
            text: command.context,
            source: command.source,
        },
    )
    .await
}
