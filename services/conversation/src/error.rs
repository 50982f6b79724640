use mainloop_runtime::service::StartError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("conversation: {0}")]
    Setup(String),
}
