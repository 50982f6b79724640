use mainloop_runtime::service::StartError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("worker-supervisor: {0}")]
    Setup(String),
}
