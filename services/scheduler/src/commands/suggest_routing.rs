use mainloop_events::v1::{CommandError, SuggestRouting, TaskAccepted};

use crate::store::TaskStore;
use crate::task::Command;

pub async fn handle(store: TaskStore, command: SuggestRouting) -> Result<TaskAccepted, CommandError> {
    super::run(
        &store,
        &command.user_id,
        &command.task_id,
        Command::SuggestRouting {
            message: command.message,
            source: command.source,
        },
    )
    .await
}
