use mainloop_events::v1::{CommandError, SpawnTask, TaskAccepted, TaskSpawned};

use crate::store::TaskStore;
use crate::task::Command;

pub async fn handle(store: TaskStore, command: SpawnTask) -> Result<TaskAccepted, CommandError> {
    let spawned = TaskSpawned {
        task_id: command.task_id.clone(),
        repo: command.repo,
        description: command.description,
        skip_plan: command.skip_plan,
        conversation_id: command.conversation_id,
        ..Default::default()
    };
    super::run(
        &store,
        &command.user_id,
        &command.task_id,
        Command::Spawn(spawned),
    )
    .await
}
