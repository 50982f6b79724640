use mainloop_events::v1::{CommandError, RetryTask, TaskAccepted};

use crate::store::TaskStore;
use crate::task::Command;

pub async fn handle(store: TaskStore, command: RetryTask) -> Result<TaskAccepted, CommandError> {
    super::run(&store, &command.user_id, &command.task_id, Command::Retry).await
}
