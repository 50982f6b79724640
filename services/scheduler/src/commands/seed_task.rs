use mainloop_events::v1::{CommandError, SeedTask, TaskAccepted, TaskSpawned};

use crate::store::TaskStore;
use crate::task::Command;

/// A test fixture's task, spawned with its seed (see `task::seed`); served only with
/// `ACCEPT_TEST_SEEDS`.
pub async fn handle(store: TaskStore, command: SeedTask) -> Result<TaskAccepted, CommandError> {
    if command.seed.is_none() {
        return Err(CommandError::invalid("a seeded task needs its seed"));
    }
    let spawned = TaskSpawned {
        task_id: command.task_id.clone(),
        repo: command.repo,
        description: command.description,
        seed: command.seed,
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
